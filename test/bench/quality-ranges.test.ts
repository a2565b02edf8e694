/**
 * The quality bench's position buckets and ranges (bench/quality.ts): issue 19's targets are read off them, so a
 * shifted edge would misreport every model. Pure functions: no GPU.
 */
import { describe, expect, it } from 'vitest';
import { bucketLabel, bucketOf, parseRanges } from '../../bench/quality.ts';

describe('quality bench position ranges', () => {
  it('parses closed and open ranges', () => {
    expect(parseRanges('0:256,1024:').map((r) => [r.from, r.to])).toEqual([[0, 256], [1024, Infinity]]);
    expect(parseRanges(undefined)).toEqual([]);
  });
  it('names what is wrong with a bad range', () => {
    expect(() => parseRanges('256')).toThrow(/expected A:B/);
    expect(() => parseRanges('512:256')).toThrow(/empty range/);
  });
  it('buckets double from 512', () => {
    expect([0, 511, 512, 1023, 1024, 2047, 2048].map(bucketOf)).toEqual([0, 0, 1, 1, 2, 2, 3]);
    expect([0, 1, 2, 3].map(bucketLabel)).toEqual(['0-512', '512-1K', '1K-2K', '2K-4K']);
  });
});
