/**
 * The engine's Web Worker (started by worker-client.ts, which imports it with `?worker&inline`): opens
 * the adapter and device here (WebGPU works in dedicated workers), loads the model, and serves
 * `EngineBackend` to the page over comlink, so GPU submission, read-backs and tokenisation never block
 * the page's main thread.
 *
 * Callbacks from the page arrive as comlink proxies. Their calls travel on their own MessagePorts, which
 * are not ordered with respect to the reply to the request itself; each request therefore waits for its
 * last callback call to be delivered before replying, so a page never sees a token or progress event
 * after the request's promise has settled. Proxies are released when their request ends.
 */
import * as Comlink from 'comlink';
import type { EngineHost, RequestRef, StatsListener, WireGenerateOptions, WirePrefillOptions } from './host.ts';
import { openEngineHost } from './open.ts';
import type { GeneratedToken, LoadProgress, ModelInput, PrefillProgress, TttInfo, TttStats, CreateEngineOptions } from './types.ts';
import { installErrorTransfer } from './wire-errors.ts';
import { EngineDestroyedError } from '../engine/errors.ts';

installErrorTransfer();

/** createEngine's options that cross to the worker (callbacks travel as their own arguments). */
export type WorkerInitOptions = Pick<CreateEngineOptions, 'weights' | 'maxContext' | 'statsEvery' | 'cache' | 'learnWhileReading' | 'learn' | 'logprobs' | 'lossAfterStep' | 'kernels'>;

type RemoteFn<T> = ((v: T) => unknown) & Partial<Record<typeof Comlink.releaseProxy, () => void>>;

/** A proxied callback whose calls are fire-and-forget, with a way to wait until all have been delivered. */
function tracked<T>(remote: RemoteFn<T> | undefined): { fn: ((v: T) => void) | undefined; settle: () => Promise<void> } {
  if (!remote) return { fn: undefined, settle: async () => undefined };
  let last: Promise<unknown> = Promise.resolve();
  return {
    fn: (v: T) => {
      last = Promise.resolve(remote(v)).catch(() => undefined);
    },
    settle: async () => {
      await last;
      remote[Comlink.releaseProxy]?.();
    },
  };
}

async function withCallback<T, R>(remote: RemoteFn<T> | undefined, run: (fn: ((v: T) => void) | undefined) => Promise<R>): Promise<R> {
  const cb = tracked(remote);
  try {
    return await run(cb.fn);
  } finally {
    await cb.settle();
  }
}

/**
 * A fault the page cannot see on its own (a Worker's `error` event carries uncaught errors only), posted
 * beside comlink's messages, which carry an `id` this one has not (comlink ignores it).
 */
export interface WorkerFaultMessage {
  readonly 'ttt-web:worker-fault': { readonly kind: 'unhandledrejection' | 'messageerror'; readonly message: string };
}

function faultText(reason: unknown): string {
  if (reason instanceof Error) return `${reason.name}: ${reason.message}`;
  try {
    return String(reason);
  } catch {
    return 'an unprintable value';
  }
}

function reportFault(fault: WorkerFaultMessage['ttt-web:worker-fault']): void {
  const message: WorkerFaultMessage = { 'ttt-web:worker-fault': fault };
  try {
    (self as unknown as { postMessage(m: unknown): void }).postMessage(message);
  } catch {
    // Nothing left to tell the page with.
  }
}

// A rejection nobody handled, or a message from the page this worker could not read (a call whose reply
// would never come), leaves the engine in an unknown state: the page ends the engine (WorkerCrashedError).
if (typeof self !== 'undefined' && typeof self.addEventListener === 'function') {
  self.addEventListener('unhandledrejection', (ev) => reportFault({ kind: 'unhandledrejection', message: `an unhandled rejection in the engine worker: ${faultText(ev.reason)}` }));
  self.addEventListener('messageerror', () => reportFault({ kind: 'messageerror', message: 'the engine worker could not read a message from the page' }));
}

let host: EngineHost | null = null;
let opening: Promise<TttInfo> | null = null;
let statsRemote: RemoteFn<TttStats> | null = null;

function engine(): EngineHost {
  if (!host) throw new EngineDestroyedError('the worker has no engine (init() failed or was not called)');
  return host;
}

const api = {
  /**
   * Holds the Web Lock `name` for as long as this worker lives, so the page learns that the worker ended
   * however it ended (terminate(), close(), the browser killing it): the page's request for the same lock
   * is granted then. Resolves once the lock is held; false where there are no Web Locks.
   */
  hold(name: string): Promise<boolean> {
    const locks = (self.navigator as { locks?: LockManager } | undefined)?.locks;
    if (!locks) return Promise.resolve(false);
    return new Promise<boolean>((held) => {
      locks
        .request(name, { mode: 'exclusive', ifAvailable: true }, (lock) => {
          held(lock !== null);
          // Never released: the lock goes when this worker does.
          return lock ? new Promise<never>(() => undefined) : undefined;
        })
        .catch(() => held(false));
    });
  },
  init(model: ModelInput, opts: WorkerInitOptions, onProgress?: RemoteFn<LoadProgress>): Promise<TttInfo> {
    opening ??= withCallback(onProgress, async (fn) => {
      host = await openEngineHost(model, { ...opts, onProgress: fn, inWorker: true });
      return host.info;
    });
    return opening;
  },
  prefill(input: string | readonly number[], req: RequestRef, onProgress?: RemoteFn<PrefillProgress>, opts?: WirePrefillOptions) {
    return withCallback(onProgress, (fn) => engine().prefill(input, req, fn, opts));
  },
  generate(prompt: string | readonly number[], opts: WireGenerateOptions, req: RequestRef, onToken: RemoteFn<GeneratedToken>) {
    return withCallback(onToken, (fn) => engine().generate(prompt, opts, req, fn!));
  },
  abort: (id: number, reason?: string) => engine().abort(id, reason),
  stats: () => engine().stats(),
  async setStatsListener(listener: RemoteFn<TttStats> | null): Promise<void> {
    statsRemote?.[Comlink.releaseProxy]?.();
    statsRemote = listener;
    const forward: StatsListener | null = listener && ((s) => void Promise.resolve(listener(s)).catch(() => undefined));
    await engine().setStatsListener(forward);
  },
  async saveMemory(): Promise<Uint8Array> {
    const blob = await engine().saveMemory();
    // The blob is the worker's to give away: move it instead of copying.
    return Comlink.transfer(blob, [blob.buffer]);
  },
  loadMemory: (blob: Uint8Array) => engine().loadMemory(blob),
  reset: () => engine().reset(),
  encode: (text: string) => engine().encode(text),
  decode: (ids: readonly number[]) => engine().decode(ids),
  async dispose(): Promise<void> {
    statsRemote?.[Comlink.releaseProxy]?.();
    statsRemote = null;
    await host?.dispose();
  },
};

export type WorkerApi = typeof api;

Comlink.expose(api);
