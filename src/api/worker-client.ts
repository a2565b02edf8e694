/**
 * Starts the engine worker and wraps it as a TttEngine. Imported dynamically by `createEngine`, so code
 * that never asks for a worker (Node, tests) never evaluates `new Worker(...)`.
 */
import * as Comlink from 'comlink';
import { HOW_TO_GET_WEBGPU, WebGpuUnavailableError } from '../gpu/device.ts';
// Inlined into the library build (a Blob URL made from the bundled worker code), so a consumer's bundler
// or a plain <script type="module"> needs no worker file, loader or configuration; the dev server serves
// it as an ordinary module worker.
import EngineWorker from './worker.ts?worker&inline';
import type { WorkerApi } from './worker.ts';
import { TttEngineClient, type CallbackWrapper } from './client.ts';
import type { EngineBackend } from './host.ts';
import type { CreateEngineOptions, TttEngine } from './types.ts';
import { installErrorTransfer } from './wire-errors.ts';

export async function createWorkerEngine(opts: CreateEngineOptions): Promise<TttEngine> {
  installErrorTransfer();
  if (typeof Worker === 'undefined') throw new WebGpuUnavailableError('this environment has no Web Workers: create the engine with { worker: false }');
  // Checked on the page too, so a browser without WebGPU fails before a worker (and its code) starts.
  if (!(globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu) {
    throw new WebGpuUnavailableError(`WebGPU is not available in this page (navigator.gpu is missing). ${HOW_TO_GET_WEBGPU}`);
  }
  const worker = new EngineWorker({ name: 'ttt-web engine' });
  // A worker that fails to load or crashes reports only through this event; without it init would hang.
  let failed: (e: Error) => void = () => undefined;
  const crashed = new Promise<never>((_, reject) => (failed = reject));
  crashed.catch(() => undefined);
  worker.addEventListener('error', (ev) => failed(new Error(`the engine worker failed: ${ev.message || 'it could not be loaded (see the console)'}`)));
  const remote = Comlink.wrap<WorkerApi>(worker);
  // A relative URL would resolve against the worker script's location, not the page's.
  const model = typeof opts.model === 'string' ? new URL(opts.model, globalThis.location?.href).href : opts.model;
  const wrap: CallbackWrapper = (f) => Comlink.proxy(f);
  try {
    const info = await Promise.race([
      remote.init(model, { weights: opts.weights, maxContext: opts.maxContext, statsEvery: opts.statsEvery, cache: opts.cache }, opts.onProgress && wrap(opts.onProgress)),
      crashed,
    ]);
    // The Remote's methods take comlink proxies where the backend takes callbacks; `wrap` supplies them.
    const backend = remote as unknown as EngineBackend;
    return new TttEngineClient(backend, info, wrap, () => {
      remote[Comlink.releaseProxy]();
      worker.terminate();
    });
  } catch (e) {
    worker.terminate();
    throw e;
  }
}
