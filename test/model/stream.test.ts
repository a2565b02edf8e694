import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  FileTruncatedError,
  HeaderMalformedError,
  HeaderTooLargeError,
  MissingTensorError,
  ModelFetchError,
  NonFiniteWeightError,
  ShapeMismatchError,
  TokenizerError,
  UnexpectedTensorError,
  UnsupportedDtypeError,
} from '../../src/model/errors.ts';
import { loadModel } from '../../src/model/load.ts';
import { parseSafetensorsHeader } from '../../src/model/safetensors.ts';
import { writeSafetensors, type TensorToWrite } from '../../src/model/safetensors-writer.ts';
import { MemorySource, NodeDirectorySource, UrlSource, type ModelSource } from '../../src/model/source.ts';
import {
  openModelStream,
  streamBufferStats,
  toByteStreamSource,
  type LoadProgress,
  type ModelStream,
  type OpenModelStreamOptions,
} from '../../src/model/stream.ts';
import { serveChunked, type ChunkedServer } from '../helpers/chunked-server.ts';
import { ALL_OFF, ALL_ON, TINY_BASE } from '../helpers/random-model.ts';
import { modelTensors, rawSafetensors, serveDir, writeModelDir, type ModelDir, type StaticServer } from './model-files.ts';
import { rejection } from '../helpers/rejection.ts';

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));
const MODELS = [
  here('../fixtures/tiny-all-on'),
  here('../fixtures/tiny-all-off'),
  here('../fixtures/tiny-swa'),
  here('../fixtures/tiny-full'),
  here('../../public/models/tiny-random-lact'),
];

interface Got {
  name: string;
  shape: number[];
  dtype: string;
  data: Float32Array;
}

/** Reads every tensor, copying each (the stream's arrays are transient). */
async function consume(s: ModelStream): Promise<Got[]> {
  const out: Got[] = [];
  for await (const t of s.tensors) out.push({ name: t.name, shape: t.shape, dtype: t.dtype, data: t.data.slice() });
  return out;
}

async function streamAll(source: ModelSource, opts?: OpenModelStreamOptions): Promise<{ s: ModelStream; tensors: Got[] }> {
  const s = await openModelStream(source, opts);
  return { s, tensors: await consume(s) };
}


/** Index of the first element whose bits differ (NaN payloads included), or -1; a length mismatch is index `length`. */
function firstBitDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

async function memorySourceOf(dir: string, asFiles: boolean): Promise<MemorySource> {
  const names = ['config.json', 'model.safetensors'];
  const bytes = await Promise.all(names.map((n) => readFile(`${dir}/${n}`)));
  if (asFiles) return new MemorySource(names.map((n, i) => new File([bytes[i]], n)));
  return new MemorySource(Object.fromEntries(names.map((n, i) => [n, new Uint8Array(bytes[i])])));
}

describe('openModelStream yields exactly what loadModel loads', () => {
  const servers: StaticServer[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  for (const dir of MODELS) {
    const label = dir.split('/').slice(-2).join('/');
    it(`${label}: bit-identical f32 through every source, in file order`, async () => {
      const ref = await loadModel(new NodeDirectorySource(dir));
      const fileBytes = new Uint8Array(await readFile(`${dir}/model.safetensors`));
      const header = parseSafetensorsHeader(fileBytes);
      const fileOrder = [...header.tensors.values()].sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0]).map((t) => t.name);
      const server = await serveDir(dir);
      servers.push(server);
      const chunked = await serveChunked(dir, () => ({ chunkBytes: 1000 }));
      const sources: [string, ModelSource][] = [
        ['node folder', new NodeDirectorySource(dir)],
        ['node folder, 999-byte reads', toByteStreamSource(new NodeDirectorySource(dir), { chunkBytes: 999 })],
        ['memory (File objects)', await memorySourceOf(dir, true)],
        ['memory (bytes), 1001-byte reads', toByteStreamSource(await memorySourceOf(dir, false), { chunkBytes: 1001 })],
        ['URL', new UrlSource(server.url)],
        ['URL, 1000-byte writes', new UrlSource(chunked.url)],
      ];
      try {
        for (const [what, src] of sources) {
          const { s, tensors } = await streamAll(src);
          expect(s.config, what).toEqual(ref.config);
          expect(s.rawConfig, what).toEqual(JSON.parse(await readFile(`${dir}/config.json`, 'utf8')));
          expect(s.metadata, what).toEqual(ref.metadata);
          expect(s.tokenizer.kind, what).toBe(ref.tokenizer.kind);
          expect(s.weightBytes, what).toBe(header.dataByteLength);
          expect(tensors.map((t) => t.name), what).toEqual(fileOrder);
          expect(tensors.length, what).toBe(ref.weights.size);
          for (const t of tensors) {
            const want = ref.weights.get(t.name)!;
            expect(t.shape, `${what} ${t.name}`).toEqual(want.shape);
            expect(t.dtype, `${what} ${t.name}`).toBe(header.tensors.get(t.name)!.dtype);
            expect(firstBitDiff(t.data, want.data), `${what} ${t.name}`).toBe(-1);
          }
        }
      } finally {
        await chunked.close();
      }
    });
  }

  it('the bundled demo model is F16 (the conversion path is exercised)', async () => {
    const bytes = new Uint8Array(await readFile(`${MODELS[4]}/model.safetensors`));
    expect(new Set([...parseSafetensorsHeader(bytes).tensors.values()].map((t) => t.dtype))).toEqual(new Set(['F16']));
  });

  it('the tensors can be read once; checkFinite: false lets NaN through', async () => {
    const t = modelTensors(TINY_BASE);
    t.set('model.norm.weight', { dtype: 'F32', shape: [64], data: new Float32Array(64).fill(NaN) });
    const src = new MemorySource({ 'config.json': JSON.stringify(TINY_BASE), 'model.safetensors': writeSafetensors(t) });
    const s = await openModelStream(src, { checkFinite: false });
    const got = await consume(s);
    expect(Number.isNaN(got.find((x) => x.name === 'model.norm.weight')!.data[0])).toBe(true);
    expect(() => s.tensors[Symbol.asyncIterator]()).toThrow(/read once/);
  });
});

describe('progress', () => {
  let model: ModelDir;
  let size: number;
  let count: number;
  beforeAll(async () => {
    model = await writeModelDir(ALL_ON, modelTensors(ALL_ON));
    const bytes = new Uint8Array(await readFile(`${model.dir}/model.safetensors`));
    size = bytes.byteLength;
    count = parseSafetensorsHeader(bytes).tensors.size;
  });
  afterAll(async () => {
    await model?.cleanup();
  });

  async function run(noLength: boolean): Promise<{ events: LoadProgress[]; atOpen: number }> {
    const server = await serveChunked(model.dir, () => ({ chunkBytes: 4096, noLength }));
    try {
      const events: LoadProgress[] = [];
      const s = await openModelStream(new UrlSource(server.url), { onProgress: (p) => events.push(p) });
      const atOpen = events.length;
      await consume(s);
      return { events, atOpen };
    } finally {
      await server.close();
    }
  }

  it('bytesTotal is known before the data; bytes and tensors count up to the totals; a final done', async () => {
    for (const noLength of [false, true]) {
      const { events, atOpen } = await run(noLength);
      const label = noLength ? 'no Content-Length' : 'Content-Length';
      expect(events[0].phase, label).toBe('config');
      const w = events.filter((e) => e.phase === 'weights');
      // With Content-Length, from the first event; without, from the header, before openModelStream returns.
      if (!noLength) expect(w[0].bytesTotal, label).toBe(size);
      const beforeData = events.slice(0, atOpen).at(-1)!;
      expect(beforeData.bytesTotal, label).toBe(size);
      expect(beforeData.tensorsTotal, label).toBe(count);
      expect(beforeData.tensorsLoaded, label).toBe(0);
      expect(beforeData.bytesLoaded, label).toBeLessThan(size / 4);
      for (let i = 1; i < w.length; i++) {
        expect(w[i].bytesLoaded, label).toBeGreaterThanOrEqual(w[i - 1].bytesLoaded);
        expect(w[i].tensorsLoaded, label).toBeGreaterThanOrEqual(w[i - 1].tensorsLoaded);
      }
      expect(w.length, label).toBeGreaterThan(size / 4096 / 2);
      expect(w.at(-1)!.bytesLoaded, label).toBe(size);
      expect(w.at(-1)!.tensorsLoaded, label).toBe(count);
      const done = events.at(-1)!;
      expect(done, label).toEqual({ phase: 'done', bytesLoaded: size, bytesTotal: size, tensorsLoaded: count, tensorsTotal: count, fromCache: false, file: 'model.safetensors' });
      expect(events.filter((e) => e.phase === 'done').length, label).toBe(1);
    }
  });
});

describe('memory: only the current tensor and chunk are held', () => {
  it('a server sending small pieces: the high-water mark stays under (largest tensor + one chunk)', async () => {
    // A 1 MiB embedding table, so one tensor spans many chunks and must be assembled.
    const cfg = { ...TINY_BASE, vocab_size: 4096 };
    const model = await writeModelDir(cfg, modelTensors(cfg));
    const server = await serveChunked(model.dir, (name) => (name === 'model.safetensors' ? { chunkBytes: 2048 } : {}));
    try {
      const size = (await readFile(`${model.dir}/model.safetensors`)).byteLength;
      const s = await openModelStream(new UrlSource(server.url));
      const got = await consume(s);
      const st = streamBufferStats(s);
      expect(got.length).toBeGreaterThan(10);
      expect(st.largestTensorBytes).toBe(4096 * 64 * 4);
      expect(st.largestChunkBytes).toBeLessThan(size / 8);
      expect(st.peakBufferedBytes).toBeLessThanOrEqual(st.largestTensorBytes + st.largestChunkBytes);
      expect(st.peakBufferedBytes).toBeLessThan(size / 2);
      console.log(
        `stream memory: file ${size} B, largest tensor ${st.largestTensorBytes} B, largest chunk ${st.largestChunkBytes} B, peak held ${st.peakBufferedBytes} B`,
      );
    } finally {
      await server.close();
      await model.cleanup();
    }
  });

  it('exact chunk sizes (folder and memory sources): peak <= largest tensor + chunk', async () => {
    const cfg = { ...TINY_BASE, vocab_size: 4096 };
    const model = await writeModelDir(cfg, modelTensors(cfg));
    try {
      for (const src of [
        toByteStreamSource(new NodeDirectorySource(model.dir), { chunkBytes: 4096 }),
        toByteStreamSource(await memorySourceOf(model.dir, true), { chunkBytes: 4096 }),
      ]) {
        const s = await openModelStream(src);
        await consume(s);
        const st = streamBufferStats(s);
        expect(st.largestChunkBytes).toBe(4096);
        expect(st.peakBufferedBytes).toBeLessThanOrEqual(st.largestTensorBytes + 4096);
      }
    } finally {
      await model.cleanup();
    }
  });
});

describe('picked files are read slice by slice, never whole', () => {
  it('a File/Blob in a MemorySource is never read with one arrayBuffer() call', async () => {
    class SliceOnlyBlob extends Blob {
      override arrayBuffer(): Promise<ArrayBuffer> {
        return Promise.reject(new Error('read whole'));
      }
    }
    const dir = MODELS[0];
    const weights = new SliceOnlyBlob([await readFile(`${dir}/model.safetensors`)]);
    const src = new MemorySource(new Map<string, Blob | string>([
      ['config.json', await readFile(`${dir}/config.json`, 'utf8')],
      ['model.safetensors', weights],
    ]));
    await expect(src.readBytes('model.safetensors')).rejects.toThrow('read whole');
    const s = await openModelStream(toByteStreamSource(src, { chunkBytes: 8192 }));
    const got = await consume(s);
    const ref = await loadModel(new NodeDirectorySource(dir));
    expect(got.length).toBe(ref.weights.size);
    for (const t of got) expect(firstBitDiff(t.data, ref.weights.get(t.name)!.data), t.name).toBe(-1);
    expect(streamBufferStats(s).largestChunkBytes).toBe(8192);
  });
});

describe('every loader error, through the stream, with the same class and message', () => {
  const dirs: ModelDir[] = [];
  const servers: { close(): Promise<void> }[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
    await Promise.all(dirs.map((d) => d.cleanup()));
  });

  type Files = Record<string, string | Uint8Array>;
  const good = (): Map<string, TensorToWrite> => modelTensors(ALL_ON);
  const filesOf = (tensors: Map<string, TensorToWrite> | Uint8Array, cfg: Record<string, unknown> | string = ALL_ON): Files => ({
    'config.json': typeof cfg === 'string' ? cfg : JSON.stringify(cfg),
    'model.safetensors': tensors instanceof Uint8Array ? tensors : writeSafetensors(tensors),
  });
  const goodBytes = writeSafetensors(good());
  const withTensor = (name: string, t: TensorToWrite | null, base = good()): Map<string, TensorToWrite> => {
    if (t === null) base.delete(name);
    else base.set(name, t);
    return base;
  };
  const nanW1 = (() => {
    const w = good().get('model.layers.1.attn.w1')!;
    const data = Float32Array.from(w.data as Float32Array);
    data[37] = NaN;
    return withTensor('model.layers.1.attn.w1', { ...w, data });
  })();
  const plus16 = new Uint8Array(goodBytes.byteLength + 16);
  plus16.set(goodBytes);

  const cases: [string, Files, new (...a: never[]) => Error, 'open' | 'read'][] = [
    ['truncated mid-tensor', filesOf(goodBytes.subarray(0, goodBytes.byteLength - 100)), FileTruncatedError, 'open'],
    ['truncated in the header', filesOf(goodBytes.subarray(0, 40)), FileTruncatedError, 'open'],
    ['shorter than the length field', filesOf(goodBytes.subarray(0, 5)), FileTruncatedError, 'open'],
    ['header is not JSON', filesOf(rawSafetensors(null, 0, { headerText: '{"a": ' })), HeaderMalformedError, 'open'],
    ['header length field too large', filesOf(rawSafetensors({}, 0, { lengthField: 1n << 40n })), HeaderTooLargeError, 'open'],
    ['bytes after the last tensor', filesOf(plus16), HeaderMalformedError, 'open'],
    ['missing tensor', filesOf(withTensor('model.layers.1.attn.momentum_proj.0.weight', null)), MissingTensorError, 'open'],
    ['unexpected tensor', filesOf(withTensor('model.layers.2.attn_norm.weight', { dtype: 'F32', shape: [64], data: new Float32Array(64) })), UnexpectedTensorError, 'open'],
    ['shape mismatch', filesOf(withTensor('model.layers.0.mlp.up_proj.weight', { dtype: 'F32', shape: [64, 96], data: new Float32Array(64 * 96) })), ShapeMismatchError, 'open'],
    ['integer weight', filesOf(withTensor('model.norm.weight', { dtype: 'I32', shape: [64], data: new Int32Array(64) })), UnsupportedDtypeError, 'open'],
    ['NaN in a weight', filesOf(nanW1), NonFiniteWeightError, 'read'],
    ['config.json not JSON', filesOf(goodBytes, '{"vocab_size": 258,'), ConfigError, 'open'],
    ['config value out of range', filesOf(goodBytes, { ...ALL_ON, num_attn_heads: 3 }), ConfigError, 'open'],
    ['tokenizer.json missing', filesOf(goodBytes, { ...ALL_ON, tokenizer: 'tokenizer.json' }), TokenizerError, 'open'],
    ['config.json missing', { 'model.safetensors': goodBytes }, ModelFetchError, 'open'],
    ['model.safetensors missing', { 'config.json': JSON.stringify(ALL_ON) }, ModelFetchError, 'open'],
  ];

  async function sourcesFor(files: Files): Promise<[string, ModelSource][]> {
    const dir = await mkdtemp(join(tmpdir(), 'ttt-web-stream-'));
    const model = { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
    dirs.push(model);
    for (const [n, c] of Object.entries(files)) await writeFile(join(dir, n), c);
    const server = await serveDir(model.dir);
    servers.push(server);
    const mem = new MemorySource(Object.entries(files).map(([n, c]) => new File([c as BlobPart], n)));
    return [
      ['node folder', new NodeDirectorySource(model.dir)],
      ['memory', mem],
      ['URL', new UrlSource(server.url)],
    ];
  }

  for (const [what, files, cls, when] of cases) {
    it(`${what}: ${cls.name}${when === 'open' ? ' before any tensor' : ' naming the tensor'}`, async () => {
      for (const [kind, src] of await sourcesFor(files)) {
        const want = await rejection(loadModel(src));
        expect(want, `${kind}: loadModel`).toBeInstanceOf(cls);
        let yielded = 0;
        const got = await rejection(
          (async () => {
            const s = await openModelStream(src);
            if (when === 'open') throw new Error(`${what}: openModelStream should have rejected`);
            for await (const _ of s.tensors) yielded++;
          })(),
        );
        expect(got.constructor, `${kind}: ${got.message}`).toBe(cls);
        expect(got.message, kind).toBe(want.message);
        if (when === 'read') expect(yielded).toBeGreaterThan(0);
      }
    });
  }

  it('NaN: the error names the tensor and the index', async () => {
    const e = await rejection(streamAll(new MemorySource(filesOf(nanW1))));
    expect(e).toBeInstanceOf(NonFiniteWeightError);
    expect(e.message).toContain('tensor "model.layers.1.attn.w1" holds NaN at flat index 37');
  });

  describe('errors only a stream can meet (the size is not known up front)', () => {
    let model: ModelDir;
    let size: number;
    let cutTensor: string;
    const cutAt = 300_000;
    beforeAll(async () => {
      model = await writeModelDir(ALL_ON, modelTensors(ALL_ON));
      const bytes = new Uint8Array(await readFile(`${model.dir}/model.safetensors`));
      size = bytes.byteLength;
      const h = parseSafetensorsHeader(bytes);
      cutTensor = [...h.tensors.values()].find((t) => t.fileOffset < cutAt && t.fileOffset + t.byteLength > cutAt)!.name;
    });
    afterAll(async () => {
      await model?.cleanup();
    });

    async function withServer<T>(plan: Parameters<typeof serveChunked>[1], f: (s: ChunkedServer) => Promise<T>): Promise<T> {
      const server = await serveChunked(model.dir, plan);
      try {
        return await f(server);
      } finally {
        await server.close();
      }
    }

    it('a download that ends cleanly mid-tensor: FileTruncatedError naming the tensor, after the earlier tensors', async () => {
      await withServer(
        (n) => (n === 'model.safetensors' ? { noLength: true, endAt: cutAt, chunkBytes: 8192 } : {}),
        async (server) => {
          const names: string[] = [];
          const e = await rejection(
            (async () => {
              const s = await openModelStream(new UrlSource(server.url));
              for await (const t of s.tensors) names.push(t.name);
            })(),
          );
          expect(e).toBeInstanceOf(FileTruncatedError);
          expect(e.message).toContain(`tensor "${cutTensor}" occupies data bytes`);
          expect(e.message).toContain(`but the file ends at byte ${cutAt}`);
          expect(e.message).toContain(`${server.url}model.safetensors`);
          expect(names.length).toBeGreaterThan(0);
          expect(names).not.toContain(cutTensor);
        },
      );
    });

    it('a dropped connection mid-tensor: ModelFetchError naming the tensor', async () => {
      await withServer(
        (n) => (n === 'model.safetensors' ? { dropAt: cutAt, chunkBytes: 8192 } : {}),
        async (server) => {
          const e = await rejection(streamAll(new UrlSource(server.url)));
          expect(e).toBeInstanceOf(ModelFetchError);
          expect(e.message).toMatch(/download of "model\.safetensors" failed after \d+ bytes, in tensor "[^"]+"/);
          expect(e.message).toContain(`"${cutTensor}"`);
        },
      );
    });

    it('bytes after the last tensor (no Content-Length): HeaderMalformedError after the tensors', async () => {
      const bytes = new Uint8Array(size + 24);
      bytes.set(new Uint8Array(await readFile(`${model.dir}/model.safetensors`)));
      const server = await serveChunked({ 'config.json': JSON.stringify(ALL_ON), 'model.safetensors': bytes }, () => ({ noLength: true, chunkBytes: 16384 }));
      try {
        let n = 0;
        const e = await rejection(
          (async () => {
            const s = await openModelStream(new UrlSource(server.url));
            for await (const _ of s.tensors) n++;
          })(),
        );
        expect(e).toBeInstanceOf(HeaderMalformedError);
        expect(e.message).toContain(`24 bytes after the last tensor (file bytes [${size}, ${size + 24}))`);
        expect(n).toBe(modelTensors(ALL_ON).size);
      } finally {
        await server.close();
      }
    });
  });
});

describe('abort', () => {
  let model: ModelDir;
  let size: number;
  beforeAll(async () => {
    model = await writeModelDir(ALL_ON, modelTensors(ALL_ON));
    size = (await readFile(`${model.dir}/model.safetensors`)).byteLength;
  });
  afterAll(async () => {
    await model?.cleanup();
  });

  const slow = (name: string) => (name === 'model.safetensors' ? { chunkBytes: 4096, delayMs: 4 } : {});

  it('aborting mid-stream rejects with AbortError and closes the connection', async () => {
    const server = await serveChunked(model.dir, slow);
    try {
      const ac = new AbortController();
      let n = 0;
      const t0 = performance.now();
      const e = await rejection(
        (async () => {
          const s = await openModelStream(new UrlSource(server.url), { signal: ac.signal });
          for await (const _ of s.tensors) if (++n === 3) ac.abort();
        })(),
      );
      expect(e.name).toBe('AbortError');
      expect(e).toBeInstanceOf(DOMException);
      expect(n).toBe(3);
      const res = server.responses.find((r) => r.path === '/model.safetensors')!;
      await res.closed;
      expect(res.completed).toBe(false);
      expect(res.sent).toBeLessThan(size);
      const sentAtClose = res.sent;
      await new Promise((r) => setTimeout(r, 50));
      expect(res.sent).toBe(sentAtClose);
      expect(performance.now() - t0).toBeLessThan(5000);
    } finally {
      await server.close();
    }
  });

  it('the abort reason is passed through; an already-aborted signal rejects before any request', async () => {
    const server = await serveChunked(model.dir, slow);
    try {
      const ac = new AbortController();
      const reason = new Error('user pressed stop');
      const e = await rejection(
        (async () => {
          const s = await openModelStream(new UrlSource(server.url), { signal: ac.signal });
          for await (const _ of s.tensors) ac.abort(reason);
        })(),
      );
      expect(e).toBe(reason);
      const before = server.log.length;
      const e2 = await rejection(openModelStream(new UrlSource(server.url), { signal: AbortSignal.abort() }));
      expect(e2.name).toBe('AbortError');
      expect(server.log.length).toBe(before);
    } finally {
      await server.close();
    }
  });

  it('aborting while the header is read rejects openModelStream itself', async () => {
    const server = await serveChunked(model.dir, (n) => (n === 'model.safetensors' ? { chunkBytes: 16, delayMs: 20 } : {}));
    try {
      const ac = new AbortController();
      const p = openModelStream(new UrlSource(server.url), {
        signal: ac.signal,
        onProgress: (pr) => {
          if (pr.phase === 'weights' && pr.bytesLoaded > 0) ac.abort();
        },
      });
      const e = await rejection(p);
      expect(e.name).toBe('AbortError');
      const res = server.responses.find((r) => r.path === '/model.safetensors')!;
      await res.closed;
      expect(res.completed).toBe(false);
    } finally {
      await server.close();
    }
  });

  it('leaving the loop early, or cancel() on an unread stream, closes the connection', async () => {
    const server = await serveChunked(model.dir, slow);
    try {
      const s = await openModelStream(new UrlSource(server.url));
      for await (const _ of s.tensors) break;
      const first = server.responses.find((r) => r.path === '/model.safetensors')!;
      await first.closed;
      expect(first.completed).toBe(false);

      const s2 = await openModelStream(new UrlSource(server.url));
      await s2.cancel();
      const second = server.responses.filter((r) => r.path === '/model.safetensors')[1];
      await second.closed;
      expect(second.completed).toBe(false);
      expect((await rejection(consume(s2))).name).toBe('AbortError');
    } finally {
      await server.close();
    }
  });

  it('a UrlSource with a custom fetch keeps using it when streamed', async () => {
    const server = await serveDir(model.dir);
    try {
      const seen: string[] = [];
      const src = new UrlSource(server.url, {
        fetch: (input, init) => {
          seen.push(String(input));
          return fetch(input, init);
        },
      });
      await streamAll(src);
      expect(seen).toEqual([`${server.url}config.json`, `${server.url}model.safetensors`]);
    } finally {
      await server.close();
    }
  });
});
