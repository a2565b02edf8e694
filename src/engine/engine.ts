/**
 * The GPU engine: one model of any registered family on one device. It owns what every family shares:
 * one work queue for every entry point, feeds cut into blocks (block-planner.ts), one command buffer per
 * block with at most two in flight, read-backs of only what the caller asked for (the sampled id, or
 * logits), timing, saved memory and device loss. The data path itself is the family's
 * (src/families/<name>.ts, picked by the config's `family`).
 */
import type { KernelVariant } from '../gpu/kernel-variant.ts';
import { concatFloats } from './float-arrays.ts';
import type { WeightMap } from '../model/config.ts';
import type { ModelConfig } from '../model/model-config.ts';
import type { GpuContext, WeightStorage } from '../gpu/context.ts';
import { writeAligned, type MemoryReport } from '../gpu/allocator.ts';
import { readBufferBytes } from '../gpu/readback.ts';
import { DispatchCounter } from '../gpu/dispatch-counter.ts';
import { GpuTimer } from '../gpu/gpu-timer.ts';
import { familyOf } from '../families/index.ts';
import { BlockPlanner } from './block-planner.ts';
import { EngineAbortedError, EngineDestroyedError, GpuValidationError, MemoryMismatchError, OutOfGpuMemoryError } from './errors.ts';
import type { BlockWork, DeviceCaps, EngineLayout, EngineMode, EngineOptions, FamilyModel, ModelBuilder } from './family.ts';
import { checkPlan, largestWhere, limitFor, summarize, type MemoryPlan, type PlanLimits, type PlannedBuffer } from './memory-plan.ts';
import { checkCapacity, checkTokens } from './input-checks.ts';
import { configDifferences, decodeMemory, encodedMemoryBytes, encodeMemory, MEMORY_FORMAT, sectionSource } from './memory-blob.ts';
import { validateSamplingParams, type SamplingParams } from './sampling-params.ts';
import { WorkQueue } from './work-queue.ts';
import { TokenLogprobsOp } from '../gpu/ops/token-logprobs.ts';

export type { EngineMode, EngineOptions } from './family.ts';

/** Inner updates kept in the stats. */
const LOG_KEPT = 256;

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
  /**
   * Command buffers the last feed submitted for its work and read-backs (a decode step that only
   * samples: 1); the timestamp queries' resolution, a measurement of its own, is not counted.
   */
  readonly submitsLastFeed: number;
  readonly info: EngineInfo;
  /** Families that learn by gradient steps while reading (TTT-E2E): what the updates did; null otherwise. */
  readonly learning: LearningStats | null;
}

/** One inner update, as the GPU logged it. */
export interface ChunkUpdate {
  /** The chunk that learned (positions [chunk·B, (chunk + 1)·B)). */
  readonly chunk: number;
  /** Its mean next-token loss (nats) before the step: what the model is learning. */
  readonly loss: number;
  /** The same chunk's loss with the weights after the step (EngineOptions.lossAfterStep), else null. */
  readonly lossAfter: number | null;
  readonly validTargets: number;
  /** Global norm of the gradient, and the clip's factor (1: not clipped). */
  readonly gradNorm: number;
  readonly clipScale: number;
}

export interface LearningStats {
  /** Updates taken so far (since creation, reset() or the loaded memory's position). */
  readonly updates: number;
  /** The most recent updates, oldest first (at most 256; those of a restored memory are not kept). */
  readonly recent: readonly ChunkUpdate[];
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
  /**
   * The natural-log probability of each fed token given everything before it, computed on the GPU (4
   * bytes a token read back; needs `logprobs` at creation). NaN for the token at position 0, and for
   * the first token after a loadMemory of a memory saved without the next-token distribution.
   */
  readonly logprobs?: boolean;
}

export interface FeedResult {
  /** The sampled next token, when `sample` was given. */
  readonly token: number | null;
  /** [fed or 1, vocab] logits, when asked for. */
  readonly logits: Float32Array | null;
  /** [fed] log-probabilities of the fed tokens, when asked for. */
  readonly logprobs: Float32Array | null;
}

export interface EngineInfo {
  /** The model family (`ModelFamily.name`). */
  readonly family: string;
  readonly mode: EngineMode;
  readonly weights: WeightStorage;
  readonly subgroups: boolean;
  /** The kernel shapes its ops were built with (GpuContext.kernelVariant). */
  readonly kernels: KernelVariant;
  readonly maxRows: number;
  readonly maxBindingBytes: number;
  readonly capacity: number;
  /** Whether feeds can return per-token log-probabilities (EngineOptions.logprobs). */
  readonly logprobs: boolean;
}

/** A streamed tensor, as src/model/stream.ts yields them. */
export interface UploadTensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

export class Engine {
  readonly config: ModelConfig;
  readonly info: EngineInfo;
  /** Identifies the model, for saved memory: a hash of the config and sampled weights. */
  readonly modelId: string;
  /** Dispatches recorded by the last block. */
  lastDispatches = 0;
  private submits = 0;
  private lastFeedSubmits = 0;
  private readonly model: FamilyModel;
  private readonly planner: BlockPlanner;
  private readonly readback: GPUBuffer;
  private readonly timer: GpuTimer | null;
  private readonly queue: WorkQueue;
  private pos = 0;
  private prefillTokS: number | null = null;
  private decodeMs: number[] = [];
  private gpuMs: number | null = null;
  /** Updates whose log records have been read, and those records (the last LOG_KEPT). */
  private updatesRead = 0;
  private updates: ChunkUpdate[] = [];
  private readonly logprobs: TokenLogprobsOp | null;
  /** The position whose next-token distribution the logprobs carry holds (null: none). */
  private carryAt: number | null = null;

  private constructor(readonly ctx: GpuContext, config: ModelConfig, layout: EngineLayout, built: { model: FamilyModel; modelId: string }, opts: EngineOptions) {
    this.config = config;
    this.model = built.model;
    this.modelId = built.modelId;
    this.info = {
      family: familyOf(config).name,
      mode: built.model.mode,
      weights: layout.storage,
      subgroups: ctx.features.subgroups,
      kernels: ctx.kernelVariant,
      maxRows: layout.maxRows,
      maxBindingBytes: layout.maxBindingBytes,
      capacity: layout.capacity,
      logprobs: opts.logprobs ?? false,
    };
    this.planner = new BlockPlanner(layout.maxRows, layout.chunkSize);
    this.readback = ctx.allocator.create('readback', 'scratch', this.model.logits.size, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    this.logprobs = opts.logprobs ? new TokenLogprobsOp(ctx, 'token logprobs', this.model.logits, this.model.tokens, this.model.vocabSize, layout.maxRows) : null;
    this.timer = GpuTimer.forContext(ctx);
    this.queue = new WorkQueue(ctx.device);
  }

  /** Uploads the weights (a whole in-memory model) and builds every pipeline and bind group. */
  static create(ctx: GpuContext, model: { config: ModelConfig; weights: WeightMap }, opts: EngineOptions = {}): Promise<Engine> {
    return Engine.build(ctx, model.config, opts, async (b) => {
      for (const [name, t] of model.weights) b.write(name, t.shape, t.data);
    });
  }

  /**
   * Uploads tensors as they arrive (from a streamed model file or the cache), so the model is never
   * whole in JS memory, then builds the engine. `onUpload` reports tensors uploaded of the total.
   */
  static fromStream(ctx: GpuContext, stream: { config: ModelConfig; tensors: AsyncIterable<UploadTensor> }, opts: EngineOptions & { onUpload?: (p: { tensors: number; total: number }) => void } = {}): Promise<Engine> {
    return Engine.build(ctx, stream.config, opts, async (b) => {
      let n = 0;
      for await (const t of stream.tensors) {
        b.write(t.name, t.shape, t.data);
        opts.onUpload?.({ tensors: ++n, total: b.tensorCount });
      }
    });
  }

  private static async build(ctx: GpuContext, config: ModelConfig, opts: EngineOptions, fill: (b: ModelBuilder) => Promise<void>): Promise<Engine> {
    // Each engine owns its buffers (its memory report and destroy() cover only them); pipelines are shared.
    const own = ctx.fork();
    const family = familyOf(config);
    own.device.pushErrorScope('out-of-memory');
    own.device.pushErrorScope('validation');
    let engine: Engine | null = null;
    let failure: unknown = null;
    try {
      const caps = deviceCaps(own);
      // Every size the config implies meets the device's limits before the first allocation.
      Engine.plan(config, opts, caps);
      const fopts = familyOptions(opts);
      const layout = family.layout(caps, config, fopts);
      const builder = family.prepare(own, config, layout, fopts);
      await fill(builder);
      engine = new Engine(own, config, layout, builder.finish(), opts);
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

  /**
   * The memory plan of `config` with `opts` on a device with `caps`: every buffer the engine would
   * allocate, by category, before anything is (so a page can say "this model needs N MB" before it
   * downloads the weights). Throws DeviceLimitError when a buffer cannot fit, naming the config key or
   * option that sizes it, the size, the limit and the largest value that would fit.
   */
  static plan(config: ModelConfig, opts: EngineOptions, caps: DeviceCaps & { readonly timestampQuery?: boolean }): MemoryPlan {
    const family = familyOf(config);
    const buffersOf = (c: ModelConfig, o: EngineOptions): PlannedBuffer[] => {
      const layout = family.layout(caps, c, familyOptions(o));
      const own = family.plan(c, layout, familyOptions(o));
      const logits = own.find((b) => b.label === 'logits');
      // The engine's own: the read-back buffer (as large as the logits), the GPU timer's two, the logprobs op's two.
      const engine: PlannedBuffer[] = [{ label: 'readback', category: 'scratch', bytes: logits?.bytes ?? 4, bound: false, key: 'vocab_size' }];
      if (o.logprobs) {
        const lp = TokenLogprobsOp.bytes(c.vocabSize, layout.maxRows);
        engine.push({ label: 'token logprobs carried row', category: 'activations', bytes: lp.carry, bound: true, key: 'vocab_size' });
        engine.push({ label: 'token logprobs out', category: 'activations', bytes: lp.out, bound: true, key: 'maxRows' });
      }
      if (caps.timestampQuery) for (const label of ['timestamps', 'timestamps readback']) engine.push({ label, category: 'scratch', bytes: 16 * GpuTimer.SLOTS, bound: false, key: 'maxRows' });
      return [...own, ...engine];
    };
    const plan = summarize(buffersOf(config, opts));
    const check = (limits: PlanLimits, which: (b: PlannedBuffer) => boolean) =>
      checkPlan(summarize(plan.buffers.filter(which)), limits, (key) => {
        const fits = (v: number) => {
          const r = family.resize(config, opts, key, v);
          if (!r) return false;
          return buffersOf(r.config, r.opts).filter((b) => b.key === key && which(b)).every((b) => b.bytes <= limitFor(b, limits).limit);
        };
        // Sizes grow with the key, by at least a byte a unit: the answer is below the failing buffer's bytes.
        const upper = Math.max(1, ...plan.buffers.filter((b) => b.key === key).map((b) => b.bytes));
        return family.resize(config, opts, key, 1) ? largestWhere(1, upper, fits) : null;
      });
    check(caps, () => true);
    // What the engine splits at its own binding size (weights, KV pages) must also meet that size when it is set lower.
    const own = opts.maxBindingBytes;
    if (own !== undefined && own < caps.maxStorageBufferBindingSize) {
      check({ ...caps, maxStorageBufferBindingSize: own, bindingLimitName: 'maxBindingBytes (engine option)' }, (b) => b.category === 'weights' || b.category === 'kv');
    }
    return plan;
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
      submitsLastFeed: this.lastFeedSubmits,
      info: this.info,
      learning: this.model.learningLog ? { updates: this.model.learningLog.updatesAfter(this.pos), recent: [...this.updates] } : null,
    };
  }

  /**
   * Bytes of KV cache holding live positions: the window for TTT and sliding-window models (constant once
   * full), every position so far for full attention (its cache is allocated up to `maxContext` at creation).
   */
  kvBytesInUse(): number {
    return this.model.kvBytesInUse(this.pos);
  }

  /** Feeds tokens (a prompt, or one token of decode) and optionally samples the next one. */
  feed(tokens: readonly number[], opts: FeedOptions = {}): Promise<FeedResult> {
    return this.queue.run(() => this.feedNow(tokens, opts));
  }

  /**
   * The natural-log probability of `token` as the next token, without feeding it (from the distribution
   * the last feed left; needs `logprobs` at creation). NaN where there is none: at position 0, after
   * reset(), or after loading a memory saved without it.
   */
  nextLogprob(token: number): Promise<number> {
    return this.queue.run(async () => {
      const lp = this.logprobs;
      if (!lp) throw new RangeError('nextLogprob needs an engine created with logprobs: true');
      checkTokens([token], this.model.vocabSize);
      this.ctx.device.queue.writeBuffer(this.model.tokens, 0, Uint32Array.of(token));
      const encoder = this.ctx.device.createCommandEncoder({ label: 'next-token logprob' });
      const pass = encoder.beginComputePass();
      lp.encode(pass, 1, { score: true, keep: false, carryValid: this.carryAt === this.pos && this.pos > 0, keepRow: 0 });
      pass.end();
      this.ctx.device.queue.submit([encoder.finish()]);
      return new Float32Array((await this.readInto(lp.out, 4)).buffer)[0];
    });
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

  /** Forgets everything fed: position 0, every state back to the model's. Runs after the calls before it. */
  reset(): Promise<void> {
    return this.queue.run(() => {
      this.pos = 0;
      this.carryAt = null;
      this.model.reset();
      this.updatesRead = 0;
      this.updates = [];
    });
  }

  /**
   * The model's state as one blob: the family, the model's identity, the position, and the family's
   * sections (LaCT: per layer the KV window in position order, fast weights, momentum, pending chunk).
   * Its size is constant in context length for TTT and sliding-window models.
   */
  saveMemory(): Promise<Uint8Array> {
    return this.queue.run(async () => {
      const sections = await this.model.save(this.pos);
      // The next token's distribution, so that its log-probability survives a save and load.
      if (this.logprobs && this.carryAt === this.pos && this.pos > 0) sections.push({ name: NEXT_LOGITS, bytes: await this.readInto(this.logprobs.carry, this.logprobs.carry.size) });
      return encodeMemory({ format: MEMORY_FORMAT, family: this.info.family, modelId: this.modelId, config: { ...this.config }, position: this.pos }, sections);
    });
  }

  /**
   * The bytes saveMemory() would return after `more` further tokens (the API passes 1 while it holds a
   * token back), computed from the sections' sizes without reading anything back.
   */
  savedMemoryBytes(more = 0): number {
    const position = this.pos + more;
    const sizes: [string, number][] = [];
    const none = new Uint8Array(0);
    // planRestore asks for every section by name and size, exactly what save() writes; nothing is written,
    // and given empty data it plans no per-row writes (the KV cache's would be one per position).
    this.model.planRestore(position, { need: (name, bytes) => (sizes.push([name, bytes]), none) });
    // The next token's distribution goes in when it is known: after any feed (those `more` tokens included).
    if (this.logprobs && position > 0 && (more > 0 || this.carryAt === this.pos)) sizes.push([NEXT_LOGITS, this.logprobs.carry.size]);
    return encodedMemoryBytes({ format: MEMORY_FORMAT, family: this.info.family, modelId: this.modelId, config: { ...this.config }, position }, sizes);
  }

  /** Restores a blob from saveMemory (this model, any engine options); MemoryMismatchError otherwise, the state untouched. */
  loadMemory(blob: Uint8Array): Promise<void> {
    return this.queue.run(async () => {
      const { header, sections } = decodeMemory(blob);
      if (header.family !== this.info.family) throw new MemoryMismatchError(`this memory was saved by a ${header.family} model; the engine runs a ${this.info.family} model`);
      if (header.modelId !== this.modelId) {
        const differ = configDifferences(header.config, { ...this.config });
        const why = differ.length ? `its configuration differs (${differ.join('; ')})` : 'same configuration, other weights';
        throw new MemoryMismatchError(`this memory was saved by model ${header.modelId}; the engine runs model ${this.modelId}: ${why}`);
      }
      if (header.position > this.info.capacity) throw new MemoryMismatchError(`the memory holds ${header.position} positions; this engine's cache holds ${this.info.capacity}`);
      // Every section is checked before anything is written, so a bad blob leaves the engine as it was.
      const writes = this.model.planRestore(header.position, sectionSource(sections));
      const next = sections.get(NEXT_LOGITS);
      if (next && next.byteLength !== 4 * this.model.vocabSize) throw new MemoryMismatchError(`this memory does not fit the model: section ${NEXT_LOGITS} has ${next.byteLength} bytes, the model's vocabulary ${4 * this.model.vocabSize}`);
      if (next && this.logprobs) writes.push({ buffer: this.logprobs.carry, offset: 0, data: next });
      for (const w of writes) writeAligned(this.ctx.device, w.buffer, w.offset, w.data);
      await this.ctx.device.queue.onSubmittedWorkDone();
      this.pos = header.position;
      this.carryAt = next && this.logprobs ? this.pos : null;
      this.updatesRead = this.model.learningLog?.updatesAfter(this.pos) ?? 0;
      this.updates = [];
    });
  }

  /**
   * Releases every buffer. Calls queued behind it fail with EngineDestroyedError at once; a running feed
   * stops at its next block; the buffers go when it has.
   */
  destroy(): Promise<void> {
    this.queue.kill('destroy() was called');
    // Idle: released now, so memory() reads 0 as soon as destroy() returns.
    if (this.queue.pending === 0) {
      this.ctx.allocator.destroyAll();
      return Promise.resolve();
    }
    return this.queue.run(() => this.ctx.allocator.destroyAll(), { always: true });
  }

  private async feedNow(tokens: readonly number[], opts: FeedOptions): Promise<FeedResult> {
    const V = this.model.vocabSize;
    checkTokens(tokens, V);
    if (tokens.length === 0) throw new RangeError('feed needs at least one token');
    checkCapacity(this.pos, tokens.length, this.info.capacity);
    const sampling = opts.sample ? validateSamplingParams(opts.sample) : null;
    if (opts.logits === 'all' && !this.model.allLogits) throw new RangeError('logits: "all" needs an engine created with allLogits: true');
    if (opts.logprobs && !this.logprobs) throw new RangeError('logprobs: true needs an engine created with logprobs: true');

    const t0 = performance.now();
    const submits0 = this.submits;
    const all: Float32Array[] = [];
    const lps: Float32Array[] = [];
    let i = 0;
    let token: number | null = null;
    let lastLogits: Float32Array | null = null;
    // At most two blocks in flight: the CPU records block n+1 while the GPU runs block n, and an abort or
    // a progress report is never more than one block behind the GPU.
    let inflight: { done: Promise<void>; end: number } | null = null;
    const report = (end: number) => opts.onProgress?.({ processed: end, total: tokens.length, position: this.pos - (i - end) });
    const settle = async () => {
      if (!inflight) return;
      await inflight.done;
      report(inflight.end);
      inflight = null;
    };
    while (i < tokens.length) {
      if (opts.signal?.aborted || this.queue.dead) {
        await settle();
        if (this.queue.dead) throw new EngineDestroyedError(this.queue.dead);
        await this.readLearning();
        throw new EngineAbortedError(i, this.pos, opts.signal!.reason);
      }
      const plan = this.planner.next(this.pos, tokens.length - i);
      const last = i + plan.rows === tokens.length;
      // An engine with logprobs runs the head on at least a feed's last row, to carry it to the next feed.
      const head = opts.logits === 'all' || opts.logprobs ? 'all' : last && (opts.logits === 'last' || sampling || this.logprobs) ? 'last' : 'none';
      if (this.timer?.full) await this.timer.drain();
      // A sampled id that is the block's only read goes to the read-back buffer in the block's own
      // command buffer: a decode step is one submit (and one map), not two.
      const tokenInBlock = last && sampling !== null && !opts.logprobs && !opts.logits;
      this.submitBlock({ plan, tokens: tokens.slice(i, i + plan.rows), head, sampling: last ? sampling : null }, opts.logprobs ?? false, tokenInBlock);
      this.pos += plan.rows;
      i += plan.rows;
      const previous = inflight;
      inflight = { done: this.ctx.device.queue.onSubmittedWorkDone(), end: i };
      if (previous) {
        await previous.done;
        report(previous.end);
      }
      if (opts.logprobs) lps.push(new Float32Array((await this.readInto(this.logprobs!.out, plan.rows * 4)).buffer));
      if (opts.logits === 'all') all.push(await this.readFloats(plan.rows * V));
      else if (last && opts.logits === 'last') lastLogits = await this.readFloats(V);
      if (last && sampling) token = tokenInBlock ? await this.mapToken() : await this.readToken();
    }
    await settle();
    const ms = performance.now() - t0;
    await this.readLearning();
    this.lastFeedSubmits = this.submits - submits0;
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
    return { token, logits: opts.logits === 'all' ? concatFloats(all) : lastLogits, logprobs: opts.logprobs ? concatFloats(lps) : null };
  }

  /** Reads the log records of the updates taken since the last read (one small read-back, only when there were any). */
  private async readLearning(): Promise<void> {
    const log = this.model.learningLog;
    if (!log) return;
    const n = log.updatesAfter(this.pos);
    if (n <= this.updatesRead) return;
    this.submits++;
    const rec = new Float32Array((await readBufferBytes(this.ctx.device, log.buffer)).buffer);
    for (let c = Math.max(this.updatesRead, n - log.slots); c < n; c++) {
      const s = log.floats * (c % log.slots);
      const after = rec[s + 4];
      this.updates.push({ chunk: c, loss: rec[s], validTargets: rec[s + 1], gradNorm: rec[s + 2], clipScale: rec[s + 3], lossAfter: Number.isNaN(after) ? null : after });
    }
    if (this.updates.length > LOG_KEPT) this.updates.splice(0, this.updates.length - LOG_KEPT);
    this.updatesRead = n;
  }

  /**
   * One block in one command buffer and one compute pass (timed when the adapter can); with `copyToken`
   * the sampled id's copy into the read-back buffer follows the pass in the same command buffer.
   */
  private submitBlock(w: BlockWork, score: boolean, copyToken = false): void {
    const encoder = this.ctx.device.createCommandEncoder({ label: `block @${w.plan.pos0} x${w.plan.rows}` });
    const timestampWrites = this.timer?.writes();
    const counter = new DispatchCounter(encoder.beginComputePass(timestampWrites ? { timestampWrites } : {}));
    this.model.encodeBlock(counter.encoder, w);
    if (this.logprobs && w.head !== 'none') {
      const { rows, pos0 } = w.plan;
      this.logprobs.encode(counter.encoder, rows, { score, carryValid: this.carryAt === pos0 && pos0 > 0, keepRow: w.head === 'all' ? rows - 1 : 0 });
      this.carryAt = pos0 + rows;
    }
    counter.encoder.end();
    this.lastDispatches = counter.count;
    if (copyToken) encoder.copyBufferToBuffer(this.model.sampled, 0, this.readback, 0, 4);
    this.ctx.device.queue.submit([encoder.finish()]);
    this.submits++;
  }

  private async readFloats(floats: number): Promise<Float32Array> {
    return new Float32Array((await this.readInto(this.model.logits, floats * 4)).buffer);
  }

  private async readToken(): Promise<number> {
    return new Uint32Array((await this.readInto(this.model.sampled, 4)).buffer)[0];
  }

  /** The sampled id the block's own command buffer copied into the read-back buffer (submitBlock's copyToken). */
  private async mapToken(): Promise<number> {
    await this.readback.mapAsync(GPUMapMode.READ, 0, 4);
    const id = new Uint32Array(this.readback.getMappedRange(0, 4).slice(0))[0];
    this.readback.unmap();
    return id;
  }

  /** The first `bytes` of `src` through the engine's own read-back buffer. */
  private async readInto(src: GPUBuffer, bytes: number): Promise<Uint8Array> {
    const enc = this.ctx.device.createCommandEncoder();
    enc.copyBufferToBuffer(src, 0, this.readback, 0, bytes);
    this.ctx.device.queue.submit([enc.finish()]);
    this.submits++;
    await this.readback.mapAsync(GPUMapMode.READ, 0, bytes);
    const out = new Uint8Array(this.readback.getMappedRange(0, bytes).slice(0));
    this.readback.unmap();
    return out;
  }
}

/** Options as a family sees them: logprobs need every row's logits. */
function familyOptions(opts: EngineOptions): EngineOptions {
  return opts.logprobs && !opts.allLogits ? { ...opts, allLogits: true } : opts;
}

/** The saved-memory section holding the next token's logits (engines with logprobs). */
const NEXT_LOGITS = 'next-token logits';

/** The limits and features a plan depends on, of a context's device. */
export function deviceCaps(ctx: GpuContext): DeviceCaps & { timestampQuery: boolean } {
  return {
    maxStorageBufferBindingSize: ctx.limits.maxStorageBufferBindingSize,
    maxBufferSize: ctx.limits.maxBufferSize,
    shaderF16: ctx.features.shaderF16,
    timestampQuery: ctx.features.timestampQuery,
  };
}

/** What a device must allow for this model and these options (asked before the device is requested). */
export function deviceNeeds(config: ModelConfig, opts: EngineOptions = {}, adapterBinding = 128 << 20): { largestBuffer: number } {
  return familyOf(config).deviceNeeds(config, familyOptions(opts), adapterBinding);
}
