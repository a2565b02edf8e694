/**
 * Muon's orthogonalisation of an update, five Newton–Schulz steps with the official code's per-step
 * constants (not the paper's older single triple). Works on the wide orientation: a tall matrix is
 * transposed first and back at the end.
 */
import { frobenius, matmul, transpose } from './linalg.ts';

export const NS5_COEFFS: ReadonlyArray<readonly [number, number, number]> = [
  [4.0848, -6.8946, 2.927],
  [3.9505, -6.3029, 2.6377],
  [3.7418, -5.5913, 2.3037],
  [2.8769, -3.1427, 1.2046],
  [2.8366, -3.0525, 1.2012],
];

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
