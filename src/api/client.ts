/**
 * The page side of the public API: `TttEngine` over an `EngineBackend`, which is either the engine host
 * itself (in process) or a comlink Remote of it (worker). Signals become `abort(id)` calls; generation is
 * an async iterator fed by a pushed callback (comlink cannot transfer generators). Every backend call is
 * tracked while in flight, so that when the backend dies (the worker-client calls `fail()`) each pending
 * call, the generation iterators included, rejects at once instead of waiting for a reply that never comes.
 */
import { jsHeapBytes } from './js-heap.ts';
import { EngineDestroyedError } from '../engine/errors.ts';
import type { EngineBackend, RequestRef } from './host.ts';
import type {
  GenerateOptions,
  GenerateResult,
  GenerateStream,
  GeneratedToken,
  PrefillOptions,
  PrefillProgress,
  PrefillResult,
  TttEngine,
  TttInfo,
  TttStats,
} from './types.ts';

/** Makes a callback callable from where the backend runs (comlink.proxy for a worker; identity in process). */
export type CallbackWrapper = <A extends unknown[], R>(f: (...args: A) => R) => (...args: A) => R;

function reasonText(reason: unknown): string | undefined {
  if (reason === undefined) return undefined;
  return reason instanceof Error ? reason.message : String(reason);
}

/** The engine's stats with the caller's own heap (the worker cannot see the page's). */
function withPageHeap(s: TttStats): TttStats {
  return { ...s, jsHeap: { engine: s.jsHeap.engine, page: jsHeapBytes() } };
}

export class TttEngineClient implements TttEngine {
  private nextId = 1;
  private disposed: Promise<void> | null = null;
  private readonly listeners = new Set<(s: TttStats) => void>();
  /** Set by fail(): the backend is gone (its worker died); every call rejects with this. */
  private dead: Error | null = null;
  /** The rejecters of the backend calls in flight: fail() rejects them all, so none can hang on a dead worker. */
  private readonly inFlight = new Set<(e: Error) => void>();

  constructor(
    private readonly backend: EngineBackend,
    readonly info: TttInfo,
    private readonly wrap: CallbackWrapper = (f) => f,
    private readonly afterDispose?: () => void,
  ) {}

  /**
   * The backend is gone for good (worker-client.ts: the engine's worker died): every pending call rejects
   * with `error` now, and so does every later one. Idempotent; the first error stays.
   */
  fail(error: Error): void {
    if (this.dead) return;
    this.dead = error;
    this.listeners.clear();
    for (const reject of [...this.inFlight]) reject(error);
    this.inFlight.clear();
  }

  /** Why calls cannot run (a dead backend, or dispose()), else null. */
  private unusable(): Error | null {
    return this.dead ?? (this.disposed ? this.destroyedError() : null);
  }

  private destroyedError(): EngineDestroyedError {
    return new EngineDestroyedError('dispose() was called');
  }

  /** A backend call that rejects at once when the backend dies while it is pending. */
  private guard<T>(call: () => Promise<T>, always = false): Promise<T> {
    const why = always ? this.dead : this.unusable();
    if (why) return Promise.reject(why);
    let pending: Promise<T>;
    try {
      pending = call();
    } catch (e) {
      // A backend that is being let go can throw synchronously (a released comlink proxy).
      return Promise.reject(this.dead ?? e);
    }
    // Tracked in a set rather than raced against a death promise: a race would leave a reaction (and the
    // call's result, a memory blob say) attached to that promise for the engine's whole life.
    return new Promise<T>((resolve, reject) => {
      this.inFlight.add(reject);
      pending.then(
        (v) => {
          this.inFlight.delete(reject);
          resolve(v);
        },
        (e: unknown) => {
          this.inFlight.delete(reject);
          reject(e);
        },
      );
    });
  }

  /** Sends a request with a fresh id, and forwards the signal's abort (now, or when it fires) as `abort(id)`. */
  private send<T>(signal: AbortSignal | undefined, run: (req: RequestRef) => Promise<T>): { id: number | null; promise: Promise<T> } {
    const why = this.unusable();
    if (why) return { id: null, promise: Promise.reject(why) };
    const req = { id: this.nextId++ };
    const promise = this.guard(() => run(req));
    if (signal) {
      const onAbort = () => void this.guard(() => this.backend.abort(req.id, reasonText(signal.reason))).catch(() => undefined);
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener('abort', onAbort, { once: true });
        const detach = () => signal.removeEventListener('abort', onAbort);
        promise.then(detach, detach);
      }
    }
    return { id: req.id, promise };
  }

  prefill(input: string | readonly number[], opts: PrefillOptions = {}): Promise<PrefillResult> {
    const onProgress = opts.onProgress;
    const wire = opts.logprobs === undefined ? undefined : { logprobs: opts.logprobs };
    return this.send(opts.signal, (req) => this.backend.prefill(input, req, onProgress && this.wrap((p: PrefillProgress) => onProgress(p)), wire)).promise;
  }

  generate(prompt: string | readonly number[], opts: GenerateOptions = {}): GenerateStream {
    const { signal, ...wire } = opts;
    const buffer: GeneratedToken[] = [];
    let finished = false;
    let failure: { error: unknown } | null = null;
    let wake: (() => void) | null = null;
    const poke = () => {
      const w = wake;
      wake = null;
      w?.();
    };
    const onToken = (t: GeneratedToken) => {
      buffer.push(t);
      poke();
    };
    // Queued now, so requests run in the order they were made, whether or not this one is iterated yet.
    const { id: reqId, promise: result } = this.send(signal, (req) => this.backend.generate(prompt, wire, req, this.wrap(onToken)));
    result.then(
      () => {
        finished = true;
        poke();
      },
      (error: unknown) => {
        failure = { error };
        finished = true;
        poke();
      },
    );
    const abort = (id: number) => void this.guard(() => this.backend.abort(id, 'the consumer stopped iterating')).catch(() => undefined);
    async function* iterate(): AsyncGenerator<GeneratedToken, void, undefined> {
      try {
        for (;;) {
          if (buffer.length) {
            yield buffer.shift()!;
            continue;
          }
          if (finished) {
            if (failure) throw (failure as { error: unknown }).error;
            return;
          }
          await new Promise<void>((r) => (wake = r));
        }
      } finally {
        if (!finished && reqId !== null) {
          // The consumer stopped early (break, throw, return()): stop the engine too, and only hand
          // control back once it has stopped, so the next request starts from a settled state.
          abort(reqId);
          await result.catch(() => undefined);
        }
      }
    }
    const it = iterate();
    return Object.assign(it, { result });
  }

  stats(): Promise<TttStats> {
    return this.guard(() => this.backend.stats()).then(withPageHeap);
  }

  private readonly fanOut = (raw: TttStats): void => {
    const s = withPageHeap(raw);
    for (const l of [...this.listeners]) {
      try {
        l(s);
      } catch (e) {
        console.error('ttt-web: a stats listener threw', e);
      }
    }
  };

  onStats(listener: (s: TttStats) => void): () => void {
    const why = this.unusable();
    if (why) throw why;
    this.listeners.add(listener);
    if (this.listeners.size === 1) void this.guard(() => this.backend.setStatsListener(this.wrap(this.fanOut))).catch(() => undefined);
    return () => {
      if (this.listeners.delete(listener) && this.listeners.size === 0 && !this.unusable()) {
        void this.guard(() => this.backend.setStatsListener(null)).catch(() => undefined);
      }
    };
  }

  async saveMemory(): Promise<{ blob: Uint8Array; bytes: number }> {
    const blob = await this.guard(() => this.backend.saveMemory());
    return { blob, bytes: blob.byteLength };
  }

  loadMemory(blob: Uint8Array): Promise<void> {
    return this.guard(() => this.backend.loadMemory(blob));
  }

  reset(): Promise<void> {
    return this.guard(() => this.backend.reset());
  }

  encode(text: string): Promise<number[]> {
    return this.guard(() => this.backend.encode(text));
  }

  decode(ids: readonly number[]): Promise<string> {
    return this.guard(() => this.backend.decode(ids));
  }

  dispose(): Promise<void> {
    this.disposed ??= (async () => {
      this.listeners.clear();
      try {
        // A dead backend has nothing left to free; one that dies while disposing is disposed.
        if (!this.dead) {
          await this.guard(() => this.backend.dispose(), true).catch((e: unknown) => {
            if (e !== this.dead) throw e;
          });
        }
      } finally {
        this.afterDispose?.();
      }
    })();
    return this.disposed;
  }
}
