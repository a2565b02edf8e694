/**
 * Starts the engine worker and wraps it as a TttEngine. Imported dynamically by `createEngine`, so code
 * that never asks for a worker (Node, tests) never evaluates `new Worker(...)`.
 *
 * The worker is watched for as long as the engine lives: a worker that ends (terminated by anything but
 * `dispose()`, closed, killed by the browser; seen through a Web Lock the worker holds for its lifetime),
 * that throws an uncaught error (its `error` event), that reports an unhandled rejection or an unreadable
 * message (a fault message, worker.ts), or whose messages the page cannot read (`messageerror`) ends the
 * engine: every pending and later call rejects with WorkerCrashedError, and the worker is terminated.
 */
import * as Comlink from 'comlink';
import { HOW_TO_GET_WEBGPU, WebGpuUnavailableError } from '../gpu/device.ts';
// Inlined into the library build (a Blob URL made from the bundled worker code), so a consumer's bundler
// or a plain <script type="module"> needs no worker file, loader or configuration; the dev server serves
// it as an ordinary module worker.
import EngineWorker from './worker.ts?worker&inline';
import type { WorkerApi, WorkerFaultMessage } from './worker.ts';
import { TttEngineClient, type CallbackWrapper } from './client.ts';
import { WorkerCrashedError } from './error-classes.ts';
import type { EngineBackend } from './host.ts';
import type { CreateEngineOptions, TttEngine } from './types.ts';
import { installErrorTransfer } from './wire-errors.ts';

/** Watches one worker for its death; `died` resolves with the error to give every caller. */
interface WorkerWatch {
  readonly died: Promise<WorkerCrashedError>;
  /** The worker answered its first call: it runs (an error before that is a worker that could not start). */
  started(): void;
  /** Starts watching the worker's lifetime lock once the worker holds it (see worker.ts `hold`). */
  watchLock(name: string): void;
  /** Stops watching (dispose, or a failed start): the worker is about to be terminated on purpose. */
  stop(): void;
}

function lockName(): string {
  const id = typeof crypto !== 'undefined' && typeof crypto.randomUUID === 'function' ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`;
  return `ttt-web engine worker ${id}`;
}

function watchWorker(worker: Worker): WorkerWatch {
  let stopped = false;
  let running = false;
  let report: (e: WorkerCrashedError) => void = () => undefined;
  const died = new Promise<WorkerCrashedError>((resolve) => (report = resolve));
  const lockWatch = typeof AbortController !== 'undefined' ? new AbortController() : null;
  const die = (why: string) => {
    if (stopped) return;
    stop();
    report(new WorkerCrashedError(why));
  };
  const onError = (ev: ErrorEvent) => {
    const where = ev.filename ? ` (${ev.filename}${ev.lineno ? `:${ev.lineno}` : ''})` : '';
    if (ev.message) die(`an uncaught error in the engine worker: ${ev.message}${where}`);
    else if (!running) die("the engine worker could not be started: its script did not load, or the page's Content-Security-Policy does not allow it (the worker runs from a blob: URL: worker-src needs blob:); see the console");
    else die('the engine worker failed (see the console)');
  };
  const onMessageError = () => die('the page could not read a message from the engine worker (messageerror)');
  const onMessage = (ev: MessageEvent) => {
    const fault = (ev.data as Partial<WorkerFaultMessage> | null | undefined)?.['ttt-web:worker-fault'];
    if (fault && typeof fault === 'object') die(String(fault.message));
  };
  worker.addEventListener('error', onError);
  worker.addEventListener('messageerror', onMessageError);
  worker.addEventListener('message', onMessage);
  function stop(): void {
    if (stopped) return;
    stopped = true;
    worker.removeEventListener('error', onError);
    worker.removeEventListener('messageerror', onMessageError);
    worker.removeEventListener('message', onMessage);
    lockWatch?.abort();
  }
  return {
    died,
    started: () => void (running = true),
    watchLock(name) {
      const locks = (globalThis.navigator as { locks?: LockManager } | undefined)?.locks;
      if (stopped || !locks || !lockWatch) return;
      // Granted only when the worker no longer holds it: the worker has ended.
      locks.request(name, { signal: lockWatch.signal }, () => die('the engine worker ended: it was terminated or closed by something other than dispose()')).catch(() => undefined);
    },
    stop,
  };
}

export async function createWorkerEngine(opts: CreateEngineOptions): Promise<TttEngine> {
  installErrorTransfer();
  if (typeof Worker === 'undefined') throw new WebGpuUnavailableError('this environment has no Web Workers: create the engine with { worker: false }');
  // Checked on the page too, so a browser without WebGPU fails before a worker (and its code) starts.
  if (!(globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu) {
    throw new WebGpuUnavailableError(`WebGPU is not available in this page (navigator.gpu is missing). ${HOW_TO_GET_WEBGPU}`);
  }
  const worker = new EngineWorker({ name: 'ttt-web engine' });
  // A worker that fails to load or crashes reports only through these; without them a call would hang.
  const watch = watchWorker(worker);
  const remote = Comlink.wrap<WorkerApi>(worker);
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    watch.stop();
    remote[Comlink.releaseProxy]();
    worker.terminate();
  };
  const lock = lockName();
  // The worker handles messages in order: it holds the lock before it starts loading the model.
  remote.hold(lock).then(
    (held) => {
      watch.started();
      if (held) watch.watchLock(lock);
    },
    () => undefined,
  );
  const crashed = watch.died.then((e) => Promise.reject(e));
  crashed.catch(() => undefined);
  // A relative URL would resolve against the worker script's location, not the page's.
  const model = typeof opts.model === 'string' ? new URL(opts.model, globalThis.location?.href).href : opts.model;
  const wrap: CallbackWrapper = (f) => Comlink.proxy(f);
  try {
    const info = await Promise.race([
      remote.init(model, { weights: opts.weights, maxContext: opts.maxContext, statsEvery: opts.statsEvery, cache: opts.cache, learnWhileReading: opts.learnWhileReading, learn: opts.learn, logprobs: opts.logprobs, lossAfterStep: opts.lossAfterStep, kernels: opts.kernels }, opts.onProgress && wrap(opts.onProgress)),
      crashed,
    ]);
    // The Remote's methods take comlink proxies where the backend takes callbacks; `wrap` supplies them.
    const backend = remote as unknown as EngineBackend;
    const client = new TttEngineClient(backend, info, wrap, end);
    void watch.died.then((e) => {
      client.fail(e);
      // The worker may still run (an uncaught error does not end it): its GPU memory goes with it.
      end();
    });
    return client;
  } catch (e) {
    end();
    throw e;
  }
}
