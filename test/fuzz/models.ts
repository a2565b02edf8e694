/** The good model folders the fuzz tests damage, and the byte surgery on safetensors files they share. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { writeSafetensors, type WritableDtype } from '../../src/model/safetensors-writer.ts';
import { ALL_ON, TINY_BASE } from '../helpers/random-model.ts';
import { modelTensors, tinyBpeTokenizerJson } from '../model/model-files.ts';
import type { Files } from './harness.ts';

/** A safetensors file taken apart: the header JSON (text and object), and the data section. */
export interface SplitFile {
  readonly bytes: Uint8Array;
  /** N, the header length. */
  readonly n: number;
  readonly text: string;
  readonly header: Record<string, unknown>;
  readonly data: Uint8Array;
  /** Tensor names (not `__metadata__`), in header order. */
  readonly names: readonly string[];
}

export interface TensorEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

export function split(bytes: Uint8Array): SplitFile {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
  const header = JSON.parse(text) as Record<string, unknown>;
  return { bytes, n, text, header, data: bytes.subarray(8 + n), names: Object.keys(header).filter((k) => k !== '__metadata__') };
}

/** A safetensors file from header text (any bytes) and data; the length field says the header's length unless given. */
export function assemble(header: string | Uint8Array, data: Uint8Array, lengthField?: bigint): Uint8Array<ArrayBuffer> {
  const json = typeof header === 'string' ? new TextEncoder().encode(header) : header;
  const out = new Uint8Array(8 + json.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, lengthField ?? BigInt(json.byteLength), true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}

/** The header JSON with spaces to a multiple of 8 bytes, as the official writer pads it. */
export function padded(text: string): string {
  const len = new TextEncoder().encode(text).byteLength;
  return text + ' '.repeat((8 - (len % 8)) % 8);
}

/** The ALL_ON tiny model (byte tokenizer) with F32, F16 and BF16 tensors and `__metadata__`: the safetensors target. */
export function mixedDtypeModel(): { files: Files; config: Record<string, unknown>; weights: Uint8Array<ArrayBuffer> } {
  const dtypes: WritableDtype[] = ['F32', 'F16', 'BF16'];
  let k = 0;
  const order = new Map<string, WritableDtype>();
  const tensors = modelTensors(ALL_ON, (name) => {
    if (!order.has(name)) order.set(name, dtypes[k++ % 3]);
    return order.get(name)!;
  }, 5);
  const weights = writeSafetensors(tensors, { metadata: { format: 'pt', producer: 'ttt-web fuzz' } });
  return { files: { 'config.json': JSON.stringify(ALL_ON), 'model.safetensors': weights }, config: { ...ALL_ON }, weights };
}

const fixtures = fileURLToPath(new URL('../fixtures/', import.meta.url));

/** A committed fixture's config.json (parsed) and model.safetensors. */
export function fixtureModel(name: 'tiny-all-on' | 'tiny-all-off' | 'tiny-swa' | 'tiny-full'): { config: Record<string, unknown>; weights: Uint8Array } {
  const config = JSON.parse(readFileSync(`${fixtures}${name}/config.json`, 'utf8')) as Record<string, unknown>;
  const buf = readFileSync(`${fixtures}${name}/model.safetensors`);
  return { config, weights: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) };
}

/** A tiny model with a Hugging Face tokenizer.json (the project's hand-written byte-level BPE): the tokenizer target. */
export function bpeModel(): { config: Record<string, unknown>; weights: Uint8Array<ArrayBuffer>; tokenizer: Record<string, unknown> } {
  const config = { ...TINY_BASE, tokenizer: 'tokenizer.json', vocab_size: 268, bos_token_id: 265, eos_token_id: 266 };
  return { config, weights: writeSafetensors(modelTensors(config, 'F16', 9)), tokenizer: tinyBpeTokenizerJson() };
}
