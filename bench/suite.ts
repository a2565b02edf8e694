/**
 * `npm run bench`: the benchmark suite of bench/suite-core.ts in Node on Dawn, with onnxruntime-web's
 * WebGPU execution provider on devices of the same adapter. Writes the JSON to bench/results/ (or --out)
 * and the PNG beside it (train/plot_bench.py), and prints the Markdown tables for BENCHMARKS.md.
 *
 *     npm run bench [-- --contexts 1024,...,32768] [--steps 32] [--ort fused,plain|none] [--weights f32|f16]
 *                   [--modes ttt,sliding-window,full-attention] [--no-kernel-bench] [--kernels cpu|gpu] [--out FILE.json] [--no-plot]
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GpuContext } from '../src/gpu/context.ts';
import { sha256 } from './model-folder.ts';
import { benchModelFiles } from './models.ts';
import { withLoopAwake } from './ort-webgpu.ts';
import { parseSuiteArgs, runSuite, suiteMarkdown, type OrtVariant, type SuiteEnv, type SuiteResult } from './suite-core.ts';

// The packed GPU benchmark (scripts/pack-gpu-bench.mjs) carries the graphs elsewhere and says where.
const FIXTURE = process.env.TTT_BENCH_FIXTURES ? `${process.env.TTT_BENCH_FIXTURES.replace(/\/$/, '')}/` : fileURLToPath(new URL('../test/fixtures/ort-full-attention/', import.meta.url));

/** The ORT graphs, after checking they were exported from the weights bench/models.ts gives now. */
export async function loadOrtGraphs(variants: readonly OrtVariant[]): Promise<Map<OrtVariant, Uint8Array>> {
  const graphs = new Map<OrtVariant, Uint8Array>();
  const weights = sha256(benchModelFiles('full-attention').safetensors);
  for (const v of variants) {
    const info = JSON.parse(await readFile(`${FIXTURE}${v}.onnx.json`, 'utf8')) as { safetensors_sha256: string };
    if (info.safetensors_sha256 !== weights) throw new Error(`test/fixtures/ort-full-attention/${v}.onnx was exported from other weights than bench/models.ts gives now: re-export it (see its README.md)`);
    graphs.set(v, new Uint8Array(await readFile(`${FIXTURE}${v}.onnx`)));
  }
  return graphs;
}

/** Writes the JSON and, with Debian's python3-matplotlib, the PNG beside it (train/plot_bench.py). */
export async function saveSuite(result: SuiteResult, out: string, plot: boolean): Promise<void> {
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, `${JSON.stringify(result, null, 1)}\n`);
  console.log(`wrote ${out}`);
  if (!plot) return;
  const png = out.replace(/\.json$/, '') + '.png';
  const script = fileURLToPath(new URL('../train/plot_bench.py', import.meta.url));
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const r = spawnSync(python, [script, out, '--png', png], { stdio: 'inherit' });
  if (r.status !== 0) console.log(`no plot: ${python} ${script} failed (it needs matplotlib: scripts/install-system-deps.sh --torch installs Debian's)`);
}

export async function main(args: string[]): Promise<void> {
  const a = parseSuiteArgs(args);
  const { openNodeGpu } = await import('../src/node/webgpu.ts');
  const features = ['shader-f16', 'subgroups' as GPUFeatureName] satisfies GPUFeatureName[];
  const gpu = await openNodeGpu({ requiredFeatures: features });
  const command = `npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}`;
  const env: SuiteEnv = {
    description: gpu.description,
    environment: `Node ${process.version}, Dawn (webgpu npm package), ${gpu.backend} backend`,
    ctx: new GpuContext(gpu.device, { kernels: a.variant }),
    ortGraphs: await loadOrtGraphs(a.ort),
    engineContext: (g) => new GpuContext(g.device, { kernels: a.variant }),
    openDevice: () =>
      openNodeGpu({
        backends: [gpu.backend],
        requiredFeatures: features,
        requiredLimits: { maxStorageBufferBindingSize: gpu.adapter.limits.maxStorageBufferBindingSize, maxBufferSize: gpu.adapter.limits.maxBufferSize },
      }),
    log: (line) => process.stderr.write(`${line}\n`),
    settle: () => waitForQuietCpu(300),
  };
  console.log(`device: ${gpu.description}\ncommand: ${command}`);
  // The whole run with Node's event loop held awake: ORT waits on Dawn promises (see ort-webgpu.ts).
  const result = await withLoopAwake(() => runSuite(env, { contexts: a.contexts, steps: a.steps, modes: a.modes, weights: a.weights, kernelBench: a.kernelBench, command }));
  console.log(`\n${suiteMarkdown(result)}\n`);
  const backend = gpu.backend === 'system' ? 'gpu' : gpu.backend;
  await saveSuite(result, a.out ?? `bench/results/suite-${backend}-${result.date.slice(0, 10)}.json`, a.plot);
  gpu.device.destroy();
}

/**
 * Waits until this process is near idle: after ORT's 26 MB wasm module is instantiated, V8 tiers it up
 * on background threads for minutes on this machine, which would be charged to whatever runs then.
 */
async function waitForQuietCpu(maxSeconds: number): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < maxSeconds * 1000) {
    const u0 = process.cpuUsage();
    await new Promise((r) => setTimeout(r, 1000));
    const u = process.cpuUsage(u0);
    if ((u.user + u.system) / 1000 < 100) break; // under a tenth of a core
  }
  return (performance.now() - t0) / 1000;
}
