/**
 * shaders/e2e-clip-sgd.wgsl (src/gpu/ops/e2e-clip-sgd.ts) against clipAndStep
 * (src/reference/e2e/update.ts), f64 on the same f32 θ and g.
 *
 * Error bound (u = 2^-24; Vulkan: sqrt inherited from 1/inverseSqrt, 2 + 2.5 ulp = 9u; division
 * 2.5 ulp = 5u). Σg² has only positive terms, each square rounded once inside an fma: the partial lanes
 * add at most `lane` terms each (the largest ceil(n / (groups·64)) of any tensor), a 6-level tree, the norm
 * lane at most ceil(slots/256) partials, an 8-level tree: relative eps_ss = (lane + 6 + ceil(slots/256) + 8 + 1)u.
 * ||g||: eps_ss/2 + 9u; c = max_norm/||g|| (when it clips): + 5u; η·c: + u, and η itself rounded to f32:
 * + u. Each θ element: |η c g|·(eps_ηc + u) + u·|θ_new| (the product, then the subtraction).
 * The one-launch path (FUSED: one tensor, one workgroup of 256) has lanes of ceil(n/256) terms and one
 * 8-level tree: eps_ss = (lane + 8 + 1)u. The planted variants at the end (per-layer clipping, always
 * clipping, Σg² for the norm) exceed it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.ts';
import { BlockParams } from '../../src/gpu/block.ts';
import { DispatchCounter } from '../../src/gpu/dispatch-counter.ts';
import { ClipSgdOp, type StepTensor } from '../../src/gpu/ops/e2e-clip-sgd.ts';
import { clipAndStep, type DynamicWeights } from '../../src/reference/e2e/index.ts';
import { gaussian, rng } from '../helpers/random-model.ts';
import { openTestGpu, readF32, runPass, upload } from '../helpers/gpu.ts';
import { expectClose, expectNotClose } from '../helpers/close.ts';

const u = 2 ** -24;

function randn(n: number, seed: number, s = 1): Float32Array {
  const g = gaussian(rng(seed));
  return Float32Array.from({ length: n }, () => s * g());
}

/** S layers of (d, f); the three tensors of every layer as f32 arrays. */
function layers(S: number, d: number, f: number, seed: number, s: number): Float32Array[][] {
  return Array.from({ length: S }, (_, j) => [0, 1, 2].map((k) => randn(d * f, seed + 10 * j + k, s)));
}

const dyn = (t: Float32Array[]): DynamicWeights => ({ w1: Float64Array.from(t[0]), w2: Float64Array.from(t[1]), w3: Float64Array.from(t[2]) });
const flat = (ws: DynamicWeights[]) => Float64Array.from(ws.flatMap((w) => [...w.w1, ...w.w2, ...w.w3]));

describe('e2e-clip-sgd.wgsl against clipAndStep', () => {
  let ctx: GpuContext;
  beforeAll(async () => { ctx = (await openTestGpu()).ctx; });
  afterAll(() => ctx?.device.destroy());

  /** Runs the op on θ, g (one buffer per tensor, or every tensor packed in one buffer); returns θ after and the stats. */
  async function run(theta: Float32Array[][], grads: Float32Array[][], lr: number, maxNorm: number, opts: { packed?: boolean; maxGroups?: number; fusedMax?: number } = {}) {
    const ths = theta.flat(), gs = grads.flat();
    let tensors: StepTensor[], read: () => Promise<Float32Array>;
    if (opts.packed) {
      // Packed, with a gap of 5 elements before the first: offsets in both buffers; the gap must not move.
      const cat = (xs: Float32Array[]) => { const out = new Float32Array(5 + xs.reduce((s, x) => s + x.length, 0)).fill(7); let o = 5; for (const x of xs) { out.set(x, o); o += x.length; } return out; };
      const tb = upload(ctx, cat(ths)), gb = upload(ctx, cat(gs));
      tensors = [{ theta: tb, thetaOff: 5, grad: gb, gradOff: 5, n: ths.reduce((s, x) => s + x.length, 0) }];
      read = async () => {
        const all = await readF32(ctx, tb);
        expect(Array.from(all.subarray(0, 5))).toEqual([7, 7, 7, 7, 7]);
        return all.subarray(5);
      };
    } else {
      const bufs = ths.map((t, i) => ({ theta: upload(ctx, t), grad: upload(ctx, gs[i]), n: t.length }));
      tensors = bufs;
      read = async () => Float32Array.from((await Promise.all(bufs.map((b) => readF32(ctx, b.theta)))).flatMap((a) => Array.from(a)));
    }
    const op = new ClipSgdOp(ctx, 'clip sgd', tensors, { lr, maxNorm, maxGroups: opts.maxGroups, fusedMax: opts.fusedMax });
    await runPass(ctx, (p) => op.encode(p));
    return { theta: await read(), stats: await readF32(ctx, op.stats), op };
  }

  function expectStep(name: string, theta: Float32Array[][], grads: Float32Array[][], lr: number, maxNorm: number, got: { theta: Float32Array; stats: Float32Array; op: ClipSgdOp }) {
    const ref = clipAndStep(theta.map(dyn), grads.map(dyn), lr, maxNorm);
    const gs = grads.flat();
    const laneMax = Math.max(...got.op.tensors.map((t, i) => Math.ceil(t.n / (64 * got.op.groups[i]))));
    const epsSS = got.op.fused
      ? (Math.ceil(got.op.tensors[0].n / 256) + 8 + 1) * u
      : (laneMax + 6 + Math.ceil(got.op.slots / 256) + 8 + 1) * u;
    const epsN = epsSS / 2 + 9 * u;
    const clips = ref.clipScale !== 1;
    const epsC = clips ? epsN + 5 * u : 0;
    const epsF = epsC + 2 * u;
    let ss = 0;
    for (const g of gs) for (const v of g) ss += v * v;
    const flatG = Float64Array.from(gs.flatMap((g) => Array.from(g)));
    const want = flat(ref.theta);
    const atol = want.map((t, i) => Math.abs(lr * ref.clipScale * flatG[i]) * (epsF + u) + u * Math.abs(t));
    expectClose(got.stats, [ss, ref.gradNorm, ref.clipScale, lr * ref.clipScale], {
      atol: [epsSS * ss, epsN * ref.gradNorm, epsC * ref.clipScale, (epsC + 2 * u) * lr * ref.clipScale], rtol: 0, label: `${name}: [Σg², ||g||, c, ηc]`,
    });
    expectClose(got.theta, want, { atol, rtol: 0, label: `${name}: θ` });
    return { ref, atol, want };
  }

  const [S, d, f] = [3, 16, 24];

  it('clips (||g|| ≈ 59 ≥ max_norm 1), one buffer per tensor; the same packed in one buffer with offsets', async () => {
    const theta = layers(S, d, f, 1, 0.3), grads = layers(S, d, f, 100, 1);
    const { ref } = expectStep('clips', theta, grads, 1, 1, await run(theta, grads, 1, 1));
    expect(ref.clipScale).toBeLessThan(0.05);
    const packed = await run(theta, grads, 1, 1, { packed: true });
    expect(packed.op.fused).toBe(true);
    expectStep('clips, packed (one launch)', theta, grads, 1, 1, packed);
    const staged = await run(theta, grads, 1, 1, { packed: true, fusedMax: 0 });
    expect(staged.op.fused).toBe(false);
    expectStep('clips, packed, three stages', theta, grads, 1, 1, staged);
  });

  it('does not clip: ||g|| below max_norm, and max_norm ≤ 0 (no clip at any norm); η = 0.1', async () => {
    const theta = layers(S, d, f, 2, 0.3), grads = layers(S, d, f, 200, 0.01);
    const { ref } = expectStep('below max_norm', theta, grads, 0.1, 1, await run(theta, grads, 0.1, 1));
    expect(ref.clipScale).toBe(1);
    expect(ref.gradNorm).toBeGreaterThan(0.4);
    const big = layers(S, d, f, 300, 1);
    for (const maxNorm of [0, -1]) expectStep(`max_norm ${maxNorm}`, theta, big, 0.1, maxNorm, await run(theta, big, 0.1, maxNorm));
  });

  it('a zero gradient: norm 0, no NaN, θ exactly unchanged', async () => {
    const theta = layers(S, d, f, 3, 0.3), grads = layers(S, d, f, 0, 0);
    const got = await run(theta, grads, 1, 1);
    expect(Array.from(got.stats)).toEqual([0, 0, 1, 1]);
    expect(Array.from(got.theta)).toEqual(theta.flat().flatMap((t) => Array.from(t)));
  });

  it('many workgroups per tensor capped at maxGroups (grid-stride partial sums), and setHyper', async () => {
    const theta = layers(2, 64, 96, 4, 0.3), grads = layers(2, 64, 96, 400, 0.1);
    for (const maxGroups of [1, 3, 1024]) {
      const got = await run(theta, grads, 0.5, 2, { maxGroups, packed: maxGroups === 3, fusedMax: 0 });
      expect(got.op.slots).toBe(maxGroups === 3 ? 3 : 6 * Math.min(maxGroups, 6));
      expectStep(`maxGroups ${maxGroups}`, theta, grads, 0.5, 2, got);
    }
    // setHyper: a new η and max_norm for the next launches.
    const ths = theta.flat(), gs = grads.flat();
    const tensors = ths.map((t, i) => ({ theta: upload(ctx, t), grad: upload(ctx, gs[i]), n: t.length }));
    const op = new ClipSgdOp(ctx, 'hyper', tensors, { lr: 0.5, maxNorm: 2 });
    op.setHyper(0.25, 100);
    await runPass(ctx, (p) => op.encode(p));
    const after = Float32Array.from((await Promise.all(tensors.map((b) => readF32(ctx, b.theta)))).flatMap((a) => Array.from(a)));
    expectStep('setHyper', theta, grads, 0.25, 100, { theta: after, stats: await readF32(ctx, op.stats), op });
  });

  it('one launch and three stages: setHyper, a zero gradient, and the log record at slot c mod slots', async () => {
    const theta = layers(2, 16, 24, 6, 0.3), grads = layers(2, 16, 24, 700, 0.2);
    const n = 6 * 16 * 24;
    const cat = (xs: Float32Array[][]) => Float32Array.from(xs.flat().flatMap((x) => Array.from(x)));
    for (const fusedMax of [undefined, 0]) {
      const tb = upload(ctx, cat(theta)), gb = upload(ctx, cat(grads));
      // The cross entropy's layout: #valid, then the 8 rows' shares of the mean loss (summing to 2.5).
      const lossBuf = upload(ctx, Float32Array.of(17, 0.5, 0.25, 1, 0.75, 0, 0, 0, 0)), log = upload(ctx, new Float32Array(5 * 4).fill(-1));
      const block = new BlockParams(ctx);
      const op = new ClipSgdOp(ctx, 'record', [{ theta: tb, grad: gb, n }], { lr: 0.5, maxNorm: 2, fusedMax, record: { loss: lossBuf, log, slots: 4, chunk: 8, block } });
      expect(op.fused).toBe(fusedMax === undefined);
      op.setHyper(0.25, 100);
      block.write(8, 6 * 8); // chunk 6: slot 2
      let launches = 0;
      await runPass(ctx, (p) => { const counter = new DispatchCounter(p); op.encode(counter.encoder); launches = counter.count; });
      expect(launches).toBe(fusedMax === undefined ? 1 : 4);
      const stats = await readF32(ctx, op.stats);
      expectStep(`setHyper, ${op.fused ? 'one launch' : 'three stages'}`, theta, grads, 0.25, 100, { theta: await readF32(ctx, tb), stats, op });
      const got = await readF32(ctx, log);
      expect(Array.from(got.subarray(0, 10))).toEqual(Array(10).fill(-1));
      expect(Array.from(got.subarray(10, 14))).toEqual([2.5, 17, stats[1], stats[2]]);
      expect(Number.isNaN(got[14])).toBe(true);
      expect(Array.from(got.subarray(15))).toEqual(Array(5).fill(-1));
      // A zero gradient: θ exactly unchanged, no NaN.
      const zb = upload(ctx, new Float32Array(n)), tz = upload(ctx, cat(theta));
      const zop = new ClipSgdOp(ctx, 'zero', [{ theta: tz, grad: zb, n }], { lr: 1, maxNorm: 1, fusedMax });
      await runPass(ctx, (p) => zop.encode(p));
      expect(Array.from(await readF32(ctx, zop.stats))).toEqual([0, 0, 1, 1]);
      expect(Array.from(await readF32(ctx, tz))).toEqual(Array.from(cat(theta)));
    }
  });

  it('the bounds catch planted errors: a norm per layer, always clipping, Σg² as the norm', async () => {
    const theta = layers(S, d, f, 5, 0.3), grads = layers(S, d, f, 500, 0.05);
    const got = await run(theta, grads, 1, 2);
    const { atol, ref } = expectStep('planted base', theta, grads, 1, 2, got);
    expect(ref.clipScale).toBeLessThan(1); // ||g|| ≈ 2.9
    const perLayer = flat(theta.map((t, j) => clipAndStep([dyn(t)], [dyn(grads[j])], 1, 2).theta[0]));
    expectNotClose(got.theta, perLayer, { atol, rtol: 0, label: 'planted: clipped per layer' });
    const small = layers(S, d, f, 600, 0.01);
    const gotSmall = await run(theta, small, 1, 2);
    const { atol: atolSmall, ref: refSmall } = expectStep('planted base, no clip', theta, small, 1, 2, gotSmall);
    const always = flat(clipAndStep(theta.map(dyn), small.map(dyn), 2 / refSmall.gradNorm, 1e9).theta);
    expectNotClose(gotSmall.theta, always, { atol: atolSmall, rtol: 0, label: 'planted: always scaled by max_norm/||g||' });
    const squared = flat(clipAndStep(theta.map(dyn), grads.map(dyn), (2 / ref.gradNorm ** 2), 1e9).theta);
    expectNotClose(got.theta, squared, { atol, rtol: 0, label: 'planted: Σg² for ||g||' });
  });
});
