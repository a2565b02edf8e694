/**
 * The host half of shaders/common/rope-turns.wgsl: per RoPE frequency, the fraction of a turn it advances
 * per position, in 64-bit fixed point. Every kernel that ropes (LaCT's rope.wgsl and fast-weight inputs,
 * TTT-E2E's e2e-rope.wgsl and q/k norm) reads its angles from such a table, so none depends on the driver's
 * sin/cos of a large f32 angle.
 */

/**
 * Per pair i, F_i = frac(freq_i / 2π)·2^64 as [high, low] u32 words, freq_i = theta^(-2i/hd) exactly as
 * the f64 twins compute it (src/reference/rope.ts, src/reference/e2e/ops.ts ropeAngle). freq_i / 2π < 1
 * and its f64 value times 2^64 is an integer (an exact power-of-two scaling), so F is the f64 quotient
 * itself: within ~2 ulp (<= 2^-55 turns) of the true freq_i / 2π.
 */
export function ropeTurnTable(headDim: number, theta: number): Uint32Array {
  const half = headDim / 2;
  const out = new Uint32Array(2 * half);
  for (let i = 0; i < half; i++) {
    const freq = Math.pow(theta, (-2 * i) / headDim);
    const turns = freq / (2 * Math.PI);
    const F = BigInt(Math.floor((turns - Math.floor(turns)) * 2 ** 64)) & ((1n << 64n) - 1n);
    out[2 * i] = Number(F >> 32n);
    out[2 * i + 1] = Number(F & 0xffffffffn);
  }
  return out;
}
