/**
 * Muon's orthogonalisation of an update, five Newton–Schulz steps with the official code's per-step
 * constants (not the paper's older single triple). Works on the wide orientation: a tall matrix is
 * transposed first and back at the end.
 */
import { NS5_COEFFS } from '../gpu/newton-schulz-coefficients.ts';
import { frobenius, matmul, transpose } from './linalg.ts';

/** The constants' one source is shipped code, which the GPU update reads too. */
export { NS5_COEFFS };

/** G [rows, cols] → NS5(G), same shape. */
export function newtonSchulz5(g: Float64Array, rows: number, cols: number): Float64Array {
  const tall = rows > cols;
  let x = tall ? transpose(g, rows, cols) : Float64Array.from(g);
  const m = tall ? cols : rows; // X is [m, n] with m <= n
  const n = tall ? rows : cols;
  const scale = 1 / (frobenius(x) + 1e-7);
  for (let i = 0; i < x.length; i++) x[i] *= scale;
  for (const [a, b, c] of NS5_COEFFS) {
    const A = matmul(x, transpose(x, m, n), m, n, m); // [m, m]
    const AA = matmul(A, A, m, m, m);
    const B = new Float64Array(m * m);
    for (let i = 0; i < B.length; i++) B[i] = b * A[i] + c * AA[i];
    const BX = matmul(B, x, m, m, n);
    const next = new Float64Array(m * n);
    for (let i = 0; i < next.length; i++) next[i] = a * x[i] + BX[i];
    x = next;
  }
  return tall ? transpose(x, m, n) : x;
}
