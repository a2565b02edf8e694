/**
 * The one closeness measure of the numeric tests: element-wise |actual[i] - expected[i]| <= atol + rtol·|expected[i]|.
 *
 * A metric that divides the worst error by the largest reference value (max|a-b| / max|b|) lets every
 * element small next to the largest one be wrong by up to tol·max|b|: small state values (momentum, a
 * head with small weights, logits far below the top) could be wholly wrong and pass. Here each element
 * is held to its own magnitude (rtol), with an absolute floor (atol) that each check states and derives
 * for values near zero, where a relative bound means nothing.
 */
import { expect } from 'vitest';

export interface CloseTolerance {
  /**
   * Absolute floor: what an element near zero may be off by (derive it in the test). One number, or one
   * per element where the error model gives each its own (a dot product's rounding scales with sum|terms|).
   */
  readonly atol: number | ArrayLike<number>;
  /** Relative part, to |expected[i]|. */
  readonly rtol: number;
  /** Names the check in the failure message. */
  readonly label?: string;
}

export interface Closeness {
  /** Every element within its bound (and none NaN, and the lengths equal). */
  readonly ok: boolean;
  /** Largest |a-b| / (atol + rtol·|b|) over the elements: <= 1 when ok; Infinity for a NaN. */
  readonly ratio: number;
  /** The element with that ratio. */
  readonly index: number;
  readonly actual: number;
  readonly expected: number;
  /** The absolute floor at that element. */
  readonly atol: number;
  /** Largest |a-b| over all elements (for logs). */
  readonly maxAbs: number;
  readonly length: number;
}

/** The worst element against the bound, without asserting. */
export function closeness(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: CloseTolerance): Closeness {
  const atolAt = typeof tol.atol === 'number' ? () => tol.atol as number : (i: number) => (tol.atol as ArrayLike<number>)[i];
  if (typeof tol.atol !== 'number' && tol.atol.length !== expected.length) throw new RangeError(`atol has ${tol.atol.length} values for ${expected.length} elements`);
  if (!(tol.rtol >= 0) || (typeof tol.atol === 'number' && !(tol.atol >= 0))) throw new RangeError(`atol ${String(tol.atol)} and rtol ${tol.rtol} must be >= 0`);
  if (actual.length !== expected.length) {
    return { ok: false, ratio: Infinity, index: -1, actual: NaN, expected: NaN, atol: NaN, maxAbs: Infinity, length: actual.length };
  }
  let ratio = -1, index = -1, maxAbs = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    const allowed = atolAt(i) + tol.rtol * Math.abs(expected[i]);
    // NaN in either (or an infinite difference) is never close.
    const r = Number.isNaN(d) || d === Infinity ? Infinity : d === 0 ? 0 : d / allowed;
    if (r > ratio) { ratio = r; index = i; }
    maxAbs = Number.isNaN(d) ? Infinity : Math.max(maxAbs, d);
  }
  if (index < 0) return { ok: true, ratio: 0, index: -1, actual: NaN, expected: NaN, atol: NaN, maxAbs: 0, length: 0 };
  return { ok: ratio <= 1, ratio, index, actual: actual[index], expected: expected[index], atol: atolAt(index), maxAbs, length: actual.length };
}

/** One line naming the worst element, its index and both values. */
export function describeCloseness(c: Closeness, tol: CloseTolerance): string {
  const what = tol.label ? `${tol.label}: ` : '';
  if (c.index < 0 && c.length !== 0) return `${what}lengths differ (${c.length} actual values)`;
  const d = Math.abs(c.actual - c.expected);
  return `${what}worst element [${c.index}] of ${c.length}: actual ${c.actual}, expected ${c.expected}, |diff| ${d.toExponential(3)} ` +
    `vs allowed ${(c.atol + tol.rtol * Math.abs(c.expected)).toExponential(3)} (atol ${typeof tol.atol === 'number' ? tol.atol : `${c.atol.toExponential(3)} here`}, rtol ${tol.rtol}): ` +
    `${c.atol + tol.rtol * Math.abs(c.expected) === 0 ? 'must be equal' : `${c.ratio.toPrecision(3)}x the bound`}; max |diff| ${c.maxAbs.toExponential(3)}`;
}

/** Asserts every element within atol + rtol·|expected|; the failure names the worst element. Returns the measure (for logs). */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: CloseTolerance): Closeness {
  if (actual.length !== expected.length) throw new Error(`${tol.label ?? 'expectClose'}: length ${actual.length} != ${expected.length}`);
  const c = closeness(actual, expected, tol);
  // CLOSE_LOG=1: every check prints its worst element (how close to its bound each check runs).
  if (process.env.CLOSE_LOG) process.stderr.write(`[close] ${describeCloseness(c, tol)}\n`);
  if (!c.ok) expect.fail(describeCloseness(c, tol));
  return c;
}

/** Asserts that the check would fail: some element is outside its bound (for "the check can fail" tests). */
export function expectNotClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: CloseTolerance): Closeness {
  const c = closeness(actual, expected, tol);
  if (c.ok) expect.fail(`${tol.label ?? 'expectNotClose'}: every element is within the bound, the check cannot tell these apart (${describeCloseness(c, tol)})`);
  return c;
}

/** max |a - b| (for logs and for "moved by at least" checks stated in absolute terms). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    const x = Math.abs(a[i] - b[i]);
    d = Number.isNaN(x) ? Infinity : Math.max(d, x);
  }
  return d;
}

/** max |x| */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}
