/**
 * shaders/e2e-cross-entropy.wgsl (src/gpu/ops/e2e-cross-entropy.ts) against its CPU twin,
 * crossEntropyBackward (src/reference/e2e/backward.ts), f64 on the same f32 logits.
 *
 * Error bound, per row (u = 2^-24, ulp = 2u relative; Vulkan: exp within 3 + 2|x| ulp, log within 3 ulp
 * or 2^-21 absolute on [0.5, 2], division 2.5 ulp). With m the row max and R = max_i (m - x_i):
 *  - s = sum_i exp(x_i - m), as the kernel forms it: each term's exp (3 + 2R) ulp relative; each lane's
 *    sequential sum, n_lane roundings (u each, positive terms); every time a lane meets a new max it
 *    rescales its sum by exp(m_old - x): 3 ulp per rescale plus 2Δ ulp, the Δs telescoping to <= R; the
 *    64-lane tree (6 levels) and the merges of T tiles: per merge two exps (6 ulp, Δs again <= R each
 *    path) and three roundings. The rescale count is replayed from the data (the lanes see columns
 *    l, l + 64, ... of each tile in order), k = the largest count of any lane:
 *      eps_s = ulp·(3 + 2R) + ulp·(3k + 2R) + u·n_lane + (5 + T)·(6 ulp + 3u) + 4R·ulp.
 *  - nll = m + log s - x_t: eps_s (absolute, in log s) + log's own error + 2 roundings of the sums:
 *      atol_nll = eps_s + max(2^-21, 3 ulp·log s) + 2u·(|m| + log s + |nll|).
 *  - loss = the shares nll·w (w = 1/count, 2.5 ulp; the product, u) summed by one lane in row order (the
 *    readers' chunkLoss): sum of atol_nll / count + (B + 6)·u·sum|nll| / count.
 *  - dlogit = (exp(x - m)/s - [i = t])·w, w = 1/count: relative error of the quotient
 *    eps_q = eps_s + (3 + 2(m - x) + 2.5) ulp, the subtraction u·|q - 1|, the product and w: 8u·|dlogit|:
 *      atol_dl = w·(p·eps_q + u·|p - [i = t]|) + 8u·|dlogit| + 2^-126,
 *    the last term for probabilities below f32's smallest normal, which the GPU may flush to 0.
 * Measured errors sit orders of magnitude below these bounds (CLOSE_LOG=1 prints them); the planted
 * variants at the end show that errors a kernel could plausibly make (a column dropped, BOS counted,
 * tiles not merged) exceed them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockParams } from '../../src/gpu/block.ts';
import type { GpuContext } from '../../src/gpu/context.ts';
import { chunkLoss, CrossEntropyOp } from '../../src/gpu/ops/e2e-cross-entropy.ts';
import { crossEntropyBackward } from '../../src/reference/e2e/backward.ts';
import { gaussian, rng } from '../helpers/random-model.ts';
import { openTestGpu, readF32, runPass, upload, zeros } from '../helpers/gpu.ts';
import { expectClose, expectNotClose } from '../helpers/close.ts';

const u = 2 ** -24, ulp = 2 * u;

interface Case {
  readonly B: number;
  readonly V: number;
  readonly logits: Float32Array;
  readonly targets: number[];
  readonly bos: number | null;
}

interface Bounds {
  readonly nll: Float64Array;
  readonly loss: number;
  readonly dlogits: Float64Array;
}

/** The bound of the header, for launches of `tile` columns (or the listed tiles). */
function bounds(c: Case, tiling: number | readonly { v0: number; width: number }[], ref: ReturnType<typeof crossEntropyBackward>): Bounds {
  const { B, V, logits, targets } = c;
  const list = typeof tiling === 'number' ? Array.from({ length: Math.ceil(V / tiling) }, (_, t) => ({ v0: t * tiling, width: Math.min(tiling, V - t * tiling) })) : tiling;
  const T = list.length;
  const nll = new Float64Array(B), dl = new Float64Array(B * V);
  let count = 0;
  for (let r = 0; r < B; r++) count += ref.valid[r];
  const w = 1 / Math.max(count, 1e-10);
  let lossAtol = 0, sumAbs = 0;
  for (let r = 0; r < B; r++) {
    const row = logits.subarray(r * V, (r + 1) * V);
    let m = -Infinity, lo = Infinity;
    for (const x of row) { m = Math.max(m, x); lo = Math.min(lo, x); }
    const R = m - lo;
    // Replay the lanes: rescales after a lane's first column, per tile.
    let k = 0, nLane = 0;
    for (let t = 0; t < T; t++) {
      const { v0, width } = list[t];
      nLane += Math.ceil(width / 64);
      for (let lane = 0; lane < 64; lane++) {
        let lm = -Infinity, n = 0;
        for (let i = lane; i < width; i += 64) {
          if (row[v0 + i] > lm) { if (lm !== -Infinity) n++; lm = row[v0 + i]; }
        }
        k = Math.max(k, n);
      }
    }
    const epsS = ulp * (3 + 2 * R) + ulp * (3 * k + 2 * R) + u * nLane + (5 + T) * (6 * ulp + 3 * u) + 4 * R * ulp;
    let s = 0;
    for (const x of row) s += Math.exp(x - m);
    const logS = Math.log(s);
    nll[r] = epsS + Math.max(2 ** -21, 3 * ulp * logS) + 2 * u * (Math.abs(m) + logS + Math.abs(ref.nll[r]));
    if (ref.valid[r]) { lossAtol += nll[r]; sumAbs += Math.abs(ref.nll[r]); }
    for (let i = 0; i < V; i++) {
      const p = Math.exp(row[i] - m) / s;
      const epsQ = epsS + (5.5 + 2 * (m - row[i])) * ulp;
      const onehot = i === targets[r] ? 1 : 0;
      dl[r * V + i] = ref.valid[r] ? w * (p * epsQ + u * Math.abs(p - onehot)) + 8 * u * Math.abs(ref.dlogits[r * V + i]) + 2 ** -126 : 0;
    }
  }
  const loss = count ? lossAtol / count + (B + 6) * u * sumAbs / count : 0;
  return { nll, loss, dlogits: dl };
}

function randn(n: number, seed: number, scale = 1): Float32Array {
  const g = gaussian(rng(seed));
  return Float32Array.from({ length: n }, () => scale * g());
}

function randomTargets(B: number, V: number, seed: number, bosRows: readonly number[], bos: number): number[] {
  const r = rng(seed);
  return Array.from({ length: B }, (_, i) => (bosRows.includes(i) ? bos : (1 + Math.floor(r() * (V - 1))) % V));
}

describe('e2e-cross-entropy.wgsl against crossEntropyBackward', () => {
  let ctx: GpuContext;
  let block: BlockParams;
  beforeAll(async () => {
    ctx = (await openTestGpu()).ctx;
    block = new BlockParams(ctx);
  });
  afterAll(() => ctx?.device.destroy());

  /** oneLaunch: `encode` (one tile, in place: the ROW launch) instead of the stats, finish and grad launches. */
  interface RunOpts { tile?: number; inPlace?: boolean; capacity?: number; tileList?: { v0: number; width: number }[]; targetOff?: number; oneLaunch?: boolean }

  /** Runs the op over c with launches of `tile` columns, or of `tileList`'s (the test writes each tile into the tile buffer before its launch). */
  async function run(c: Case, opts: RunOpts = {}) {
    const { B, V, logits } = c;
    const list = opts.tileList ?? Array.from({ length: Math.ceil(V / Math.min(opts.tile ?? V, V)) }, (_, t) => {
      const tile = Math.min(opts.tile ?? V, V);
      return { v0: t * tile, width: Math.min(tile, V - t * tile) };
    });
    const tile = Math.max(...list.map((t) => t.width));
    const capacity = opts.capacity ?? B;
    const off = opts.targetOff ?? 0;
    const tileOf = (t: number) => {
      const { v0, width } = list[t];
      const out = new Float32Array(capacity * tile).fill(Number.NaN); // columns past a narrow tile's width: never read
      for (let r = 0; r < B; r++) out.set(logits.subarray(r * V + v0, r * V + v0 + width), r * tile);
      return out;
    };
    const tileBuf = upload(ctx, tileOf(0));
    const dBuf = opts.inPlace ? undefined : zeros(ctx, capacity * tile);
    // Targets after `off` entries the op must skip (ids that would change the loss if read).
    const targets = ctx.allocator.upload('targets', 'scratch', Uint32Array.from({ length: off + capacity }, (_, i) => (i < off ? (c.targets[0] + 1) % V : c.targets[i - off] ?? 0)));
    const nll = zeros(ctx, capacity), loss = zeros(ctx, 1 + capacity);
    const spec = { rows: capacity, blockRows: capacity !== B, vocab: V, tile: opts.tileList ? undefined : tile, tileList: opts.tileList, bos: c.bos, targetOff: off };
    const op = new CrossEntropyOp(ctx, 'ce', spec, { logits: tileBuf, targets, nll, loss, dlogits: dBuf }, block);
    expect(op.tiles).toBe(list.length);
    block.write(B, 0);
    const result = async (dlogits: Float32Array) => {
      const l = await readF32(ctx, loss);
      return { nll: (await readF32(ctx, nll)).subarray(0, B), loss: chunkLoss(l, B), count: l[0], shares: l.subarray(1, 1 + B), dlogits };
    };
    expect(op.oneLaunch).toBe(list.length === 1 && !!opts.inPlace);
    if (opts.oneLaunch) {
      await runPass(ctx, (pass) => op.encode(pass, B));
      const got = await readF32(ctx, tileBuf, capacity * tile);
      const dlogits = new Float32Array(B * V);
      for (let r = 0; r < B; r++) dlogits.set(got.subarray(r * tile, r * tile + V), r * V);
      return result(dlogits);
    }
    for (let t = 0; t < op.tiles; t++) {
      ctx.device.queue.writeBuffer(tileBuf, 0, tileOf(t));
      await runPass(ctx, (pass) => op.encodeStats(pass, t, B));
    }
    await runPass(ctx, (pass) => op.encodeFinish(pass));
    const dlogits = new Float32Array(B * V);
    for (let t = 0; t < op.tiles; t++) {
      ctx.device.queue.writeBuffer(tileBuf, 0, tileOf(t));
      await runPass(ctx, (pass) => op.encodeGrad(pass, t, B));
      const got = await readF32(ctx, dBuf ?? tileBuf, capacity * tile);
      const { v0, width } = list[t];
      for (let r = 0; r < B; r++) dlogits.set(got.subarray(r * tile, r * tile + width), r * V + v0);
    }
    return result(dlogits);
  }

  function reference(c: Case) {
    return crossEntropyBackward(Float64Array.from(c.logits), c.B, c.V, c.targets, c.bos);
  }

  /** Checks one run; a one-tile in-place case runs both ways (the three launches and the one). */
  async function check(name: string, c: Case, opts: RunOpts = {}) {
    const ref = reference(c);
    const b = bounds(c, opts.tileList ?? Math.min(opts.tile ?? c.V, c.V), ref);
    const oneTile = (opts.tileList?.length ?? Math.ceil(c.V / Math.min(opts.tile ?? c.V, c.V))) === 1;
    let first: Awaited<ReturnType<typeof run>> | undefined;
    for (const oneLaunch of oneTile && opts.inPlace ? [false, true] : [false]) {
      const got = await run(c, { ...opts, oneLaunch });
      const how = `${name}${oneLaunch ? ' (one launch)' : ''}`;
      expectClose(got.nll, ref.nll, { atol: b.nll, rtol: 0, label: `${how}: nll` });
      expectClose([got.loss], [ref.loss], { atol: b.loss, rtol: 0, label: `${how}: loss` });
      expect(got.count, `${how}: #valid`).toBe(ref.valid.reduce((s, v) => s + v, 0));
      expectClose(got.shares, ref.nll.map((v, r) => (ref.valid[r] ? v / Math.max(got.count, 1e-10) : 0)), { atol: b.nll.map((a, r) => (ref.valid[r] ? (a + 6 * u * Math.abs(ref.nll[r])) / got.count : 0)), rtol: 0, label: `${how}: shares` });
      expectClose(got.dlogits, ref.dlogits, { atol: b.dlogits, rtol: 0, label: `${how}: dlogits` });
      first ??= got;
    }
    return { got: first!, ref, bounds: b };
  }

  it('V = 256 (the byte vocabulary), BOS targets skipped, one launch, in place and into its own buffer', async () => {
    const [B, V, bos] = [9, 256, 1];
    // Rows at three scales: ordinary, peaked (range ~150: exp underflows for most columns) and flat.
    const logits = randn(B * V, 1, 3);
    for (let i = 0; i < V; i++) { logits[2 * V + i] *= 8; logits[5 * V + i] *= 0.01; }
    const c: Case = { B, V, logits, targets: randomTargets(B, V, 2, [0, 4], bos), bos };
    await check('V 256 separate', c);
    await check('V 256 in place', c, { inPlace: true });
  });

  it('V = 1000 (not a multiple of 64), whole rows and in tiles of 384 (the last one 232 wide), ascending rows (a rescale at every column)', async () => {
    const [B, V, bos] = [6, 1000, 3];
    const logits = randn(B * V, 3, 2);
    for (let i = 0; i < V; i++) logits[1 * V + i] = 0.02 * i - 5; // every lane meets a new max at every column
    for (let i = 0; i < V; i++) logits[4 * V + i] = 5 - 0.02 * i; // and never after its first
    const c: Case = { B, V, logits, targets: [999, 3, 0, 384, 767, 768], bos };
    await check('V 1000 one tile', c);
    await check('V 1000 one tile, in place', c, { inPlace: true });
    await check('V 1000 tiles of 384', c, { tile: 384, inPlace: true });
    await check('V 1000 tiles of 64', c, { tile: 64 });
  });

  it('targets read from an offset (the engine reads a chunk\'s kept tokens one on), and uneven explicit tiles (a split weight\'s parts)', async () => {
    const [B, V, bos] = [7, 700, 2];
    const c: Case = { B, V, logits: randn(B * V, 8, 2), targets: randomTargets(B, V, 9, [3], bos), bos };
    await check('target offset 1', c, { targetOff: 1, inPlace: true });
    await check('target offset 5, tiles 300|100|300', c, { targetOff: 5, tileList: [{ v0: 0, width: 300 }, { v0: 300, width: 100 }, { v0: 400, width: 300 }] });
    // Planted: the targets one row off (what reading a kept chunk from offset 0 instead of 1 gives) change the loss.
    const shifted = await run({ ...c, targets: [(c.targets[0] + 1) % V, ...c.targets.slice(0, B - 1)] }, {});
    expect(shifted.loss).not.toBeCloseTo(reference(c).loss, 3);
    expect(() => new CrossEntropyOp(ctx, 'gap', { rows: 2, vocab: 10, tileList: [{ v0: 0, width: 4 }, { v0: 5, width: 5 }], bos: null }, { logits: zeros(ctx, 20), targets: zeros(ctx, 2), nll: zeros(ctx, 2), loss: zeros(ctx, 3) }, block)).toThrow(/does not follow/);
    expect(() => new CrossEntropyOp(ctx, 'short loss', { rows: 2, vocab: 10, bos: null }, { logits: zeros(ctx, 20), targets: zeros(ctx, 2), nll: zeros(ctx, 2), loss: zeros(ctx, 2) }, block)).toThrow(/loss buffer/);
  });

  it('an all-BOS chunk: loss 0, #valid 0, gradient exactly 0, no NaN', async () => {
    const [B, V, bos] = [5, 300, 7];
    const c: Case = { B, V, logits: randn(B * V, 4, 4), targets: Array(B).fill(bos), bos };
    const { got } = await check('all BOS', c, { tile: 128 });
    expect([got.loss, got.count]).toEqual([0, 0]);
    const one = await check('all BOS, one tile', c, { inPlace: true });
    expect([one.got.loss, one.got.count]).toEqual([0, 0]);
    expect(one.got.dlogits.every((v) => v === 0)).toBe(true);
    expect(got.dlogits.every((v) => v === 0)).toBe(true);
    expect(got.nll.every(Number.isFinite)).toBe(true);
  });

  it('no BOS id: every target counts; rows from the block uniform (5 of 8)', async () => {
    const [B, V] = [5, 200];
    const c: Case = { B, V, logits: randn(B * V, 5, 2), targets: [1, 1, 0, 199, 50], bos: null };
    await check('no BOS, block rows', c, { capacity: 8, inPlace: true });
  });

  it('V = 128256 (the Llama-3 vocabulary) in 64-lane workgroups, whole rows and in tiles of 32768', async () => {
    const [B, V, bos] = [3, 128256, 128000];
    const c: Case = { B, V, logits: randn(B * V, 6, 3), targets: [128000, 5, 128255], bos };
    await check('V 128256 one tile', c, { inPlace: true });
    await check('V 128256 tiles of 32768', c, { tile: 32768 });
  });

  it('the bounds catch planted errors: a column dropped, BOS counted, the last tile not merged', async () => {
    const [B, V, bos] = [6, 1000, 3];
    const logits = randn(B * V, 7, 2);
    const c: Case = { B, V, logits, targets: [10, 3, 500, 999, 3, 0], bos };
    const got = await run(c, { tile: 384 });
    const ref = reference(c);
    const b = bounds(c, 384, ref);
    // 1. The tile edge: the last column of every tile left out of the sum (a `<=` for `<`, or the reverse).
    const dropped = logits.map((x, i) => ((i % V) % 384 === 383 || i % V === V - 1 ? -1e30 : x));
    const refDropped = crossEntropyBackward(Float64Array.from(dropped), B, V, c.targets, bos);
    expectNotClose(got.nll, refDropped.nll, { atol: b.nll, rtol: 0, label: 'planted: a column per tile dropped' });
    // 2. BOS targets counted in the loss and the gradient.
    const refAll = crossEntropyBackward(Float64Array.from(logits), B, V, c.targets, null);
    expectNotClose([got.loss], [refAll.loss], { atol: b.loss, rtol: 0, label: 'planted: BOS counted (loss)' });
    expectNotClose(got.dlogits, refAll.dlogits, { atol: b.dlogits, rtol: 0, label: 'planted: BOS counted (dlogits)' });
    // 3. The last tile's stats overwriting instead of merging (the loss over columns 768.. only).
    const lastOnly = logits.map((x, i) => (i % V < 768 && i % V !== c.targets[Math.floor(i / V)] ? -1e30 : x));
    const refLast = crossEntropyBackward(Float64Array.from(lastOnly), B, V, c.targets, bos);
    expectNotClose(got.nll, refLast.nll, { atol: b.nll, rtol: 0, label: 'planted: tiles not merged' });
    // 4. The gradient without the onehot (softmax alone), in the valid rows.
    const noOnehot = Float64Array.from(ref.dlogits);
    for (let r = 0; r < B; r++) if (ref.valid[r]) noOnehot[r * V + c.targets[r]] += 1 / 4;
    expectNotClose(got.dlogits, noOnehot, { atol: b.dlogits, rtol: 0, label: 'planted: no onehot' });
  });
});
