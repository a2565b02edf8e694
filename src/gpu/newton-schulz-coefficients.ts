/**
 * Muon's per-step Newton–Schulz constants (a, b, c), as the official code has them (not the paper's
 * older single triple): step i maps X to a X + (b A + c A^2) X with A = X X^T. The one source for the
 * GPU update (src/gpu/ops/fast-weights.ts passes them to newton-schulz.wgsl's update as uniforms) and
 * the CPU reference (src/reference/newton-schulz.ts).
 */
export const NS5_COEFFS: ReadonlyArray<readonly [number, number, number]> = [
  [4.0848, -6.8946, 2.927],
  [3.9505, -6.3029, 2.6377],
  [3.7418, -5.5913, 2.3037],
  [2.8769, -3.1427, 1.2046],
  [2.8366, -3.0525, 1.2012],
];
