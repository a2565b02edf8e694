/**
 * An in-memory Cache Storage for Node tests (Node has none), following the Service Workers spec's
 * CacheStorage and Cache (https://w3c.github.io/ServiceWorker/#cache-interface) where the model cache
 * depends on it:
 *   - keys are GET requests by URL (fragment ignored); `put` refuses other methods, non-http(s) URLs,
 *     206 responses, `Vary: *` and used bodies with a TypeError;
 *   - `put` reads the whole body before committing; a body that errors (or a quota overrun) rejects and
 *     stores nothing; a later put for the same URL replaces the entry;
 *   - `match` answers a new Response each time, its body streamed in chunks as a browser streams from disk;
 *   - CacheStorage keeps caches by name, in creation order.
 * Not modelled: Vary matching beyond `*`, opaque responses, `add`/`addAll`'s request semantics.
 *
 * `quotaBytes` makes every write count against a shared quota; a put that would exceed it rejects with a
 * DOMException named QuotaExceededError, as browsers do.
 */

interface Entry {
  url: string;
  status: number;
  statusText: string;
  headers: [string, string][];
  body: Uint8Array;
}

const CHUNK = 64 * 1024;

function toRequest(input: RequestInfo | URL): Request {
  return input instanceof Request ? input : new Request(input);
}

function keyOf(url: string, ignoreSearch = false): string {
  const u = new URL(url);
  u.hash = '';
  if (ignoreSearch) u.search = '';
  return u.href;
}

function responseOf(e: Entry): Response {
  let pos = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (pos >= e.body.byteLength) {
        c.close();
        return;
      }
      c.enqueue(e.body.slice(pos, pos + CHUNK));
      pos += CHUNK;
    },
  });
  return new Response(e.status === 204 || e.status === 304 ? null : body, { status: e.status, statusText: e.statusText, headers: e.headers });
}

class Quota {
  used = 0;
  constructor(readonly limit: number) {}
}

export class MemoryCache implements Cache {
  private entries = new Map<string, Entry>();

  constructor(private readonly quota: Quota) {}

  get storedBytes(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.body.byteLength;
    return n;
  }

  async match(request: RequestInfo | URL, options?: CacheQueryOptions): Promise<Response | undefined> {
    return (await this.matchAll(request, options))[0];
  }

  async matchAll(request?: RequestInfo | URL, options: CacheQueryOptions = {}): Promise<readonly Response[]> {
    return this.find(request, options).map(responseOf);
  }

  private find(request: RequestInfo | URL | undefined, options: CacheQueryOptions): Entry[] {
    if (request === undefined) return [...this.entries.values()];
    const req = toRequest(request);
    if (req.method !== 'GET' && !options.ignoreMethod) return [];
    const want = keyOf(req.url, options.ignoreSearch);
    return [...this.entries.values()].filter((e) => keyOf(e.url, options.ignoreSearch) === want);
  }

  async add(request: RequestInfo | URL): Promise<void> {
    await this.addAll([request]);
  }

  async addAll(requests: Iterable<RequestInfo | URL>): Promise<void> {
    for (const r of requests) {
      const req = toRequest(r);
      const res = await fetch(req);
      if (!res.ok) throw new TypeError(`Cache.addAll: ${req.url} answered ${res.status}`);
      await this.put(req, res);
    }
  }

  async put(request: RequestInfo | URL, response: Response): Promise<void> {
    const req = toRequest(request);
    const scheme = new URL(req.url).protocol;
    if (scheme !== 'http:' && scheme !== 'https:') throw new TypeError(`Cache.put: ${scheme} URLs cannot be cached`);
    if (req.method !== 'GET') throw new TypeError('Cache.put: only GET requests can be cached');
    if (response.status === 206) throw new TypeError('Cache.put: a partial (206) response cannot be cached');
    if ((response.headers.get('vary') ?? '').split(',').some((v) => v.trim() === '*')) throw new TypeError('Cache.put: Vary: * cannot be cached');
    if (response.bodyUsed || response.body?.locked) throw new TypeError('Cache.put: the response body is already used');

    const key = keyOf(req.url);
    const previous = this.entries.get(key)?.body.byteLength ?? 0;
    const parts: Uint8Array[] = [];
    let size = 0;
    if (response.body) {
      const reader = response.body.getReader();
      for (;;) {
        const r = await reader.read();
        if (r.done) break;
        size += r.value.byteLength;
        if (this.quota.used - previous + size > this.quota.limit) {
          await reader.cancel('quota exceeded').catch(() => {});
          throw new DOMException(`The quota has been exceeded (${this.quota.limit} bytes).`, 'QuotaExceededError');
        }
        parts.push(r.value.slice());
      }
    }
    const body = new Uint8Array(size);
    let at = 0;
    for (const p of parts) {
      body.set(p, at);
      at += p.byteLength;
    }
    this.quota.used += size - previous;
    this.entries.set(key, { url: key, status: response.status, statusText: response.statusText, headers: [...response.headers], body });
  }

  async delete(request: RequestInfo | URL, options: CacheQueryOptions = {}): Promise<boolean> {
    const found = this.find(request, options);
    for (const e of found) {
      this.entries.delete(e.url);
      this.quota.used -= e.body.byteLength;
    }
    return found.length > 0;
  }

  async keys(request?: RequestInfo | URL, options: CacheQueryOptions = {}): Promise<readonly Request[]> {
    return this.find(request, options).map((e) => new Request(e.url));
  }

  /** Drops everything (for CacheStorage.delete): returns the bytes freed. */
  clear(): number {
    const n = this.storedBytes;
    this.entries.clear();
    return n;
  }
}

export class MemoryCacheStorage implements CacheStorage {
  private caches = new Map<string, MemoryCache>();
  private readonly quota: Quota;

  constructor(options: { quotaBytes?: number } = {}) {
    this.quota = new Quota(options.quotaBytes ?? Number.POSITIVE_INFINITY);
  }

  async open(name: string): Promise<MemoryCache> {
    let c = this.caches.get(name);
    if (!c) {
      c = new MemoryCache(this.quota);
      this.caches.set(name, c);
    }
    return c;
  }

  async has(name: string): Promise<boolean> {
    return this.caches.has(name);
  }

  async delete(name: string): Promise<boolean> {
    const c = this.caches.get(name);
    if (!c) return false;
    this.quota.used -= c.clear();
    this.caches.delete(name);
    return true;
  }

  async keys(): Promise<string[]> {
    return [...this.caches.keys()];
  }

  async match(request: RequestInfo | URL, options: MultiCacheQueryOptions = {}): Promise<Response | undefined> {
    if (options.cacheName !== undefined) return this.caches.get(options.cacheName)?.match(request, options);
    for (const c of this.caches.values()) {
      const r = await c.match(request, options);
      if (r) return r;
    }
    return undefined;
  }
}

/** Puts `storage` on globalThis.caches (or removes it, for undefined); returns a function that restores the previous state. */
export function installCacheStorage(storage: CacheStorage | undefined): () => void {
  const g = globalThis as { caches?: CacheStorage };
  const had = Object.prototype.hasOwnProperty.call(g, 'caches');
  const previous = g.caches;
  if (storage === undefined) delete g.caches;
  else g.caches = storage;
  return () => {
    if (had) g.caches = previous;
    else delete g.caches;
  };
}
