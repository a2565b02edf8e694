/**
 * The benchmark suite, all in one run: prefill and decode at growing context for TTT, sliding-window and
 * full attention in our engine and full attention through onnxruntime-web's WebGPU execution provider on
 * the same weights, GPU bytes of each, then kernel GFLOP/s. bench/suite.ts runs it in Node
 * (`npm run bench`), bench/browser.ts in Chromium (`npm run bench -- browser`); this module touches no
 * Node API, so both load it.
 *
 * Method. Every contender (an engine per mode, an ORT session per graph variant) is prefilled once, from
 * position 0 to the longest context, in segments that end at each measured context; the prefill seconds at
 * context N are the summed times of the segments up to N, which is the time to prefill N tokens from
 * scratch (the same work, in the same blocks). At each N every contender's state is saved, then all decode
 * `steps` greedy steps with their order shuffled each step, so background load falls on all alike, and the
 * state is restored, so the next segment continues from exactly N. The engine prefills in calls of 1,024
 * tokens, run as blocks of 256 rows; ORT in runs of 1,024 tokens, the largest whose attention
 * temporaries stay modest at 32K, reading back every row's logits (its graph has no other output), which
 * costs it about 1 MB per run. A decode step is one token in and the next token out: the engine samples on
 * the GPU and reads back the id; ORT reads back the logits row and takes the argmax in JS, while its K/V
 * stay GPU buffers fed back as the next run's past.
 *
 * GPU bytes: the engine's own allocation report. TTT and sliding window allocate the same at any context;
 * a full-attention engine is sized by its maxContext, so its figure at N is that of an engine made for N
 * (made and destroyed just to read it). ORT: the bytes of every live GPU buffer on its device (its buffer
 * cache included; it is memory ORT holds), counted by wrapping createBuffer, at N and the peak so far.
 */
import { parseKernelChoice, type KernelChoice, type KernelVariant } from '../src/gpu/kernel-variant.ts';
import { Engine } from '../src/engine/engine.ts';
import { GpuContext } from '../src/gpu/context.ts';
import type { WeightMap } from '../src/model/config.ts';
import type { ModelConfig } from '../src/model/model-config.ts';
import { kernelMarkdown, measureKernels, type KernelReport } from './kernels.ts';
import { BENCH_CONFIGS, BENCH_MODELS, benchModelFiles, type BenchMode } from './models.ts';
import { GpuDeviceCounter, loadOrtWebGpu, OrtKvDecoder, OrtSharedKvDecoder, withLoopAwake, type OrtDecoderShape } from './ort-webgpu.ts';

export const DEFAULT_CONTEXTS = [1024, 2048, 4096, 8192, 16384, 32768];
const ENGINE_CALL = 1024;
const ENGINE_ROWS = 256;
const ORT_RUN = 1024;
const now = () => performance.now();

export type OrtVariant = 'plain' | 'fused' | 'shared';
export const ORT_VARIANTS: readonly OrtVariant[] = ['shared', 'fused', 'plain'];

export interface SuiteRow {
  /** 'ttt' | 'sliding-window' | 'full-attention' (our engine) | 'ort-shared' | 'ort-fused' | 'ort-plain'. */
  readonly contender: string;
  readonly runtime: 'ttt-web' | 'onnxruntime-web';
  readonly mixer: BenchMode;
  readonly context: number;
  readonly prefillSeconds: number;
  readonly prefillTokensPerSecond: number;
  readonly decodeMs: { readonly min: number; readonly median: number; readonly mean: number; readonly steps: number };
  /** Live GPU bytes on the contender's own device at this context, counted alike for every runtime (see the header). */
  readonly gpuBytes: number;
  /** The most live bytes at once on that device so far. */
  readonly gpuBytesPeak: number;
  /** Our engine's own allocation report at this point (a check on gpuBytes); null for ORT. */
  readonly allocatorBytes: number | null;
  /** Full attention in our engine: the allocation report of an engine made for just this context. */
  readonly sizedForContextBytes: number | null;
  /** Pipelines the contender created during the timed decode steps at this context. */
  readonly decodePipelines: number;
  /** Pipelines created on its device since it was made (warm-up included). */
  readonly pipelinesSoFar: number;
  /** K/V bytes holding live positions at this context. */
  readonly kvBytesInUse: number;
}

export interface TargetCheck {
  readonly target: string;
  readonly wanted: string;
  readonly measured: string;
  readonly met: boolean;
}

export interface SuiteResult {
  readonly date: string;
  readonly device: string;
  readonly environment: string;
  readonly command: string;
  readonly model: Record<string, unknown>;
  readonly weights: 'f32' | 'f16';
  readonly steps: number;
  readonly contexts: readonly number[];
  readonly rows: readonly SuiteRow[];
  readonly kernels: KernelReport | null;
  /** The engine's kernel shapes in this run (`--kernels`; GpuContext.kernelVariant). */
  readonly kernelVariant: KernelVariant;
  /** TTT-E2E's inner step against its chunk's forward (when ttt-e2e is among the modes). */
  readonly innerStep: InnerStepReport | null;
  readonly targets: readonly TargetCheck[];
  readonly seconds: number;
}

/**
 * The benchmark TTT-E2E model's prefill over `chunks` chunks, learning (an inner step at every chunk
 * boundary) and frozen (`learn: false`: the same forward without it), each the median of `runs` timings.
 */
export interface InnerStepReport {
  readonly chunk: number;
  readonly chunks: number;
  readonly runs: number;
  /** Milliseconds per chunk. */
  readonly forwardMs: number;
  readonly learningMs: number;
  /** learningMs − forwardMs: one inner step. */
  readonly innerStepMs: number;
  /** innerStepMs / forwardMs (target: at most 3). */
  readonly ofForward: number;
  /** innerStepMs / learningMs: the inner step's share of prefill time. */
  readonly shareOfPrefill: number;
}

/** Times the inner step as learning prefill minus frozen prefill of the same tokens (see InnerStepReport). */
async function measureInnerStep(env: SuiteEnv, opts: SuiteOptions, chunks = 8, runs = 3): Promise<InnerStepReport> {
  const model = BENCH_MODELS['ttt-e2e'];
  const B = model.config.miniBatchSize;
  const tokens = tokenStream((chunks + 1) * B);
  const engines = await Promise.all([true, false].map((learn) => Engine.create(env.ctx, model, { weights: opts.weights, maxRows: ENGINE_ROWS, learn })));
  const times: [number[], number[]] = [[], []];
  for (let r = 0; r <= runs; r++) {
    for (const [i, e] of engines.entries()) {
      await e.reset();
      await e.feed(tokens.slice(0, B)); // chunk 0: no update yet
      await env.ctx.device.queue.onSubmittedWorkDone();
      const t = now();
      await e.feed(tokens.slice(B)); // `chunks` blocks that each start a chunk: one update each when learning
      await env.ctx.device.queue.onSubmittedWorkDone();
      if (r > 0) times[i].push((now() - t) / chunks); // run 0 warms up
    }
  }
  for (const e of engines) await e.destroy();
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const learningMs = median(times[0]), forwardMs = median(times[1]);
  const innerStepMs = learningMs - forwardMs;
  return { chunk: B, chunks, runs, forwardMs, learningMs, innerStepMs, ofForward: innerStepMs / forwardMs, shareOfPrefill: innerStepMs / learningMs };
}

/** What the suite needs from where it runs (Node + Dawn here; a browser page in bench/browser/). */
export interface SuiteEnv {
  readonly description: string;
  readonly environment: string;
  readonly ctx: GpuContext;
  /** A fresh device of the same adapter for one contender (so what it holds is its own). */
  openDevice(): Promise<{ adapter: GPUAdapter; device: GPUDevice }>;
  /** A device for an ORT contender, where it must differ from openDevice's (SwiftShader: no subgroups). */
  openOrtDevice?(): Promise<{ adapter: GPUAdapter; device: GPUDevice }>;
  /** Our engine's context on such a device (the runner's kernel choice). */
  engineContext(gpu: { adapter: GPUAdapter; device: GPUDevice }): GpuContext;
  /** The ONNX graphs by variant (test/fixtures/ort-full-attention/). */
  readonly ortGraphs: ReadonlyMap<OrtVariant, Uint8Array>;
  /** Where onnxruntime-web's wasm files are served, when not beside its module (a Vite page). */
  readonly ortWasmPaths?: string;
  log(line: string): void;
  /** Waits until the host is near idle after the warm-up (Node: V8 tiers up ORT's wasm in the background). */
  settle?(): Promise<number>;
}

export interface SuiteOptions {
  readonly contexts: readonly number[];
  readonly steps: number;
  readonly modes: readonly BenchMode[];
  readonly weights: 'f32' | 'f16';
  /** Run the kernel micro-benchmarks (bench/kernels.ts). */
  readonly kernelBench: boolean;
  readonly command: string;
}

interface Contender {
  readonly name: string;
  readonly runtime: SuiteRow['runtime'];
  readonly mixer: BenchMode;
  prefillSeconds: number;
  decodeTimes: number[];
  feed(tokens: readonly number[]): Promise<void>;
  step(): Promise<void>;
  save(): Promise<void>;
  restore(): Promise<void>;
  bytes(context: number): Promise<{ allocator: number | null; sized: number | null; kv: number }>;
  /** Counts buffers and pipelines on the contender's own device. */
  readonly counter: GpuDeviceCounter;
  destroy(): Promise<void>;
}

/** Deterministic byte-valued tokens (the text does not change the work; a fixed one keeps runs alike). */
function tokenStream(n: number): number[] {
  let s = 0x9e3779b9;
  return Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 24));
}

function argmax(a: Float32Array, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (a[i] > a[best]) best = i;
  return best;
}

async function engineContender(env: SuiteEnv, mode: BenchMode, model: { config: ModelConfig; weights: WeightMap }, maxContext: number, opts: SuiteOptions): Promise<Contender> {
  // Its own device, so that what it holds is counted apart from the other contenders', and counted from
  // before the context makes anything.
  const gpu = await env.openDevice();
  const counter = new GpuDeviceCounter(gpu.device);
  const ctx = env.engineContext(gpu);
  const engine = await Engine.create(ctx, model, { weights: opts.weights, maxContext, maxRows: ENGINE_ROWS });
  let token = 65;
  let saved: Uint8Array | null = null;
  return {
    name: mode,
    runtime: 'ttt-web',
    mixer: mode,
    prefillSeconds: 0,
    decodeTimes: [],
    counter,
    async feed(tokens) {
      for (let i = 0; i < tokens.length; i += ENGINE_CALL) await engine.feed(tokens.slice(i, i + ENGINE_CALL));
      await ctx.device.queue.onSubmittedWorkDone();
    },
    async step() {
      token = await engine.step(token, { temperature: 0 });
    },
    async save() {
      saved = await engine.saveMemory();
    },
    async restore() {
      await engine.loadMemory(saved!);
      saved = null;
    },
    async bytes(context) {
      let sized: number | null = null;
      if (model.config.family === 'lact' && model.config.windowSize === null) {
        const e = await Engine.create(ctx, model, { weights: opts.weights, maxContext: context + opts.steps + 8, maxRows: ENGINE_ROWS });
        sized = e.memory().total;
        e.destroy();
      }
      return { allocator: engine.memory().total, sized, kv: engine.kvBytesInUse() };
    },
    async destroy() {
      engine.destroy();
      ctx.device.destroy();
    },
  };
}

async function ortContender(env: SuiteEnv, variant: OrtVariant, graph: Uint8Array, safetensors: Uint8Array, shape: OrtDecoderShape, capacity: number): Promise<Contender> {
  const gpu = await (env.openOrtDevice ?? env.openDevice)();
  const counter = new GpuDeviceCounter(gpu.device);
  const ort = await loadOrtWebGpu(gpu, { wasmPaths: env.ortWasmPaths });
  const dec = variant === 'shared'
    ? await OrtSharedKvDecoder.create(ort, gpu.device, { onnx: graph, safetensors, shape, capacity })
    : await OrtKvDecoder.create(ort, gpu.device, { onnx: graph, safetensors, shape });
  let token = 65;
  return {
    name: `ort-${variant}`,
    runtime: 'onnxruntime-web',
    mixer: 'full-attention',
    prefillSeconds: 0,
    decodeTimes: [],
    counter,
    async feed(tokens) {
      for (let i = 0; i < tokens.length; i += ORT_RUN) await dec.feed(tokens.slice(i, i + ORT_RUN));
      await gpu.device.queue.onSubmittedWorkDone();
    },
    async step() {
      // The shared graph returns the last row only; the others every row of the run, here one.
      token = argmax(await dec.feed([token]), shape.vocab);
    },
    async save() {
      dec.checkpoint();
    },
    async restore() {
      dec.rewind();
    },
    async bytes() {
      return { allocator: null, sized: null, kv: dec.kvBytes() };
    },
    async destroy() {
      await dec.release();
      gpu.device.destroy();
    },
  };
}

function summary(times: number[]): SuiteRow['decodeMs'] {
  const s = [...times].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)], mean: times.reduce((a, b) => a + b, 0) / times.length, steps: times.length };
}

export async function runSuite(env: SuiteEnv, opts: SuiteOptions): Promise<SuiteResult> {
  const t0 = now();
  const contexts = [...opts.contexts].sort((a, b) => a - b);
  const longest = contexts[contexts.length - 1];
  const maxContext = longest + opts.steps + 8;
  const tokens = tokenStream(longest);
  let seed = 12345;
  const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const shuffled = <T>(xs: readonly T[]): T[] => {
    const order = [...xs];
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    return order;
  };

  const contenders: Contender[] = [];
  for (const mode of opts.modes) contenders.push(await engineContender(env, mode, BENCH_MODELS[mode], maxContext, opts));
  if (env.ortGraphs.size > 0) {
    const files = benchModelFiles('full-attention');
    const cfg = BENCH_MODELS['full-attention'].config;
    const shape: OrtDecoderShape = { layers: cfg.numLayers, heads: cfg.numAttnHeads, headDim: cfg.attnHeadDim, vocab: cfg.vocabSize };
    for (const [variant, graph] of env.ortGraphs) contenders.push(await ortContender(env, variant, graph, files.safetensors, shape, maxContext));
  }
  env.log(`contenders: ${contenders.map((c) => c.name).join(', ')}; contexts ${contexts.join(', ')}; ${opts.steps} decode steps each`);

  // Warm-up, not timed: one prefill call and a few decode steps compile every pipeline either runtime
  // makes (ORT's are shape-specific, so its warm-up is a full run of ORT_RUN tokens), then back to 0.
  for (const c of contenders) {
    await c.save();
    await c.feed(tokens.slice(0, Math.min(ORT_RUN, longest)));
    for (let i = 0; i < 4; i++) await c.step();
    await c.restore();
  }

  if (env.settle) env.log(`warm-up done; waited ${(await env.settle()).toFixed(0)} s for the CPU to settle`);

  const rows: SuiteRow[] = [];
  let fed = 0;
  for (const context of contexts) {
    const segment = tokens.slice(fed, context);
    for (const c of shuffled(contenders)) {
      const t = now();
      await c.feed(segment);
      c.prefillSeconds += (now() - t) / 1000;
    }
    fed = context;
    const pipelinesBefore = new Map<Contender, number>();
    for (const c of contenders) {
      await c.save();
      c.decodeTimes = [];
      await c.step(); // unmeasured: the first step after a long prefill pays for cold caches
      pipelinesBefore.set(c, c.counter.pipelines);
    }
    for (let i = 0; i < opts.steps; i++) {
      for (const c of shuffled(contenders)) {
        const t = now();
        await c.step();
        c.decodeTimes.push(now() - t);
      }
    }
    for (const c of contenders) {
      // Read before bytes(): a full-attention engine made there for this context compiles nothing new,
      // but its buffers are made (and freed) on this device.
      const live = c.counter.live, peak = c.counter.peak, pipelines = c.counter.pipelines;
      const b = await c.bytes(context);
      await c.restore();
      const row: SuiteRow = {
        contender: c.name, runtime: c.runtime, mixer: c.mixer, context,
        prefillSeconds: c.prefillSeconds, prefillTokensPerSecond: context / c.prefillSeconds,
        decodeMs: summary(c.decodeTimes), gpuBytes: live, gpuBytesPeak: peak, allocatorBytes: b.allocator,
        sizedForContextBytes: b.sized, decodePipelines: pipelines - pipelinesBefore.get(c)!, pipelinesSoFar: pipelines, kvBytesInUse: b.kv,
      };
      rows.push(row);
      env.log(`${String(context).padStart(6)} ${c.name.padEnd(15)} prefill ${row.prefillSeconds.toFixed(2)} s (${row.prefillTokensPerSecond.toFixed(0)} tok/s), decode median ${row.decodeMs.median.toFixed(2)} ms, GPU ${(row.gpuBytes / 2 ** 20).toFixed(2)} MiB, ${row.decodePipelines} pipelines in decode`);
    }
  }
  for (const c of contenders) await c.destroy();

  let innerStep: InnerStepReport | null = null;
  if (opts.modes.includes('ttt-e2e')) {
    env.log('TTT-E2E inner step...');
    innerStep = await measureInnerStep(env, opts);
    env.log(`inner step ${innerStep.innerStepMs.toFixed(1)} ms per chunk of ${innerStep.chunk}; forward ${innerStep.forwardMs.toFixed(1)} ms (${innerStep.ofForward.toFixed(2)}x)`);
  }

  let kernels: KernelReport | null = null;
  if (opts.kernelBench) {
    env.log('kernels...');
    kernels = await measureKernels(env.ctx);
  }
  return {
    date: new Date().toISOString(),
    device: env.description,
    environment: env.environment,
    command: opts.command,
    model: { ...BENCH_CONFIGS.ttt, parameters: Object.fromEntries(opts.modes.map((m) => [m, [...BENCH_MODELS[m].weights.values()].reduce((s, t) => s + t.data.length, 0)])) },
    weights: opts.weights,
    steps: opts.steps,
    contexts,
    rows,
    kernels,
    kernelVariant: env.ctx.kernelVariant,
    innerStep,
    targets: checkTargets(rows, innerStep),
    seconds: (now() - t0) / 1000,
  };
}

/** The targets, at the longest context measured (never asserted: reported). */
export function checkTargets(rows: readonly SuiteRow[], innerStep: InnerStepReport | null = null): TargetCheck[] {
  const of = (name: string) => rows.filter((r) => r.contender === name).sort((a, b) => a.context - b.context);
  const ttt = of('ttt'), full = of('full-attention'), e2e = of('ttt-e2e');
  const out: TargetCheck[] = [];
  const x = (v: number) => `${v.toFixed(2)}x`;
  if (e2e.length > 0 && full.length > 0) {
    const t = e2e[e2e.length - 1], f = full.find((r) => r.context === t.context)!;
    const pre = f.prefillSeconds / t.prefillSeconds, dec = f.decodeMs.median / t.decodeMs.median;
    out.push({ target: `TTT-E2E prefill vs. full attention at ${t.context}`, wanted: '>= 2.7x faster', measured: x(pre), met: pre >= 2.7 });
    out.push({ target: `TTT-E2E decode vs. full attention at ${t.context}`, wanted: '>= 6x faster', measured: x(dec), met: dec >= 6 });
    const bytes = new Set(e2e.map((r) => r.gpuBytes));
    out.push({ target: 'TTT-E2E GPU bytes constant', wanted: 'one value at every context', measured: [...bytes].join(', '), met: bytes.size === 1 });
  }
  if (innerStep) {
    out.push({ target: `TTT-E2E inner step vs. its chunk's forward (B = ${innerStep.chunk})`, wanted: '<= 3x', measured: `${x(innerStep.ofForward)} (${innerStep.innerStepMs.toFixed(1)} vs ${innerStep.forwardMs.toFixed(1)} ms; ${(innerStep.shareOfPrefill * 100).toFixed(0)}% of prefill)`, met: innerStep.ofForward <= 3 });
  }
  if (ttt.length > 0 && full.length > 0) {
    const t = ttt[ttt.length - 1], f = full.find((r) => r.context === t.context)!;
    const pre = f.prefillSeconds / t.prefillSeconds, dec = f.decodeMs.median / t.decodeMs.median;
    out.push({ target: `TTT prefill vs. full attention at ${t.context}`, wanted: '>= 2.7x faster', measured: x(pre), met: pre >= 2.7 });
    out.push({ target: `TTT decode vs. full attention at ${t.context}`, wanted: '>= 6x faster', measured: x(dec), met: dec >= 6 });
  }
  if (ttt.length > 1) {
    const base = ttt[0].decodeMs.median;
    const worst = Math.max(...ttt.map((r) => Math.abs(r.decodeMs.median / base - 1)));
    out.push({ target: `TTT decode ms/token flat from ${ttt[0].context} to ${ttt[ttt.length - 1].context}`, wanted: 'within 15% of the first context', measured: `${ttt.map((r) => (r.decodeMs.median / base).toFixed(2)).join(' / ')} (worst ${(worst * 100).toFixed(0)}%)`, met: worst <= 0.15 });
    const bytes = new Set(ttt.map((r) => r.gpuBytes));
    out.push({ target: 'TTT GPU bytes constant', wanted: 'one value at every context', measured: [...bytes].join(', '), met: bytes.size === 1 });
  }
  if (full.length > 2) {
    // Linear growth: bytes(N) - bytes(first) proportional to N - first, checked at every context.
    // On the allocation of an engine made for each context (the one measured is made for the longest).
    const sized = (r: SuiteRow) => r.sizedForContextBytes ?? r.gpuBytes;
    const a = full[0], z = full[full.length - 1];
    const perToken = (sized(z) - sized(a)) / (z.context - a.context);
    const worst = Math.max(...full.map((r) => Math.abs(sized(r) - (sized(a) + perToken * (r.context - a.context))) / sized(r)));
    out.push({ target: 'full-attention GPU bytes grow linearly (an engine made for N)', wanted: 'bytes = a + b·N', measured: `${(perToken).toFixed(0)} bytes per token; worst deviation from the line ${(worst * 100).toFixed(1)}%`, met: perToken > 0 && worst < 0.05 });
  }
  for (const variant of ORT_VARIANTS.map((v) => `ort-${v}`)) {
    const ort = of(variant);
    if (ort.length === 0 || full.length === 0) continue;
    const pre = ort.map((o) => o.prefillSeconds / full.find((f) => f.context === o.context)!.prefillSeconds);
    const dec = ort.map((o) => o.decodeMs.median / full.find((f) => f.context === o.context)!.decodeMs.median);
    out.push({ target: `our full attention prefill faster than onnxruntime-web (${variant.slice(4)}) at every length`, wanted: '> 1x at every context', measured: pre.map(x).join(' / '), met: pre.every((v) => v > 1) });
    out.push({ target: `our full attention decode faster than onnxruntime-web (${variant.slice(4)}) at every length`, wanted: '> 1x at every context', measured: dec.map(x).join(' / '), met: dec.every((v) => v > 1) });
  }
  return out;
}

/** The lines that open every benchmark report: when, where, how to rerun it. */
export function runHeader(r: { readonly date: string; readonly device: string; readonly environment: string; readonly command: string }): string[] {
  return [`date: ${r.date}`, `device: ${r.device}`, `environment: ${r.environment}`, `command: ${r.command}`];
}

export function suiteMarkdown(r: SuiteResult): string {
  const mib = (b: number) => (b / 2 ** 20).toFixed(2);
  const lines = [
    ...runHeader(r),
    `weights: ${r.weights}; decode steps per point: ${r.steps}; run time ${(r.seconds / 60).toFixed(1)} min`,
    '',
    '| contender | context | prefill s | prefill tok/s | decode ms/token (median) | (min) | (mean) | live GPU MiB | (peak) | allocator MiB | made for N MiB | KV in use MiB | pipelines in decode |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  const names = [...new Set(r.rows.map((x) => x.contender))];
  for (const name of names) {
    for (const x of r.rows.filter((y) => y.contender === name)) {
      const opt = (b: number | null) => (b === null ? '' : mib(b));
      lines.push(`| ${name} | ${x.context} | ${x.prefillSeconds.toFixed(2)} | ${x.prefillTokensPerSecond.toFixed(0)} | ${x.decodeMs.median.toFixed(2)} | ${x.decodeMs.min.toFixed(2)} | ${x.decodeMs.mean.toFixed(2)} | ${mib(x.gpuBytes)} | ${mib(x.gpuBytesPeak)} | ${opt(x.allocatorBytes)} | ${opt(x.sizedForContextBytes)} | ${mib(x.kvBytesInUse)} | ${x.decodePipelines} |`);
    }
  }
  lines.push('', '| target | wanted | measured | met |', '| --- | --- | --- | --- |');
  for (const t of r.targets) lines.push(`| ${t.target} | ${t.wanted} | ${t.measured} | ${t.met ? 'yes' : '**no**'} |`);
  if (r.innerStep) {
    const i = r.innerStep;
    lines.push('', `TTT-E2E inner step (median of ${i.runs} runs of ${i.chunks} chunks of ${i.chunk}): ${i.innerStepMs.toFixed(1)} ms per chunk against ${i.forwardMs.toFixed(1)} ms for the chunk's forward (${i.ofForward.toFixed(2)}x); ${(i.shareOfPrefill * 100).toFixed(0)}% of prefill time.`);
  }
  lines.push('', `engine kernels: ${r.kernelVariant === 'cpu' ? 'CPU-emulator shapes' : 'GPU shapes'} (--kernels ${r.kernelVariant})`);
  if (r.kernels) lines.push('', kernelMarkdown(r.kernels), '', `best matmul: ${r.kernels.bestMatmulGflops.toFixed(2)} GFLOP/s`);
  return lines.join('\n');
}

export interface ParsedArgs {
  readonly contexts: number[];
  readonly steps: number;
  readonly ort: OrtVariant[];
  readonly modes: BenchMode[];
  readonly weights: 'f32' | 'f16';
  /** Run the kernel micro-benchmarks (off with --no-kernel-bench). */
  readonly kernelBench: boolean;
  /** The engine's kernel shapes (--kernels cpu|gpu; default auto: the adapter's). */
  readonly variant: KernelChoice;
  readonly out: string | null;
  readonly plot: boolean;
}

/** The suite's flags, checked (shared by the Node and browser runners). */
export function parseSuiteArgs(args: readonly string[], defaults: { contexts: readonly number[] } = { contexts: DEFAULT_CONTEXTS }): ParsedArgs {
  const flag = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const contexts = (flag('--contexts')?.split(',') ?? defaults.contexts).map(Number);
  if (contexts.length === 0 || contexts.some((n) => !Number.isInteger(n) || n < 1)) throw new Error('--contexts: a comma-separated list of positive integers');
  const steps = Number(flag('--steps') ?? 32);
  if (!Number.isInteger(steps) || steps < 32) throw new Error('--steps: at least 32 (the median of fewer says little on a noisy machine)');
  const ortFlag = flag('--ort') ?? 'shared,fused';
  const ort = ortFlag === 'none' ? [] : ortFlag.split(',');
  if (ort.some((v) => !ORT_VARIANTS.includes(v as OrtVariant))) throw new Error(`--ort: some of ${ORT_VARIANTS.join(', ')} (comma-separated) or none`);
  const modes = (flag('--modes') ?? 'ttt,ttt-e2e,sliding-window,full-attention').split(',');
  if (modes.some((m) => !Object.hasOwn(BENCH_CONFIGS, m))) throw new Error(`--modes: some of ${Object.keys(BENCH_CONFIGS).join(', ')}`);
  const weights = flag('--weights') ?? 'f32';
  if (weights !== 'f32' && weights !== 'f16') throw new Error('--weights: f32 or f16');
  if (args.includes('--no-kernels')) throw new Error('--no-kernels is now --no-kernel-bench (--kernels cpu|gpu picks the engine\'s kernel shapes)');
  const variant = parseKernelChoice(flag('--kernels'), '--kernels');
  return { contexts, steps, ort: ort as OrtVariant[], modes: modes as BenchMode[], weights, kernelBench: !args.includes('--no-kernel-bench'), variant, out: flag('--out') ?? null, plot: !args.includes('--no-plot') };
}

