/**
 * Dense f64 helpers for the CPU reference. Matrices are row-major Float64Arrays with explicit sizes.
 * Written for clarity: the reference is the oracle, not the product.
 */

/** y[t, o] = sum_i x[t, i] * w[o, i] (+ b[o]): a linear layer with weight stored [out, in]. */
export function linear(
  x: Float64Array, rows: number, inDim: number,
  w: Float64Array, outDim: number, bias?: Float64Array,
): Float64Array {
  const y = new Float64Array(rows * outDim);
  for (let t = 0; t < rows; t++) {
    const xo = t * inDim;
    for (let o = 0; o < outDim; o++) {
      const wo = o * inDim;
      let s = bias ? bias[o] : 0;
      for (let i = 0; i < inDim; i++) s += x[xo + i] * w[wo + i];
      y[t * outDim + o] = s;
    }
  }
  return y;
}

/** C[m, n] = A[m, k] @ B[k, n]. */
export function matmul(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const av = a[i * k + p];
      if (av === 0) continue;
      const bo = p * n, co = i * n;
      for (let j = 0; j < n; j++) c[co + j] += av * b[bo + j];
    }
  }
  return c;
}

/** A^T for A[m, n]. */
export function transpose(a: Float64Array, m: number, n: number): Float64Array {
  const t = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = a[i * n + j];
  return t;
}

/** RMSNorm of each row of x [rows, n]: x / sqrt(mean(x²) + eps) * weight. */
export function rmsNormRows(x: Float64Array, rows: number, n: number, weight: Float64Array, eps: number): Float64Array {
  const y = new Float64Array(rows * n);
  for (let t = 0; t < rows; t++) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[t * n + i] ** 2;
    const inv = 1 / Math.sqrt(ss / n + eps);
    for (let i = 0; i < n; i++) y[t * n + i] = x[t * n + i] * inv * weight[i];
  }
  return y;
}

export const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));
export const silu = (x: number): number => x * sigmoid(x);
/** log(1 + e^x), stable for large |x|. */
export const softplus = (x: number): number => (x > 20 ? x : x < -20 ? Math.exp(x) : Math.log1p(Math.exp(x)));
/** The x with softplus(x) = y: y + log(-expm1(-y)). */
export const invSoftplus = (y: number): number => y + Math.log(-Math.expm1(-y));

/** Frobenius norm. */
export function frobenius(a: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
}

/** The L2 norm of each row of a [rows, n]. */
export function rowNorms(a: Float64Array, rows: number, n: number): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += a[r * n + i] ** 2;
    out[r] = Math.sqrt(s);
  }
  return out;
}

export function toF64(a: Float32Array): Float64Array {
  return Float64Array.from(a);
}
