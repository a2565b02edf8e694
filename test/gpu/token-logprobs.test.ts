import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.ts';
import { TokenLogprobsOp } from '../../src/gpu/ops/token-logprobs.ts';
import { tokenLogprobs } from '../../src/reference/token-logprobs.ts';
import { gaussian, rng } from '../helpers/random-model.ts';
import { openTestGpu, readF32, runPass, upload } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/close.ts';

function logitsOf(rows: number, V: number, seed: number, scale = 4): Float32Array {
  const g = gaussian(rng(seed));
  return Float32Array.from({ length: rows * V }, () => scale * g());
}

describe('per-token log-probabilities (shaders/token-logprobs.wgsl) against the CPU twin', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = (await openTestGpu()).ctx;
  });
  afterAll(() => ctx?.device.destroy());

  // log softmax in f32 over V terms: the sum of V positive terms is within (V-1)·u of itself, its log
  // adds |log s|·u-ish absolute error and the subtraction one rounding of |max| + |log s|: an absolute
  // bound of (V + 8)·2^-24·(1 + |x|max) covers every term.
  const tol = (V: number, x: Float32Array) => ({ atol: (V + 8) * 2 ** -24 * (1 + Math.max(...x.map(Math.abs))), rtol: 0 });

  it('scores each token from the row before it, the first from the carried row, over blocks of rows not a multiple of 64; V = 258 and V = 1000', async () => {
    for (const [V, maxRows] of [[258, 70], [1000, 5]]) {
      const all = logitsOf(3 * maxRows, V, V);
      const tokensBuf = ctx.allocator.create('tokens', 'scratch', 4 * maxRows, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
      const logitsBuf = ctx.allocator.create('logits', 'scratch', 4 * maxRows * V, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
      const op = new TokenLogprobsOp(ctx, 'lp', logitsBuf, tokensBuf, V, maxRows);
      const g = rng(V + 1);
      // Three blocks: the first with no distribution before it (position 0), then two that read the carry.
      const sizes = [maxRows, Math.max(1, maxRows - 3), 1];
      let carry: Float32Array | null = null;
      let off = 0;
      for (const [b, rows] of sizes.entries()) {
        const block = all.slice(off * V, (off + rows) * V);
        const tokens = Array.from({ length: rows }, () => Math.floor(g() * V));
        ctx.device.queue.writeBuffer(logitsBuf, 0, block);
        ctx.device.queue.writeBuffer(tokensBuf, 0, Uint32Array.from(tokens));
        await runPass(ctx, (p) => op.encode(p, rows, { score: true, carryValid: carry !== null, keepRow: rows - 1 }));
        const got = (await readF32(ctx, op.out)).subarray(0, rows);
        const want = tokenLogprobs(block, V, tokens, carry);
        if (b === 0) expect(Number.isNaN(got[0])).toBe(true);
        expectClose(got.subarray(b === 0 ? 1 : 0), want.subarray(b === 0 ? 1 : 0), { ...tol(V, all), label: `V ${V}, block ${b} of ${rows} rows` });
        // The carry now holds this block's last row, bit for bit.
        expect(Array.from(await readF32(ctx, op.carry))).toEqual(Array.from(block.subarray((rows - 1) * V, rows * V)));
        carry = block.slice((rows - 1) * V, rows * V);
        off += rows;
      }
      // And they are log-probabilities: exp sums to 1 over the vocabulary for one row.
      const row = all.subarray(0, V);
      const every = Array.from({ length: V }, (_, j) => tokenLogprobs(new Float32Array(0), V, [j], row)[0]);
      expect(every.reduce((s, x) => s + Math.exp(x), 0)).toBeCloseTo(1, 12);
    }
  });

  it('keep alone (no scoring) carries the row the head laid out as the last (row 0 of a last-row head)', async () => {
    const V = 258, maxRows = 4;
    const x = logitsOf(maxRows, V, 7);
    const logitsBuf = upload(ctx, x);
    const tokensBuf = upload(ctx, new Float32Array(maxRows));
    const op = new TokenLogprobsOp(ctx, 'lp', logitsBuf, tokensBuf, V, maxRows);
    await runPass(ctx, (p) => op.encode(p, 3, { score: false, carryValid: false, keepRow: 0 }));
    expect(Array.from(await readF32(ctx, op.carry))).toEqual(Array.from(x.subarray(0, V)));
    await runPass(ctx, (p) => op.encode(p, 3, { score: false, carryValid: false, keepRow: 2 }));
    expect(Array.from(await readF32(ctx, op.carry))).toEqual(Array.from(x.subarray(2 * V, 3 * V)));
  });

  it('refuses rows and keep rows outside the op and buffers too small for it', () => {
    const logitsBuf = ctx.allocator.create('small logits', 'scratch', 4 * 258 * 2, GPUBufferUsage.STORAGE);
    const tokensBuf = ctx.allocator.create('small tokens', 'scratch', 16, GPUBufferUsage.STORAGE);
    expect(() => new TokenLogprobsOp(ctx, 'lp', logitsBuf, tokensBuf, 258, 3)).toThrow(/holds fewer than 3 rows/);
    const op = new TokenLogprobsOp(ctx, 'lp', logitsBuf, tokensBuf, 258, 2);
    const enc = ctx.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    expect(() => op.encode(pass, 3, { score: true, carryValid: true, keepRow: 0 })).toThrow(/3 rows, this op holds 1..2/);
    expect(() => op.encode(pass, 1, { score: true, carryValid: true, keepRow: 2 })).toThrow(/keep row 2 outside 0..1/);
    pass.end();
  });
});
