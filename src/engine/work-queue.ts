/**
 * The engine's one queue: every entry point that touches GPU state (feed, reset, save, load, destroy)
 * runs here, one after another in call order, so a reset or destroy issued while a feed is running waits
 * for it instead of changing the position under it. A failure caused by a lost device (a read-back that
 * rejects with AbortError, a submit that does nothing) becomes EngineDestroyedError, and so does every
 * later call: callers see one named error, never the browser's raw one or a hang.
 */
import { EngineDestroyedError, EngineError } from './errors.ts';

export class WorkQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private deadWith: string | null = null;
  private depth = 0;

  constructor(private readonly device: GPUDevice) {}

  /** Why the engine is no longer usable, or null. */
  get dead(): string | null {
    return this.deadWith;
  }

  /** Calls waiting or running. */
  get pending(): number {
    return this.depth;
  }

  /** Every later call fails with EngineDestroyedError(why); the first reason given is kept. */
  kill(why: string): void {
    this.deadWith ??= why;
  }

  /**
   * Runs `work` after everything queued before it. When its turn comes on a dead engine it rejects with
   * EngineDestroyedError instead, unless `always` (the release of the engine's buffers, which must run).
   */
  run<T>(work: () => T | Promise<T>, opts: { always?: boolean } = {}): Promise<T> {
    this.depth++;
    const run = this.tail
      .then(() => {
        if (this.deadWith && !opts.always) throw new EngineDestroyedError(this.deadWith);
        return work();
      })
      .catch(async (e: unknown) => {
        if (e instanceof EngineError) throw e;
        const lost = await Promise.race([this.device.lost, new Promise<null>((r) => setTimeout(() => r(null), 100))]);
        if (lost) {
          this.kill(`the GPU device was lost (${lost.message || lost.reason})`);
          throw new EngineDestroyedError(this.deadWith!);
        }
        throw e;
      })
      .finally(() => this.depth--);
    this.tail = run.catch(() => undefined);
    return run;
  }
}
