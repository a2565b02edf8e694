/**
 * The benchmark suite in a browser page (bench/browser.ts opens it in Chromium through Playwright): the
 * same runSuite as in Node, on the page's own WebGPU adapter, with onnxruntime-web loaded as a web page
 * loads it. The result goes to `window.suiteResult`; a failure to `window.suiteError`; progress lines to
 * the console and the page.
 */
import { GpuContext } from '../../src/gpu/context.ts';
import { isSwiftShader } from '../../src/gpu/kernel-variant.ts';
import { parseSuiteArgs, runSuite, type OrtVariant, type SuiteResult } from '../suite-core.ts';

declare global {
  interface Window {
    suiteResult?: SuiteResult;
    suiteError?: string;
  }
}

const logEl = document.getElementById('log')!;
function log(line: string): void {
  console.log(line);
  logEl.textContent += `${line}\n`;
}

async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function fetchBytes(url: string): Promise<Uint8Array<ArrayBuffer>> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

/** The ORT graphs, checked against the weights the suite gives ORT (as the Node runner checks them). */
async function loadGraphs(variants: readonly OrtVariant[], weightsSha: string): Promise<Map<OrtVariant, Uint8Array>> {
  const graphs = new Map<OrtVariant, Uint8Array>();
  for (const v of variants) {
    const base = `/test/fixtures/ort-full-attention/${v}.onnx`;
    const info = (await (await fetch(`${base}.json`)).json()) as { safetensors_sha256: string };
    if (info.safetensors_sha256 !== weightsSha) throw new Error(`${base} was exported from other weights than bench/models.ts gives now`);
    graphs.set(v, await fetchBytes(base));
  }
  return graphs;
}

/**
 * `subgroups: false` for onnxruntime-web on SwiftShader: its subgroup kernels compute wrong logits there
 * (bench/browser/transformers-js.ts has the measurement).
 */
async function openDevice(adapter: GPUAdapter, opts: { subgroups: boolean } = { subgroups: true }): Promise<GPUDevice> {
  const wanted: GPUFeatureName[] = ['shader-f16', 'timestamp-query', ...(opts.subgroups ? ['subgroups' as GPUFeatureName] : [])];
  return adapter.requestDevice({
    requiredFeatures: wanted.filter((f) => adapter.features.has(f)),
    requiredLimits: { maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize, maxBufferSize: adapter.limits.maxBufferSize },
  });
}

async function run(): Promise<void> {
  const args = JSON.parse(new URLSearchParams(location.search).get('args') ?? '[]') as string[];
  const a = parseSuiteArgs(args, { contexts: [1024, 2048, 4096] });
  if (!navigator.gpu) throw new Error('this browser has no WebGPU (navigator.gpu is missing)');
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error('navigator.gpu.requestAdapter() returned null');
  const device = await openDevice(adapter);
  const info = adapter.info;
  const description = `${[info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ')}; features: ${[...device.features].sort().join(', ')}; maxStorageBufferBindingSize=${device.limits.maxStorageBufferBindingSize}`;
  const { benchModelFiles } = await import('../models.ts');
  const weightsSha = await sha256Hex(benchModelFiles('full-attention').safetensors);
  log(`device: ${description}`);
  const result = await runSuite(
    {
      description,
      environment: navigator.userAgent,
      ctx: new GpuContext(device, { kernels: a.variant, adapterInfo: adapter.info }),
      ortGraphs: await loadGraphs(a.ort, weightsSha),
      ortWasmPaths: '/node_modules/onnxruntime-web/dist/',
      // A device per contender: an adapter gives one device, so each gets its own adapter.
      openDevice: async () => {
        const another = await navigator.gpu.requestAdapter();
        if (!another) throw new Error('navigator.gpu.requestAdapter() returned null for a contender\'s device');
        return { adapter: another, device: await openDevice(another) };
      },
      openOrtDevice: async () => {
        const another = await navigator.gpu.requestAdapter();
        if (!another) throw new Error('navigator.gpu.requestAdapter() returned null for onnxruntime-web\'s device');
        return { adapter: another, device: await openDevice(another, { subgroups: !isSwiftShader(another.info) }) };
      },
      engineContext: (g) => new GpuContext(g.device, { kernels: a.variant, adapterInfo: g.adapter.info }),
      log,
    },
    { contexts: a.contexts, steps: a.steps, modes: a.modes, weights: a.weights, kernelBench: a.kernelBench, command: `npm run bench -- browser ${args.join(' ')}`.trim() },
  );
  device.destroy();
  window.suiteResult = result;
  log('done');
}

run().catch((e: unknown) => {
  window.suiteError = e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ''}` : String(e);
  log(`failed: ${window.suiteError}`);
});
