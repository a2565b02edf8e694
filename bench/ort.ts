/**
 * Full attention through onnxruntime-web's WebGPU execution provider beside our engine, on the same
 * weights (the full-attention bench model; ORT reads the graphs test/fixtures/ort-full-attention/
 * {plain,fused}.onnx with their initializers in the very model.safetensors bytes the engine loads).
 *
 *     npm run bench -- ort [--contexts 1024,2048] [--steps 64] [--prefill-reps 3] [--variants plain,fused]
 *                          [--engine-weights f32|f16] [--json FILE]
 *
 * `plain` is the graph in standard ONNX ops, `fused` the one with onnxruntime's contrib ops
 * (SimplifiedLayerNormalization, GroupQueryAttention), as a model prepared for onnxruntime-web has them.
 * Per context: a fresh ORT device with one session per variant, and an engine; all prefill the same
 * tokens (a warm-up prefill first, so ORT's shape-specific pipelines are compiled before the timed ones),
 * then decode `steps` greedy steps with their order shuffled every step, so background load falls on all
 * alike.
 * ORT's prefill is one run over the whole context (its natural use; it also computes all T rows of
 * logits, the engine only the last); the engine's is blocks of 256. A decode step is one token in and
 * the next token's id out: the engine samples on the GPU and reads back the id; ORT reads back the
 * logits row (1 KB) and takes the argmax in JS. ORT's present K/V stay GPU buffers fed back as past.
 *
 * GPU bytes: the engine's own allocation report; for ORT, the bytes of every GPU buffer created on its
 * device (live after the run, and peak), counted by wrapping the device's createBuffer, plus the K/V
 * cache computed from its shapes.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { LactEngine } from '../src/engine/engine.ts';
import { GpuContext } from '../src/gpu/context.ts';
import { loadModel } from '../src/model/load.ts';
import { MemorySource } from '../src/model/source.ts';
import { openNodeGpu, type NodeGpu } from '../src/node/webgpu.ts';
import { benchModelFiles, sha256 } from './model-folder.ts';
import { GpuBufferBytes, loadOrtWebGpu, OrtKvDecoder, withLoopAwake, type OrtDecoderShape } from './ort-webgpu.ts';

const FIXTURE = fileURLToPath(new URL('../test/fixtures/ort-full-attention/', import.meta.url));
const now = () => performance.now();

export interface OrtBenchRow {
  /** 'ttt-web engine', or 'onnxruntime-web webgpu (<variant>)'. */
  readonly runtime: string;
  readonly context: number;
  readonly prefillSeconds: number;
  readonly prefillTokensPerSecond: number;
  readonly decodeMs: { readonly min: number; readonly median: number; readonly mean: number; readonly steps: number };
  /** K/V bytes holding live positions after the decode steps. */
  readonly kvBytesInUse: number;
  /** GPU bytes held after the run (ORT: every live buffer on its device; engine: its allocation total). */
  readonly gpuBytes: number;
  /** Largest GPU bytes held at once during the run (ORT only; the engine allocates everything at creation). */
  readonly gpuPeakBytes: number | null;
  readonly weights: string;
}

export interface OrtBenchResult {
  readonly device: string;
  readonly command: string;
  readonly model: string;
  readonly rows: readonly OrtBenchRow[];
}

function argmax(a: Float32Array, offset: number, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (a[offset + i] > a[offset + best]) best = i;
  return best;
}

function summary(times: number[]): OrtBenchRow['decodeMs'] {
  const s = [...times].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)], mean: times.reduce((a, b) => a + b, 0) / times.length, steps: times.length };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * Waits until this process is near idle: after ORT's 26 MB wasm module is instantiated, V8 tiers it up
 * on background threads for minutes on this machine, which would be charged to whatever runs then.
 */
async function waitForQuietCpu(maxSeconds: number): Promise<number> {
  const t0 = now();
  return withLoopAwake(async () => {
    while (now() - t0 < maxSeconds * 1000) {
      const u0 = process.cpuUsage();
      await new Promise((r) => setTimeout(r, 1000));
      const u = process.cpuUsage(u0);
      if ((u.user + u.system) / 1000 < 100) break; // under a tenth of a core
    }
    return (now() - t0) / 1000;
  });
}

export interface OrtBenchOptions {
  readonly contexts: readonly number[];
  readonly steps: number;
  readonly prefillReps: number;
  readonly variants: readonly string[];
  readonly engineWeights: 'f32' | 'f16';
  readonly command: string;
}

/** One thing being timed: an ORT session on a graph variant, or the engine. */
interface Contender {
  readonly runtime: string;
  prefill(): Promise<number>;
  step(): Promise<number>;
  prefillTimes: number[];
  decodeTimes: number[];
}

export async function runOrtBench(opts: OrtBenchOptions): Promise<OrtBenchResult> {
  const files = benchModelFiles('full-attention');
  const onnx = new Map<string, Uint8Array>();
  for (const v of opts.variants) {
    const info = JSON.parse(await readFile(`${FIXTURE}${v}.onnx.json`, 'utf8')) as { safetensors_sha256: string };
    if (sha256(files.safetensors) !== info.safetensors_sha256) {
      throw new Error(`test/fixtures/ort-full-attention/${v}.onnx was exported from other weights than bench/models.ts gives now: re-export it (see its README.md)`);
    }
    onnx.set(v, new Uint8Array(await readFile(`${FIXTURE}${v}.onnx`)));
  }
  const model = await loadModel(new MemorySource({ 'config.json': files.config, 'model.safetensors': files.safetensors }, 'bench full-attention'));
  const cfg = model.config;
  const shape: OrtDecoderShape = { layers: cfg.numLayers, heads: cfg.numAttnHeads, headDim: cfg.attnHeadDim, vocab: cfg.vocabSize };
  const features = ['shader-f16', 'subgroups' as GPUFeatureName] satisfies GPUFeatureName[];
  const engineGpu = await openNodeGpu({ requiredFeatures: features });
  const ctx = new GpuContext(engineGpu.device);
  const rows: OrtBenchRow[] = [];
  let seed = 12345;
  const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;

  for (const context of opts.contexts) {
    const tokens = Array.from({ length: context }, (_, i) => i % 256);
    // A device per variant and context: ORT keeps a buffer cache per device, so each device's bytes are
    // one session's, from empty.
    const decoders = new Map<string, { dec: OrtKvDecoder; gpu: NodeGpu; bytes: GpuBufferBytes }>();
    for (const [v, graph] of onnx) {
      const gpu = await openNodeGpu({
        requiredFeatures: features,
        requiredLimits: { maxStorageBufferBindingSize: engineGpu.adapter.limits.maxStorageBufferBindingSize, maxBufferSize: engineGpu.adapter.limits.maxBufferSize },
      });
      const bytes = new GpuBufferBytes(gpu.device);
      const ort = await loadOrtWebGpu(gpu);
      decoders.set(v, { dec: await OrtKvDecoder.create(ort, gpu.device, { onnx: graph, safetensors: files.safetensors, shape }), gpu, bytes });
    }
    const engine = await LactEngine.create(ctx, model, { weights: opts.engineWeights, maxContext: context + opts.steps + 16, maxRows: 256 });

    const contenders: Contender[] = [];
    for (const [v, { dec, gpu }] of decoders) {
      let token = 65;
      contenders.push({
        runtime: `onnxruntime-web webgpu (${v})`,
        prefillTimes: [],
        decodeTimes: [],
        async prefill() {
          dec.reset();
          const t = now();
          await dec.feed(tokens);
          await gpu.device.queue.onSubmittedWorkDone();
          return (now() - t) / 1000;
        },
        async step() {
          // Greedy from token 65: one token in, its logits row back, the argmax in JS.
          const t = now();
          token = argmax(await dec.feed([token]), 0, shape.vocab);
          return now() - t;
        },
      });
    }
    let engineToken = 65;
    contenders.push({
      runtime: 'ttt-web engine',
      prefillTimes: [],
      decodeTimes: [],
      async prefill() {
        engine.reset();
        const t = now();
        for (let fed = 0; fed < context; fed += 1024) await engine.prefill(tokens.slice(fed, Math.min(context, fed + 1024)));
        await ctx.device.queue.onSubmittedWorkDone();
        return (now() - t) / 1000;
      },
      async step() {
        const t = now();
        engineToken = await engine.step(engineToken, { temperature: 0 });
        return now() - t;
      },
    });
    const shuffled = (): Contender[] => {
      const order = [...contenders];
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [order[i], order[j]] = [order[j], order[i]];
      }
      return order;
    };

    for (const c of contenders) await c.prefill(); // warm-up
    const waited = await waitForQuietCpu(300);
    process.stderr.write(`context ${context}: warm-up prefills done; waited ${waited.toFixed(0)} s for the CPU to settle\n`);
    for (let r = 0; r < opts.prefillReps; r++) for (const c of shuffled()) c.prefillTimes.push(await c.prefill());
    for (const c of contenders) process.stderr.write(`context ${context}: ${c.runtime} prefill ${c.prefillTimes.map((t) => t.toFixed(2)).join(', ')} s\n`);
    // Decode from the prefilled context; 4 unmeasured steps first (one-row pipelines).
    for (let i = 0; i < 4; i++) for (const c of contenders) await c.step();
    for (let i = 0; i < opts.steps; i++) for (const c of shuffled()) c.decodeTimes.push(await c.step());

    const mem = engine.memory();
    for (const c of contenders) {
      const prefillSeconds = median(c.prefillTimes);
      const o = [...decoders].find(([v]) => c.runtime.endsWith(`(${v})`))?.[1];
      rows.push({
        runtime: c.runtime, context, prefillSeconds, prefillTokensPerSecond: context / prefillSeconds, decodeMs: summary(c.decodeTimes),
        kvBytesInUse: o ? o.dec.kvBytes() : engine.kvBytesInUse(),
        gpuBytes: o ? o.bytes.live : mem.total,
        gpuPeakBytes: o ? o.bytes.peak : null,
        weights: o ? 'f32' : engine.info.weights,
      });
    }
    for (const o of decoders.values()) {
      await o.dec.release();
      o.gpu.device.destroy();
    }
    engine.destroy();
  }
  engineGpu.device.destroy();
  return { device: engineGpu.description, command: opts.command, model: JSON.stringify(JSON.parse(files.config)), rows };
}

export function markdown(result: OrtBenchResult): string {
  const kib = (b: number) => (b / 1024).toFixed(0);
  const lines = [
    `device: ${result.device}`,
    `command: ${result.command}`,
    '',
    '| runtime | weights | context | prefill s | prefill tok/s | decode ms/token (min) | (median) | (mean) | steps | KV in use KiB | GPU KiB held | GPU KiB peak |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const r of result.rows) {
    lines.push(`| ${r.runtime} | ${r.weights} | ${r.context} | ${r.prefillSeconds.toFixed(2)} | ${r.prefillTokensPerSecond.toFixed(0)} | ${r.decodeMs.min.toFixed(2)} | ${r.decodeMs.median.toFixed(2)} | ${r.decodeMs.mean.toFixed(2)} | ${r.decodeMs.steps} | ${kib(r.kvBytesInUse)} | ${kib(r.gpuBytes)} | ${r.gpuPeakBytes === null ? '-' : kib(r.gpuPeakBytes)} |`);
  }
  return lines.join('\n');
}

export async function main(args: string[]): Promise<void> {
  const contexts = (flag(args, '--contexts') ?? '1024,2048').split(',').map(Number);
  const steps = Number(flag(args, '--steps') ?? 64);
  const prefillReps = Number(flag(args, '--prefill-reps') ?? 3);
  const variants = (flag(args, '--variants') ?? 'plain,fused').split(',');
  if (variants.some((v) => v !== 'plain' && v !== 'fused')) throw new Error('--variants: plain and/or fused');
  const ew = flag(args, '--engine-weights') ?? 'f32';
  if (ew !== 'f32' && ew !== 'f16') throw new Error('--engine-weights must be f32 or f16');
  if (contexts.some((n) => !Number.isInteger(n) || n < 1) || !(steps >= 32)) throw new Error('--contexts: positive integers; --steps: at least 32');
  const command = `npm run bench -- ort ${args.join(' ')}`.trim();
  // The whole run with the event loop held awake: both runtimes wait on Dawn promises (see ort-webgpu.ts).
  const result = await withLoopAwake(() => runOrtBench({ contexts, steps, prefillReps, variants, engineWeights: ew, command }));
  console.log(`\n${markdown(result)}\n`);
  const json = flag(args, '--json');
  if (json) await writeFile(json, `${JSON.stringify(result, null, 1)}\n`);
  console.log(JSON.stringify(result));
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}
