/**
 * One request at a time per engine, in arrival order. A generation is many GPU feeds (the prompt, then
 * one step per token) that must not interleave with another caller's feeds, so the unit of exclusion is
 * the whole request, not the engine's individual feed.
 *
 * Aborting a queued request removes it without running it; aborting the running one aborts the signal
 * its task was given, and the task decides how to stop (the engine stops within one block). Pure
 * TypeScript: no GPU, no DOM beyond AbortController.
 */

export interface ScheduleOptions {
  /** The caller's signal: aborts the request whether queued or running. */
  readonly signal?: AbortSignal;
  /** The error a request aborted while still queued rejects with. */
  readonly abortedWhileQueued: (reason: unknown) => Error;
  /** Names the request in `running` (diagnostics and tests). */
  readonly label?: string;
}

interface Job {
  readonly task: (signal: AbortSignal) => Promise<unknown>;
  readonly controller: AbortController;
  readonly opts: ScheduleOptions;
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: unknown) => void;
  detach: () => void;
}

export class Scheduler {
  private readonly queue: Job[] = [];
  private current: { job: Job; done: Promise<void> } | null = null;
  private closedWith: (() => Error) | null = null;

  /** Called after each request that ran settles (not for requests aborted while queued). */
  constructor(private readonly onSettled?: (label: string | undefined) => void) {}

  /** Requests waiting behind the running one. */
  get queued(): number {
    return this.queue.length;
  }

  /** The running request's label ('' when unlabelled), or null when idle. */
  get running(): string | null {
    return this.current ? this.current.job.opts.label ?? '' : null;
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  /** Runs `task` after every request submitted before it has settled. */
  run<T>(task: (signal: AbortSignal) => Promise<T>, opts: ScheduleOptions): Promise<T> {
    if (this.closedWith) return Promise.reject(this.closedWith());
    return new Promise<T>((resolve, reject) => {
      const controller = new AbortController();
      const job: Job = { task, controller, opts, resolve: resolve as (v: unknown) => void, reject, detach: () => {} };
      const signal = opts.signal;
      if (signal) {
        const onAbort = () => this.abortJob(job, signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
        job.detach = () => signal.removeEventListener('abort', onAbort);
      }
      this.queue.push(job);
      // An already-aborted request never runs: it is rejected as a queued one (nothing was fed).
      if (signal?.aborted) this.abortJob(job, signal.reason);
      this.pump();
    });
  }

  /**
   * Rejects every queued request with `error()`, aborts the running one, and resolves once it has
   * settled. Later `run` calls reject with `error()`.
   */
  async close(error: () => Error): Promise<void> {
    this.closedWith ??= error;
    for (const job of this.queue.splice(0)) {
      job.detach();
      job.reject(error());
    }
    const cur = this.current;
    if (cur) {
      cur.job.controller.abort(error());
      await cur.done;
    }
  }

  private abortJob(job: Job, reason: unknown): void {
    const i = this.queue.indexOf(job);
    if (i >= 0) {
      this.queue.splice(i, 1);
      job.detach();
      job.reject(job.opts.abortedWhileQueued(reason));
    } else if (this.current?.job === job) {
      job.controller.abort(reason);
    }
  }

  private pump(): void {
    if (this.current || this.queue.length === 0) return;
    const job = this.queue.shift()!;
    // Started in a microtask, so `run` never re-enters a task synchronously from inside another's code.
    const done = Promise.resolve()
      .then(() => job.task(job.controller.signal))
      .then(job.resolve, job.reject)
      .finally(() => {
        job.detach();
        this.current = null;
        try {
          this.onSettled?.(job.opts.label);
        } finally {
          this.pump();
        }
      });
    this.current = { job, done };
  }
}
