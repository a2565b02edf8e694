// The demo's loss-by-position arithmetic (demo/loss-curve.ts) and its export (demo/export.ts), DOM-free.
import { describe, expect, it } from 'vitest';
import { exportCsv, exportJson, parseExportCsv, type RunExport } from '../../demo/export.ts';
import { bucketOf, bucketRange, LossCurve } from '../../demo/loss-curve.ts';

describe('loss by position (demo/loss-curve.ts)', () => {
  it('buckets double from 256: 0-256, 256-512, 512-1K, ...', () => {
    expect([0, 255, 256, 511, 512, 1023, 1024, 4095, 4096].map(bucketOf)).toEqual([0, 0, 1, 1, 2, 2, 3, 4, 5]);
    expect([0, 1, 2, 5].map(bucketRange)).toEqual([[0, 256], [256, 512], [512, 1024], [4096, 8192]]);
  });

  it('bucket means, the running mean of the last `smooth` tokens every `every` positions, and the mean so far, over calls of any size; NaN skipped', () => {
    const n = 1100;
    const lp = Float64Array.from({ length: n }, (_, p) => (p === 0 ? NaN : -Math.LN2 * (1 + (p % 7) / 10))); // bits 1.0 .. 1.6
    const bits = (p: number) => 1 + (p % 7) / 10;
    const curve = new LossCurve(100, 50);
    const points = [];
    let s = 0;
    for (const size of [1, 49, 300, 1, 749]) {
      points.push(...curve.push(s, lp.subarray(s, s + size)));
      s += size;
    }
    expect(curve.next).toBe(n);
    expect(curve.scoredTokens).toBe(n - 1);
    // A point every 50 positions; each the mean of the (at most) 100 scored tokens before it.
    expect(points.map((p) => p.position)).toEqual(Array.from({ length: 22 }, (_, i) => 50 * (i + 1)));
    for (const p of points) {
      const from = Math.max(1, p.position - 100);
      let sum = 0;
      for (let q = from; q < p.position; q++) sum += bits(q);
      expect(p.bits).toBeCloseTo(sum / (p.position - from), 12);
    }
    const b = curve.buckets();
    expect(b.map((x) => [x.from, x.to, x.tokens])).toEqual([[0, 256, 255], [256, 512, 256], [512, 1024, 512], [1024, 2048, 76]]);
    let all = 0;
    for (let q = 1; q < n; q++) all += bits(q);
    expect(curve.meanBits).toBeCloseTo(all / (n - 1), 12);
    // Each bucket sits at the mean position of its scored tokens: 1..255, 256..511, ..., 1024..1099.
    expect(b.map((x) => x.position)).toEqual([128, 383.5, 767.5, 1061.5]);
  });

  it('a bucket is drawn once it holds minBucketTokens scored tokens', () => {
    const curve = new LossCurve(256, 32, 32);
    curve.push(0, Float64Array.from({ length: 256 + 31 }, (_, p) => (p === 0 ? NaN : -Math.LN2)));
    expect(curve.buckets().map((b) => [b.from, b.tokens])).toEqual([[0, 255]]);
    curve.push(256 + 31, [-2 * Math.LN2]);
    expect(curve.buckets().map((b) => [b.from, b.tokens, b.bits])).toEqual([[0, 255, 1], [256, 32, 33 / 32]]);
    // The bucket's tokens still count toward the mean so far before it is drawn.
    expect(curve.scoredTokens).toBe(255 + 32);
  });

  it('refuses a call that does not continue where the last one stopped', () => {
    const curve = new LossCurve();
    curve.push(0, [NaN, -1]);
    expect(() => curve.push(3, [-1])).toThrow(/expected position 2, got 3/);
    expect(new LossCurve().meanBits).toBeNull();
  });
});

describe('run export (demo/export.ts)', () => {
  const run: RunExport = {
    exported: '2026-12-02T00:00:00.000Z',
    document: 'a "quoted", document',
    adapter: 'test',
    models: [{ name: 'm', mode: 'ttt', window: 256, lossBits: 1.5, tokensRead: 10 }],
    charts: {
      loss: { labels: ['m: line', 'm, "bucket"'], rows: [[50, 1.25, null], [128, null, 1.5]] },
      latency: { labels: ['m: each step'], rows: [[3, 0.5]] },
    },
  };

  it('JSON holds the charts and the units; CSV one line per point, quoted where needed, and parses back', () => {
    const j = JSON.parse(exportJson(run));
    expect(j.charts).toEqual(run.charts);
    expect(j.units.loss).toBe('bits per token');
    const csv = exportCsv(run);
    expect(csv.split('\n')[0]).toBe('chart,series,position,value,unit');
    expect(csv).toContain('loss,"m, ""bucket""",128,1.5,bits per token');
    expect(parseExportCsv(csv)).toEqual([
      { chart: 'loss', series: 'm: line', position: 50, value: 1.25 },
      { chart: 'loss', series: 'm, "bucket"', position: 128, value: 1.5 },
      { chart: 'latency', series: 'm: each step', position: 3, value: 0.5 },
    ]);
  });
});
