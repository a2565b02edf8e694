/** Test helpers for the model-format tests: hand-made safetensors bytes, model folders, a static server. */
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSafetensors, type TensorToWrite, type WritableDtype } from '../../src/model/safetensors-writer.ts';
import { randomModel } from '../helpers/random-model.ts';

/**
 * A safetensors file from any header object (valid or not) and data bytes: for lying headers.
 * `headerText` overrides the JSON (for invalid JSON); `lengthField` overrides N.
 */
export function rawSafetensors(
  header: unknown,
  data: Uint8Array | number = 0,
  opts: { headerText?: string; headerBytes?: Uint8Array; lengthField?: bigint } = {},
): Uint8Array {
  const json = opts.headerBytes ?? new TextEncoder().encode(opts.headerText ?? JSON.stringify(header));
  const body = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.byteLength + body.byteLength);
  new DataView(out.buffer).setBigUint64(0, opts.lengthField ?? BigInt(json.byteLength), true);
  out.set(json, 8);
  out.set(body, 8 + json.byteLength);
  return out;
}

/** A random tiny model's tensors, all stored as `dtype` (or per-name via a function). */
export function modelTensors(
  rawConfig: Record<string, unknown>,
  dtype: WritableDtype | ((name: string) => WritableDtype) = 'F32',
  seed = 1,
): Map<string, TensorToWrite> {
  const { weights } = randomModel(rawConfig, seed);
  const out = new Map<string, TensorToWrite>();
  for (const [name, t] of weights) out.set(name, { dtype: typeof dtype === 'function' ? dtype(name) : dtype, shape: t.shape, data: t.data });
  return out;
}

export interface ModelDir {
  dir: string;
  cleanup(): Promise<void>;
}

/** Writes config.json, model.safetensors and any extra files into a fresh temporary folder. */
export async function writeModelDir(
  rawConfig: Record<string, unknown> | string,
  tensors: ReadonlyMap<string, TensorToWrite> | Uint8Array,
  extra: Record<string, string | Uint8Array> = {},
  metadata?: Record<string, string>,
): Promise<ModelDir> {
  const dir = await mkdtemp(join(tmpdir(), 'ttt-web-model-'));
  await writeFile(join(dir, 'config.json'), typeof rawConfig === 'string' ? rawConfig : JSON.stringify(rawConfig, null, 2));
  const bytes = tensors instanceof Uint8Array ? tensors : writeSafetensors(tensors, metadata ? { metadata } : {});
  await writeFile(join(dir, 'model.safetensors'), bytes);
  for (const [name, content] of Object.entries(extra)) await writeFile(join(dir, name), content);
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface StaticServer {
  /** URL prefix ending in '/'. */
  url: string;
  /** Requests seen, as "METHOD /path". */
  log: string[];
  close(): Promise<void>;
}

/** Serves `dir`'s files on 127.0.0.1 (a free port); 404 for anything else. GET and HEAD. */
export async function serveDir(dir: string): Promise<StaticServer> {
  const log: string[] = [];
  const server: Server = createServer((req, res) => {
    log.push(`${req.method} ${req.url}`);
    const name = decodeURIComponent((req.url ?? '/').split('?')[0]).replace(/^\/+/, '');
    if (name.includes('/') || name.startsWith('.') || name === '') {
      res.writeHead(404).end();
      return;
    }
    readFile(join(dir, name)).then(
      (body) => {
        const type = name.endsWith('.json') ? 'application/json' : 'application/octet-stream';
        res.writeHead(200, { 'content-type': type, 'content-length': body.byteLength });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      () => res.writeHead(404, { 'content-type': 'text/plain' }).end('not found'),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('server has no port');
  return {
    url: `http://127.0.0.1:${addr.port}/`,
    log,
    close: () => new Promise<void>((resolve, reject) => server.close((e) => (e ? reject(e) : resolve()))),
  };
}

/** GPT-2's byte → printable-character map, which byte-level BPE vocabularies are written in. */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const map: string[] = new Array(256);
  bs.forEach((b, i) => (map[b] = String.fromCodePoint(cs[i])));
  return map;
}

/**
 * A hand-written byte-level BPE tokenizer.json: ids 0..255 are the bytes (so every text encodes), then
 * a handful of merges that spell "hello" and " world", then two special tokens.
 */
export function tinyBpeTokenizerJson(): Record<string, unknown> {
  const b2u = bytesToUnicode();
  const vocab: Record<string, number> = {};
  for (let b = 0; b < 256; b++) vocab[b2u[b]] = b;
  const merges = [['h', 'e'], ['l', 'l'], ['he', 'll'], ['hell', 'o'], ['Ġ', 'w'], ['o', 'r'], ['Ġw', 'or'], ['l', 'd'], ['Ġwor', 'ld']];
  let id = 256;
  for (const [a, b] of merges) vocab[a + b] = id++;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    added_tokens: [
      { id: 265, content: '<|bos|>', special: true },
      { id: 266, content: '<|eos|>', special: true },
    ],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: merges.map((m) => m.join(' ')) },
  };
}
