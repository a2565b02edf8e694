import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockParams } from '../../src/gpu/block.ts';
import { GpuContext } from '../../src/gpu/context.ts';
import type { KernelVariant } from '../../src/gpu/kernel-variant.ts';
import { AttentionOp, attentionTile } from '../../src/gpu/ops/attention.ts';
import { KvCache, type AttentionSpec } from '../../src/gpu/ops/kv-cache.ts';
import type { LactConfig } from '../../src/model/config.ts';
import { attendRow } from '../../src/reference/layer-math.ts';
import { gaussian, rng } from '../helpers/random-model.ts';
import { openTestGpu, readF32, runPass, zeros } from '../helpers/gpu.ts';
import { closeness, expectClose } from '../helpers/close.ts';

/**
 * Element-wise |gpu - ref| <= atol + rtol·|ref|. Each output is a convex combination sum_j p_j v_j of
 * values |v| <= ~4.5 (standard normal inputs). The scores q·k/sqrt(da) (da <= 16) round to a few ulp of
 * |q||k|, the exp to 3 + 2|x| ulp, the normalisation and the weighted sum to a few more: the probabilities
 * are within ~16u relative (u = 2^-24), so the output within ~16u·sum_j p_j|v_j| <= 16u·4.5 ≈ 4e-6 worst
 * case; errors do not all align, and 1e-6 absolute (plus 1e-6 relative) holds with margin 2.5 (measured
 * worst 4e-7). The former bound was 2e-5 of the largest output: up to 5e-5 absolute.
 */
const TOL = { atol: 1e-6, rtol: 1e-6 };

/** attendRow reads only the head count and head dim of the config. */
function headsConfig(spec: AttentionSpec): LactConfig {
  return { numAttnHeads: spec.heads, attnHeadDim: spec.D / spec.heads } as LactConfig;
}

/** Reference outputs for rows [pos0, pos0 + rows) of a sequence, with the window applied as model.ts does. */
function reference(spec: AttentionSpec, qkv: Float32Array, pos0: number, rows: number, window = spec.window): Float64Array {
  const D = spec.D, c = headsConfig(spec);
  const keys: Float64Array[] = [], values: Float64Array[] = [];
  for (let j = 0; j < pos0 + rows; j++) {
    keys.push(Float64Array.from(qkv.subarray(j * 3 * D + D, j * 3 * D + 2 * D)));
    values.push(Float64Array.from(qkv.subarray(j * 3 * D + 2 * D, j * 3 * D + 3 * D)));
  }
  const q = Float64Array.from(qkv.subarray(pos0 * 3 * D, (pos0 + rows) * 3 * D));
  const out = new Float64Array(rows * D);
  for (let r = 0; r < rows; r++) {
    const t = pos0 + r;
    const lo = window === null ? 0 : Math.max(0, t - window + 1);
    attendRow(c, q, r * 3 * D, keys.slice(lo, t + 1), values.slice(lo, t + 1), out, r * D);
  }
  return out;
}

/** Counts the dispatches a recording makes, to hold dispatches() to what encode() does. */
function counting(pass: GPUComputePassEncoder): { pass: GPUComputePassEncoder; count: () => number } {
  let n = 0;
  const proxy = new Proxy(pass, {
    get(target, prop) {
      if (prop === 'dispatchWorkgroups') return (x: number, y?: number, z?: number) => { n++; target.dispatchWorkgroups(x, y, z); };
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { pass: proxy, count: () => n };
}

interface BlockResult { pos0: number; rows: number; got: Float32Array; dispatches: number; ratio: number }

describe('the GPU prefill tile fits the workgroup storage limit', () => {
  it('16 x 16 for head dim 64, smaller key tiles for larger heads, none when one row cannot fit', () => {
    expect(attentionTile(64, 16384)).toEqual({ bq: 16, bkv: 16 });
    expect(attentionTile(80, 16384)).toEqual({ bq: 16, bkv: 8 });
    expect(attentionTile(128, 16384)).toEqual({ bq: 16, bkv: 4 });
    expect(attentionTile(256, 16384)).toEqual({ bq: 4, bkv: 4 });
    expect(attentionTile(4096, 16384)).toBeNull();
    for (const da of [12, 64, 80, 128, 256, 1000]) {
      const t = attentionTile(da, 16384);
      if (t) expect(4 * (t.bq * da + 2 * t.bkv * da + t.bq * t.bkv + 3 * t.bq)).toBeLessThanOrEqual(16384);
    }
  });
});

describe.each(['cpu', 'gpu'] as KernelVariant[])('attention.wgsl (%s shapes) against attendRow', (variant) => {
  let ctx: GpuContext;
  const measured: Record<string, number> = {};
  beforeAll(async () => {
    const opened = (await openTestGpu()).ctx;
    ctx = variant === opened.kernelVariant ? opened : new GpuContext(opened.device, { kernels: variant });
    expect(ctx.kernelVariant).toBe(variant);
  });
  afterAll(() => {
    console.info(`attention (${variant} shapes): worst element in units of its bound (< 1 passes):`, measured);
    ctx?.device.destroy();
  });

  /** Feeds a random sequence through one op block by block; returns every block's output and error. */
  /** `stride`: the device rows' width; past 3D they hold junk (LaCT's gates) that must never be read. */
  async function run(spec: AttentionSpec, blocks: readonly number[], seed: number, tol = TOL, stride = 3 * spec.D): Promise<{ qkv: Float32Array; results: BlockResult[]; maxErr: number }> {
    const D = spec.D, T = blocks.reduce((a, b) => a + b, 0);
    const g = gaussian(rng(seed));
    const qkv = Float32Array.from({ length: T * 3 * D }, () => g());
    const qkvBuf = zeros(ctx, spec.maxRows * stride, 'activations');
    const outBuf = zeros(ctx, spec.maxRows * D, 'activations');
    const block = new BlockParams(ctx);
    const op = new AttentionOp(ctx, 'attn', spec, { qkv: qkvBuf, out: outBuf, qkvStride: stride === 3 * D ? undefined : stride }, new KvCache(ctx, 'kv', spec), block);
    const junk = new Float32Array(spec.maxRows * D).fill(1e3);
    const results: BlockResult[] = [];
    let pos0 = 0, maxErr = 0;
    for (const rows of blocks) {
      const rowsIn = new Float32Array(rows * stride).fill(1e3);
      for (let r = 0; r < rows; r++) rowsIn.set(qkv.subarray((pos0 + r) * 3 * D, (pos0 + r + 1) * 3 * D), r * stride);
      ctx.device.queue.writeBuffer(qkvBuf, 0, rowsIn);
      // The output must be overwritten, not accumulated into.
      ctx.device.queue.writeBuffer(outBuf, 0, junk);
      block.write(rows, pos0);
      let count = 0;
      await runPass(ctx, (pass) => {
        const c = counting(pass);
        op.encode(c.pass, rows, pos0);
        count = c.count();
      });
      expect(op.dispatches(rows, pos0), `block @${pos0} x${rows}`).toBe(count);
      const got = await readF32(ctx, outBuf, rows * D);
      const { ratio } = expectClose(got, reference(spec, qkv, pos0, rows), { ...tol, label: `block @${pos0} x${rows}` });
      results.push({ pos0, rows, got, dispatches: count, ratio });
      maxErr = Math.max(maxErr, ratio);
      pos0 += rows;
    }
    return { qkv, results, maxErr };
  }

  it('sliding window: blocks of 16, 16, 5, 1, 1, 16, ... wrap the ring, starting mid-window', async () => {
    const spec: AttentionSpec = { D: 32, heads: 2, window: 24, maxRows: 16, capacity: 0 };
    const blocks = [16, 16, 5, 1, 1, 16, 3, 16, 1, 7, 16, 2, 1];
    const { results, maxErr } = await run(spec, blocks, 1);
    measured.window = maxErr;
    // A window this short never splits: a decode step is one dispatch (cache write fused with attention).
    for (const r of results) expect(r.dispatches).toBe(1);
  });

  it('rows wider than q|k|v (LaCT: the gates follow v): the same output, the extra columns never read', async () => {
    const ring: AttentionSpec = { D: 32, heads: 2, window: 24, maxRows: 16, capacity: 0 };
    expect((await run(ring, [16, 5, 1, 16, 1, 7], 11, TOL, 3 * 32 + 7)).maxErr).toBeLessThan(1);
    // Full attention over enough keys to split, so the split and combine paths read the wide rows too.
    const full: AttentionSpec = { D: 32, heads: 2, window: null, maxRows: 16, capacity: 600, splitKeys: 64 };
    expect((await run(full, [16, 16, 16, 16, 16, 1, 1, 9, 1], 12, TOL, 3 * 32 + 7)).maxErr).toBeLessThan(1);
    const bad = { qkv: zeros(ctx, 16 * 95), out: zeros(ctx, 16 * 32) };
    expect(() => new AttentionOp(ctx, 'attn', ring, { ...bad, qkvStride: 95 }, new KvCache(ctx, 'kv', ring), new BlockParams(ctx))).toThrow(/stride 95 is less than 3D = 96/);
  });

  it('fails against a reference whose window is off by one', async () => {
    const spec: AttentionSpec = { D: 32, heads: 2, window: 24, maxRows: 16, capacity: 0 };
    const { qkv, results } = await run(spec, [16, 16, 5, 1, 16], 1);
    // Some block fails the check against a window of 23 or 25, and by far: its worst element is 1e4x the bound.
    for (const w of [23, 25]) {
      const worst = Math.max(...results.map((r) => closeness(r.got, reference(spec, qkv, r.pos0, r.rows, w), TOL).ratio));
      measured[`offByOne ${w} (x bound)`] = worst;
      expect(worst, `window ${w}`).toBeGreaterThan(1e4);
    }
  });

  it('decode over a 600-key window: splits and a combine', async () => {
    const spec: AttentionSpec = { D: 32, heads: 2, window: 600, maxRows: 64, capacity: 0 };
    const blocks = [...Array(9).fill(64), 8, 8, 3, ...Array(105).fill(1)]; // 700 positions
    const { results, maxErr } = await run(spec, blocks, 2);
    measured.longWindow = maxErr;
    const decode = results.filter((r) => r.rows === 1);
    // Up to 256 keys: one split, one dispatch; beyond, 2-3 splits and a combine.
    expect(decode.at(-1)!.pos0).toBe(699);
    expect(decode.at(-1)!.dispatches).toBe(2);
    expect(results.find((r) => r.rows === 8)!.dispatches).toBe(2);
    expect(results[0].dispatches).toBe(1);
  });

  it('full attention over 4 pages, blocks crossing page boundaries, then decode', async () => {
    const D = 32;
    // 40 positions a page: pages [0,40) [40,80) [80,120) [120,150).
    const base: AttentionSpec = { D, heads: 4, window: null, maxRows: 16, capacity: 150, maxBindingBytes: 40 * D * 4 + 12 };
    const kv = new KvCache(ctx, 'kv', base);
    expect(kv.pages.length).toBe(4);
    expect(kv.pageTokens).toBe(40);
    expect(kv.bytes).toBe(2 * 150 * D * 4);
    const blocks = [16, 16, 16, 13, 16, 16, 16, 7, ...Array(20).fill(1)]; // 136 positions
    const a = await run(base, blocks, 3);
    // Decode at position 135 reads pages 0..3: four launches and a combine.
    expect(a.results.at(-1)!.dispatches).toBe(5);
    expect(a.results[0].dispatches).toBe(1);
    // Several splits inside each page as well.
    const b = await run({ ...base, splitKeys: 7 }, blocks, 4);
    measured.paged = Math.max(a.maxErr, b.maxErr);
  });

  it('prefill rows per invocation of 1 (the per-row shape), 3 and 8 (the CPU shape\'s default of 16 runs in every other test; blocks off and under the row block, keys off the tile of 8): windowed, split, paged', async () => {
    const D = 32, blocks = [16, 16, 5, 1, 1, 16, 3, 16, 1, 7, 16, 2, 1];
    const errs: number[] = [];
    for (const rowBlock of [1, 3, 8]) {
      errs.push((await run({ D, heads: 2, window: 24, maxRows: 16, capacity: 0, rowBlock }, blocks, 21 + rowBlock)).maxErr);
      errs.push((await run({ D, heads: 2, window: null, maxRows: 16, capacity: 150, splitKeys: 7, maxBindingBytes: 40 * D * 4 + 12, rowBlock }, [16, 16, 16, 13, 16, 16, 16, 7, 1, 1], 31 + rowBlock)).maxErr);
    }
    measured.rowBlocks = Math.max(...errs);
    expect(() => new AttentionOp(ctx, 'attn', { D, heads: 2, window: 24, maxRows: 16, capacity: 0, rowBlock: 0 }, { qkv: zeros(ctx, 16 * 96), out: zeros(ctx, 16 * 32) }, new KvCache(ctx, 'kv', { D, heads: 2, window: 24, maxRows: 16, capacity: 0 }), new BlockParams(ctx))).toThrow(/rowBlock 0/);
  });

  it('head dim 12 (not a power of two), windowed and full', async () => {
    const blocks = [8, 3, 1, 8, 1, 1, 8, 2];
    const w = await run({ D: 36, heads: 3, window: 10, maxRows: 8, capacity: 0 }, blocks, 5);
    const f = await run({ D: 36, heads: 3, window: null, maxRows: 8, capacity: 64, splitKeys: 5 }, blocks, 6);
    measured.da12 = Math.max(w.maxErr, f.maxErr);
  });

  it('head dim 80 (more dims than the GPU shape\'s 64 threads), windowed and full', async () => {
    // The score's rounding grows with da (|q||k| ~ da for standard normal inputs, scaled by 1/sqrt(da)):
    // TOL's derivation at da <= 16 scaled by 80/16 = 5.
    const tol = { atol: 5 * TOL.atol, rtol: 5 * TOL.rtol };
    const blocks = [6, 1, 6, 1, 1];
    const w = await run({ D: 160, heads: 2, window: 7, maxRows: 6, capacity: 0 }, blocks, 7, tol);
    const f = await run({ D: 160, heads: 2, window: null, maxRows: 6, capacity: 32, splitKeys: 4 }, blocks, 8, tol);
    measured.da80 = Math.max(w.maxErr, f.maxErr);
  });

  it('throws RangeError past the capacity or maxRows', () => {
    const spec: AttentionSpec = { D: 8, heads: 2, window: null, maxRows: 8, capacity: 20 };
    const op = new AttentionOp(ctx, 'attn', spec, { qkv: zeros(ctx, 8 * 24), out: zeros(ctx, 8 * 8) }, new KvCache(ctx, 'kv', spec), new BlockParams(ctx));
    const enc = ctx.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    expect(() => op.encode(pass, 4, 16)).not.toThrow();
    expect(() => op.encode(pass, 5, 16)).toThrow(RangeError);
    expect(() => op.encode(pass, 1, 20)).toThrow(RangeError);
    expect(() => op.encode(pass, 9, 0)).toThrow(RangeError);
    pass.end();
    enc.finish();
    const ring: AttentionSpec = { D: 8, heads: 2, window: 4, maxRows: 8, capacity: 0 };
    const rop = new AttentionOp(ctx, 'attn', ring, { qkv: zeros(ctx, 8 * 24), out: zeros(ctx, 8 * 8) }, new KvCache(ctx, 'kv', ring), new BlockParams(ctx));
    expect(() => rop.dispatches(9, 100)).toThrow(RangeError);
    expect(rop.dispatches(8, 1_000_000)).toBe(1);
  });
});
