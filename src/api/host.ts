/**
 * The engine side of the public API: one Engine, its tokenizer and its scheduler. It runs inside the
 * worker (behind comlink) or in the page/Node process (called directly); either way the page-side
 * `TttEngine` talks to it through `EngineBackend`, whose arguments are plain data and callbacks, and
 * whose aborts go by request id (an AbortSignal cannot cross a worker boundary).
 *
 * The last token of every request is held back and fed at the start of the next one ("pending"). After a
 * prefill that is the prompt's last token, after a generation the last sampled token: in both cases
 * feeding it now would compute logits nobody reads, and holding it lets `generate('')` continue from
 * exactly where the previous call stopped. Positions reported to callers always count it.
 */
import { jsHeapBytes } from './js-heap.ts';
import type { Engine } from '../engine/engine.ts';
import { EngineAbortedError, EngineDestroyedError } from '../engine/errors.ts';
import { checkCapacity, checkTokens } from '../engine/input-checks.ts';
import { validateSamplingParams, type SamplingParams } from '../engine/sampling-params.ts';
import type { Tokenizer } from '../model/tokenizer.ts';
import { Scheduler } from './scheduler.ts';
import { StopText } from './stop-text.ts';
import type { GenerateOptions, GenerateResult, GeneratedToken, PrefillOptions, PrefillProgress, PrefillResult, TttInfo, TttStats } from './types.ts';

/** Identifies a request so that the page can abort it later. */
export interface RequestRef {
  readonly id: number;
}

/** `PrefillOptions` without the signal and the callback (they travel apart). */
export type WirePrefillOptions = Omit<PrefillOptions, 'signal' | 'onProgress'>;

/** `GenerateOptions` without the signal (aborts travel as `abort(id)`). */
export type WireGenerateOptions = Omit<GenerateOptions, 'signal'>;

export type StatsListener = (s: TttStats) => void;

/** What the page-side client calls; every method is async so a comlink Remote can stand in for it. */
export interface EngineBackend {
  prefill(input: string | readonly number[], req: RequestRef, onProgress?: (p: PrefillProgress) => void, opts?: WirePrefillOptions): Promise<PrefillResult>;
  generate(prompt: string | readonly number[], opts: WireGenerateOptions, req: RequestRef, onToken: (t: GeneratedToken) => void): Promise<GenerateResult>;
  abort(id: number, reason?: string): Promise<void>;
  stats(): Promise<TttStats>;
  setStatsListener(listener: StatsListener | null): Promise<void>;
  saveMemory(): Promise<Uint8Array>;
  loadMemory(blob: Uint8Array): Promise<void>;
  reset(): Promise<void>;
  encode(text: string): Promise<number[]>;
  decode(ids: readonly number[]): Promise<string>;
  dispose(): Promise<void>;
}

export interface HostOptions {
  /** Decode tokens between two stats pushes during generation. */
  readonly statsEvery?: number;
  /** Runs after the engine is destroyed (the opener releases the device it made). */
  readonly onDispose?: () => void;
}

const DEFAULTS = { maxTokens: 256, temperature: 0.8, topK: 0, topP: 0.95 } as const;

/** Calls a listener that may be user code (in process) or a comlink proxy (returns a promise). */
function notify<T>(fn: ((v: T) => unknown) | null | undefined, v: T): void {
  if (!fn) return;
  try {
    const r = fn(v);
    if (r instanceof Promise) r.catch(() => undefined);
  } catch (e) {
    console.error('ttt-web: a listener threw', e);
  }
}

function abortReason(reason: unknown): Error | undefined {
  if (reason instanceof Error) return reason;
  return reason === undefined ? undefined : new Error(String(reason));
}

export class EngineHost implements EngineBackend {
  private readonly scheduler: Scheduler;
  private readonly controllers = new Map<number, AbortController>();
  private readonly statsEvery: number;
  private pending: number | null = null;
  private dead: string | null = null;
  private disposing: Promise<void> | null = null;
  private statsListener: StatsListener | null = null;

  constructor(
    private readonly engine: Engine,
    private readonly tokenizer: Tokenizer,
    readonly info: TttInfo,
    private readonly opts: HostOptions = {},
  ) {
    const every = opts.statsEvery ?? 8;
    if (!Number.isInteger(every) || every < 1) throw new RangeError(`statsEvery must be an integer >= 1, got ${every}`);
    this.statsEvery = every;
    this.scheduler = new Scheduler(() => this.pushStats());
  }

  /** Tokens in the engine's memory, the held-back one included. */
  private position(): number {
    return this.engine.position + (this.pending !== null ? 1 : 0);
  }

  private alive(): void {
    if (this.dead) throw new EngineDestroyedError(this.dead);
  }

  private schedule<T>(req: RequestRef | null, label: string, task: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.dead) return Promise.reject(new EngineDestroyedError(this.dead));
    const controller = new AbortController();
    if (req) this.controllers.set(req.id, controller);
    return this.scheduler
      .run(task, { signal: controller.signal, label, abortedWhileQueued: (r) => new EngineAbortedError(0, this.position(), abortReason(r)) })
      .catch((e: unknown) => {
        // dispose() aborts the running request; its caller should learn why, not just "aborted".
        throw this.dead && e instanceof EngineAbortedError ? new EngineDestroyedError(this.dead) : e;
      })
      .finally(() => {
        if (req) this.controllers.delete(req.id);
      });
  }

  /** Ids from text or a token array, checked now (before queueing) so a bad request fails at once. */
  private tokens(input: string | readonly number[]): { ids: number[]; text: boolean } {
    if (typeof input === 'string') return { ids: this.tokenizer.encode(input), text: true };
    if (!Array.isArray(input)) throw new TypeError('input must be a string or an array of token ids');
    checkTokens(input, this.engine.config.vocabSize);
    return { ids: [...input], text: false };
  }

  /** BOS is decided when the request runs: only then is its position known. */
  private withBos(t: { ids: number[]; text: boolean }): number[] {
    const bos = this.tokenizer.bosId;
    return t.text && bos !== null && this.position() === 0 ? [bos, ...t.ids] : t.ids;
  }

  /** Room for `more` tokens after the current position, the held-back token included. */
  private checkRoom(more: number): void {
    checkCapacity(this.position(), more, this.engine.info.capacity);
  }

  /**
   * Feeds the held-back token (if any) followed by `tokens`. On abort the error is restated in the
   * caller's terms: tokens of *its* input processed, and the position with anything still held.
   */
  private async feedWithPending(tokens: readonly number[], signal: AbortSignal, onProgress?: (processed: number, position: number) => void, sample?: SamplingParams, logprobs = false): Promise<{ token: number | null; logprobs: Float32Array | null }> {
    const lead = this.pending !== null ? [this.pending] : [];
    const all = [...lead, ...tokens];
    if (all.length === 0) return { token: null, logprobs: logprobs ? new Float32Array(0) : null };
    this.pending = null;
    try {
      const r = await this.engine.feed(all, {
        signal,
        sample,
        logprobs,
        onProgress: onProgress && ((p) => onProgress(Math.max(0, p.processed - lead.length), p.position)),
      });
      // The held-back token was scored by the request that gave it.
      return { token: r.token, logprobs: r.logprobs && r.logprobs.subarray(lead.length) };
    } catch (e) {
      const fedLead = e instanceof EngineAbortedError && e.processed >= lead.length;
      if (!fedLead && lead.length) this.pending = lead[0];
      if (e instanceof EngineAbortedError) throw new EngineAbortedError(Math.max(0, e.processed - lead.length), this.position(), abortReason(signal.reason));
      throw e;
    }
  }

  prefill(input: string | readonly number[], req: RequestRef, onProgress?: (p: PrefillProgress) => void, opts: WirePrefillOptions = {}): Promise<PrefillResult> {
    try {
      this.alive();
      const t = this.tokens(input);
      const logprobs = opts.logprobs ?? false;
      if (logprobs && !this.engine.info.logprobs) throw new RangeError('logprobs: true needs an engine created with logprobs: true (the default)');
      return this.schedule(req, 'prefill', async (signal) => {
        const user = this.withBos(t);
        const n = user.length;
        if (n === 0) return { processed: 0, position: this.position(), ...(logprobs ? { logprobs: new Float32Array(0) } : {}) };
        this.checkRoom(n);
        if (signal.aborted) throw new EngineAbortedError(0, this.position(), abortReason(signal.reason));
        const fed = await this.feedWithPending(user.slice(0, -1), signal, (processed, position) => notify(onProgress, { processed, total: n, position }), undefined, logprobs);
        this.pending = user[n - 1];
        let lps: Float32Array | undefined;
        if (logprobs) {
          // The last token is held back (fed by the next request), but its distribution is known now.
          lps = new Float32Array(n);
          lps.set(fed.logprobs!);
          lps[n - 1] = await this.engine.nextLogprob(user[n - 1]);
        }
        const result = { processed: n, position: this.position(), ...(lps ? { logprobs: lps } : {}) };
        notify(onProgress, { processed: n, total: n, position: result.position });
        return result;
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  generate(prompt: string | readonly number[], opts: WireGenerateOptions, req: RequestRef, onToken: (t: GeneratedToken) => void): Promise<GenerateResult> {
    try {
      this.alive();
      const t = this.tokens(prompt);
      const maxTokens = opts.maxTokens ?? DEFAULTS.maxTokens;
      if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new RangeError(`maxTokens must be an integer >= 0, got ${maxTokens}`);
      const sampling = validateSamplingParams({
        temperature: opts.temperature ?? DEFAULTS.temperature,
        topK: opts.topK ?? DEFAULTS.topK,
        topP: opts.topP ?? DEFAULTS.topP,
        seed: opts.seed ?? Math.floor(Math.random() * 0x100000000),
      });
      const stops = opts.stop ?? [];
      new StopText(stops); // validates now, before queueing
      const eos = opts.ignoreEos ? null : this.tokenizer.eosId;
      return this.schedule(req, 'generate', (signal) => this.generateNow(t, { maxTokens, sampling, stops, eos }, signal, onToken));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private async generateNow(
    t: { ids: number[]; text: boolean },
    o: { maxTokens: number; sampling: Required<SamplingParams>; stops: readonly string[]; eos: number | null },
    signal: AbortSignal,
    onToken: (t: GeneratedToken) => void,
  ): Promise<GenerateResult> {
    const user = this.withBos(t);
    if (user.length === 0 && this.pending === null) {
      throw new RangeError('generate needs a prompt here: nothing is held from an earlier call to continue from (give text or at least one token id)');
    }
    this.checkRoom(user.length + Math.min(o.maxTokens, 1));
    const aborted = (promptTokens: number) => new EngineAbortedError(promptTokens, this.position(), abortReason(signal.reason));
    if (signal.aborted) throw aborted(0);
    if (o.maxTokens === 0) {
      // Nothing to sample: a prefill that keeps the last token back like any other request.
      if (user.length) {
        await this.feedWithPending(user.slice(0, -1), signal);
        this.pending = user[user.length - 1];
      }
      return { reason: 'length', promptTokens: user.length, generatedTokens: 0, position: this.position(), text: '' };
    }
    let next = (await this.feedWithPending(user, signal, undefined, o.sampling)).token!;
    const decoder = this.tokenizer.decoder();
    const stop = new StopText(o.stops);
    let text = '';
    let count = 0;
    const emit = (id: number, piece: string) => {
      text += piece;
      notify(onToken, { id, text: piece });
    };
    for (;;) {
      const id = next;
      count++;
      // A sampled token is part of the history; the next request (or step) feeds it.
      this.pending = id;
      const last = count === o.maxTokens;
      if (id === o.eos) {
        const r = stop.push(decoder.flush());
        const rest = r.stopped ? r.text : r.text + stop.flush();
        if (rest) emit(id, rest);
        return this.finish('eos', user.length, count, text);
      }
      const r = stop.push(decoder.push(id) + (last ? decoder.flush() : ''));
      if (r.stopped) {
        if (r.text) emit(id, r.text);
        return this.finish('stop', user.length, count, text);
      }
      emit(id, last ? r.text + stop.flush() : r.text);
      if (last) return this.finish('length', user.length, count, text);
      if (count % this.statsEvery === 0) this.pushStats();
      if (signal.aborted) throw aborted(user.length);
      this.checkRoom(1);
      this.pending = null;
      try {
        next = await this.engine.step(id, o.sampling, { signal });
      } catch (e) {
        this.pending = id;
        if (e instanceof EngineAbortedError) throw aborted(user.length);
        throw e;
      }
    }
  }

  private finish(reason: GenerateResult['reason'], promptTokens: number, generatedTokens: number, text: string): GenerateResult {
    return { reason, promptTokens, generatedTokens, position: this.position(), text };
  }

  async abort(id: number, reason?: string): Promise<void> {
    this.controllers.get(id)?.abort(reason === undefined ? undefined : new Error(reason));
  }

  private statsNow(): TttStats {
    const heap = jsHeapBytes();
    // `page` is filled by the client on the caller's side; in process both are this thread.
    return {
      ...this.engine.stats(), position: this.position(), queued: this.scheduler.queued, jsHeap: { engine: heap, page: heap },
      // What saveMemory() returns now: it feeds the held-back token first.
      savedMemoryBytes: this.engine.savedMemoryBytes(this.pending !== null ? 1 : 0),
    };
  }

  async stats(): Promise<TttStats> {
    this.alive();
    return this.statsNow();
  }

  private pushStats(): void {
    if (!this.dead) notify(this.statsListener, this.statsNow());
  }

  async setStatsListener(listener: StatsListener | null): Promise<void> {
    this.statsListener = listener;
  }

  saveMemory(): Promise<Uint8Array> {
    return this.schedule(null, 'saveMemory', async () => {
      // The blob must hold everything reported as fed, so the held-back token goes in first.
      if (this.pending !== null) {
        await this.engine.feed([this.pending]);
        this.pending = null;
      }
      return this.engine.saveMemory();
    });
  }

  loadMemory(blob: Uint8Array): Promise<void> {
    if (!(blob instanceof Uint8Array)) return Promise.reject(new TypeError('loadMemory needs a Uint8Array from saveMemory'));
    return this.schedule(null, 'loadMemory', async () => {
      await this.engine.loadMemory(blob);
      this.pending = null;
    });
  }

  reset(): Promise<void> {
    return this.schedule(null, 'reset', async () => {
      await this.engine.reset();
      this.pending = null;
    });
  }

  async encode(text: string): Promise<number[]> {
    this.alive();
    if (typeof text !== 'string') throw new TypeError('encode needs a string');
    return this.tokenizer.encode(text);
  }

  async decode(ids: readonly number[]): Promise<string> {
    this.alive();
    this.tokens(ids);
    return this.tokenizer.decode(ids);
  }

  /** The device went away (driver reset, tab backgrounded too long…): every later call fails with the reason. */
  deviceLost(message: string): void {
    if (this.dead) return;
    this.dead = `the GPU device was lost (${message || 'no reason given'}); create a new engine`;
    void this.scheduler.close(() => new EngineDestroyedError(this.dead!));
  }

  dispose(): Promise<void> {
    this.dead ??= 'dispose() was called';
    this.disposing ??= (async () => {
      await this.scheduler.close(() => new EngineDestroyedError(this.dead!));
      this.statsListener = null;
      await this.engine.destroy();
      this.opts.onDispose?.();
    })();
    return this.disposing;
  }
}
