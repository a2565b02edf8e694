/**
 * Opens an engine where it will run (inside the worker, or in process): WebGPU first (so a browser
 * without it fails before any download), then the model stream's config, tokenizer and safetensors
 * header (to size the device request, and so a wrong model fails before its weights download), then
 * the weights, streamed tensor by tensor into GPU buffers (never whole in JS memory).
 */
import { deviceNeeds, Engine } from '../engine/engine.ts';
import { formatBytes, type MemoryPlan } from '../engine/memory-plan.ts';
import { MEMORY_CATEGORIES, type MemoryCategory } from '../gpu/allocator.ts';
import { GpuContext } from '../gpu/context.ts';
import { HOW_TO_GET_WEBGPU, requestEngineDevice, WebGpuUnavailableError } from '../gpu/device.ts';
import { CachedUrlSource } from '../model/cache.ts';
import { MemorySource, UrlSource, type ModelSource } from '../model/source.ts';
import { openModelStream, type LoadProgress as StreamProgress } from '../model/stream.ts';
import { attentionWindow } from '../model/model-config.ts';
import { EngineHost } from './host.ts';
import type { CreateEngineOptions, InProcessOptions, LoadProgress, ModelInput, TttInfo } from './types.ts';

/** createEngine's options as they reach the side that opens the engine. */
export interface OpenOptions extends InProcessOptions, Pick<CreateEngineOptions, 'weights' | 'maxContext' | 'statsEvery' | 'cache' | 'onProgress' | 'learnWhileReading' | 'learn' | 'logprobs' | 'lossAfterStep' | 'kernels'> {
  /** Recorded in `info.worker`. */
  readonly inWorker?: boolean;
}

/** `navigator.gpu` or the given entry point; WebGpuUnavailableError saying what to do when there is none. */
export async function requestAdapter(gpu: GPU | undefined, where: string): Promise<GPUAdapter> {
  const entry = gpu ?? (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (!entry) throw new WebGpuUnavailableError(`WebGPU is not available in this ${where} (navigator.gpu is missing). ${HOW_TO_GET_WEBGPU}`);
  let adapter: GPUAdapter | null;
  try {
    adapter = await entry.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    throw new WebGpuUnavailableError(`requesting a WebGPU adapter failed: ${(e as Error).message}. ${HOW_TO_GET_WEBGPU}`);
  }
  if (!adapter) {
    throw new WebGpuUnavailableError(
      `WebGPU is present but offers no adapter (the GPU or its driver is blocklisted, or there is no GPU driver). ` +
        `Update the GPU driver, check chrome://gpu, or enable a software adapter. ${HOW_TO_GET_WEBGPU}`,
    );
  }
  return adapter;
}

function describeAdapter(info: GPUAdapterInfo | undefined): string {
  if (!info) return 'unknown adapter';
  const parts = [info.vendor, info.architecture, info.device, info.description].filter((s) => s && s.length > 0);
  return [...new Set(parts)].join(' ') || 'unknown adapter';
}

function isDirectoryHandle(m: unknown): m is FileSystemDirectoryHandle {
  return typeof m === 'object' && m !== null && (m as { kind?: unknown }).kind === 'directory' && typeof (m as { getFileHandle?: unknown }).getFileHandle === 'function';
}

/** The files directly in a picked directory (a model is a flat folder). */
async function directoryFiles(dir: FileSystemDirectoryHandle): Promise<Map<string, File>> {
  const files = new Map<string, File>();
  const entries = (dir as unknown as { values(): AsyncIterable<FileSystemHandle> }).values();
  for await (const h of entries) {
    if (h.kind === 'file') files.set(h.name, await (h as FileSystemFileHandle).getFile());
  }
  return files;
}

/** A model input as a source. A URL prefix must already be absolute here when running in a worker. */
async function modelSource(model: ModelInput | ModelSource, cache = true, onCacheWarning?: (message: string) => void): Promise<ModelSource> {
  if (typeof model === 'string') return cache ? new CachedUrlSource(model, { onCacheWarning }) : new UrlSource(model);
  if (Array.isArray(model)) return new MemorySource(model as File[]);
  if (isDirectoryHandle(model)) return new MemorySource(await directoryFiles(model), model.name);
  const s = model as ModelSource;
  if (typeof s.readBytes === 'function' && typeof s.locate === 'function') return s;
  throw new TypeError('model must be a URL prefix, an array of Files, or a FileSystemDirectoryHandle');
}

/** "The engine needs 7.4 MB of GPU memory: weights 6.1 MB, KV cache 0.8 MB, …" (categories that hold anything). */
function describePlan(plan: MemoryPlan): string {
  const names: Record<MemoryCategory, string> = { weights: 'weights', kv: 'KV cache', fastWeights: 'fast weights', momentum: 'momentum', pending: 'pending chunk', innerStep: 'inner step', activations: 'activations', scratch: 'scratch' };
  const parts = MEMORY_CATEGORIES.filter((c) => plan.bytes[c] > 0).map((c) => `${names[c]} ${formatBytes(plan.bytes[c])}`);
  return `the engine needs ${formatBytes(plan.bytes.total)} of GPU memory: ${parts.join(', ')}`;
}

/** The stream's progress in the API's terms, at most every 100 ms while bytes arrive. */
function streamProgress(emit: (stage: LoadProgress['stage'], message: string, loaded?: number, total?: number) => void, needs: () => string): (p: StreamProgress) => void {
  let last = 0;
  return (p) => {
    if (p.phase === 'config') return;
    if (p.phase === 'done') return emit('engine', 'weights uploaded; building the engine');
    const now = Date.now();
    const end = p.bytesTotal !== null && p.bytesLoaded >= p.bytesTotal;
    if (now - last < 100 && !end && p.bytesLoaded > 0) return;
    last = now;
    const mb = (b: number) => (b / 1048576).toFixed(1);
    const of = p.bytesTotal === null ? '' : ` of ${mb(p.bytesTotal)}`;
    emit('weights', `${p.fromCache ? 'reading' : 'downloading'} ${p.file}${p.fromCache ? ' from the cache' : ''}: ${mb(p.bytesLoaded)}${of} MiB, ${p.tensorsLoaded}/${p.tensorsTotal ?? '?'} tensors on the GPU${needs()}`, p.bytesLoaded, p.bytesTotal ?? undefined);
  };
}

export async function openEngineHost(model: ModelInput | ModelSource, opts: OpenOptions = {}): Promise<EngineHost> {
  const progress = (stage: LoadProgress['stage'], message: string, loaded?: number, total?: number, plan?: MemoryPlan) => {
    try {
      const event: LoadProgress = { stage, message, loaded: loaded ?? null, total: total ?? null, ...(plan ? { memoryPlan: plan.bytes } : {}) };
      const r = opts.onProgress?.(event) as unknown;
      if (r instanceof Promise) r.catch(() => undefined);
    } catch {
      // A progress listener must not break loading.
    }
  };
  if (opts.weights !== undefined && opts.weights !== 'f16' && opts.weights !== 'f32') throw new RangeError(`weights must be 'f16' or 'f32', got ${String(opts.weights)}`);
  if (opts.maxContext !== undefined && (!Number.isInteger(opts.maxContext) || opts.maxContext < 1)) throw new RangeError(`maxContext must be a positive integer, got ${opts.maxContext}`);
  if (opts.kernels !== undefined && opts.kernels !== 'auto' && opts.kernels !== 'cpu' && opts.kernels !== 'gpu') throw new RangeError(`kernels must be 'auto', 'cpu' or 'gpu', got ${String(opts.kernels)}`);
  const where = opts.inWorker ? 'worker' : typeof document !== 'undefined' ? 'page' : 'process';

  progress('webgpu', 'requesting a WebGPU adapter');
  let adapter: GPUAdapter | null = null;
  if (!opts.device) adapter = opts.adapter ?? (await requestAdapter(opts.gpu, where));
  const cacheWarning = (message: string): void => {
    console.warn(`ttt-web: ${message}`);
    progress('cache', message);
  };
  const source = opts.source ?? (await modelSource(model, opts.cache ?? true, cacheWarning));
  progress('config', `reading ${source.locate('config.json')}, the tokenizer and the weights' header`);
  let needs = '';
  const stream = await openModelStream(source, { onProgress: streamProgress(progress, () => needs) });

  const engineOpts = { weights: opts.weights ?? 'f16', maxContext: opts.maxContext, learnWhileReading: opts.learnWhileReading, learn: opts.learn, logprobs: opts.logprobs ?? true, lossAfterStep: opts.lossAfterStep };
  const owned = !opts.device;
  let device: GPUDevice | null = opts.device ?? null;
  try {
    // Every buffer the config implies, against the limits of the device (or the best the adapter can
    // give) before any weight is read: a config too large fails here, by name (DeviceLimitError).
    const caps = device ? { maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize, maxBufferSize: device.limits.maxBufferSize, shaderF16: device.features.has('shader-f16'), timestampQuery: device.features.has('timestamp-query') }
      : { maxStorageBufferBindingSize: adapter!.limits.maxStorageBufferBindingSize, maxBufferSize: adapter!.limits.maxBufferSize, shaderF16: adapter!.features.has('shader-f16'), timestampQuery: adapter!.features.has('timestamp-query') };
    const plan = Engine.plan(stream.config, engineOpts, caps);
    needs = ` (the engine needs ${formatBytes(plan.bytes.total)} of GPU memory)`;
    progress('plan', describePlan(plan), undefined, undefined, plan);
    device ??= await requestEngineDevice(adapter!, deviceNeeds(stream.config, engineOpts, adapter!.limits.maxStorageBufferBindingSize));
    const adapterInfo = adapter?.info ?? (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
    const ctx = new GpuContext(device, { adapterInfo, kernels: opts.kernels });
    const engine = await Engine.fromStream(ctx, stream, engineOpts);
    const tokenizer = stream.tokenizer;
    const info: TttInfo = {
      mode: engine.info.mode,
      weights: engine.info.weights,
      subgroups: engine.info.subgroups,
      kernels: engine.info.kernels,
      adapter: describeAdapter(adapterInfo),
      modelId: engine.modelId,
      vocabSize: engine.config.vocabSize,
      tokenizer: tokenizer.kind,
      bosId: tokenizer.bosId,
      eosId: tokenizer.eosId,
      capacity: engine.info.capacity,
      window: attentionWindow(engine.config),
      logprobs: engine.info.logprobs,
      worker: opts.inWorker ?? false,
    };
    const dev = device;
    const host = new EngineHost(engine, tokenizer, info, { statsEvery: opts.statsEvery, onDispose: owned ? () => dev.destroy() : undefined });
    void dev.lost.then((l) => {
      // Our own destroy() (dispose) also resolves `lost`; a borrowed device destroyed by its owner does not go through dispose.
      if (l.reason !== 'destroyed' || !owned) host.deviceLost(l.message || l.reason);
    });
    progress('ready', `ready: ${info.mode}, ${info.weights} weights on ${info.adapter}`);
    return host;
  } catch (e) {
    // Stops a download still under way (a device refused before any tensor was read).
    await stream.cancel(e).catch(() => undefined);
    if (owned) device?.destroy();
    throw e;
  }
}
