// The shared closeness check (test/helpers/close.ts): element-wise |a - b| <= atol + rtol·|b|.
import { describe, expect, it } from 'vitest';
import { closeness, expectClose, expectNotClose } from './helpers/close.ts';

describe('expectClose', () => {
  it('holds each element to its own magnitude, and names the worst one, its index and both values', () => {
    const want = [100, 1, 0.01, 0];
    expectClose([100.0001, 1.000001, 0.01000001, 1e-9], want, { atol: 1e-8, rtol: 2e-6 });
    // 1% off on the element of 0.01: invisible next to 100 for max|diff| / max|b| (1e-6), not here.
    expect(() => expectClose([100, 1, 0.0101, 0], want, { atol: 1e-8, rtol: 1e-4, label: 'momentum' }))
      .toThrow(/momentum: worst element \[2\] of 4: actual 0\.0101, expected 0\.01, .*x the bound/);
  });

  it('takes a per-element absolute floor', () => {
    expectClose([1.1, 2.1], [1, 2], { atol: [0.2, 0.2], rtol: 0 });
    const c = closeness([1.1, 2.1], [1, 2], { atol: [0.2, 0.05], rtol: 0 });
    expect(c.ok).toBe(false);
    expect(c.index).toBe(1);
    expect(c.atol).toBe(0.05);
  });

  it('a NaN or a length mismatch never passes; expectNotClose is its negation', () => {
    expect(closeness([NaN], [1], { atol: 1, rtol: 1 }).ok).toBe(false);
    expect(closeness([1], [NaN], { atol: 1, rtol: 1 }).ok).toBe(false);
    expect(() => expectClose([1, 2], [1], { atol: 1, rtol: 0 })).toThrow(/length/);
    expectNotClose([1.5], [1], { atol: 0.1, rtol: 0.1 });
    expect(() => expectNotClose([1.05], [1], { atol: 0.1, rtol: 0 })).toThrow(/cannot tell these apart/);
  });
});
