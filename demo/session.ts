/**
 * One model loaded for the demo: its engine (in a Web Worker), and the demo's three ways of using it:
 * a prefill split around decode probes, generation, and saving or restoring the memory.
 */
import { createEngine, EngineAbortedError, type LoadProgress, type TttEngine, type TttStats } from '../src/api/index.ts';
import type { ModelEntry } from './catalog.ts';
import type { PlanStep } from './plan.ts';

export interface SessionOptions {
  readonly weights: 'f16' | 'f32';
  /** Full-attention models only. */
  readonly maxContext?: number;
  readonly onProgress?: (p: LoadProgress) => void;
}

/** A one-token step measured during a prefill (see PlanStep). */
export interface Probe {
  readonly position: number;
  readonly ms: number;
  readonly stats: TttStats;
}

export interface PrefillEvents {
  /** Tokens of the whole input fed so far (the held-back last token counts, as in positions). */
  readonly onProgress?: (done: number, total: number) => void;
  readonly onProbe?: (p: Probe) => void;
  /** Each call's per-token log-probabilities: those of ids[start, start + values.length). */
  readonly onLogprobs?: (start: number, values: Float32Array) => void;
}

export class ModelSession {
  /**
   * Whether the engine holds back a token it will feed first on the next call (after a prefill or a
   * generation): then `generate('')` continues. Saving or loading a memory feeds or drops it.
   */
  held = false;

  private constructor(readonly entry: ModelEntry, readonly engine: TttEngine, readonly options: SessionOptions) {}

  static async open(entry: ModelEntry, options: SessionOptions): Promise<ModelSession> {
    const engine = await createEngine({
      model: entry.path,
      weights: options.weights,
      maxContext: entry.mode === 'full-attention' ? options.maxContext : undefined,
      learnWhileReading: entry.learnWhileReading || undefined,
      // TTT-E2E: each inner step's chunk is scored again after it, for the panel's learning readout.
      lossAfterStep: true,
      onProgress: options.onProgress,
      // One push per generated token: the charts plot every decode step.
      statsEvery: 1,
    });
    return new ModelSession(entry, engine, options);
  }

  get capacity(): number {
    return this.engine.info.capacity;
  }

  async reset(): Promise<void> {
    await this.engine.reset();
    this.held = false;
  }

  /**
   * Feeds `ids` as the plan says, one call at a time; yields after each call so that a caller can
   * interleave two sessions call by call (Compare) without two engines computing at once. An abort
   * rejects with EngineAbortedError whose `position` is what the memory then holds.
   */
  async *prefill(ids: readonly number[], plan: readonly PlanStep[], signal: AbortSignal, events: PrefillEvents = {}): AsyncGenerator<number, void> {
    const total = ids.length;
    for (const step of plan) {
      if (signal.aborted) throw new EngineAbortedError(0, (await this.engine.stats()).position, signal.reason);
      const r = await this.engine.prefill(ids.slice(step.start, step.end), {
        signal,
        logprobs: events.onLogprobs !== undefined,
        onProgress: (p) => events.onProgress?.(step.start + p.processed, total),
      });
      this.held = true;
      if (r.logprobs) events.onLogprobs?.(step.start, r.logprobs);
      if (step.probe) {
        const stats = await this.engine.stats();
        if (stats.decodeMsLast !== null) events.onProbe?.({ position: r.position, ms: stats.decodeMsLast, stats });
      }
      yield r.position;
    }
  }

  async save(): Promise<Uint8Array> {
    const { blob } = await this.engine.saveMemory();
    this.held = false; // saving feeds the held token into the memory it saves
    return blob;
  }

  async restore(blob: Uint8Array): Promise<void> {
    await this.engine.loadMemory(blob);
    this.held = false;
  }

  dispose(): Promise<void> {
    return this.engine.dispose();
  }
}

/** Whether an error is an abort the visitor asked for (Cancel, Stop), not a failure. */
export function isAbort(e: unknown): e is EngineAbortedError {
  return e instanceof EngineAbortedError;
}
