/**
 * The GPU engine: one LaCT-family model on one device, with constant-size state for TTT and
 * sliding-window models and a growing (capped) KV cache for the full-attention baseline.
 *
 * Tokens go through in blocks. A block is at most `maxRows` tokens and never crosses a fast-weight chunk
 * boundary, so a prompt that ends mid-chunk leaves its tail pending and the chunk update runs in the
 * block that completes the chunk. A decode step is a block of one token: prefill and decode share one
 * data path (`encodeBlock`), one command buffer per block, and nothing is read back but what the caller
 * asked for (the sampled id, or logits in tests).
 */
import type { LactConfig, WeightMap } from '../model/config.ts';
import { BlockParams } from '../gpu/block.ts';
import type { GpuContext, WeightStorage } from '../gpu/context.ts';
import { writeAligned, type MemoryReport } from '../gpu/allocator.ts';
import { AttentionOp, KvCache } from '../gpu/ops/attention.ts';
import { EmbedOp } from '../gpu/ops/embed.ts';
import { FastWeightLayer, FastWeightScratch, gateColumns } from '../gpu/ops/fast-weights.ts';
import { LinearOp } from '../gpu/ops/linear.ts';
import { CPU_TILES, ROW_TILES, type MatmulTiles } from '../gpu/ops/matmul.ts';
import { RmsNormOp } from '../gpu/ops/rmsnorm.ts';
import { RopeOp } from '../gpu/ops/rope.ts';
import { SampleOp, validateSamplingParams, type SamplingParams } from '../gpu/ops/sample.ts';
import { SwigluOp } from '../gpu/ops/swiglu.ts';
import { ContextOverflowError, EngineAbortedError, EngineDestroyedError, EngineError, GpuValidationError, InvalidTokenError, MemoryMismatchError, OutOfGpuMemoryError } from './errors.ts';
import { decodeMemory, encodeMemory, MEMORY_FORMAT } from './memory-blob.ts';
import { GpuWeights } from './model-weights.ts';

/** eps of q_norm and k_norm (the library RMSNorm default; block norms use config.normEps). */
const INNER_NORM_EPS = 1e-5;

export type EngineMode = 'ttt' | 'sliding-window' | 'full-attention';

export interface EngineOptions {
  /** Weight storage: 'f16' halves memory (native f16 with `shader-f16`, packed u32 pairs without); 'f32' is exact. Default 'f16'. */
  readonly weights?: 'f32' | 'f16';
  /** Largest block of tokens per command buffer (default: the chunk size, capped at 512; 64 without fast weights). */
  readonly maxRows?: number;
  /** Full attention only: the KV cache's capacity in positions (default 4096). */
  readonly maxContext?: number;
  /** Split weights and KV pages at this many bytes (default: the device's maxStorageBufferBindingSize). */
  readonly maxBindingBytes?: number;
  /** Matmul register tiles: `wide` for blocks of 3+ rows, `narrow` for decode. */
  readonly tiles?: { readonly wide: MatmulTiles; readonly narrow: MatmulTiles };
  /** Keep every row's logits of a block readable (tests; costs maxRows·vocab floats). */
  readonly allLogits?: boolean;
}

export interface FeedProgress {
  /** Tokens of this call processed so far (whole blocks whose GPU work has completed). */
  readonly processed: number;
  readonly total: number;
  /** The engine's position after them. */
  readonly position: number;
}

export interface EngineStats {
  readonly position: number;
  /** Tokens per second of the last multi-token feed (wall clock, submit to completion). */
  readonly prefillTokensPerSecond: number | null;
  /** Milliseconds of the last one-token feed, and the mean of the last 32. */
  readonly decodeMsLast: number | null;
  readonly decodeMsRolling: number | null;
  readonly memory: MemoryReport;
  /**
   * Bytes of `memory.kv` that hold live positions: the window for TTT and sliding-window models, every
   * position so far for full attention (whose cache is allocated up to `maxContext` at creation).
   */
  readonly kvBytesInUse: number;
  /** GPU time of the last feed's compute passes (timestamp queries), when the adapter has them. */
  readonly gpuMsLast: number | null;
  /**
   * How the times were taken: wall-clock times always end at onSubmittedWorkDone (or the read-back);
   * 'timestamp-query' when the adapter also gives GPU pass times (`gpuMsLast`).
   */
  readonly timingSource: 'timestamp-query' | 'submitted-work-done';
  /** The same, in words. */
  readonly timing: string;
  readonly dispatchesLastBlock: number;
  readonly info: EngineInfo;
}

export interface FeedOptions {
  /** Checked before each block: an abort stops the feed within one block (at most one chunk). */
  readonly signal?: AbortSignal;
  /** Called after each completed block. */
  readonly onProgress?: (p: FeedProgress) => void;
  /** Sample the next token on the GPU after the last fed token; only its id is read back. */
  readonly sample?: SamplingParams;
  /** Read back logits: of the last fed token, or of every fed token (needs `allLogits` at creation). */
  readonly logits?: 'last' | 'all';
}

export interface FeedResult {
  /** The sampled next token, when `sample` was given. */
  readonly token: number | null;
  /** [fed or 1, vocab] logits, when asked for. */
  readonly logits: Float32Array | null;
}

export interface EngineInfo {
  readonly mode: EngineMode;
  readonly weights: WeightStorage;
  readonly subgroups: boolean;
  readonly maxRows: number;
  readonly maxBindingBytes: number;
  readonly capacity: number;
}

interface LayerOps {
  attnNorm: RmsNormOp;
  qkv: LinearOp;
  qkNorm: RmsNormOp | null;
  gates: LinearOp | null;
  fast: FastWeightLayer | null;
  rope: RopeOp;
  kv: KvCache;
  attention: AttentionOp;
  oProj: LinearOp;
  mlpNorm: RmsNormOp;
  gateUp: LinearOp;
  swiglu: SwigluOp;
  down: LinearOp;
}

/**
 * GPU time of each block's compute pass from timestamp queries (adapters with `timestamp-query`): the
 * pass writes its begin and end ticks into a query set; the feed resolves and reads all its blocks' ticks
 * once at the end, so timing adds no wait inside the loop.
 */
class GpuTimer {
  static readonly SLOTS = 64;
  private readonly querySet: GPUQuerySet;
  private readonly resolve: GPUBuffer;
  private readonly read: GPUBuffer;
  private used = 0;
  private pendingNs = 0;

  constructor(private readonly ctx: GpuContext) {
    this.querySet = ctx.device.createQuerySet({ type: 'timestamp', count: 2 * GpuTimer.SLOTS });
    this.resolve = ctx.allocator.create('timestamps', 'scratch', 16 * GpuTimer.SLOTS, GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC);
    this.read = ctx.allocator.create('timestamps readback', 'scratch', 16 * GpuTimer.SLOTS, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
  }

  /** Pass descriptor for the next block, or undefined when the slots are full (drain() empties them). */
  writes(): GPUComputePassTimestampWrites | undefined {
    if (this.used === GpuTimer.SLOTS) return undefined;
    const i = this.used++;
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Full: the caller drains before the next block. */
  get full(): boolean {
    return this.used === GpuTimer.SLOTS;
  }

  /** Adds the used slots' durations to the running total and frees them. */
  async drain(): Promise<void> {
    if (this.used === 0) return;
    const bytes = 16 * this.used;
    // Resolved in a command buffer of its own: resolving inside a block's command buffer corrupted the
    // block's results on Dawn + lavapipe (Dawn converts ticks with an internal compute pass).
    const enc = this.ctx.device.createCommandEncoder();
    enc.resolveQuerySet(this.querySet, 0, 2 * this.used, this.resolve, 0);
    enc.copyBufferToBuffer(this.resolve, 0, this.read, 0, bytes);
    this.ctx.device.queue.submit([enc.finish()]);
    await this.read.mapAsync(GPUMapMode.READ, 0, bytes);
    const ticks = new BigUint64Array(this.read.getMappedRange(0, bytes).slice(0));
    this.read.unmap();
    for (let i = 0; i < this.used; i++) if (ticks[2 * i + 1] > ticks[2 * i]) this.pendingNs += Number(ticks[2 * i + 1] - ticks[2 * i]);
    this.used = 0;
  }

  /** Total GPU nanoseconds since the last take(), after a drain. */
  take(): number {
    const ns = this.pendingNs;
    this.pendingNs = 0;
    return ns;
  }
}

/** Counts dispatches as they are recorded (for the per-step figure the engine reports). */
class CountingPass {
  count = 0;
  constructor(readonly pass: GPUComputePassEncoder) {}
  get encoder(): GPUComputePassEncoder {
    const self = this;
    return new Proxy(this.pass, {
      get(target, prop) {
        if (prop === 'dispatchWorkgroups') {
          return (x: number, y?: number, z?: number) => {
            self.count++;
            target.dispatchWorkgroups(x, y, z);
          };
        }
        const v = Reflect.get(target, prop) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  }
}

export class LactEngine {
  readonly config: LactConfig;
  readonly info: EngineInfo;
  private readonly block: BlockParams;
  private readonly tokens: GPUBuffer;
  private readonly x: GPUBuffer;
  private readonly logitsBuf: GPUBuffer;
  private readonly readback: GPUBuffer;
  private readonly embed: EmbedOp;
  private readonly layers: LayerOps[];
  private readonly finalNorm: RmsNormOp;
  private readonly headLast: LinearOp;
  private readonly headAll: LinearOp | null;
  private readonly sampler: SampleOp;
  private pos = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private destroyed: string | null = null;
  /** Dispatches recorded by the last block. */
  lastDispatches = 0;
  /** Identifies the model, for saved memory: a hash of the config and sampled weights. */
  readonly modelId: string;
  private prefillTokS: number | null = null;
  private decodeMs: number[] = [];
  private gpuMs: number | null = null;
  private readonly timer: GpuTimer | null;

  private constructor(readonly ctx: GpuContext, config: LactConfig, w: GpuWeights, opts: EngineOptions) {
    this.config = config;
    const c = config, D = c.hiddenSize, V = c.vocabSize, I = c.intermediateSize;
    const mode: EngineMode = c.useFastWeights ? 'ttt' : c.windowSize === null ? 'full-attention' : 'sliding-window';
    const { maxRows, maxBinding, storage } = engineLayout(ctx, c, opts);
    const capacity = c.windowSize === null ? opts.maxContext ?? 4096 : Infinity;
    const tiles = opts.tiles ?? { wide: CPU_TILES, narrow: ROW_TILES };
    this.info = { mode, weights: storage, subgroups: ctx.features.subgroups, maxRows, maxBindingBytes: maxBinding, capacity };

    const { modelId, fast } = w.finish();
    this.modelId = modelId;
    const A = ctx.allocator;
    const act = (label: string, floats: number) => A.create(label, 'activations', floats * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST);
    const block = (this.block = new BlockParams(ctx));

    // Activations, shared by every layer (a block runs the layers one after another).
    this.tokens = A.create('tokens', 'activations', maxRows * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
    const x = (this.x = act('x: residual stream [rows, D]', maxRows * D));
    const a = act('a: normed input [rows, D]', maxRows * D);
    const qkv = act('qkv [rows, 3D]', maxRows * 3 * D);
    const o = act('o: mixer output [rows, D]', maxRows * D);
    const gu = act('gate|up [rows, 2I]', maxRows * 2 * I);
    const s = act('swiglu [rows, I]', maxRows * I);
    const G = c.useFastWeights ? gateColumns(c).total : 0;
    const gates = G ? act('fast-weight gates [rows, G]', maxRows * G) : null;
    const logitRows = opts.allLogits ? maxRows : 1;
    this.logitsBuf = act('logits', logitRows * V);
    this.readback = A.create('readback', 'scratch', logitRows * V * 4, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);

    // The fast-weight intermediates are per block, not per layer: one set serves every layer.
    const fwScratch = c.useFastWeights ? new FastWeightScratch(ctx, c, maxRows) : null;
    this.embed = new EmbedOp(ctx, 'embed', D, w.embeddings, { tokens: this.tokens, x }, block);
    this.layers = w.layers.map((lw, l) => {
      const init = fast[l];
      const L = `layer ${l}`;
      const attnSpec = { D, heads: c.numAttnHeads, window: c.windowSize, maxRows, capacity: capacity === Infinity ? 0 : capacity, maxBindingBytes: maxBinding };
      const kv = new KvCache(ctx, `${L} kv`, attnSpec);
      return {
        kv,
        attnNorm: new RmsNormOp(ctx, `${L} attn_norm`, { n: D, eps: c.normEps, inStride: D, outStride: D }, { weight: lw.attnNorm, x, y: a }, block),
        qkv: new LinearOp(ctx, `${L} qkv`, lw.qkv, { x: a, y: qkv, bias: lw.qkvBias ?? undefined }, { inStride: D, outStride: 3 * D }, block, tiles),
        qkNorm: lw.qkNorm ? new RmsNormOp(ctx, `${L} q/k norm`, { n: D, eps: INNER_NORM_EPS, segments: 2, segStride: D, inStride: 3 * D, outStride: 3 * D }, { weight: lw.qkNorm, x: qkv, y: qkv }, block) : null,
        gates: lw.gates && gates ? new LinearOp(ctx, `${L} gates`, lw.gates, { x: a, y: gates, bias: lw.gatesBias! }, { inStride: D, outStride: G }, block, tiles) : null,
        fast: init && gates ? new FastWeightLayer(ctx, `${L} fast weights`, c, init, { qkv, gates, out: o }, block, maxRows, { scratch: fwScratch!, tiles }) : null,
        rope: new RopeOp(ctx, `${L} rope`, { dim: D, headDim: c.attnHeadDim, theta: c.ropeTheta, rowStride: 3 * D, segments: 2, segStride: D }, qkv, block),
        attention: new AttentionOp(ctx, `${L} attention`, attnSpec, { qkv, out: o }, kv, block),
        oProj: new LinearOp(ctx, `${L} o_proj`, lw.oProj, { x: o, y: x }, { inStride: D, outStride: D, accumulate: true }, block, tiles),
        mlpNorm: new RmsNormOp(ctx, `${L} mlp_norm`, { n: D, eps: c.normEps, inStride: D, outStride: D }, { weight: lw.mlpNorm, x, y: a }, block),
        gateUp: new LinearOp(ctx, `${L} gate|up`, lw.gateUp, { x: a, y: gu }, { inStride: D, outStride: 2 * I }, block, tiles),
        swiglu: new SwigluOp(ctx, `${L} swiglu`, I, { gu, s }, block),
        down: new LinearOp(ctx, `${L} down`, lw.down, { x: s, y: x }, { inStride: I, outStride: D, accumulate: true }, block, tiles),
      };
    });
    this.finalNorm = new RmsNormOp(ctx, 'final norm', { n: D, eps: c.normEps, inStride: D, outStride: D }, { weight: w.finalNorm, x, y: a }, block);
    const headWeights = w.lmHead;
    this.headLast = new LinearOp(ctx, 'lm_head (last row)', headWeights, { x: a, y: this.logitsBuf }, { inStride: D, outStride: V, lastRow: true }, block, tiles);
    this.headAll = opts.allLogits ? new LinearOp(ctx, 'lm_head (all rows)', headWeights, { x: a, y: this.logitsBuf }, { inStride: D, outStride: V }, block, tiles) : null;
    this.sampler = new SampleOp(ctx, 'sample', this.logitsBuf, V);
    this.timer = ctx.features.timestampQuery ? new GpuTimer(ctx) : null;
  }

  /** Uploads the weights (a whole in-memory model) and builds every pipeline and bind group. */
  static create(ctx: GpuContext, model: { config: LactConfig; weights: WeightMap }, opts: EngineOptions = {}): Promise<LactEngine> {
    return LactEngine.build(ctx, model.config, opts, async (w) => {
      for (const [name, t] of model.weights) w.write(name, t.shape, t.data);
    });
  }

  /**
   * Uploads tensors as they arrive (from a streamed model file or the cache), so the model is never
   * whole in JS memory, then builds the engine. `onUpload` reports tensors uploaded of the total.
   */
  static fromStream(ctx: GpuContext, stream: { config: LactConfig; tensors: AsyncIterable<{ name: string; shape: readonly number[]; data: Float32Array }> }, opts: EngineOptions & { onUpload?: (p: { tensors: number; total: number }) => void } = {}): Promise<LactEngine> {
    return LactEngine.build(ctx, stream.config, opts, async (w) => {
      let n = 0;
      for await (const t of stream.tensors) {
        w.write(t.name, t.shape, t.data);
        opts.onUpload?.({ tensors: ++n, total: w.tensorCount });
      }
    });
  }

  private static async build(ctx: GpuContext, config: LactConfig, opts: EngineOptions, fill: (w: GpuWeights) => Promise<void>): Promise<LactEngine> {
    // Each engine owns its buffers (its memory report and destroy() cover only them); pipelines are shared.
    const own = ctx.fork();
    const { maxBinding, storage } = engineLayout(own, config, opts);
    own.device.pushErrorScope('out-of-memory');
    own.device.pushErrorScope('validation');
    let engine: LactEngine | null = null;
    let failure: unknown = null;
    try {
      const w = new GpuWeights(own, config, storage, maxBinding);
      await fill(w);
      engine = new LactEngine(own, config, w, opts);
    } catch (e) {
      failure = e;
    }
    const validation = await own.device.popErrorScope();
    const oom = await own.device.popErrorScope();
    if (failure || oom || validation || !engine) {
      // Nothing half made: every buffer this engine allocated goes back.
      own.allocator.destroyAll();
      if (oom) throw new OutOfGpuMemoryError('creating the engine', oom.message);
      if (validation) throw new GpuValidationError("the engine's setup", validation.message);
      throw failure;
    }
    return engine;
  }

  /** Tokens fed so far: the absolute position of the next token. */
  get position(): number {
    return this.pos;
  }

  /** Live GPU bytes by category (everything the engine allocated; constant after creation). */
  memory(): MemoryReport {
    return this.ctx.allocator.report();
  }

  stats(): EngineStats {
    const d = this.decodeMs;
    return {
      position: this.pos,
      prefillTokensPerSecond: this.prefillTokS,
      decodeMsLast: d.length ? d[d.length - 1] : null,
      decodeMsRolling: d.length ? d.reduce((a, b) => a + b, 0) / d.length : null,
      memory: this.memory(),
      kvBytesInUse: this.kvBytesInUse(),
      gpuMsLast: this.gpuMs,
      timingSource: this.timer ? 'timestamp-query' : 'submitted-work-done',
      timing: this.timer
        ? 'wall clock from the first submit to completion (onSubmittedWorkDone / read-back); GPU pass time from timestamp queries'
        : 'wall clock from the first submit to completion (onSubmittedWorkDone / read-back); no timestamp-query on this adapter',
      dispatchesLastBlock: this.lastDispatches,
      info: this.info,
    };
  }

  /**
   * Bytes of KV cache holding live positions: the window for TTT and sliding-window models (constant once
   * full), every position so far for full attention (its cache is allocated up to `maxContext` at creation).
   */
  kvBytesInUse(): number {
    const c = this.config;
    const held = c.windowSize === null ? this.pos : Math.min(this.pos, c.windowSize);
    return held * 2 * c.hiddenSize * 4 * c.numLayers;
  }

  /** Feeds tokens (a prompt, or one token of decode) and optionally samples the next one. */
  feed(tokens: readonly number[], opts: FeedOptions = {}): Promise<FeedResult> {
    return this.enqueue(() => this.feedNow(tokens, opts));
  }

  /**
   * Runs `work` after everything queued before it. A failure caused by a lost device (a read-back that
   * rejects with AbortError, a submit that does nothing) becomes EngineDestroyedError, and so does every
   * later call: callers see one named error, never the browser's raw one or a hang.
   */
  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work).catch(async (e: unknown) => {
      if (e instanceof EngineError) throw e;
      const lost = await Promise.race([this.ctx.device.lost, new Promise<null>((r) => setTimeout(() => r(null), 100))]);
      if (lost) {
        this.destroyed ??= `the GPU device was lost (${lost.message || lost.reason})`;
        throw new EngineDestroyedError(this.destroyed);
      }
      throw e;
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  prefill(tokens: readonly number[], opts: FeedOptions = {}): Promise<FeedResult> {
    return this.feed(tokens, opts);
  }

  /** One decode step: feed `token`, sample the next on the GPU, read back only its id. */
  async step(token: number, sampling: SamplingParams, opts: { signal?: AbortSignal } = {}): Promise<number> {
    const r = await this.feed([token], { sample: sampling, signal: opts.signal });
    return r.token!;
  }

  /** Greedy or sampled generation after a prompt; `onToken` sees each id as it is read back. */
  async generate(prompt: readonly number[], maxTokens: number, sampling: SamplingParams, onToken?: (id: number) => void): Promise<number[]> {
    if (prompt.length === 0) throw new RangeError('generate needs at least one prompt token');
    const out: number[] = [];
    let r = await this.feed(prompt, { sample: sampling });
    for (let i = 0; i < maxTokens; i++) {
      const id = r.token!;
      out.push(id);
      onToken?.(id);
      if (i + 1 < maxTokens) r = await this.feed([id], { sample: sampling });
    }
    return out;
  }

  /** Forgets everything fed: position 0, fast weights and momentum back to the model's. */
  reset(): void {
    this.pos = 0;
    for (const l of this.layers) l.fast?.reset();
  }

  /**
   * The compressed memory as one blob: the model's identity, the position, and per layer the KV window
   * (positions in order, independent of the ring's layout), fast weights, momentum and the pending chunk.
   * Its size is constant in context length for TTT and sliding-window models.
   */
  saveMemory(): Promise<Uint8Array> {
    return this.enqueue(() => this.saveNow());
  }

  /** Restores a blob from saveMemory (this model, any engine options); MemoryMismatchError otherwise. */
  loadMemory(blob: Uint8Array): Promise<void> {
    return this.enqueue(() => this.loadNow(blob));
  }

  private async saveNow(): Promise<Uint8Array> {
    if (this.destroyed) throw new EngineDestroyedError(this.destroyed);
    const c = this.config, D = c.hiddenSize, rowBytes = D * 4;
    const first = c.windowSize === null ? 0 : Math.max(0, this.pos - c.windowSize);
    const sections: { name: string; bytes: Uint8Array }[] = [];
    for (const [l, layer] of this.layers.entries()) {
      for (const which of ['k', 'v'] as const) {
        const out = new Uint8Array((this.pos - first) * rowBytes);
        const pages = new Map<number, Uint8Array>(); // each page read back once, then sliced by position
        for (const [p, page, slot] of this.slots(layer.kv, first, this.pos)) {
          let bytes = pages.get(page);
          if (!bytes) pages.set(page, (bytes = await this.readBytes(layer.kv.pages[page][which])));
          out.set(bytes.subarray(slot * rowBytes, (slot + 1) * rowBytes), (p - first) * rowBytes);
        }
        sections.push({ name: `layer${l}.${which}`, bytes: out });
      }
      if (layer.fast) {
        sections.push({ name: `layer${l}.fastWeights`, bytes: await this.readBytes(layer.fast.state.weights) });
        if (layer.fast.state.momentum) sections.push({ name: `layer${l}.momentum`, bytes: await this.readBytes(layer.fast.state.momentum) });
        sections.push({ name: `layer${l}.pending`, bytes: await this.readBytes(layer.fast.pending) });
      }
    }
    return encodeMemory({ format: MEMORY_FORMAT, modelId: this.modelId, position: this.pos, firstKvPosition: first }, sections);
  }

  private async loadNow(blob: Uint8Array): Promise<void> {
    if (this.destroyed) throw new EngineDestroyedError(this.destroyed);
    const { header, sections } = decodeMemory(blob);
    if (header.modelId !== this.modelId) throw new MemoryMismatchError(`this memory was saved by model ${header.modelId}; the engine runs model ${this.modelId}`);
    const c = this.config, rowBytes = c.hiddenSize * 4;
    const pos = header.position, first = header.firstKvPosition;
    if (pos > this.info.capacity) throw new MemoryMismatchError(`the memory holds ${pos} positions; this engine's cache holds ${this.info.capacity}`);
    const expected = c.windowSize === null ? 0 : Math.max(0, pos - c.windowSize);
    if (first !== expected) throw new MemoryMismatchError(`corrupt memory: KV starts at ${first}, expected ${expected}`);
    const need = (name: string, bytes: number): Uint8Array => {
      const s = sections.get(name);
      if (!s) throw new MemoryMismatchError(`corrupt memory: section ${name} is missing`);
      if (s.byteLength !== bytes) throw new MemoryMismatchError(`corrupt memory: section ${name} has ${s.byteLength} bytes, expected ${bytes}`);
      return s;
    };
    // Validate every section before writing anything, so a bad blob leaves the engine as it was.
    const writes: [GPUBuffer, number, Uint8Array][] = [];
    for (const [l, layer] of this.layers.entries()) {
      for (const which of ['k', 'v'] as const) {
        const data = need(`layer${l}.${which}`, (pos - first) * rowBytes);
        for (const [p, page, slot] of this.slots(layer.kv, first, pos)) writes.push([layer.kv.pages[page][which], slot * rowBytes, data.subarray((p - first) * rowBytes, (p - first + 1) * rowBytes)]);
      }
      if (layer.fast) {
        writes.push([layer.fast.state.weights, 0, need(`layer${l}.fastWeights`, layer.fast.state.weights.size)]);
        if (layer.fast.state.momentum) writes.push([layer.fast.state.momentum, 0, need(`layer${l}.momentum`, layer.fast.state.momentum.size)]);
        writes.push([layer.fast.pending, 0, need(`layer${l}.pending`, layer.fast.pending.size)]);
      }
    }
    for (const [buf, off, data] of writes) writeAligned(this.ctx.device, buf, off, data);
    await this.ctx.device.queue.onSubmittedWorkDone();
    this.pos = pos;
  }

  /** [position, page, slot] of each position in [from, to) in a layer's KV cache. */
  private *slots(kv: KvCache, from: number, to: number): Generator<[number, number, number]> {
    for (let p = from; p < to; p++) {
      if (kv.ring > 0) yield [p, 0, p % kv.ring];
      else yield [p, Math.floor(p / kv.pageTokens), p % kv.pageTokens];
    }
  }

  private async readBytes(buf: GPUBuffer, offset = 0, size = buf.size): Promise<Uint8Array> {
    const staging = this.ctx.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = this.ctx.device.createCommandEncoder();
    enc.copyBufferToBuffer(buf, offset, staging, 0, size);
    this.ctx.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const out = new Uint8Array(staging.getMappedRange().slice(0));
    staging.unmap();
    staging.destroy();
    return out;
  }

  destroy(): void {
    this.destroyed ??= 'destroy() was called';
    this.ctx.allocator.destroyAll();
  }

  private async feedNow(tokens: readonly number[], opts: FeedOptions): Promise<FeedResult> {
    if (this.destroyed) throw new EngineDestroyedError(this.destroyed);
    const c = this.config;
    tokens.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= c.vocabSize) throw new InvalidTokenError(t, i, c.vocabSize);
    });
    if (tokens.length === 0) throw new RangeError('feed needs at least one token');
    if (this.pos + tokens.length > this.info.capacity) throw new ContextOverflowError(this.pos, tokens.length, this.info.capacity);
    const sampling = opts.sample ? validateSamplingParams(opts.sample) : null;
    if (opts.logits === 'all' && !this.headAll) throw new RangeError('logits: "all" needs an engine created with allLogits: true');

    const t0 = performance.now();
    const all: Float32Array[] = [];
    let i = 0;
    let token: number | null = null;
    let lastLogits: Float32Array | null = null;
    // At most two blocks in flight: the CPU records block n+1 while the GPU runs block n, and an abort or
    // a progress report is never more than one block behind the GPU.
    let inflight: { done: Promise<void>; end: number } | null = null;
    const settle = async () => {
      if (!inflight) return;
      await inflight.done;
      opts.onProgress?.({ processed: inflight.end, total: tokens.length, position: this.pos - (i - inflight.end) });
      inflight = null;
    };
    while (i < tokens.length) {
      if (opts.signal?.aborted) {
        await settle();
        throw new EngineAbortedError(i, this.pos, opts.signal.reason);
      }
      const rows = this.blockRows(this.pos, tokens.length - i);
      const last = i + rows === tokens.length;
      const head = opts.logits === 'all' ? 'all' : last && (opts.logits === 'last' || sampling) ? 'last' : 'none';
      if (this.timer?.full) await this.timer.drain();
      this.encodeBlock(tokens.slice(i, i + rows), head, last ? sampling : null);
      this.pos += rows;
      i += rows;
      const previous = inflight;
      inflight = { done: this.ctx.device.queue.onSubmittedWorkDone(), end: i };
      if (previous) {
        await previous.done;
        opts.onProgress?.({ processed: previous.end, total: tokens.length, position: this.pos - (i - previous.end) });
      }
      if (opts.logits === 'all') all.push(await this.read(rows * c.vocabSize));
      else if (last && opts.logits === 'last') lastLogits = await this.read(c.vocabSize);
      if (last && sampling) token = await this.readToken();
    }
    await settle();
    const ms = performance.now() - t0;
    if (this.timer) {
      await this.timer.drain();
      this.gpuMs = this.timer.take() / 1e6;
    }
    if (tokens.length === 1) {
      this.decodeMs.push(ms);
      if (this.decodeMs.length > 32) this.decodeMs.shift();
    } else {
      this.prefillTokS = tokens.length / (ms / 1000);
    }
    const logits = opts.logits === 'all' ? concatF32(all) : lastLogits;
    return { token, logits };
  }

  /** Rows of the next block: at most maxRows, and never past the end of the current chunk. */
  private blockRows(pos: number, remaining: number): number {
    let rows = Math.min(remaining, this.info.maxRows);
    if (this.config.useFastWeights) rows = Math.min(rows, this.config.chunkSize - (pos % this.config.chunkSize));
    return rows;
  }

  /**
   * The data path of one block, top to bottom: token → embedding → every layer (attention over the
   * window + the fast-weight branch, then the MLP) → final norm → LM head → sample.
   */
  private encodeBlock(tokens: readonly number[], head: 'none' | 'last' | 'all', sampling: Required<SamplingParams> | null): void {
    const c = this.config, rows = tokens.length, pos0 = this.pos;
    this.block.write(rows, pos0);
    this.ctx.device.queue.writeBuffer(this.tokens, 0, Uint32Array.from(tokens));
    const chunkDone = c.useFastWeights && (pos0 + rows) % c.chunkSize === 0;

    const encoder = this.ctx.device.createCommandEncoder({ label: `block @${pos0} x${rows}` });
    const timestampWrites = this.timer?.writes();
    const counting = new CountingPass(encoder.beginComputePass(timestampWrites ? { timestampWrites } : {}));
    const pass = counting.encoder;
    this.embed.encode(pass, rows); //                            x = E[tokens]
    for (const l of this.layers) {
      l.attnNorm.encode(pass, rows); //                          a = RMSNorm(x)
      l.qkv.encode(pass, rows); //                               q|k|v = a Wqkv^T (+ b)
      l.qkNorm?.encode(pass, rows); //                           q, k = RMSNorm(q), RMSNorm(k)
      l.gates?.encode(pass, rows); //                            lr | momentum | ttt scale (pre-activation)
      l.fast?.encodeInputs(pass, rows); //                       fast q, k, v from the un-roped q, k, v
      l.rope.encode(pass, rows); //                              RoPE(q), RoPE(k)
      l.attention.encode(pass, rows, pos0); //                   o = windowed softmax attention (writes K/V)
      if (l.fast) {
        l.fast.encodeApply(pass, rows); //                       o += ttt_norm(f_W(fast q)) * scale
        l.fast.encodePending(pass, rows); //                     keep the chunk's fast k, v, lr, beta
        if (chunkDone) l.fast.encodeLearn(pass); //              W <- renorm(W + Muon(momentum(grad)))
      }
      l.oProj.encode(pass, rows); //                             x += o Wo^T
      l.mlpNorm.encode(pass, rows); //                           a = RMSNorm(x)
      l.gateUp.encode(pass, rows); //                            g|u = a [Wg; Wu]^T
      l.swiglu.encode(pass, rows); //                            s = silu(g) * u
      l.down.encode(pass, rows); //                              x += s Wd^T
    }
    if (head !== 'none') {
      this.finalNorm.encode(pass, rows); //                      a = RMSNorm(x)
      if (head === 'all') this.headAll!.encode(pass, rows); //   logits = a Wlm^T
      else this.headLast.encode(pass, rows);
      if (sampling) this.sampler.encode(pass, sampling, pos0 + rows); // next id, drawn with (seed, position)
    }
    pass.end();
    this.lastDispatches = counting.count;
    this.ctx.device.queue.submit([encoder.finish()]);
  }

  private async read(floats: number): Promise<Float32Array> {
    const enc = this.ctx.device.createCommandEncoder();
    enc.copyBufferToBuffer(this.logitsBuf, 0, this.readback, 0, floats * 4);
    this.ctx.device.queue.submit([enc.finish()]);
    await this.readback.mapAsync(GPUMapMode.READ, 0, floats * 4);
    const out = new Float32Array(this.readback.getMappedRange(0, floats * 4).slice(0));
    this.readback.unmap();
    return out;
  }

  private async readToken(): Promise<number> {
    const enc = this.ctx.device.createCommandEncoder();
    enc.copyBufferToBuffer(this.sampler.result, 0, this.readback, 0, 4);
    this.ctx.device.queue.submit([enc.finish()]);
    await this.readback.mapAsync(GPUMapMode.READ, 0, 4);
    const id = new Uint32Array(this.readback.getMappedRange(0, 4))[0];
    this.readback.unmap();
    return id;
  }
}

function concatF32(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Block size, binding limit and weight storage for a model on a device. */
function engineLayout(ctx: GpuContext, c: LactConfig, opts: EngineOptions): { maxRows: number; maxBinding: number; storage: WeightStorage } {
  return {
    maxRows: opts.maxRows ?? (c.useFastWeights ? Math.min(c.chunkSize, 512) : 64),
    maxBinding: opts.maxBindingBytes ?? ctx.limits.maxStorageBufferBindingSize,
    storage: opts.weights === 'f32' ? 'f32' : ctx.features.shaderF16 ? 'f16' : 'f16-packed',
  };
}

/**
 * What a device must allow for this model and these options: the largest single buffer (weights are
 * split to the binding limit, so the largest is an activation or one binding's worth of weights).
 */
export function deviceNeeds(config: LactConfig, opts: EngineOptions = {}, adapterBinding = 128 << 20): { largestBuffer: number } {
  const c = config, D = c.hiddenSize;
  const maxRows = opts.maxRows ?? (c.useFastWeights ? Math.min(c.chunkSize, 512) : 64);
  const wbytes = opts.weights === 'f32' ? 4 : 2;
  const largestWeight = Math.max(c.vocabSize * D, 2 * c.intermediateSize * D, 3 * D * D) * wbytes;
  const largestActivation = 4 * maxRows * Math.max(2 * c.intermediateSize, 3 * D, opts.allLogits ? c.vocabSize : 0);
  return { largestBuffer: Math.max(largestActivation, Math.min(largestWeight, adapterBinding)) };
}
