/**
 * Writing safetensors files: for tests (valid and deliberately broken models), and for saving and
 * restoring inference state.
 *
 * The layout follows the official writer: the JSON header is padded with spaces so the data section
 * starts on an 8-byte boundary, and tensors are laid out by decreasing element size (then name), so
 * every tensor's data is aligned to its element size and readers can view it without copying.
 * Conversions from f32 round to nearest, ties to even, as PyTorch's `.half()` / `.bfloat16()` do.
 */
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

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** f32 → f16 bits, round to nearest even; overflow → ±inf; NaN stays NaN (quiet). */
export function float32ToF16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal f16 (or zero): the value in units of 2^-24, rounded.
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    const r = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    return sign | (rem > half || (rem === half && r & 1) ? r + 1 : r);
  }
  const r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (and 65520+ becomes inf).
  return sign | (rem > 0x1000 || (rem === 0x1000 && r & 1) ? r + 1 : r);
}

/** f32 → bf16 bits (the high half), round to nearest even; NaN stays NaN (quiet). */
export function float32ToBf16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return (x >>> 16) | 0x40;
  const lsb = (x >>> 16) & 1;
  return ((x + 0x7fff + lsb) >>> 16) & 0xffff;
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
