import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.ts';
import { validateSamplingParams, type SamplingParams } from '../../src/engine/sampling-params.ts';
import { SampleOp } from '../../src/gpu/ops/sample.ts';
import { orderKey, sampleReference, sampleReferenceTrace, samplingHash, samplingUniform, type SamplingTrace } from '../../src/reference/sampling.ts';
import { gaussian, rng } from '../helpers/random-model.ts';
import { openTestGpu, upload } from '../helpers/gpu.ts';

interface Job { op: SampleOp; params: SamplingParams; step: number }

/** Encodes every job (distinct ops) in one pass, then reads all four result words of each. */
async function draw(ctx: GpuContext, jobs: readonly Job[]): Promise<Uint32Array[]> {
  const enc = ctx.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  for (const j of jobs) j.op.encode(pass, j.params, j.step);
  pass.end();
  const staging = ctx.device.createBuffer({ size: 16 * jobs.length, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  jobs.forEach((j, i) => enc.copyBufferToBuffer(j.op.result, 0, staging, 16 * i, 16));
  ctx.device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const all = new Uint32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  staging.destroy();
  return jobs.map((_, i) => all.subarray(4 * i, 4 * i + 4));
}

function randomLogits(V: number, seed: number, scale: number): Float32Array {
  const g = gaussian(rng(seed));
  return Float32Array.from({ length: V }, () => scale * g());
}

function argmax(x: ArrayLike<number>): number {
  let a = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[a]) a = i;
  return a;
}

function softmax(x: readonly number[], T: number): number[] {
  const m = Math.max(...x);
  const e = x.map((v) => Math.exp((v - m) / T));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

function chiSquare(counts: readonly number[], probs: readonly number[], n: number): number {
  return counts.reduce((acc, c, i) => (probs[i] > 0 ? acc + (c - n * probs[i]) ** 2 / (n * probs[i]) : acc), 0);
}

// The GPU's thresholds as keys: top-k off is key 0 (keep all) there, -Infinity in the reference.
const kKey = (t: SamplingTrace, p: SamplingParams, V: number) => ((p.topK ?? 0) === 0 || (p.topK ?? 0) >= V ? 0 : orderKey(t.kThreshold));
const thrKey = (t: SamplingTrace, p: SamplingParams, V: number) => ((p.topP ?? 1) < 1 ? orderKey(t.threshold) : kKey(t, p, V));

// f32 weights and sums on the GPU against f64 here: a decision closer than this to flipping may go
// either way; farther ones must agree exactly. WGSL's exp is within ~3 + 2|x| ulp (|x| < 30 here,
// ~4e-6), and f32 sums of <= 1024 terms stay well inside 1e-4.
const MARGIN = 1e-4;

describe('sample.wgsl against the reference sampler', () => {
  let ctx: GpuContext;
  beforeAll(async () => { ctx = (await openTestGpu()).ctx; });
  afterAll(() => ctx?.device.destroy());

  it('greedy is the argmax with the lowest index on ties, for V = 1, 7, 258, 50000', async () => {
    const cases: { V: number; ties: number[] }[] = [
      { V: 1, ties: [0] },
      { V: 7, ties: [6, 2] },
      // 5 and 256 are read by invocations 5 and 0: the reduction must prefer the lower index, not lane.
      { V: 258, ties: [256, 5] },
      { V: 50000, ties: [40000, 12345, 300] },
    ];
    ctx.device.pushErrorScope('validation');
    const jobs: Job[] = [];
    const want: number[] = [];
    for (const [ci, { V, ties }] of cases.entries()) {
      const x = randomLogits(V, 10 + ci, 1);
      for (const t of ties) x[t] = 9;
      const op = new SampleOp(ctx, `greedy ${V}`, upload(ctx, x), V);
      expect(argmax(x)).toBe(Math.min(...ties));
      expect(sampleReference(x, { temperature: 0 }, 0)).toBe(Math.min(...ties));
      jobs.push({ op, params: { temperature: 0 }, step: ci });
      want.push(Math.min(...ties));
    }
    // -0 ties +0, NaN ranks as -Infinity, and an all-masked row falls back to index 0.
    const special: [number[], number][] = [
      [[-1, -0, 0, -2], 1],
      [[NaN, -Infinity, 3, NaN, 3], 2],
      [[-Infinity, -Infinity, NaN], 0],
    ];
    for (const [x, id] of special) {
      expect(sampleReference(x, { temperature: 0 }, 0)).toBe(id);
      jobs.push({ op: new SampleOp(ctx, 'greedy special', upload(ctx, x), x.length), params: { temperature: 0 }, step: 0 });
      want.push(id);
    }
    const got = await draw(ctx, jobs);
    expect(await ctx.device.popErrorScope()).toBeNull();
    expect(got.map((r) => r[0])).toEqual(want);
    expect(jobs.map((j) => j.op.dispatches(j.params))).toEqual(jobs.map(() => 1));
  });

  it('matches the reference id for T 0.7/1.3 x topK 1/5/40 x topP 0.5/0.9/1 over 216 (seed, step) draws', async () => {
    const V = 1000;
    const x = randomLogits(V, 77, 2);
    const buf = upload(ctx, x);
    const configs: SamplingParams[] = [];
    for (const temperature of [0.7, 1.3]) for (const topK of [1, 5, 40]) for (const topP of [0.5, 0.9, 1]) configs.push({ temperature, topK, topP });
    const ops = configs.map((_, i) => new SampleOp(ctx, `config ${i}`, buf, V));
    const am = argmax(x);
    let compared = 0, boundary = 0, mismatched = 0;
    const ids = new Set<number>();
    for (let round = 0; round < 12; round++) {
      const jobs = configs.map((c, i) => ({ op: ops[i], params: { ...c, seed: 1000 + 37 * round + i }, step: round * 7919 + i }));
      const got = await draw(ctx, jobs);
      jobs.forEach((j, i) => {
        const t = sampleReferenceTrace(x, j.params, j.step);
        const [id, hash, tk, thr] = got[i];
        const where = `${JSON.stringify(j.params)} step ${j.step}`;
        expect(hash, where).toBe(samplingHash(j.params.seed!, j.step));
        expect(tk, where).toBe(kKey(t, j.params, V)); // top-k thresholds are exact: integer counts
        if (j.params.topK === 1) expect(id, where).toBe(am);
        if (t.topPMargin > MARGIN) expect(thr, where).toBe(thrKey(t, j.params, V));
        if (t.topPMargin > MARGIN && t.drawMargin > MARGIN) {
          expect(id, where).toBe(t.id);
          compared++;
        } else {
          boundary++;
          if (id !== t.id) mismatched++;
        }
        ids.add(id);
      });
    }
    expect(compared + boundary).toBe(216);
    // Boundary cases are rare: the f64 margin falls under 1e-4 in at most 2 of 216 draws.
    expect(boundary).toBeLessThanOrEqual(2);
    expect(mismatched).toBeLessThanOrEqual(boundary);
    expect(ids.size).toBeGreaterThan(10); // not stuck on a few tokens
  });

  it('covers the vocabulary-wide paths (no top-k, top-k above the compaction cap) at V = 50000', async () => {
    const V = 50000;
    const x = randomLogits(V, 5, 3);
    const buf = upload(ctx, x);
    const configs: SamplingParams[] = [
      { temperature: 1, topK: 40, topP: 0.9 }, // compacted into workgroup memory
      { temperature: 1, topK: 3000 }, // top-k set beyond the 1024 cap: scanned in place
      { temperature: 0.5, topK: 3000, topP: 0.7 },
      { temperature: 0.8, topP: 0.95 }, // top-p over the whole vocabulary
      { temperature: 1 }, // plain softmax
      { temperature: 1, topK: 1 },
    ];
    const ops = configs.map((_, i) => new SampleOp(ctx, `wide ${i}`, buf, V));
    const sorted = Float64Array.from(x).sort().reverse();
    let same = 0;
    for (let round = 0; round < 4; round++) {
      const jobs = configs.map((c, i) => ({ op: ops[i], params: { ...c, seed: 5 + round }, step: 100 * round + i }));
      const got = await draw(ctx, jobs);
      jobs.forEach((j, i) => {
        const t = sampleReferenceTrace(x, j.params, j.step);
        const [id, , tk, thr] = got[i];
        const where = `${JSON.stringify(j.params)} step ${j.step}`;
        expect(tk, where).toBe(kKey(t, j.params, V));
        if (j.params.topK) expect(x[id], where).toBeGreaterThanOrEqual(sorted[j.params.topK - 1]);
        // Where thousands of tokens are kept, cumulative boundaries lie ~1e-5 of the mass apart, finer than f32
        // sums resolve, so here the GPU's pick must lie within 1e-4 of the mass from the f64 target
        // (and its threshold within 1e-4 of the top-p goal) rather than be the same token.
        const T = j.params.temperature;
        const thrValue = thr === 0 ? -Infinity : keyToValue(thr);
        const max = sorted[0];
        let total = 0, kept = 0, above = 0, before = 0, after = 0;
        for (let v = 0; v < V; v++) {
          if (x[v] < t.kThreshold) continue;
          const w = Math.exp((x[v] - max) / T);
          total += w;
          if (x[v] > thrValue) above += w;
          if (x[v] < thrValue) continue;
          kept += w;
          if (v < id) before += w;
          if (v <= id) after += w;
        }
        const P = j.params.topP ?? 1;
        if (P < 1) expect(kept >= (P - MARGIN) * total && above < (P + MARGIN) * total, `${where}: top-p mass ${kept / total}`).toBe(true);
        expect(x[id], where).toBeGreaterThanOrEqual(thrValue);
        const target = t.u * kept;
        expect(before - MARGIN * kept <= target && target <= after + MARGIN * kept, `${where}: target ${target} vs [${before}, ${after}]`).toBe(true);
        if (j.params.topK === 1) expect(id).toBe(argmax(x));
        if (id === t.id) same++;
      });
    }
    // The window check must not be all that holds: away from boundaries the ids are the same (24 of 24 seen).
    expect(same).toBeGreaterThanOrEqual(20);
  });

  it('agrees with the reference on a 5-token vocabulary over 300 GPU draws, and both follow softmax', async () => {
    const logits = [1.2, 0.3, -0.5, 2.0, 0.0];
    const buf = upload(ctx, logits);
    const params = { temperature: 1, seed: 2024 };
    const ops = Array.from({ length: 30 }, (_, i) => new SampleOp(ctx, `five ${i}`, buf, 5));
    const gpu: number[] = [];
    for (let r = 0; r < 10; r++) {
      const got = await draw(ctx, ops.map((op, i) => ({ op, params, step: 30 * r + i })));
      gpu.push(...got.map((g) => g[0]));
    }
    const cpu = gpu.map((_, s) => sampleReference(logits, params, s));
    const near = gpu.filter((_, s) => sampleReferenceTrace(logits, params, s).drawMargin <= MARGIN).length;
    const differ = gpu.filter((id, s) => id !== cpu[s]).length;
    expect(differ).toBeLessThanOrEqual(near);
    expect(differ).toBe(0);
    const probs = softmax(logits, 1);
    const counts = [0, 0, 0, 0, 0];
    for (const id of gpu) counts[id]++;
    expect(chiSquare(counts, probs, gpu.length)).toBeLessThan(18.47); // df 4, p = 0.001
  });

  it('draws from top-k / top-p restricted softmax on the CPU twin (chi-square over 4000 draws)', () => {
    const logits = [1.2, 0.3, -0.5, 2.0, 0.0];
    const n = 4000;
    const cases: { params: SamplingParams; kept: number[] }[] = [
      { params: { temperature: 1, seed: 3 }, kept: [0, 1, 2, 3, 4] },
      { params: { temperature: 0.6, seed: 4 }, kept: [0, 1, 2, 3, 4] },
      { params: { temperature: 1.5, topK: 3, seed: 5 }, kept: [0, 1, 3] },
      // softmax(T=1): 0.487 (2.0), 0.268 (1.2), 0.109 (0.3): 0.9 needs the third, 0.7 only two.
      { params: { temperature: 1, topP: 0.7, seed: 6 }, kept: [0, 3] },
      { params: { temperature: 1, topP: 0.8, seed: 7 }, kept: [0, 1, 3] },
    ];
    for (const { params, kept } of cases) {
      const counts = [0, 0, 0, 0, 0];
      for (let s = 0; s < n; s++) counts[sampleReference(logits, params, s)]++;
      const e = softmax(kept.map((i) => logits[i]), params.temperature);
      const probs = logits.map((_, i) => (kept.includes(i) ? e[kept.indexOf(i)] : 0));
      const chi = chiSquare(counts, probs, n);
      const critical = [0, 10.83, 13.82, 16.27, 18.47][kept.length - 1]; // p = 0.001
      expect(chi, JSON.stringify({ params, counts })).toBeLessThan(critical);
      for (let i = 0; i < 5; i++) if (!kept.includes(i)) expect(counts[i]).toBe(0);
    }
  });

  it('never draws masked (-Infinity / NaN) tokens, honours the logits offset, and keeps top-k ties together', async () => {
    const V = 300;
    const rows = [randomLogits(V, 1, 1), randomLogits(V, 2, 1), randomLogits(V, 3, 1)];
    for (let i = 0; i < V; i += 3) rows[2][i] = -Infinity;
    for (let i = 1; i < V; i += 7) rows[2][i] = NaN;
    // Ties at the top-k threshold: three tokens share the 4th-largest logit.
    const t = rows[1];
    for (const i of [10, 20, 30]) t[i] = 5;
    for (const i of [40, 50, 60]) t[i] = 4;
    const all = new Float32Array(3 * V);
    rows.forEach((r, i) => all.set(r, i * V));
    const buf = upload(ctx, all);
    const masked = new SampleOp(ctx, 'masked', buf, V, 2 * V);
    const tied = new SampleOp(ctx, 'tied', buf, V, V);
    const seen = new Set<number>();
    for (let s = 0; s < 10; s++) {
      const pm = { temperature: 2, seed: 9 };
      const pt = { temperature: 3, topK: 4, seed: 11 };
      const [m, k] = await draw(ctx, [{ op: masked, params: pm, step: s }, { op: tied, params: pt, step: s }]);
      expect(Number.isFinite(rows[2][m[0]])).toBe(true);
      expect(m[0]).toBe(sampleReference(rows[2], pm, s));
      expect(k[0]).toBe(sampleReference(t, pt, s));
      expect(k[2]).toBe(orderKey(4)); // the 4th largest is 4, shared by three tokens: six kept
      seen.add(k[0]);
    }
    expect([...seen].every((i) => [10, 20, 30, 40, 50, 60].includes(i))).toBe(true);
    expect([...seen].some((i) => i >= 40)).toBe(true);
  });

  it('gives different sequences for different seeds and steps (non-vacuity)', async () => {
    const x = randomLogits(64, 8, 0.5);
    const buf = upload(ctx, x);
    const ops = Array.from({ length: 20 }, (_, i) => new SampleOp(ctx, `seq ${i}`, buf, 64));
    const seq = async (seed: number) => (await draw(ctx, ops.map((op, s) => ({ op, params: { temperature: 1, seed }, step: s })))).map((r) => r[0]);
    const [a, b, a2] = [await seq(1), await seq(2), await seq(1)];
    expect(a).toEqual(a2);
    expect(a).not.toEqual(b);
    expect(new Set(a).size).toBeGreaterThan(5);
    expect(a).toEqual(a.map((_, s) => sampleReference(x, { temperature: 1, seed: 1 }, s)));
    // The shared uniform: exact 24-bit fractions, distinct over steps.
    const us = Array.from({ length: 1000 }, (_, s) => samplingUniform(1, s));
    expect(new Set(us).size).toBe(1000);
    expect(us.every((u) => u >= 0 && u < 1 && Math.fround(u) === u && Number.isInteger(u * 2 ** 24))).toBe(true);
  });

  it('rejects invalid params with a RangeError naming the parameter', () => {
    const bad: [SamplingParams, RegExp][] = [
      [{ temperature: -1 }, /temperature/],
      [{ temperature: NaN }, /temperature/],
      [{ temperature: Infinity }, /temperature/],
      [{ temperature: 1, topK: -1 }, /topK/],
      [{ temperature: 1, topK: 2.5 }, /topK/],
      [{ temperature: 1, topP: 0 }, /topP/],
      [{ temperature: 1, topP: 1.01 }, /topP/],
      [{ temperature: 1, topP: NaN }, /topP/],
      [{ temperature: 1, seed: -1 }, /seed/],
      [{ temperature: 1, seed: 2 ** 32 }, /seed/],
      [{ temperature: 1, seed: 0.5 }, /seed/],
    ];
    for (const [p, re] of bad) {
      expect(() => validateSamplingParams(p)).toThrow(RangeError);
      expect(() => validateSamplingParams(p)).toThrow(re);
      expect(() => sampleReference([0, 1], p, 0)).toThrow(re);
    }
    expect(validateSamplingParams({ temperature: 0.5 })).toEqual({ temperature: 0.5, topK: 0, topP: 1, seed: 0 });
    const op = new SampleOp(ctx, 'bad', upload(ctx, [0, 1]), 2);
    const enc = ctx.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (const step of [-1, 1.5, 2 ** 32]) expect(() => op.encode(pass, { temperature: 1 }, step)).toThrow(/step/);
    expect(() => op.encode(pass, { temperature: 1, topP: 2 }, 0)).toThrow(RangeError);
    pass.end();
    expect(() => new SampleOp(ctx, 'short', upload(ctx, [0, 1]), 3)).toThrow(RangeError);
  });
});

function keyToValue(k: number): number {
  const u = new Uint32Array([k & 0x80000000 ? k & 0x7fffffff : ~k >>> 0]);
  return new Float32Array(u.buffer)[0];
}
