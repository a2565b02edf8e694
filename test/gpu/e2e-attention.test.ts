/**
 * shaders/e2e-attention.wgsl (src/gpu/ops/e2e-attention.ts) against the f64 twins
 * slidingWindowAttention / slidingWindowAttentionBackward of src/reference/e2e: the forward (o and the
 * per-row log-sum-exp), then the backward (dq of the block's rows, dk and dv of the block's own keys) from
 * the GPU's own o and lse, as the inner step runs them: W > B, W < B, W = 1, windows reaching into earlier
 * positions (from the ring, whose other slots hold junk), a first chunk, and a window longer than the past.
 *
 * Bounds, per element, first order in u = 2^-24, from the f64 values (inputs are f32, exact in the twin).
 * For query t and head h, over its n visible keys j (P_j the softmax, s_j the scores, m their max):
 *  scores     ŝ_j = fl(fl(q·k_j)·fl(1/√hd)): |δs_j| <= e_j = hd·u·a_j + 2u|s_j|, a_j = Σ_i |q_i k_ji| / √hd.
 *  weights    the forward's exp(s_j - m_j) times the rescale factors applied after it (r of them, r = how
 *             often the running max moves, +1 for near ties): relative ρ_j = (3 + 4r + 3(m - s_j))u
 *             (WGSL's exp is within 3 + 2|x| ulp; each rescale adds its own exp and product).
 *  o          Σ_j P_j |v_ji| (e_j + ē + ρ_j + ρ̄ + (n + 1)u) + (n + 1)u|o_i|, ē = Σ P_j e_j, ρ̄ = Σ P_j ρ_j
 *             (a score error shifts P_j by e_j + ē relatively; the two running sums of n terms round to
 *             (n - 1)u, the division u).
 *  lse        2 max e_j + ρ̄ + (n - 1)u + 2^-21 + 6u|log l| + u|lse| (WGSL's log: absolute 2^-21 on [0.5, 2]).
 *  backward   P̂_j = exp(ŝ_j - lse^): relative π_j = e_j + b_lse + (3 + 3|s_j - lse|)u;
 *             D = dO·o from the GPU's o: β = Σ_i |dO_i| b_o,i + hd·u·Σ|dO_i o_i|;  dP_j = dO·v_j: γ_j = hd·u·Σ|dO_i v_ji|;
 *             ds_j = P_j (dP_j - D): σ_j = P_j (π_j |dP_j - D| + γ_j + β + 2u(|dP_j| + |D|));
 *             dq_i: Σ_j (σ_j + (n + 2)u|ds_j|)|k_ji| / √hd;  dk_ji: Σ_t (σ_tj + (c + 2)u|ds_tj|)|q_ti| / √hd;
 *             dv_ji: Σ_t P_tj (π_tj + (c + 1)u)|dO_ti|, c = the number of the block's queries that see key j.
 * These are rigorous to first order (the cancellation in dP - D is charged to |dP| + |D|, not |ds|), so the
 * measured errors sit well below 1 bound; a window off by one, a missing D, a lost scale or a key read
 * from the wrong place are off by 1e3..1e7 bounds (see the planted-error test).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockParams } from '../../src/gpu/block.ts';
import type { GpuContext } from '../../src/gpu/context.ts';
import { E2EAttentionBackwardOp, E2EAttentionOp, e2eAttentionStatsBytes, kvRingOf, type E2EAttentionSpec, type RowView } from '../../src/gpu/ops/e2e-attention.ts';
import { E2EQkNormBackwardOp, E2EQkNormOp } from '../../src/gpu/ops/e2e-qk-norm.ts';
import { KvCache } from '../../src/gpu/ops/kv-cache.ts';
import { slidingWindowAttention, visible } from '../../src/reference/e2e/ops.ts';
import { slidingWindowAttentionBackward } from '../../src/reference/e2e/backward.ts';
import { gaussian, rng } from '../helpers/random-model.ts';
import { openTestGpu, readF32, runPass, upload } from '../helpers/gpu.ts';
import { expectClose, expectNotClose, type CloseTolerance } from '../helpers/close.ts';

const U = 2 ** -24;

interface Case {
  readonly name: string;
  readonly H: number;
  readonly hd: number;
  readonly W: number;
  readonly rows: number;
  readonly pos0: number;
  /** Ring slots (default W - 1 + rows, the engine's KvCache ring). */
  readonly ring?: number;
  readonly groupRows?: number;
  readonly tileRows?: number;
  /** Scale of q (sharper softmax). */
  readonly qScale?: number;
  /** dq, dk, dv as views of one [rows, 3D + 1] buffer (dk, dv then bound once: SHARED_DKV). */
  readonly oneGradBuffer?: boolean;
}

/** The sequence a case runs on: q of the block, k and v of every position in [lo, pos0 + rows). */
interface Data {
  readonly c: Case;
  readonly D: number;
  readonly lo: number;
  readonly q: Float64Array; // [rows, D]
  readonly k: Float64Array; // [nk, D], positions lo..
  readonly v: Float64Array;
  readonly dO: Float64Array; // [rows, D]
  readonly qPos: number[];
  readonly kPos: number[];
}

function makeData(c: Case, seed: number): Data {
  const D = c.H * c.hd, lo = Math.max(0, c.pos0 - c.W + 1), nk = c.pos0 + c.rows - lo;
  const g = gaussian(rng(seed));
  const f = (n: number, s = 1) => Float64Array.from({ length: n }, () => Math.fround(s * g()));
  return {
    c, D, lo, q: f(c.rows * D, c.qScale ?? 1.5), k: f(nk * D), v: f(nk * D), dO: f(c.rows * D),
    qPos: Array.from({ length: c.rows }, (_, r) => c.pos0 + r), kPos: Array.from({ length: nk }, (_, j) => lo + j),
  };
}

interface Want { o: Float64Array; lse: Float64Array; dq: Float64Array; dk: Float64Array; dv: Float64Array }
interface Bounds { o: Float64Array; lse: Float64Array; dq: Float64Array; dk: Float64Array; dv: Float64Array }

/** The twins' outputs (dk, dv of the block's own keys) and the lse, for window W. */
function reference(d: Data, W = d.c.W): Want {
  const { H, hd, rows } = d.c, D = d.D;
  const o = slidingWindowAttention(d.q, d.qPos, d.k, d.v, d.kPos, H, hd, W);
  const b = slidingWindowAttentionBackward(d.q, d.qPos, d.k, d.v, d.kPos, H, hd, W, d.dO);
  const own = (d.c.pos0 - d.lo) * D;
  const lse = new Float64Array(rows * H);
  for (let t = 0; t < rows; t++) {
    for (let h = 0; h < H; h++) {
      const s: number[] = [];
      d.kPos.forEach((kp, j) => {
        if (!visible(d.qPos[t], kp, W)) return;
        let x = 0;
        for (let i = 0; i < hd; i++) x += d.q[t * D + h * hd + i] * d.k[j * D + h * hd + i];
        s.push(x / Math.sqrt(hd));
      });
      const m = Math.max(...s);
      lse[t * H + h] = m + Math.log(s.reduce((a, x) => a + Math.exp(x - m), 0));
    }
  }
  return { o, lse, dq: b.dq, dk: b.dk.slice(own), dv: b.dv.slice(own) };
}

/** The error bounds of the header, element by element. */
function bounds(d: Data): Bounds {
  const { H, hd, rows, W, pos0 } = d.c, D = d.D, scale = 1 / Math.sqrt(hd);
  const own = pos0 - d.lo;
  const out: Bounds = { o: new Float64Array(rows * D), lse: new Float64Array(rows * H), dq: new Float64Array(rows * D), dk: new Float64Array(rows * D), dv: new Float64Array(rows * D) };
  for (let t = 0; t < rows; t++) {
    for (let h = 0; h < H; h++) {
      const col = h * hd, qo = t * D + col;
      const js = d.kPos.map((kp, j) => j).filter((j) => visible(d.qPos[t], d.kPos[j], W));
      const n = js.length;
      const s = js.map((j) => { let x = 0; for (let i = 0; i < hd; i++) x += d.q[qo + i] * d.k[j * D + col + i]; return x * scale; });
      const a = js.map((j) => { let x = 0; for (let i = 0; i < hd; i++) x += Math.abs(d.q[qo + i] * d.k[j * D + col + i]); return x * scale; });
      const m = Math.max(...s);
      const w = s.map((x) => Math.exp(x - m)), l = w.reduce((x, y) => x + y, 0), P = w.map((x) => x / l);
      const lse = m + Math.log(l);
      let moves = 0, run = -Infinity;
      for (const x of s) if (x > run) { moves++; run = x; }
      const e = s.map((x, k) => hd * U * a[k] + 2 * U * Math.abs(x));
      const rho = s.map((x) => (3 + 4 * (moves + 1) + 3 * (m - x)) * U);
      const eBar = P.reduce((acc, p, k) => acc + p * e[k], 0), rhoBar = P.reduce((acc, p, k) => acc + p * rho[k], 0);
      const oRow = new Float64Array(hd);
      for (let i = 0; i < hd; i++) {
        let sum = 0, sumAbs = 0;
        js.forEach((j, k) => { sum += P[k] * d.v[j * D + col + i]; sumAbs += P[k] * Math.abs(d.v[j * D + col + i]) * (e[k] + eBar + rho[k] + rhoBar + (n + 1) * U); });
        oRow[i] = sum;
        out.o[qo + i] = sumAbs + (n + 1) * U * Math.abs(sum);
      }
      const bLse = 2 * Math.max(...e) + rhoBar + (n - 1) * U + 2 ** -21 + 6 * U * Math.abs(Math.log(l)) + U * Math.abs(lse);
      out.lse[t * H + h] = bLse;
      // Backward.
      let Dt = 0, beta = 0;
      for (let i = 0; i < hd; i++) {
        Dt += oRow[i] * d.dO[qo + i];
        beta += Math.abs(d.dO[qo + i]) * out.o[qo + i] + hd * U * Math.abs(oRow[i] * d.dO[qo + i]);
      }
      js.forEach((j, k) => {
        let dP = 0, gam = 0;
        for (let i = 0; i < hd; i++) { dP += d.dO[qo + i] * d.v[j * D + col + i]; gam += Math.abs(d.dO[qo + i] * d.v[j * D + col + i]); }
        gam *= hd * U;
        const pi = e[k] + bLse + (3 + 3 * Math.abs(s[k] - lse)) * U;
        const ds = P[k] * (dP - Dt);
        const sig = P[k] * (pi * Math.abs(dP - Dt) + gam + beta + 2 * U * (Math.abs(dP) + Math.abs(Dt)));
        for (let i = 0; i < hd; i++) out.dq[qo + i] += scale * (sig + (n + 2) * U * Math.abs(ds)) * Math.abs(d.k[j * D + col + i]);
        if (j >= own) {
          const kr = j - own, seen = Math.min(W, rows - kr), ko = kr * D + col;
          for (let i = 0; i < hd; i++) {
            out.dk[ko + i] += scale * (sig + (seen + 2) * U * Math.abs(ds)) * Math.abs(d.q[qo + i]);
            out.dv[ko + i] += P[k] * (pi + (seen + 1) * U) * Math.abs(d.dO[qo + i]);
          }
        }
      });
    }
  }
  return out;
}

interface Got { o: Float32Array; lse: Float32Array; dq: Float32Array; dk: Float32Array; dv: Float32Array }

describe('e2e-attention.wgsl against the f64 twins (slidingWindowAttention and its backward)', () => {
  let ctx: GpuContext;
  let block: BlockParams;
  const measured: Record<string, number> = {};
  beforeAll(async () => {
    ctx = (await openTestGpu()).ctx;
    block = new BlockParams(ctx);
  });
  afterAll(() => {
    console.info('e2e-attention: worst element in units of its bound (< 1 passes):', measured);
    ctx?.device.destroy();
  });

  const JUNK = 1e3;

  /** Forward then backward in one pass, as the inner step records them. */
  async function run(d: Data): Promise<Got> {
    const { H, hd, rows, W, pos0 } = d.c, D = d.D;
    const spec: E2EAttentionSpec = { heads: H, headDim: hd, window: W, maxRows: rows + 2, groupRows: d.c.groupRows, tileRows: d.c.tileRows };
    // q, k, v of the block as views of one qkv buffer [rows, 3D + 2], from column 1.
    const qs = 3 * D + 2, qkv = new Float32Array(rows * qs).fill(JUNK);
    const own = pos0 - d.lo;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < D; c++) {
        qkv[r * qs + 1 + c] = d.q[r * D + c];
        qkv[r * qs + 1 + D + c] = d.k[(own + r) * D + c];
        qkv[r * qs + 1 + 2 * D + c] = d.v[(own + r) * D + c];
      }
    }
    // The ring: earlier positions in slot p mod ring, junk in every other slot (the block's included).
    const ringSlots = d.c.ring ?? W - 1 + rows;
    const kr = new Float32Array(ringSlots * D).fill(JUNK), vr = new Float32Array(ringSlots * D).fill(-JUNK);
    for (let p = d.lo; p < pos0; p++) {
      const slot = p % ringSlots;
      for (let c = 0; c < D; c++) { kr[slot * D + c] = d.k[(p - d.lo) * D + c]; vr[slot * D + c] = d.v[(p - d.lo) * D + c]; }
    }
    const qkvBuf = upload(ctx, qkv);
    const view = (col: number): RowView => ({ buffer: qkvBuf, stride: qs, offset: col });
    const ring = { k: upload(ctx, kr), v: upload(ctx, vr), ring: ringSlots };
    // o [rows, D + 1] from column 1, then dO [rows, D] after it: views of one buffer, as the backward needs.
    const oBuf = upload(ctx, Float32Array.from({ length: rows * (D + 1) + rows * D }, (_, i) => (i < rows * (D + 1) ? 7 : d.dO[i - rows * (D + 1)])));
    const o: RowView = { buffer: oBuf, stride: D + 1, offset: 1 };
    const stats = upload(ctx, new Float32Array(e2eAttentionStatsBytes(spec) / 4).fill(7));
    const dO: RowView = { buffer: oBuf, stride: D, offset: rows * (D + 1) };
    let dq: RowView, dk: RowView, dv: RowView;
    if (d.c.oneGradBuffer) {
      const g = upload(ctx, new Float32Array(rows * (3 * D + 1)).fill(7));
      dq = { buffer: g, stride: 3 * D + 1, offset: 1 };
      dk = { buffer: g, stride: 3 * D + 1, offset: 1 + D };
      dv = { buffer: g, stride: 3 * D + 1, offset: 1 + 2 * D };
    } else {
      // dq and dk side by side (one buffer, as the backward needs), dv in its own.
      const g = upload(ctx, new Float32Array(rows * 2 * D).fill(7));
      dq = { buffer: g, stride: 2 * D };
      dk = { buffer: g, stride: 2 * D, offset: D };
      dv = { buffer: upload(ctx, new Float32Array(rows * D).fill(7)), stride: D };
    }
    const fwd = new E2EAttentionOp(ctx, 'attn', spec, { q: view(1), k: view(1 + D), v: view(1 + 2 * D), ring, o, stats }, block);
    const bwd = new E2EAttentionBackwardOp(ctx, 'attn back', spec, { q: view(1), k: view(1 + D), v: view(1 + 2 * D), ring, o, dO, stats, dq, dk, dv }, block);
    block.write(rows, pos0);
    ctx.device.pushErrorScope('validation');
    await runPass(ctx, (pass) => {
      fwd.encode(pass, rows, pos0);
      bwd.encode(pass, rows, pos0);
    });
    const err = await ctx.device.popErrorScope();
    if (err) throw new Error(err.message);
    const pick = async (v: RowView) => {
      const all = await readF32(ctx, v.buffer);
      const out = new Float32Array(rows * D);
      for (let r = 0; r < rows; r++) for (let c = 0; c < D; c++) out[r * D + c] = all[r * v.stride + (v.offset ?? 0) + c];
      return out;
    };
    const st = await readF32(ctx, stats);
    const lse = Float32Array.from({ length: rows * H }, (_, i) => st[2 * i]);
    // The stats rows past the block are untouched.
    for (let i = 2 * rows * H; i < st.length; i++) expect(st[i]).toBe(7);
    return { o: await pick(o), lse, dq: await pick(dq), dk: await pick(dk), dv: await pick(dv) };
  }

  function checkAll(d: Data, got: Got, label: string): void {
    const want = reference(d), b = bounds(d);
    let worst = 0;
    for (const key of ['o', 'lse', 'dq', 'dk', 'dv'] as const) {
      const c = expectClose(got[key], want[key], { atol: b[key], rtol: 0, label: `${label} ${key}` });
      measured[`${label} ${key}`] = c.ratio;
      worst = Math.max(worst, c.ratio);
    }
  }

  // Two kernel variants in all (lavapipe compiles each on first use, seconds apiece): hd 8 with small
  // workgroups and tiles (many workgroups, partial tiles), and the official hd 64 with the default ones.
  const small = { H: 2, hd: 8, groupRows: 4, tileRows: 3 };
  const cases: Case[] = [
    { name: 'first chunk, W < B', ...small, W: 5, rows: 12, pos0: 0 },
    { name: 'W > B, window into the ring', ...small, W: 20, rows: 8, pos0: 24 },
    { name: 'W < B with earlier keys, smallest ring', ...small, W: 7, rows: 16, pos0: 30, ring: 6 },
    { name: 'W = 1', ...small, W: 1, rows: 6, pos0: 16 },
    { name: 'window past position 0', ...small, H: 1, W: 64, rows: 5, pos0: 6 },
    { name: 'hd 64, default tiles, W < B into the ring, smallest ring, dq dk dv in one buffer', H: 1, hd: 64, W: 40, rows: 70, pos0: 50, ring: 39, oneGradBuffer: true },
  ];

  for (const [i, c] of cases.entries()) {
    it(`${c.name}: H ${c.H}, hd ${c.hd}, W ${c.W}, rows ${c.rows} at ${c.pos0}`, async () => {
      const d = makeData(c, 100 + i);
      checkAll(d, await run(d), c.name);
    });
  }

  it('the checks fail on planted errors: window ± 1, no earlier keys, ds without D, an unscaled score, a key of the ring for the block\'s own', async () => {
    const planted: Record<string, number> = {};
    const c: Case = { name: 'planted', ...small, W: 20, rows: 8, pos0: 24 };
    const d = makeData(c, 55);
    const got = await run(d);
    const b = bounds(d);
    checkAll(d, got, 'planted (the true reference)');
    const tol = (key: keyof Bounds): CloseTolerance => ({ atol: b[key], rtol: 0, label: key });
    const fail = (name: string, key: keyof Bounds, want: Float64Array) => { planted[`${name}: ${key}`] = expectNotClose(got[key], want, tol(key)).ratio; };
    for (const W of [19, 21]) {
      const w = reference(d, W);
      for (const key of ['o', 'lse', 'dq', 'dk', 'dv'] as const) fail(`W ${W}`, key, w[key]);
    }
    // Earlier keys missing (the ring ignored): the block attends only to itself.
    const { H, hd, rows } = c, D = d.D, own = c.pos0 - d.lo;
    const alone: Data = { ...d, lo: c.pos0, k: d.k.slice(own * D), v: d.v.slice(own * D), kPos: d.kPos.slice(own) };
    const wa = reference(alone);
    for (const key of ['o', 'lse', 'dq'] as const) fail('no earlier keys', key, wa[key]);
    // ds = P dP (D dropped): dq and dk change, dv does not.
    const noD = (() => {
      const scale = 1 / Math.sqrt(hd), dq = new Float64Array(rows * D), dk = new Float64Array(rows * D);
      for (let t = 0; t < rows; t++) for (let h = 0; h < H; h++) {
        const col = h * hd, qo = t * D + col;
        const js = d.kPos.map((_, j) => j).filter((j) => visible(d.qPos[t], d.kPos[j], c.W));
        const s = js.map((j) => { let x = 0; for (let i = 0; i < hd; i++) x += d.q[qo + i] * d.k[j * D + col + i]; return x * scale; });
        const m = Math.max(...s), w = s.map((x) => Math.exp(x - m)), l = w.reduce((x, y) => x + y, 0);
        js.forEach((j, k) => {
          let dP = 0;
          for (let i = 0; i < hd; i++) dP += d.dO[qo + i] * d.v[j * D + col + i];
          const ds = (w[k] / l) * dP * scale;
          for (let i = 0; i < hd; i++) {
            dq[qo + i] += ds * d.k[j * D + col + i];
            if (j >= own) dk[(j - own) * D + col + i] += ds * d.q[qo + i];
          }
        });
      }
      return { dq, dk };
    })();
    fail('ds without D', 'dq', noD.dq);
    fail('ds without D', 'dk', noD.dk);
    // Scores without the 1/√hd: the twin on q·√hd.
    const unscaled = reference({ ...d, q: d.q.map((x) => x * Math.sqrt(hd)) });
    fail('unscaled scores', 'o', unscaled.o);
    fail('unscaled scores', 'lse', unscaled.lse.map((x) => x));
    // The block's first key taken from a stale ring slot (another position's key).
    const stale = Float64Array.from(d.k);
    for (let c2 = 0; c2 < D; c2++) stale[own * D + c2] = d.k[(own - 1) * D + c2];
    const ws = reference({ ...d, k: stale });
    for (const key of ['o', 'dq', 'dk'] as const) fail('a stale key', key, ws[key]);
    console.info('e2e-attention: planted errors, worst element in units of the bound:', planted);
    for (const [name, ratio] of Object.entries(planted)) expect(ratio, name).toBeGreaterThan(10);
  });

  it('W = 1 against a reference with W = 2 fails; flops() counts the keys each row sees', async () => {
    const d = makeData({ name: 'w1', ...small, W: 1, rows: 5, pos0: 9 }, 3);
    const got = await run(d);
    const b = bounds(d), w2 = reference(d, 2);
    for (const key of ['o', 'dq', 'dk', 'dv'] as const) expectNotClose(got[key], w2[key], { atol: b[key], rtol: 0, label: key });
    const spec: E2EAttentionSpec = { heads: 3, headDim: 4, window: 2, maxRows: 8 };
    const ring = { k: upload(ctx, [0]), v: upload(ctx, [0]), ring: 1 };
    const v: RowView = { buffer: upload(ctx, [0]), stride: 12 };
    const fwd = new E2EAttentionOp(ctx, 'attn', spec, { q: v, k: v, v, ring, o: v, stats: upload(ctx, [0]) }, block);
    // rows at 0..3 see 1, 2, 2, 2 keys; all but row 0's first are the block's own.
    expect(fwd.flops(4, 0)).toBe(7 * 3 * 4 * 4);
    expect(fwd.flops(4, 10)).toBe(8 * 3 * 4 * 4);
    const g: RowView = { buffer: upload(ctx, [0]), stride: 12 };
    const bwd = new E2EAttentionBackwardOp(ctx, 'attn', spec, { q: v, k: v, v, ring, o: g, dO: g, stats: upload(ctx, [0]), dq: g, dk: g, dv: g }, block);
    expect(bwd.flops(4, 10)).toBe((6 * 8 + 8 * 7 + 2 * 4) * 3 * 4);
    // The one launch binds q|k|v, o|dO and dq|dk once each: other layouts are refused by name.
    const other: RowView = { buffer: upload(ctx, [0]), stride: 12 };
    expect(() => new E2EAttentionBackwardOp(ctx, 'attn', spec, { q: v, k: other, v, ring, o: g, dO: g, stats: upload(ctx, [0]), dq: g, dk: g, dv: g }, block)).toThrow(/q, k and v/);
    expect(() => new E2EAttentionBackwardOp(ctx, 'attn', spec, { q: v, k: v, v, ring, o: g, dO: other, stats: upload(ctx, [0]), dq: g, dk: g, dv: g }, block)).toThrow(/o and dO/);
    expect(() => new E2EAttentionBackwardOp(ctx, 'attn', spec, { q: v, k: v, v, ring, o: g, dO: g, stats: upload(ctx, [0]), dq: g, dk: other, dv: g }, block)).toThrow(/dq and dk/);
    // A ring too short for the window, and blocks past maxRows, are refused.
    expect(() => new E2EAttentionOp(ctx, 'attn', { ...spec, window: 5 }, { q: v, k: v, v, ring: { ...ring, ring: 3 }, o: v, stats: upload(ctx, [0]) }, block)).toThrow(RangeError);
    const enc = ctx.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    expect(() => fwd.encode(pass, 9, 0)).toThrow(RangeError);
    pass.end();
    enc.finish();
  });

  it('with the q/k norm and RoPE on load (NORM_FWD): exactly E2EQkNormOp then the plain forward, and the normed q, k, v stored', async () => {
    for (const [c, seed] of [[{ name: 'norm fwd small', ...small, W: 7, rows: 16, pos0: 30, ring: 6 }, 91], [{ name: 'norm fwd hd 64', H: 1, hd: 64, W: 40, rows: 70, pos0: 129_950, ring: 39 }, 92]] as const) {
      const d = makeData(c, seed);
      const { H, hd, rows, W, pos0 } = c, D = d.D, eps = 1e-6, theta = 10000;
      const spec: E2EAttentionSpec = { heads: H, headDim: hd, window: W, maxRows: rows, groupRows: c.groupRows, tileRows: c.tileRows };
      // The projection's q|k|v of the block (pre-norm), and a ring of normed keys (any values: the ring is read as it is).
      const qs = 3 * D, own = pos0 - d.lo;
      const raw = new Float32Array(rows * qs);
      for (let r = 0; r < rows; r++) for (let x = 0; x < D; x++) {
        raw[r * qs + x] = d.q[r * D + x];
        raw[r * qs + D + x] = d.k[(own + r) * D + x];
        raw[r * qs + 2 * D + x] = d.v[(own + r) * D + x];
      }
      const kr = new Float32Array(c.ring * D), vr = new Float32Array(c.ring * D);
      for (let q = d.lo; q < pos0; q++) for (let x = 0; x < D; x++) { kr[(q % c.ring) * D + x] = 0.3 * d.k[(q - d.lo) * D + x]; vr[(q % c.ring) * D + x] = d.v[(q - d.lo) * D + x]; }
      const g = gaussian(rng(seed + 1));
      const gain = Float32Array.from({ length: 2 * hd }, () => 1 + 0.3 * g());
      const rawBuf = upload(ctx, raw), gainBuf = upload(ctx, gain);
      const view = (buffer: GPUBuffer, stride: number, offset = 0): RowView => ({ buffer, stride, offset });
      const ring = { k: upload(ctx, kr), v: upload(ctx, vr), ring: c.ring };
      const oOf = () => upload(ctx, new Float32Array(rows * D).fill(7));
      const statsOf = () => upload(ctx, new Float32Array(e2eAttentionStatsBytes(spec) / 4).fill(7));
      // Unfused: the q/k norm with RoPE into [rows, 2D], then the plain forward (v from the projection's).
      const normed = upload(ctx, new Float32Array(rows * 2 * D));
      const qkNorm = new E2EQkNormOp(ctx, 'qk norm', { heads: H, headDim: hd, eps, maxRows: rows, segments: 2, segStride: D, xStride: qs, yStride: 2 * D, ropeTheta: theta }, { gain: gainBuf, x: rawBuf, y: normed }, block);
      const [o1, s1, o2, s2] = [oOf(), statsOf(), oOf(), statsOf()];
      const plain = new E2EAttentionOp(ctx, 'plain', spec, { q: view(normed, 2 * D), k: view(normed, 2 * D, D), v: view(rawBuf, qs, 2 * D), ring, o: view(o1, D), stats: s1 }, block);
      const out = upload(ctx, new Float32Array(rows * (qs + 1)).fill(5));
      const fused = new E2EAttentionOp(ctx, 'fused', spec, {
        q: view(rawBuf, qs), k: view(rawBuf, qs, D), v: view(rawBuf, qs, 2 * D), ring, o: view(o2, D), stats: s2,
        norm: { gain: gainBuf, eps, ropeTheta: theta, out: { q: view(out, qs + 1, 1), k: view(out, qs + 1, 1 + D), v: view(out, qs + 1, 1 + 2 * D) } },
      }, block);
      block.write(rows, pos0);
      await runPass(ctx, (pass) => {
        qkNorm.encode(pass, rows);
        plain.encode(pass, rows, pos0);
        fused.encode(pass, rows, pos0);
      });
      expectClose(await readF32(ctx, o2), await readF32(ctx, o1), { atol: 0, rtol: 0, label: `${c.name}: o` });
      expectClose(await readF32(ctx, s2), await readF32(ctx, s1), { atol: 0, rtol: 0, label: `${c.name}: lse` });
      const [got, want] = [await readF32(ctx, out), await readF32(ctx, normed)];
      for (let r = 0; r < rows; r++) {
        expect(got[r * (qs + 1)]).toBe(5);
        for (let x = 0; x < 2 * D; x++) expect(got[r * (qs + 1) + 1 + x]).toBe(want[r * 2 * D + x]);
        for (let x = 0; x < D; x++) expect(got[r * (qs + 1) + 1 + 2 * D + x]).toBe(raw[r * qs + 2 * D + x]);
      }
    }
    const spec: E2EAttentionSpec = { heads: 1, headDim: 4, window: 2, maxRows: 4 };
    const ring = { k: upload(ctx, [0]), v: upload(ctx, [0]), ring: 1 };
    const a: RowView = { buffer: upload(ctx, [0]), stride: 12 }, b: RowView = { buffer: upload(ctx, [0]), stride: 12 };
    const norm = { gain: upload(ctx, [1]), eps: 1e-6, ropeTheta: 1e4, out: { q: b, k: b, v: b } };
    expect(() => new E2EAttentionOp(ctx, 'apart', spec, { q: a, k: b, v: a, ring, o: b, stats: upload(ctx, [0]), norm }, block)).toThrow(/views of one buffer/);
    expect(() => new E2EAttentionOp(ctx, 'over', spec, { q: a, k: a, v: a, ring, o: b, stats: upload(ctx, [0]), norm: { ...norm, out: { q: a, k: a, v: a } } }, block)).toThrow(/must not overwrite/);
  });

  it('with the q/k norm\'s backward at the stores (NORM_BACK): exactly the unfused path, attention backward then E2EQkNormBackwardOp', async () => {
    // The two ways compute the same formula in the same order (dq·scale, the RoPE turned back, the norm's
    // backward), each checked against its twin by its own tests; here they must agree to the last bit.
    // The pre-norm q, k are any vectors (the formula does not need them to produce q, k).
    for (const [c, seed] of [[{ name: 'norm back small', ...small, W: 7, rows: 16, pos0: 30, ring: 6 }, 81], [{ name: 'norm back hd 64', H: 1, hd: 64, W: 40, rows: 70, pos0: 129_950, ring: 39 }, 82]] as const) {
      const d = makeData(c, seed);
      const { H, hd, rows, W, pos0 } = c, D = d.D, eps = 1e-6, theta = 10000;
      const spec: E2EAttentionSpec = { heads: H, headDim: hd, window: W, maxRows: rows, groupRows: c.groupRows, tileRows: c.tileRows };
      const qs = 3 * D, qkv = new Float32Array(rows * qs);
      const own = pos0 - d.lo;
      for (let r = 0; r < rows; r++) for (let x = 0; x < D; x++) {
        qkv[r * qs + x] = d.q[r * D + x];
        qkv[r * qs + D + x] = d.k[(own + r) * D + x];
        qkv[r * qs + 2 * D + x] = d.v[(own + r) * D + x];
      }
      const ringSlots = c.ring;
      const kr = new Float32Array(ringSlots * D), vr = new Float32Array(ringSlots * D);
      for (let q = d.lo; q < pos0; q++) for (let x = 0; x < D; x++) { kr[(q % ringSlots) * D + x] = d.k[(q - d.lo) * D + x]; vr[(q % ringSlots) * D + x] = d.v[(q - d.lo) * D + x]; }
      const g = gaussian(rng(seed + 1));
      const raw = Float32Array.from({ length: rows * qs }, () => g());
      const gain = Float32Array.from({ length: 2 * hd }, () => 1 + 0.3 * g());
      const qkvBuf = upload(ctx, qkv), rawBuf = upload(ctx, raw), gainBuf = upload(ctx, gain);
      const view = (buffer: GPUBuffer, stride: number, offset = 0): RowView => ({ buffer, stride, offset });
      const ring = { k: upload(ctx, kr), v: upload(ctx, vr), ring: ringSlots };
      const oBuf = upload(ctx, Float32Array.from({ length: 2 * rows * D }, (_, i) => (i < rows * D ? 0 : d.dO[i - rows * D])));
      const o = view(oBuf, D), dO = view(oBuf, D, rows * D);
      const stats = upload(ctx, new Float32Array(e2eAttentionStatsBytes(spec) / 4));
      const q = view(qkvBuf, qs), k = view(qkvBuf, qs, D), v = view(qkvBuf, qs, 2 * D);
      const fwd = new E2EAttentionOp(ctx, 'attn', spec, { q, k, v, ring, o, stats }, block);
      // Unfused: dq, dk of the normed, roped q, k into one buffer, then the norm's backward through the RoPE.
      const g1 = upload(ctx, new Float32Array(rows * qs)), dx1 = upload(ctx, new Float32Array(rows * 2 * D).fill(5));
      const plain = new E2EAttentionBackwardOp(ctx, 'plain', spec, { q, k, v, ring, o, dO, stats, dq: view(g1, qs), dk: view(g1, qs, D), dv: view(g1, qs, 2 * D) }, block);
      const normBack = new E2EQkNormBackwardOp(ctx, 'qk back', { heads: H, headDim: hd, eps, maxRows: rows, segments: 2, segStride: D, xStride: qs, yStride: qs, dxStride: 2 * D, ropeTheta: theta }, { gain: gainBuf, x: rawBuf, dy: g1, dx: dx1 }, block);
      // Fused: the gradients of the pre-norm q|k|v straight into one [rows, 3D] buffer.
      const g2 = upload(ctx, new Float32Array(rows * qs).fill(5));
      const fused = new E2EAttentionBackwardOp(ctx, 'fused', spec, {
        q, k, v, ring, o, dO, stats, dq: view(g2, qs), dk: view(g2, qs, D), dv: view(g2, qs, 2 * D),
        norm: { q: view(rawBuf, qs), k: view(rawBuf, qs, D), gain: gainBuf, eps, ropeTheta: theta },
      }, block);
      block.write(rows, pos0);
      await runPass(ctx, (pass) => {
        fwd.encode(pass, rows, pos0);
        plain.encode(pass, rows, pos0);
        normBack.encode(pass, rows);
        fused.encode(pass, rows, pos0);
      });
      const [unfusedDx, unfusedG, got] = [await readF32(ctx, dx1), await readF32(ctx, g1), await readF32(ctx, g2)];
      const part = (a: Float32Array, stride: number, off: number) => Float32Array.from({ length: rows * D }, (_, i) => a[Math.floor(i / D) * stride + off + (i % D)]);
      for (const [name, gotPart, wantPart] of [
        ['dq (pre-norm)', part(got, qs, 0), part(unfusedDx, 2 * D, 0)],
        ['dk (pre-norm)', part(got, qs, D), part(unfusedDx, 2 * D, D)],
        ['dv', part(got, qs, 2 * D), part(unfusedG, qs, 2 * D)],
      ] as const) {
        expectClose(gotPart, wantPart, { atol: 0, rtol: 0, label: `${c.name}: ${name}` });
        expect(gotPart.some((x) => x !== 0)).toBe(true);
      }
      // Not vacuous: the gradients before the norm differ from the roped ones.
      expectNotClose(part(got, qs, 0), part(unfusedG, qs, 0), { atol: 1e-6, rtol: 0, label: `${c.name}: dq before and after the norm's backward` });
    }
    // The extra bindings fit only with dv beside dq and dk.
    const spec: E2EAttentionSpec = { heads: 1, headDim: 4, window: 2, maxRows: 4 };
    const ring = { k: upload(ctx, [0]), v: upload(ctx, [0]), ring: 1 };
    const a: RowView = { buffer: upload(ctx, [0]), stride: 12 }, gr: RowView = { buffer: upload(ctx, [0]), stride: 12 }, dv: RowView = { buffer: upload(ctx, [0]), stride: 12 };
    expect(() => new E2EAttentionBackwardOp(ctx, 'apart', spec, { q: a, k: a, v: a, ring, o: gr, dO: gr, stats: upload(ctx, [0]), dq: gr, dk: gr, dv, norm: { q: a, k: a, gain: upload(ctx, [1]), eps: 1e-6, ropeTheta: 1e4 } }, block)).toThrow(/dq, dk and dv/);
  });

  it('reads the ring of a sliding-window KvCache', () => {
    const kv = new KvCache(ctx, 'kv', { D: 16, heads: 2, window: 10, maxRows: 4, capacity: 0 });
    const ring = kvRingOf(kv);
    expect(ring.ring).toBe(13);
    expect(ring.k).toBe(kv.pages[0].k);
    expect(() => kvRingOf(new KvCache(ctx, 'kv', { D: 16, heads: 2, window: null, maxRows: 4, capacity: 8 }))).toThrow(RangeError);
  });
});
