/**
 * shaders/e2e-keep.wgsl (src/gpu/ops/e2e-keep.ts, the pending chunk an inner step learns from) against
 * its CPU twin, which is plain copying: blocks of rows kept at their place in the chunk (row pos0 mod B
 * + r), the token that completes the chunk put after it (slot B), the kept rows copied out for an
 * update, and the save / restore of the rows after `position` tokens. Exact.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockParams } from '../../src/gpu/block.ts';
import type { GpuContext } from '../../src/gpu/context.ts';
import { PendingChunk } from '../../src/gpu/ops/e2e-keep.ts';
import { openTestGpu, readF32, readU32, runPass, upload, zeros } from '../helpers/gpu.ts';

describe('e2e-keep.wgsl: the pending chunk', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = (await openTestGpu()).ctx;
  });
  afterAll(() => ctx?.device.destroy());

  it('keeps blocks of rows and tokens at their place in the chunk, puts the last target at slot B, copies the rows out, and saves what is pending', async () => {
    const d = 5, B = 8, maxRows = 3;
    const block = new BlockParams(ctx), chunk = new BlockParams(ctx);
    const x = zeros(ctx, maxRows * d), tokens = ctx.allocator.create('tokens', 'scratch', 4 * maxRows, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
    const pending = new PendingChunk(ctx, 'pending', d, B, { x, tokens }, block);
    const wantH = new Float32Array(B * d).fill(0), wantT = new Uint32Array(B + 1);
    // Positions 16..23 (chunk 2) in blocks of 3, 3, 2, then the first token of chunk 3.
    for (const [pos0, rows] of [[16, 3], [19, 3], [22, 2]]) {
      const rowsData = Float32Array.from({ length: rows * d }, (_, i) => pos0 * 100 + i);
      const ids = Uint32Array.from({ length: rows }, (_, r) => 1000 + pos0 + r);
      ctx.device.queue.writeBuffer(x, 0, rowsData);
      ctx.device.queue.writeBuffer(tokens, 0, ids);
      block.write(rows, pos0);
      await runPass(ctx, (p) => pending.encodeKeep(p, rows));
      wantH.set(rowsData, (pos0 % B) * d);
      wantT.set(ids, pos0 % B);
    }
    expect(Array.from(await readF32(ctx, pending.hPre))).toEqual(Array.from(wantH));
    pending.writeLastTarget(4242);
    wantT[B] = 4242;
    expect(Array.from(await readU32(ctx, pending.tokens, B + 1))).toEqual(Array.from(wantT));
    // The update's copy (its own chunk uniform: B rows at 16) into a working buffer.
    const dst = upload(ctx, new Float32Array(B * d).fill(-1));
    const copy = pending.copier(dst, chunk);
    chunk.write(B, 16);
    await runPass(ctx, copy);
    expect(Array.from(await readF32(ctx, dst))).toEqual(Array.from(wantH));

    // After 24 tokens the whole chunk waits for its update (8 rows); after 25, one row of the next.
    expect([0, 1, 8, 9, 16, 24, 25].map((p) => pending.rowsAfter(p))).toEqual([0, 1, 8, 1, 8, 8, 1]);
    const saved = await pending.save('p', 24);
    expect(saved.map((s) => [s.name, s.bytes.byteLength])).toEqual([['p.hPre', 4 * B * d], ['p.tokens', 4 * B]]);
    const sections = new Map(saved.map((s) => [s.name, s.bytes]));
    const source = { need: (name: string, bytes: number) => { const b = sections.get(name)!; expect(b.byteLength).toBe(bytes); return b; } };
    expect(pending.planRestore('p', 24, source).map((w) => w.data.byteLength)).toEqual([4 * B * d, 4 * B]);
    expect(pending.planRestore('p', 0, { need: (_n: string, bytes: number) => new Uint8Array(bytes) })).toEqual([]);
  });
});
