/**
 * Model files kept in the browser's Cache Storage, so that a second visit loads the model without the
 * network. The cache is keyed by the files' URLs and holds the responses as the server sent them.
 *
 * Caching never decides whether a load succeeds: where Cache Storage is missing (outside a secure
 * context, in Node, in some private modes) or a write fails (a full quota: QuotaExceededError), the model
 * loads from the network as if there were no cache, and `onCacheWarning` says so.
 *
 * A download is written to the cache while it streams to the loader (never buffered whole), at the pace
 * of the slower of the two, and only a complete download is kept: an aborted or failed load leaves
 * nothing behind (Cache.put commits only after reading the whole body; a load that proves the bytes bad
 * deletes what was committed).
 */
import { ModelFetchError } from './errors.ts';
import { UrlSource } from './source.ts';
import { announcedSize, checkPlainFileName, fetchModelFile, type ByteStreamSource, type OpenedStream } from './stream.ts';

import { MODEL_CACHE_NAME } from './cache-name.ts';

export { MODEL_CACHE_NAME };

/** Bytes the cache writer may fall behind the loader before the download waits for it. */
const DEFAULT_CACHE_QUEUE_BYTES = 4 << 20;

export interface CachedUrlSourceOptions {
  fetch?: typeof fetch;
  init?: RequestInit;
  /** Told when the cache cannot be used or written; the load itself goes on. Default: console.warn. */
  onCacheWarning?: (message: string) => void;
  /** Default MODEL_CACHE_NAME. */
  cacheName?: string;
  /** How far (bytes) the cache writer may fall behind the loader; default DEFAULT_CACHE_QUEUE_BYTES. */
  cacheQueueBytes?: number;
}

/** The global CacheStorage, or why there is none. */
function cacheStorage(): CacheStorage | string {
  const g = globalThis as { caches?: CacheStorage; isSecureContext?: boolean };
  if (g.caches !== undefined && g.caches !== null) return g.caches;
  if (g.isSecureContext === false) return 'this page is not a secure context (https or localhost)';
  return 'this environment has no Cache Storage';
}

function describeError(e: unknown): string {
  const name = (e as { name?: string })?.name;
  const message = (e as { message?: string })?.message ?? String(e);
  if (name === 'QuotaExceededError') return `the storage quota is full (QuotaExceededError: ${message})`;
  return name && !message.startsWith(name) ? `${name}: ${message}` : message;
}

/**
 * Splits a download into the loader's stream and the cache writer's stream without letting either run
 * ahead unboundedly: the loader's reads drive the download, and wait while the cache writer is more than
 * `queueBytes` behind. (ReadableStream.tee would queue everything the slower branch has not read, and
 * keep downloading for the cache after the loader cancels.) When the cache writer gives up, the loader
 * goes on alone; when the loader cancels, the download stops and the cache write fails (nothing is kept).
 */
function teeForCache(source: ReadableStream<Uint8Array>, queueBytes: number, onLoaderCancel: () => void) {
  const reader = source.getReader();
  let cacheCtl!: ReadableStreamDefaultController<Uint8Array>;
  let cacheOpen = true;
  let wake: (() => void) | null = null;
  const wakeUp = (): void => {
    const w = wake;
    wake = null;
    w?.();
  };
  const endCache = (error?: unknown): void => {
    if (!cacheOpen) return;
    cacheOpen = false;
    try {
      if (error === undefined) cacheCtl.close();
      else cacheCtl.error(error);
    } catch {
      // Already closed or errored by the writer's side.
    }
    wakeUp();
  };
  const toCache = new ReadableStream<Uint8Array>(
    {
      start(c) {
        cacheCtl = c;
      },
      pull: wakeUp,
      cancel() {
        cacheOpen = false;
        wakeUp();
      },
    },
    { highWaterMark: queueBytes, size: (chunk) => chunk.byteLength },
  );
  const toLoader = new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        while (cacheOpen && (cacheCtl.desiredSize ?? 1) <= 0) await new Promise<void>((r) => (wake = r));
        let r: ReadableStreamReadResult<Uint8Array>;
        try {
          r = await reader.read();
        } catch (e) {
          endCache(e);
          throw e;
        }
        if (r.done) {
          endCache();
          c.close();
          return;
        }
        c.enqueue(r.value);
        if (cacheOpen) cacheCtl.enqueue(r.value);
      },
      cancel(reason) {
        onLoaderCancel();
        endCache(reason ?? new DOMException('The download was cancelled', 'AbortError'));
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
  return { toLoader, toCache, abandon: endCache };
}

/**
 * Files under a URL prefix (like UrlSource), read from Cache Storage when there and stored there when
 * fetched. Implements ByteStreamSource, so `openModelStream` streams the weights from either.
 */
export class CachedUrlSource implements ByteStreamSource {
  readonly name: string;
  private readonly url: UrlSource;
  private readonly fetchFn: typeof fetch;
  private readonly init: RequestInit | undefined;
  private readonly cacheName: string;
  private readonly queueBytes: number;
  private readonly warn: (message: string) => void;
  private cachePromise: Promise<Cache | null> | null = null;
  private readonly writes = new Set<Promise<void>>();

  constructor(prefix: string, options: CachedUrlSourceOptions = {}) {
    this.url = new UrlSource(prefix, { ...(options.fetch ? { fetch: options.fetch } : {}), ...(options.init ? { init: options.init } : {}) });
    this.name = this.url.name;
    this.fetchFn = options.fetch ?? ((input, init) => fetch(input, init));
    this.init = options.init;
    this.cacheName = options.cacheName ?? MODEL_CACHE_NAME;
    this.queueBytes = options.cacheQueueBytes ?? DEFAULT_CACHE_QUEUE_BYTES;
    this.warn = options.onCacheWarning ?? ((m) => console.warn(`ttt-web: ${m}`));
  }

  locate(file: string): string {
    return this.url.locate(file);
  }

  /** The cache, or null (once warned) when Cache Storage cannot be used here. */
  private cache(): Promise<Cache | null> {
    this.cachePromise ??= (async () => {
      const storage = cacheStorage();
      if (typeof storage === 'string') {
        this.warn(`Cache Storage unavailable (${storage}): loading without the cache`);
        return null;
      }
      try {
        return await storage.open(this.cacheName);
      } catch (e) {
        // Some private modes and sandboxed frames expose `caches` but refuse to open one (SecurityError).
        this.warn(`Cache Storage unavailable (${describeError(e)}): loading without the cache`);
        return null;
      }
    })();
    return this.cachePromise;
  }

  private async lookup(cache: Cache, url: string): Promise<Response | undefined> {
    try {
      return await cache.match(url);
    } catch (e) {
      this.warn(`could not read the cache (${describeError(e)}): loading from the network`);
      return undefined;
    }
  }

  /** Resolves when every cache write started so far has finished (stored, or given up and reported). */
  async idle(): Promise<void> {
    while (this.writes.size > 0) await Promise.all([...this.writes]);
  }

  async exists(file: string): Promise<boolean> {
    checkPlainFileName(file, this.name);
    const cache = await this.cache();
    if (cache && (await this.lookup(cache, this.locate(file)))) return true;
    return this.url.exists(file);
  }

  async openStream(file: string, options: { signal?: AbortSignal } = {}): Promise<OpenedStream> {
    checkPlainFileName(file, this.name);
    const url = this.locate(file);
    const cache = await this.cache();
    options.signal?.throwIfAborted();
    if (cache) {
      const hit = await this.lookup(cache, url);
      if (hit?.ok && hit.body) {
        return {
          stream: hit.body,
          size: announcedSize(hit),
          fromCache: true,
          discard: () => void cache.delete(url).catch(() => {}),
        };
      }
    }

    const res = await fetchModelFile(this.fetchFn, url, file, this.init, options.signal);
    const size = announcedSize(res);
    // A partial response (206) cannot be stored, and a body-less one has nothing to keep.
    if (!cache || res.status !== 200 || !res.body) {
      return { stream: res.body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() }), size, fromCache: false };
    }

    let discarded = false;
    // A load that stops reading (abort, early exit, bad data) makes the write fail: not worth a warning.
    let cancelled = false;
    const { toLoader, toCache, abandon } = teeForCache(res.body, this.queueBytes, () => (cancelled = true));
    const headers = new Headers(res.headers);
    if (size === null) {
      // The stored body is the decoded one: a compressed response's encoding and length no longer apply.
      headers.delete('content-encoding');
      headers.delete('content-length');
    }
    const write = (async () => {
      try {
        await cache.put(url, new Response(toCache, { status: res.status, statusText: res.statusText, headers }));
        if (discarded) await cache.delete(url);
      } catch (e) {
        abandon(e);
        // Whatever a failed put may have left (a spec-conforming cache keeps nothing; be sure).
        await cache.delete(url).catch(() => {});
        if (!discarded && !cancelled) this.warn(`could not store "${file}" in the cache (${describeError(e)}): loaded from the network without the cache`);
      }
    })();
    this.writes.add(write);
    void write.finally(() => this.writes.delete(write));

    return {
      stream: toLoader,
      size,
      fromCache: false,
      discard: (reason) => {
        discarded = true;
        abandon(reason);
        void write.then(() => cache.delete(url)).catch(() => {});
      },
    };
  }

  async readBytes(file: string): Promise<Uint8Array> {
    const { stream } = await this.openStream(file);
    try {
      return new Uint8Array(await new Response(stream).arrayBuffer());
    } catch (e) {
      throw new ModelFetchError(`download of "${file}" failed: ${(e as Error).message}`, this.locate(file));
    }
  }

  async readText(file: string): Promise<string> {
    return new TextDecoder('utf-8').decode(await this.readBytes(file));
  }
}

async function openIfExists(cacheName: string): Promise<Cache | null> {
  const storage = cacheStorage();
  if (typeof storage === 'string') return null;
  if (!(await storage.has(cacheName))) return null;
  return storage.open(cacheName);
}

/**
 * Removes cached model files: all of them, or those under `prefix` (a URL prefix as given to
 * CachedUrlSource, e.g. one model's folder). Returns how many files were removed (0 where there is no
 * Cache Storage).
 */
export async function clearModelCache(prefix?: string, cacheName: string = MODEL_CACHE_NAME): Promise<number> {
  const cache = await openIfExists(cacheName);
  if (!cache) return 0;
  const keys = await cache.keys();
  if (prefix === undefined) {
    const storage = cacheStorage() as CacheStorage;
    await storage.delete(cacheName);
    return keys.length;
  }
  const under = new UrlSource(prefix).name;
  let removed = 0;
  for (const k of keys) {
    if (k.url.startsWith(under) && (await cache.delete(k))) removed++;
  }
  return removed;
}

/** Bytes the cached model files take (their stored body sizes). */
export async function cachedModelBytes(cacheName: string = MODEL_CACHE_NAME): Promise<number> {
  const cache = await openIfExists(cacheName);
  if (!cache) return 0;
  let total = 0;
  for (const k of await cache.keys()) {
    const res = await cache.match(k);
    if (!res) continue;
    const size = announcedSize(res);
    if (size !== null) {
      await res.body?.cancel().catch(() => {});
      total += size;
    } else {
      // A Blob of a cached body is disk-backed in browsers: its size does not read the bytes into memory.
      total += (await res.blob()).size;
    }
  }
  return total;
}
