/**
 * Rotary position embedding, rotate-half (non-interleaved) form, as in the official model: the D-vector
 * is taken as blocks of `headDim`; in each block, channel i pairs with channel i + headDim/2 and both
 * rotate by position * theta^(-2i/headDim). Used for attention q/k and, with the same blocks, the
 * fast-weight q/k.
 */
export function ropeInPlace(x: Float64Array, offset: number, dim: number, headDim: number, position: number, theta: number): void {
  const half = headDim / 2;
  for (let h = 0; h < dim / headDim; h++) {
    const base = offset + h * headDim;
    for (let i = 0; i < half; i++) {
      const invFreq = Math.pow(theta, (-2 * i) / headDim);
      const angle = position * invFreq;
      const c = Math.cos(angle), s = Math.sin(angle);
      const x1 = x[base + i], x2 = x[base + i + half];
      x[base + i] = x1 * c - x2 * s;
      x[base + i + half] = x2 * c + x1 * s;
    }
  }
}
