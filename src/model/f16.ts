/**
 * f32 → f16 and f32 → bf16 bit conversions, round to nearest, ties to even, as PyTorch's `.half()` /
 * `.bfloat16()` do. Shipped (the engine converts f32 weights to f16 once at load, src/gpu/weights.ts) and
 * used by the safetensors writer; the other direction, f16 bits → f32, is the reader's
 * (`f16BitsToFloat32` in safetensors.ts). No imports.
 */

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
