/**
 * ttt-web's public entry point: `createEngine` and the types and errors a caller needs.
 *
 *   const engine = await createEngine({ model: 'models/tiny-random-lact/' });
 *   for await (const t of engine.generate('Once upon a time', { maxTokens: 64 })) out.textContent += t.text;
 *
 * See docs/api.md.
 */
import { TttEngineClient } from './client.ts';
import type { CreateEngineOptions, InProcessOptions, TttEngine } from './types.ts';

export type * from './types.ts';
// The error classes: one list, shared with the worker's error transfer (wire-errors.ts).
export * from './error-classes.ts';
export { MODEL_CACHE_NAME } from '../model/cache-name.ts';

// The cache helpers load their module (and the model-stream code it shares) on first use, so importing
// the entry point stays small for pages that only start an engine in its worker.

/**
 * Removes cached model files: all of them, or those under a URL prefix (one model's folder). Returns how
 * many files were removed (0 where there is no Cache Storage).
 */
export async function clearModelCache(prefix?: string, cacheName?: string): Promise<number> {
  const cache = await import('../model/cache.ts');
  return cache.clearModelCache(prefix, cacheName);
}

/** Bytes the cached model files take (their stored body sizes). */
export async function cachedModelBytes(cacheName?: string): Promise<number> {
  const cache = await import('../model/cache.ts');
  return cache.cachedModelBytes(cacheName);
}

/** Whether this is a page that can start a module worker (the default place for the engine). */
function workerByDefault(): boolean {
  return typeof Worker !== 'undefined' && typeof document !== 'undefined';
}

/**
 * Loads a model and returns an engine for it: in a Web Worker by default in browsers, in this thread
 * otherwise (`worker: false`, or Node). In-process callers may also pass a device, adapter, GPU entry
 * point or any ModelSource (`InProcessOptions`).
 */
export async function createEngine(opts: CreateEngineOptions & InProcessOptions): Promise<TttEngine> {
  if (!opts || typeof opts !== 'object') throw new TypeError('createEngine needs an options object with a model');
  const inProcessOnly = opts.source || opts.gpu || opts.adapter || opts.device;
  const useWorker = opts.worker ?? (workerByDefault() && !inProcessOnly);
  if (useWorker) {
    if (inProcessOnly) throw new TypeError('source, gpu, adapter and device cannot cross into a worker: pass worker: false with them');
    const { createWorkerEngine } = await import('./worker-client.ts');
    return createWorkerEngine(opts);
  }
  if (opts.model === undefined && !opts.source) throw new TypeError('createEngine needs a model (URL prefix, File[] or directory handle)');
  // Loaded on demand: a page that runs the engine in a worker never downloads the engine's code itself.
  const { openEngineHost } = await import('./open.ts');
  const host = await openEngineHost(opts.source ?? opts.model, opts);
  return new TttEngineClient(host, host.info);
}
