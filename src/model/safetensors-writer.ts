/**
 * Writing safetensors files: for tests (valid and deliberately broken models) and the bench models. Not
 * shipped: no code under src/ imports it (test/structure.test.ts checks).
 *
 * The layout follows the official writer: the JSON header is padded with spaces so the data section
 * starts on an 8-byte boundary, and tensors are laid out by decreasing element size (then name), so
 * every tensor's data is aligned to its element size and readers can view it without copying.
 * Conversions from f32 (src/model/f16.ts) round to nearest, ties to even, as PyTorch's `.half()` /
 * `.bfloat16()` do.
 */
import { float32ToBf16Bits, float32ToF16Bits } from './f16.ts';
import { DTYPE_BYTES } from './safetensors.ts';

export type WritableDtype = 'F32' | 'F16' | 'BF16' | 'I32';

export interface TensorToWrite {
  /** How to store it; float data is rounded to F16/BF16 as needed, I32 data must be integers. */
  readonly dtype: WritableDtype;
  readonly shape: readonly number[];
  readonly data: Float32Array | Int32Array | readonly number[];
}

export interface WriteOptions {
  /** The `__metadata__` strings. */
  metadata?: Readonly<Record<string, string>>;
}

function checkTensor(name: string, t: TensorToWrite): number {
  if (!['F32', 'F16', 'BF16', 'I32'].includes(t.dtype)) {
    throw new TypeError(`writeSafetensors: tensor "${name}": cannot write dtype ${String(t.dtype)}`);
  }
  let numel = 1;
  for (const d of t.shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new RangeError(`writeSafetensors: tensor "${name}": bad shape [${t.shape.join(', ')}]`);
    numel *= d;
  }
  if (t.data.length !== numel) {
    throw new RangeError(`writeSafetensors: tensor "${name}": shape [${t.shape.join(', ')}] has ${numel} elements, data has ${t.data.length}`);
  }
  return numel;
}

function encodeData(name: string, t: TensorToWrite, numel: number): Uint8Array {
  const src = t.data;
  switch (t.dtype) {
    case 'F32': {
      const out = new Float32Array(numel);
      out.set(src);
      return new Uint8Array(out.buffer);
    }
    case 'F16':
    case 'BF16': {
      const out = new Uint16Array(numel);
      const conv = t.dtype === 'F16' ? float32ToF16Bits : float32ToBf16Bits;
      for (let i = 0; i < numel; i++) out[i] = conv(src[i]);
      return new Uint8Array(out.buffer);
    }
    case 'I32': {
      const out = new Int32Array(numel);
      for (let i = 0; i < numel; i++) {
        const v = src[i];
        if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) {
          throw new RangeError(`writeSafetensors: tensor "${name}": element ${i} (${v}) is not a 32-bit integer`);
        }
        out[i] = v;
      }
      return new Uint8Array(out.buffer);
    }
  }
}

/**
 * Serialises tensors (a Map, or a plain object name → tensor) into one safetensors file.
 * The output is little-endian, as the format requires (every host that runs WebGPU is).
 */
export function writeSafetensors(
  tensors: ReadonlyMap<string, TensorToWrite> | Readonly<Record<string, TensorToWrite>>,
  options: WriteOptions = {},
): Uint8Array<ArrayBuffer> {
  const entries: [string, TensorToWrite][] = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  if (entries.some(([name]) => name === '__metadata__')) {
    throw new TypeError('writeSafetensors: "__metadata__" is reserved; pass metadata through options.metadata');
  }
  const ordered = entries
    .map(([name, t]) => ({ name, t, numel: checkTensor(name, t), size: DTYPE_BYTES[t.dtype] }))
    .sort((a, b) => b.size - a.size || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const header: Record<string, unknown> = {};
  if (options.metadata) {
    for (const [k, v] of Object.entries(options.metadata)) {
      if (typeof v !== 'string') throw new TypeError(`writeSafetensors: metadata "${k}" must be a string`);
    }
    header.__metadata__ = { ...options.metadata };
  }
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const { name, t, numel } of ordered) {
    const bytes = encodeData(name, t, numel);
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.byteLength] };
    blobs.push(bytes);
    offset += bytes.byteLength;
  }

  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  let at = 8 + json.byteLength;
  for (const b of blobs) {
    out.set(b, at);
    at += b.byteLength;
  }
  return out;
}
