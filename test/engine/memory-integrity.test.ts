// A saved memory never loads silently damaged: every changed byte and every truncation is refused with
// MemoryCorruptError before any state is touched, and a memory from another family, model or
// configuration is refused naming what differs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.ts';
import { Engine } from '../../src/engine/engine.ts';
import { MemoryCorruptError, MemoryMismatchError } from '../../src/engine/errors.ts';
import { crc32 } from '../../src/engine/crc32.ts';
import { decodeMemory, encodeMemory, MEMORY_FORMAT } from '../../src/engine/memory-blob.ts';
import { openTestGpu } from '../helpers/gpu.ts';
import { rejection } from '../helpers/rejection.ts';
import { ALL_ON, randomModel, rng } from '../helpers/random-model.ts';

function syntheticBlob(seed: number): Uint8Array {
  const r = rng(seed);
  const section = (name: string, n: number) => ({ name, bytes: Uint8Array.from({ length: n }, () => Math.floor(r() * 256)) });
  return encodeMemory({ format: MEMORY_FORMAT, family: 'lact', modelId: '0123456789abcdef', config: { family: 'lact', windowSize: 24 }, position: 77 }, [section('layer0.k', 640), section('layer0.v', 640), section('layer0.pending', 300)]);
}


describe('the memory blob format', () => {
  it('CRC-32 is the standard one (check value of "123456789")', () => {
    expect(crc32(new TextEncoder().encode('123456789')).toString(16)).toBe('cbf43926');
  });

  it('every single-byte change anywhere in a blob, and every truncation, is MemoryCorruptError', () => {
    const blob = syntheticBlob(7);
    expect(decodeMemory(blob).header.position).toBe(77);
    let refused = 0;
    for (let i = 0; i < blob.byteLength; i++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const bad = blob.slice();
        bad[i] ^= mask;
        expect(() => decodeMemory(bad), `byte ${i} ^ ${mask}`).toThrow(MemoryCorruptError);
        refused++;
      }
    }
    for (let n = 0; n < blob.byteLength; n++) expect(() => decodeMemory(blob.subarray(0, n)), `truncated to ${n}`).toThrow(MemoryCorruptError);
    // Bytes appended (two blobs concatenated, a padded copy) are damage too.
    expect(() => decodeMemory(new Uint8Array([...blob, 0]))).toThrow(MemoryCorruptError);
    expect(refused).toBe(3 * blob.byteLength);
  });

  it('a format-1 blob (no checksum) and other formats are refused by name', () => {
    const v1 = new Uint8Array(64);
    v1.set(new TextEncoder().encode('TTTMEM01'));
    expect(() => decodeMemory(v1)).toThrow(/older ttt-web \(format 1, without a checksum\)/);
    const other = encodeMemory({ format: 99, family: 'lact', modelId: 'x', config: {}, position: 0 }, []);
    expect(() => decodeMemory(other)).toThrow(/memory format 99 is not supported/);
  });
});

describe('loadMemory refuses a damaged or foreign memory and leaves the engine as it was', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = (await openTestGpu()).ctx;
  });
  afterAll(() => ctx?.device.destroy());

  const prompt = Array.from({ length: 45 }, (_, i) => (i * 37 + 11) % 256); // two chunks and a pending tail

  it('flipped bytes across the whole blob and truncations at many points: every one refused, then the same generation', async () => {
    const model = randomModel(ALL_ON, 3);
    const engine = await Engine.create(ctx, model, { weights: 'f32' });
    await engine.feed(prompt);
    const saved = await engine.saveMemory();
    const r = rng(11);
    // Every byte of the header region, then random positions through the sections, then the trailer.
    const headerEnd = 12 + new DataView(saved.buffer, saved.byteOffset).getUint32(8, true);
    const flips = new Set<number>();
    for (let i = 0; i < headerEnd; i++) flips.add(i);
    while (flips.size < headerEnd + 400) flips.add(headerEnd + Math.floor(r() * (saved.byteLength - headerEnd)));
    for (let i = saved.byteLength - 8; i < saved.byteLength; i++) flips.add(i);
    const cuts = Array.from({ length: 100 }, (_, k) => Math.floor((k / 100) * saved.byteLength));
    let refused = 0;
    for (const i of flips) {
      const bad = saved.slice();
      bad[i] ^= 1 << Math.floor(r() * 8);
      const e = await rejection(engine.loadMemory(bad));
      expect(e, `flip at ${i}`).toBeInstanceOf(MemoryCorruptError);
      refused++;
    }
    for (const n of cuts) {
      expect(await rejection(engine.loadMemory(saved.subarray(0, n))), `cut at ${n}`).toBeInstanceOf(MemoryCorruptError);
      refused++;
    }
    expect(refused).toBe(flips.size + cuts.length);
    expect(engine.position).toBe(prompt.length);
    // The state is exactly as before: the same bytes saved again, and the same generation.
    expect(Array.from(await engine.saveMemory())).toEqual(Array.from(saved));
    const fresh = await Engine.create(ctx, model, { weights: 'f32' });
    await fresh.feed(prompt);
    const sampling = { temperature: 0 };
    expect(await engine.generate([65], 12, sampling)).toEqual(await fresh.generate([65], 12, sampling));
    await engine.destroy();
    await fresh.destroy();
  });

  it('another family, another configuration (window, chunk) or other weights: MemoryMismatchError saying which', async () => {
    const base = randomModel(ALL_ON, 3);
    const engine = await Engine.create(ctx, base, { weights: 'f32' });
    await engine.feed(prompt);
    const before = await engine.saveMemory();

    const otherConfig = await Engine.create(ctx, randomModel({ ...ALL_ON, window_size: 32, lact_chunk_size: 8 }, 3), { weights: 'f32' });
    await otherConfig.feed(prompt.slice(0, 20));
    const e1 = await rejection(engine.loadMemory(await otherConfig.saveMemory()));
    expect(e1).toBeInstanceOf(MemoryMismatchError);
    expect(e1).not.toBeInstanceOf(MemoryCorruptError);
    expect(e1.message).toMatch(/windowSize: saved 32, this model 24/);
    expect(e1.message).toMatch(/chunkSize: saved 8, this model 16/);

    const otherWeights = await Engine.create(ctx, randomModel(ALL_ON, 4), { weights: 'f32' });
    const e2 = await rejection(engine.loadMemory(await otherWeights.saveMemory()));
    expect(e2).toBeInstanceOf(MemoryMismatchError);
    expect(e2.message).toMatch(/same configuration, other weights/);

    // A well-formed memory of another family (checksum correct) is refused before its sections are read.
    const { header, sections } = decodeMemory(before);
    const e2e = encodeMemory({ ...header, family: 'ttt-e2e' }, [...sections].map(([name, bytes]) => ({ name, bytes })));
    const e3 = await rejection(engine.loadMemory(e2e));
    expect(e3).toBeInstanceOf(MemoryMismatchError);
    expect(e3.message).toMatch(/saved by a ttt-e2e model; the engine runs a lact model/);

    expect(Array.from(await engine.saveMemory())).toEqual(Array.from(before));
    for (const e of [engine, otherConfig, otherWeights]) await e.destroy();
  });
});
