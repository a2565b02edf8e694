import { readFile } from 'node:fs/promises';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cachedModelBytes, CachedUrlSource, clearModelCache, MODEL_CACHE_NAME } from '../../src/model/cache.ts';
import { FileTruncatedError, NonFiniteWeightError, HeaderMalformedError } from '../../src/model/errors.ts';
import { writeSafetensors } from '../../src/model/safetensors-writer.ts';
import { openModelStream, streamBufferStats, type LoadProgress, type ModelStream } from '../../src/model/stream.ts';
import { installCacheStorage, MemoryCacheStorage } from '../helpers/cache-storage.ts';
import { serveChunked, type ChunkedServer } from '../helpers/chunked-server.ts';
import { ALL_ON } from '../helpers/random-model.ts';
import { modelTensors, writeModelDir, type ModelDir } from './model-files.ts';
import { rejection } from '../helpers/rejection.ts';

interface Got {
  name: string;
  data: Float32Array;
}

async function consume(s: ModelStream): Promise<Got[]> {
  const out: Got[] = [];
  for await (const t of s.tensors) out.push({ name: t.name, data: t.data.slice() });
  return out;
}


function sameTensors(a: Got[], b: Got[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((t, i) => {
    const u = b[i];
    if (t.name !== u.name || t.data.length !== u.data.length) return false;
    const x = new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length);
    const y = new Uint32Array(u.data.buffer, u.data.byteOffset, u.data.length);
    for (let k = 0; k < x.length; k++) if (x[k] !== y[k]) return false;
    return true;
  });
}

interface Loaded {
  tensors: Got[];
  events: LoadProgress[];
  warnings: string[];
  source: CachedUrlSource;
}

async function load(url: string, signal?: AbortSignal): Promise<Loaded> {
  const warnings: string[] = [];
  const events: LoadProgress[] = [];
  const source = new CachedUrlSource(url, { onCacheWarning: (m) => warnings.push(m) });
  const s = await openModelStream(source, { onProgress: (p) => events.push(p), ...(signal ? { signal } : {}) });
  const tensors = await consume(s);
  await source.idle();
  return { tensors, events, warnings, source };
}

let model: ModelDir;
let sizes: { config: number; weights: number };
beforeAll(async () => {
  model = await writeModelDir(ALL_ON, modelTensors(ALL_ON));
  sizes = {
    config: (await readFile(`${model.dir}/config.json`)).byteLength,
    weights: (await readFile(`${model.dir}/model.safetensors`)).byteLength,
  };
});
afterAll(async () => {
  await model?.cleanup();
});

describe('CachedUrlSource with Cache Storage', () => {
  let server: ChunkedServer;
  let storage: MemoryCacheStorage;
  let restore: () => void;
  beforeEach(async () => {
    storage = new MemoryCacheStorage();
    restore = installCacheStorage(storage);
    server = await serveChunked(model.dir, () => ({ chunkBytes: 16384 }));
  });
  afterEach(async () => {
    restore();
    await server.close();
  });

  it('the first load fetches and fills the cache; the second makes no request and yields the same tensors', async () => {
    const first = await load(server.url);
    expect(first.warnings).toEqual([]);
    expect(server.count('/config.json')).toBe(1);
    expect(server.count('/model.safetensors')).toBe(1);
    expect(first.events.every((e) => !e.fromCache)).toBe(true);
    const cache = await storage.open(MODEL_CACHE_NAME);
    expect((await cache.keys()).map((r) => r.url).sort()).toEqual([`${server.url}config.json`, `${server.url}model.safetensors`]);
    expect(await cachedModelBytes()).toBe(sizes.config + sizes.weights);

    const requestsBefore = server.log.length;
    const second = await load(server.url);
    expect(server.log.slice(requestsBefore)).toEqual([]);
    expect(second.warnings).toEqual([]);
    expect(sameTensors(second.tensors, first.tensors)).toBe(true);
    expect(second.events.filter((e) => e.file === 'model.safetensors').every((e) => e.fromCache)).toBe(true);
    expect(second.events.find((e) => e.file === 'config.json' && e.bytesTotal !== null)?.fromCache).toBe(true);
    const w = second.events.filter((e) => e.phase === 'weights');
    expect(w[0].bytesTotal).toBe(sizes.weights);
    expect(second.events.at(-1)).toMatchObject({ phase: 'done', bytesLoaded: sizes.weights, fromCache: true });

    // And the Node-folder reference agrees with both.
    const { openModelStream: open } = await import('../../src/model/stream.ts');
    const { NodeDirectorySource } = await import('../../src/model/source.ts');
    expect(sameTensors(await consume(await open(new NodeDirectorySource(model.dir))), first.tensors)).toBe(true);
  });

  it('clearModelCache empties the cache, and the next load fetches again', async () => {
    await load(server.url);
    expect(await clearModelCache()).toBe(2);
    expect(await cachedModelBytes()).toBe(0);
    expect(await storage.has(MODEL_CACHE_NAME)).toBe(false);
    await load(server.url);
    expect(server.count('/model.safetensors')).toBe(2);
    expect(server.count('/config.json')).toBe(2);
    expect(await clearModelCache()).toBe(2);
    expect(await clearModelCache()).toBe(0);
  });

  it('clearModelCache(prefix) removes only that model', async () => {
    const other = await serveChunked(model.dir);
    try {
      await load(server.url);
      await load(other.url);
      expect(await clearModelCache(other.url.replace(/\/$/, ''))).toBe(2);
      const cache = await storage.open(MODEL_CACHE_NAME);
      expect((await cache.keys()).every((k) => k.url.startsWith(server.url))).toBe(true);
      expect(await cachedModelBytes()).toBe(sizes.config + sizes.weights);
      const before = server.log.length;
      await load(server.url);
      expect(server.log.length).toBe(before);
    } finally {
      await other.close();
    }
  });

  it('a load that fails validation leaves nothing cached; the next load fetches again', async () => {
    const t = modelTensors(ALL_ON);
    const w = t.get('model.layers.1.attn.w1')!;
    const data = Float32Array.from(w.data as Float32Array);
    data[5] = NaN;
    t.set('model.layers.1.attn.w1', { ...w, data });
    const bad = await serveChunked({ 'config.json': JSON.stringify(ALL_ON), 'model.safetensors': writeSafetensors(t) });
    try {
      const source = new CachedUrlSource(bad.url, { onCacheWarning: (m) => expect.fail(m) });
      const e = await rejection(openModelStream(source).then(consume));
      expect(e).toBeInstanceOf(NonFiniteWeightError);
      await source.idle();
      expect(await (await storage.open(MODEL_CACHE_NAME)).keys()).toEqual([]);
      await rejection(openModelStream(new CachedUrlSource(bad.url)).then(consume));
      expect(bad.count('/model.safetensors')).toBe(2);
    } finally {
      await bad.close();
    }
  });

  it('a silently truncated download (no Content-Length) is not cached', async () => {
    const cut = await serveChunked(model.dir, (n) => (n === 'model.safetensors' ? { noLength: true, endAt: 200_000, chunkBytes: 8192 } : {}));
    try {
      const source = new CachedUrlSource(cut.url, { onCacheWarning: (m) => expect.fail(m) });
      expect(await rejection(openModelStream(source).then(consume))).toBeInstanceOf(FileTruncatedError);
      await source.idle();
      expect(await (await storage.open(MODEL_CACHE_NAME)).match(`${cut.url}model.safetensors`)).toBeUndefined();
    } finally {
      await cut.close();
    }
  });

  it('a corrupt cached file is dropped on use, and the next load fetches a good one', async () => {
    const cache = await storage.open(MODEL_CACHE_NAME);
    await load(server.url);
    await cache.put(`${server.url}model.safetensors`, new Response(new Uint8Array(100), { headers: { 'content-length': '100' } }));
    const e = await rejection(openModelStream(new CachedUrlSource(server.url)).then(consume));
    expect(e).toBeInstanceOf(HeaderMalformedError);
    await new Promise((r) => setTimeout(r, 10));
    expect(await cache.match(`${server.url}model.safetensors`)).toBeUndefined();
    const again = await load(server.url);
    expect(server.count('/model.safetensors')).toBe(2);
    expect(again.tensors.length).toBe(modelTensors(ALL_ON).size);
  });

  it('an abort during the first load stores no partial weights and closes the connection', async () => {
    const slow = await serveChunked(model.dir, (n) => (n === 'model.safetensors' ? { chunkBytes: 4096, delayMs: 4 } : {}));
    try {
      const ac = new AbortController();
      const warnings: string[] = [];
      const source = new CachedUrlSource(slow.url, { onCacheWarning: (m) => warnings.push(m) });
      const e = await rejection(
        (async () => {
          const s = await openModelStream(source, { signal: ac.signal });
          let n = 0;
          for await (const _ of s.tensors) if (++n === 2) ac.abort();
        })(),
      );
      expect(e.name).toBe('AbortError');
      const res = slow.responses.find((r) => r.path === '/model.safetensors')!;
      await res.closed;
      expect(res.completed).toBe(false);
      await source.idle();
      expect(warnings).toEqual([]);
      const cache = await storage.open(MODEL_CACHE_NAME);
      expect((await cache.keys()).map((k) => k.url)).toEqual([`${slow.url}config.json`]);
    } finally {
      await slow.close();
    }
  });
});

describe('a cache writer slower than the loader', () => {
  let server: ChunkedServer;
  let restore: (() => void) | null = null;
  beforeEach(async () => {
    server = await serveChunked(model.dir, () => ({ chunkBytes: 8192 }));
  });
  afterEach(async () => {
    restore?.();
    restore = null;
    await server.close();
  });

  it('holds the download back: the loader never runs more than the queue (+ chunks in flight) ahead', async () => {
    const storage = new MemoryCacheStorage();
    restore = installCacheStorage(storage);
    const cache = await storage.open(MODEL_CACHE_NAME);
    const put = cache.put.bind(cache);
    let written = 0;
    cache.put = async (request, response) => {
      const weights = (request instanceof Request ? request.url : String(request)).endsWith('/model.safetensors');
      const slowed = response.body!.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          async transform(chunk, c) {
            await new Promise((r) => setTimeout(r, 1));
            if (weights) written += chunk.byteLength;
            c.enqueue(chunk);
          },
        }),
      );
      return put(request, new Response(slowed, { status: response.status, headers: response.headers }));
    };
    const queueBytes = 16 * 1024;
    // Bodies in exact 4 KiB chunks (a socket would coalesce them), to measure the bound tightly.
    const files: Record<string, Uint8Array> = {
      'config.json': new Uint8Array(await readFile(`${model.dir}/config.json`)),
      'model.safetensors': new Uint8Array(await readFile(`${model.dir}/model.safetensors`)),
    };
    const fetch4k = async (input: RequestInfo | URL): Promise<Response> => {
      const bytes = files[String(input).split('/').pop()!];
      let pos = 0;
      const body = new ReadableStream<Uint8Array>(
        {
          pull(c) {
            if (pos >= bytes.byteLength) return c.close();
            c.enqueue(bytes.slice(pos, pos + 4096));
            pos += 4096;
          },
        },
        { highWaterMark: 0 },
      );
      return new Response(body, { headers: { 'content-length': String(bytes.byteLength) } });
    };
    const source = new CachedUrlSource('http://models.test/m/', { fetch: fetch4k, cacheQueueBytes: queueBytes, onCacheWarning: (m) => expect.fail(m) });
    let worstGap = 0;
    const s = await openModelStream(source, {
      onProgress: (p) => {
        if (p.file === 'model.safetensors') worstGap = Math.max(worstGap, p.bytesLoaded - written);
      },
    });
    await consume(s);
    await source.idle();
    const chunk = streamBufferStats(s).largestChunkBytes;
    expect(chunk).toBe(4096);
    expect(worstGap).toBeGreaterThan(queueBytes);
    expect(worstGap).toBeLessThanOrEqual(queueBytes + 4 * chunk);
    expect(worstGap).toBeLessThan(sizes.weights / 4);
    expect(written).toBe(sizes.weights);
    const stored = await cache.match('http://models.test/m/model.safetensors');
    expect(Buffer.compare(new Uint8Array(await stored!.arrayBuffer()), files['model.safetensors'])).toBe(0);
    console.log(`slow cache writer: queue ${queueBytes} B, chunk ${chunk} B, loader ahead by at most ${worstGap} B (file ${sizes.weights} B)`);
  });

  it('a cache write that fails without reading the body does not stall the load', async () => {
    const storage = new MemoryCacheStorage();
    restore = installCacheStorage(storage);
    const cache = await storage.open(MODEL_CACHE_NAME);
    cache.put = async () => {
      await new Promise((r) => setTimeout(r, 30));
      throw new DOMException('disk full', 'QuotaExceededError');
    };
    const warnings: string[] = [];
    const source = new CachedUrlSource(server.url, { cacheQueueBytes: 4096, onCacheWarning: (m) => warnings.push(m) });
    const s = await openModelStream(source);
    expect((await consume(s)).length).toBe(modelTensors(ALL_ON).size);
    await source.idle();
    expect(warnings.length).toBe(2);
    expect(warnings.every((w) => w.includes('QuotaExceededError'))).toBe(true);
  });
});

describe('falling back to loading without the cache', () => {
  let server: ChunkedServer;
  let restore: (() => void) | null = null;
  beforeEach(async () => {
    server = await serveChunked(model.dir, () => ({ chunkBytes: 16384 }));
  });
  afterEach(async () => {
    restore?.();
    restore = null;
    await server.close();
  });

  it('a full quota (QuotaExceededError): the load succeeds, the warning says so, what fits is kept', async () => {
    const storage = new MemoryCacheStorage({ quotaBytes: 100_000 });
    restore = installCacheStorage(storage);
    const reference = await consume(await openModelStream(new (await import('../../src/model/source.ts')).NodeDirectorySource(model.dir)));
    const first = await load(server.url);
    expect(sameTensors(first.tensors, reference)).toBe(true);
    expect(first.warnings).toHaveLength(1);
    expect(first.warnings[0]).toMatch(/could not store "model\.safetensors" in the cache \(the storage quota is full \(QuotaExceededError/);
    expect(first.warnings[0]).toContain('loaded from the network without the cache');
    const cache = await storage.open(MODEL_CACHE_NAME);
    expect((await cache.keys()).map((k) => k.url)).toEqual([`${server.url}config.json`]);

    const second = await load(server.url);
    expect(sameTensors(second.tensors, reference)).toBe(true);
    expect(server.count('/config.json')).toBe(1);
    expect(server.count('/model.safetensors')).toBe(2);
  });

  it('no Cache Storage (Node, or a non-secure page): one warning, the load succeeds from the network', async () => {
    restore = installCacheStorage(undefined);
    const a = await load(server.url);
    expect(a.warnings).toEqual(['Cache Storage unavailable (this environment has no Cache Storage): loading without the cache']);
    expect(a.tensors.length).toBe(modelTensors(ALL_ON).size);
    expect(await clearModelCache()).toBe(0);
    expect(await cachedModelBytes()).toBe(0);

    const g = globalThis as { isSecureContext?: boolean };
    const had = Object.prototype.hasOwnProperty.call(g, 'isSecureContext');
    g.isSecureContext = false;
    try {
      const b = await load(server.url);
      expect(b.warnings).toEqual(['Cache Storage unavailable (this page is not a secure context (https or localhost)): loading without the cache']);
      expect(b.tensors.length).toBe(a.tensors.length);
    } finally {
      if (had) g.isSecureContext = true;
      else delete g.isSecureContext;
    }
    expect(server.count('/model.safetensors')).toBe(2);
  });

  it('a Cache Storage that refuses to open (SecurityError in some private modes): warning, load succeeds', async () => {
    const refusing = new MemoryCacheStorage();
    refusing.open = () => Promise.reject(new DOMException('The operation is insecure.', 'SecurityError'));
    restore = installCacheStorage(refusing);
    const a = await load(server.url);
    expect(a.warnings).toEqual(['Cache Storage unavailable (SecurityError: The operation is insecure.): loading without the cache']);
    expect(a.tensors.length).toBe(modelTensors(ALL_ON).size);
  });
});

describe('the Cache Storage test double follows the spec where the cache depends on it', () => {
  it('put/match/delete/keys, refusals, fresh bodies, atomic put', async () => {
    const storage = new MemoryCacheStorage();
    const cache = await storage.open('t');
    const url = 'http://example.test/m/a.bin';
    await cache.put(url, new Response(new Uint8Array([1, 2, 3]), { headers: { 'x-k': 'v' } }));
    const r1 = await cache.match(`${url}#frag`);
    const r2 = await cache.match(new Request(url));
    expect(new Uint8Array(await r1!.arrayBuffer())).toEqual(new Uint8Array([1, 2, 3]));
    expect(new Uint8Array(await r2!.arrayBuffer())).toEqual(new Uint8Array([1, 2, 3]));
    expect(r1!.headers.get('x-k')).toBe('v');
    expect(await cache.match(new Request(url, { method: 'POST' }))).toBeUndefined();
    expect(await storage.match(url)).toBeDefined();
    await expect(cache.put(url, new Response('x', { status: 206 }))).rejects.toThrow(TypeError);
    await expect(cache.put(new Request(url, { method: 'POST', body: 'x' }), new Response('x'))).rejects.toThrow(TypeError);
    await expect(cache.put(url, new Response('x', { headers: { vary: '*' } }))).rejects.toThrow(TypeError);
    const failing = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new Uint8Array(5));
        c.error(new Error('network gone'));
      },
    });
    await expect(cache.put(url, new Response(failing))).rejects.toThrow('network gone');
    expect(new Uint8Array(await (await cache.match(url))!.arrayBuffer())).toEqual(new Uint8Array([1, 2, 3]));
    expect((await cache.keys()).map((k) => k.url)).toEqual([url]);
    expect(await cache.delete(url)).toBe(true);
    expect(await cache.delete(url)).toBe(false);
    expect(await storage.keys()).toEqual(['t']);
    expect(await storage.delete('t')).toBe(true);
    expect(await storage.has('t')).toBe(false);

    const small = await new MemoryCacheStorage({ quotaBytes: 4 }).open('q');
    const e = await rejection(small.put(url, new Response(new Uint8Array(5))));
    expect(e).toBeInstanceOf(DOMException);
    expect(e.name).toBe('QuotaExceededError');
    expect(await small.match(url)).toBeUndefined();
  });
});
