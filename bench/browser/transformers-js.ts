/**
 * Our engine against transformers.js in one page (bench/transformers-js.ts serves it and opens it in
 * Chromium): the same full-attention weights, the same prompt, greedy decoding on WebGPU.
 *
 * - transformers.js (`@huggingface/transformers`, installed in bench/transformers-js/) loads the model
 *   folder bench/transformers-js-folder.ts wrote, offline, with `device: 'webgpu'` and fp32, and runs its
 *   own `generate()`; a streamer timestamps every token. Prefill = the time to the first new token;
 *   decode = the median gap between the following ones.
 * - Our engine: feed the prompt, sample the first token on the GPU (time to first token), then one
 *   `step` per token.
 * - Every GPU device made in this page is counted (bytes of live buffers, pipelines created) by wrapping
 *   GPUAdapter.requestDevice, so transformers.js's own device (its onnxruntime-web asks navigator.gpu for
 *   one) is counted exactly as ours is. Our allocator's figure is reported beside it as a check.
 *
 * Each context runs both contenders once, in alternating order, after one unmeasured warm-up each.
 */
import { Engine } from '../../src/engine/engine.ts';
import { GpuContext } from '../../src/gpu/context.ts';
import { isSwiftShader } from '../../src/gpu/kernel-variant.ts';
import { BENCH_MODELS } from '../models.ts';
import { GpuDeviceCounter } from '../ort-webgpu.ts';
import { TRANSFORMERS_JS_MODEL_NAME, tokenStream, type TjsResult, type TjsRow } from '../transformers-js-core.ts';

declare global {
  interface Window {
    tjsResult?: TjsResult;
    tjsError?: string;
  }
}

/** The part of transformers.js this page uses (the package ships its own d.ts; it is not installed for tsc). */
interface TjsTensor {
  readonly dims: number[];
  readonly data: BigInt64Array;
}
interface TjsModel {
  generate(opts: Record<string, unknown>): Promise<TjsTensor>;
  dispose(): Promise<unknown>;
}
interface TjsModule {
  env: { allowRemoteModels: boolean; allowLocalModels: boolean; localModelPath: string; useBrowserCache: boolean; backends: { onnx: { wasm: { wasmPaths: unknown; numThreads: number } } } };
  AutoModelForCausalLM: { from_pretrained(name: string, opts: Record<string, unknown>): Promise<TjsModel> };
  Tensor: new (type: string, data: BigInt64Array, dims: number[]) => TjsTensor;
  BaseStreamer: new () => { put(value: bigint[][]): void; end(): void };
}

const TJS = '/bench/transformers-js/node_modules/@huggingface/transformers/dist/transformers.web.js';
const ORT_DIST = '/bench/transformers-js/node_modules/onnxruntime-web/dist/';

const logEl = document.getElementById('log')!;
function log(line: string): void {
  console.log(line);
  logEl.textContent += `${line}\n`;
}

/**
 * Devices onnxruntime-web asks for get no `subgroups` on SwiftShader: with it, its kernels compute wrong
 * logits there (measured 2026-12-03 on this graph, ORT 1.30 and 1.31-dev alike: the first logit -0.413
 * where its own wasm EP and its WebGPU EP without subgroups give -1.5417; ours -1.5425). Set by run().
 */
let withoutSubgroups = false;

// Every device made from here on is counted, whoever asks for it.
const counted = new Map<GPUDevice, GpuDeviceCounter>();
const requestDevice = GPUAdapter.prototype.requestDevice;
GPUAdapter.prototype.requestDevice = async function (this: GPUAdapter, desc?: GPUDeviceDescriptor): Promise<GPUDevice> {
  const wanted = desc && withoutSubgroups ? { ...desc, requiredFeatures: [...(desc.requiredFeatures ?? [])].filter((f) => f !== 'subgroups' && f !== ('subgroup-size-control' as GPUFeatureName)) } : desc;
  const device = await requestDevice.call(this, wanted);
  counted.set(device, new GpuDeviceCounter(device));
  return device;
};

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

interface Run {
  tokens: number[];
  firstTokenMs: number;
  gaps: number[];
  liveBytes: number;
  pipelines: number;
  allocatorBytes: number | null;
}

async function ours(engine: Engine, counter: GpuDeviceCounter, prompt: readonly number[], steps: number): Promise<Run> {
  await engine.reset();
  const t0 = performance.now();
  for (let i = 0; i < prompt.length - 1; i += 1024) await engine.feed(prompt.slice(i, Math.min(i + 1024, prompt.length - 1)));
  let token = (await engine.feed([prompt[prompt.length - 1]], { sample: { temperature: 0 } })).token!;
  const firstTokenMs = performance.now() - t0;
  const tokens = [token];
  const pipelines = counter.pipelines;
  const gaps: number[] = [];
  for (let i = 1; i < steps; i++) {
    const t = performance.now();
    token = await engine.step(token, { temperature: 0 });
    gaps.push(performance.now() - t);
    tokens.push(token);
  }
  return { tokens, firstTokenMs, gaps, liveBytes: counter.live, pipelines: counter.pipelines - pipelines, allocatorBytes: engine.memory().total };
}

async function theirs(tjs: TjsModule, model: TjsModel, counters: () => GpuDeviceCounter[], prompt: readonly number[], steps: number): Promise<Run> {
  const stamps: number[] = [];
  const tokens: number[] = [];
  let pipelinesAtFirst = 0;
  let liveAtLast = 0;
  let pipelinesAtLast = 0;
  const sum = (f: (c: GpuDeviceCounter) => number) => counters().reduce((n, c) => n + f(c), 0);
  class Stamps extends tjs.BaseStreamer {
    private calls = 0;
    override put(value: bigint[][]): void {
      // The first call is the prompt; each later one is one new token.
      if (this.calls++ === 0) return;
      stamps.push(performance.now());
      tokens.push(Number(value[0][0]));
      if (tokens.length === 1) pipelinesAtFirst = sum((c) => c.pipelines);
      liveAtLast = sum((c) => c.live);
      pipelinesAtLast = sum((c) => c.pipelines);
    }
    override end(): void {}
  }
  const ids = BigInt64Array.from(prompt, (t) => BigInt(t));
  const t0 = performance.now();
  await model.generate({
    input_ids: new tjs.Tensor('int64', ids, [1, prompt.length]),
    attention_mask: new tjs.Tensor('int64', new BigInt64Array(prompt.length).fill(1n), [1, prompt.length]),
    max_new_tokens: steps,
    // No early stop at EOS: both sides make `steps` tokens (compared up to our first EOS, if any).
    min_new_tokens: steps,
    do_sample: false,
    streamer: new Stamps(),
  });
  const gaps = stamps.slice(1).map((t, i) => t - stamps[i]);
  return { tokens, firstTokenMs: stamps[0] - t0, gaps, liveBytes: liveAtLast, pipelines: pipelinesAtLast - pipelinesAtFirst, allocatorBytes: null };
}

function rowOf(contender: TjsRow['contender'], context: number, r: Run): TjsRow {
  return {
    contender, context,
    prefillSeconds: r.firstTokenMs / 1000,
    prefillTokensPerSecond: context / (r.firstTokenMs / 1000),
    decodeMsMedian: median(r.gaps),
    decodeMsMin: Math.min(...r.gaps),
    decodeSteps: r.gaps.length,
    liveGpuBytes: r.liveBytes,
    allocatorBytes: r.allocatorBytes,
    decodePipelines: r.pipelines,
    tokens: r.tokens,
  };
}

async function run(): Promise<void> {
  const args = JSON.parse(new URLSearchParams(location.search).get('args') ?? '{}') as { contexts: number[]; steps: number; command: string; ortSubgroups: boolean };
  if (!navigator.gpu) throw new Error('this browser has no WebGPU (navigator.gpu is missing)');
  const t0 = performance.now();
  const longest = Math.max(...args.contexts);

  // Our engine, on its own (counted) device.
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error('navigator.gpu.requestAdapter() returned null');
  const device = await adapter.requestDevice({ requiredLimits: { maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize, maxBufferSize: adapter.limits.maxBufferSize } });
  const ourCounter = counted.get(device)!;
  const info = adapter.info;
  const description = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ');
  const ctx = new GpuContext(device, { adapterInfo: info });
  const features = [...device.features].sort().join(', ');
  const engine = await Engine.create(ctx, BENCH_MODELS['full-attention'], { weights: 'f32', maxContext: longest + args.steps + 8, maxRows: 256 });

  // transformers.js, offline, from the folder the runner wrote.
  withoutSubgroups = isSwiftShader(info) && !args.ortSubgroups;
  if (withoutSubgroups) log('SwiftShader: transformers.js\'s device is made without subgroups (its kernels compute wrong logits with them here)');
  const tjs = (await import(/* @vite-ignore */ TJS)) as TjsModule;
  tjs.env.allowRemoteModels = false;
  tjs.env.allowLocalModels = true;
  tjs.env.useBrowserCache = false;
  tjs.env.localModelPath = '/bench/transformers-js/models/';
  tjs.env.backends.onnx.wasm.wasmPaths = { mjs: `${ORT_DIST}ort-wasm-simd-threaded.asyncify.mjs`, wasm: `${ORT_DIST}ort-wasm-simd-threaded.asyncify.wasm` };
  tjs.env.backends.onnx.wasm.numThreads = 1;
  const before = new Set(counted.keys());
  const model = await tjs.AutoModelForCausalLM.from_pretrained(TRANSFORMERS_JS_MODEL_NAME, { device: 'webgpu', dtype: 'fp32' });
  const theirCounters = () => [...counted.entries()].filter(([d]) => !before.has(d)).map(([, c]) => c);
  log(`transformers.js loaded on ${theirCounters().length} device(s) of its own`);

  // Warm-up (not measured): both compile what a prompt and a few steps need.
  const warm = tokenStream(Math.min(1024, longest));
  await ours(engine, ourCounter, warm, 4);
  await theirs(tjs, model, theirCounters, warm, 4);
  log('warm-up done');

  const rows: TjsRow[] = [];
  for (const [i, context] of args.contexts.entries()) {
    const prompt = tokenStream(context);
    const order = i % 2 === 0 ? ['ttt-web', 'transformers.js'] as const : ['transformers.js', 'ttt-web'] as const;
    for (const who of order) {
      const r = who === 'ttt-web' ? await ours(engine, ourCounter, prompt, args.steps) : await theirs(tjs, model, theirCounters, prompt, args.steps);
      const row = rowOf(who === 'ttt-web' ? 'full-attention' : 'transformers.js', context, r);
      rows.push(row);
      log(`${String(context).padStart(6)} ${row.contender.padEnd(16)} prefill ${row.prefillSeconds.toFixed(2)} s, decode median ${row.decodeMsMedian.toFixed(1)} ms, live GPU ${(row.liveGpuBytes / 2 ** 20).toFixed(2)} MiB, ${row.decodePipelines} pipelines in decode`);
    }
  }
  await model.dispose();
  engine.destroy();
  device.destroy();
  window.tjsResult = {
    date: new Date().toISOString(),
    device: `${description}; our device's features: ${features}; transformers.js's: ${theirCounters().length ? [...[...counted.keys()].filter((d) => !before.has(d))[0].features].sort().join(', ') : 'none'}`,
    environment: navigator.userAgent,
    command: args.command,
    contexts: args.contexts,
    steps: args.steps,
    rows,
    seconds: (performance.now() - t0) / 1000,
  };
  log('done');
}

run().catch((e: unknown) => {
  window.tjsError = e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ''}` : String(e);
  log(`failed: ${window.tjsError}`);
});
