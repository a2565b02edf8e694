import { configOfFamily } from '../../src/model/model-config.ts';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.ts';
import { Engine, type FeedProgress } from '../../src/engine/engine.ts';
import { EngineAbortedError, MemoryMismatchError } from '../../src/engine/errors.ts';
import { loadModel, type LoadedModel } from '../../src/model/load.ts';
import { NodeDirectorySource } from '../../src/model/source.ts';
import { hasFeature, openTestGpu } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/close.ts';

const dir = (name: string) => fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
const models = new Map<string, LoadedModel>();
async function model(name: string): Promise<LoadedModel> {
  if (!models.has(name)) models.set(name, await loadModel(new NodeDirectorySource(dir(name))));
  return models.get(name)!;
}

/** Text A: bytes of this file, so the prompt is real text crossing several chunks. */
async function textTokens(n: number): Promise<number[]> {
  const bytes = await readFile(fileURLToPath(import.meta.url));
  return Array.from(bytes.subarray(0, n));
}

describe('saveMemory / loadMemory, abort, progress and stats', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = (await openTestGpu()).ctx;
  });
  afterAll(() => ctx?.device.destroy());

  for (const name of ['tiny-all-on', 'tiny-swa', 'tiny-full']) {
    it(`${name}: memory saved after text A and loaded into a fresh engine (other block size) generates the same greedy tokens`, async () => {
      const m = await model(name);
      const a = await textTokens(45); // ends mid-chunk: the pending rows must travel too
      const original = await Engine.create(ctx, m, { weights: 'f32' });
      await original.feed(a);
      const blob = await original.saveMemory();
      const want = await original.generate([a[a.length - 1]], 30, { temperature: 0 });

      const fresh = await Engine.create(ctx, m, { weights: 'f32', maxRows: 3 });
      await fresh.loadMemory(blob);
      expect(fresh.position).toBe(45);
      expect(await fresh.generate([a[a.length - 1]], 30, { temperature: 0 })).toEqual(want);
      // Not vacuous: without the memory the continuation differs.
      const blank = await Engine.create(ctx, m, { weights: 'f32' });
      expect(await blank.generate([a[a.length - 1]], 30, { temperature: 0 })).not.toEqual(want);
      for (const e of [original, fresh, blank]) e.destroy();
    });
  }

  it('the TTT memory blob has the same size at any context length; full attention\'s grows', async () => {
    const ttt = await Engine.create(ctx, await model('tiny-all-on'), { weights: 'f32' });
    await ttt.feed(await textTokens(100));
    const at100 = (await ttt.saveMemory()).byteLength;
    await ttt.feed(await textTokens(300));
    expect((await ttt.saveMemory()).byteLength).toBe(at100);
    const full = await Engine.create(ctx, await model('tiny-full'), { weights: 'f32' });
    await full.feed(await textTokens(100));
    const f100 = (await full.saveMemory()).byteLength;
    await full.feed(await textTokens(100));
    expect((await full.saveMemory()).byteLength).toBeGreaterThan(f100);
    ttt.destroy();
    full.destroy();
  });

  it('a blob from another model, or a corrupt one, is a MemoryMismatchError and changes nothing', async () => {
    const on = await Engine.create(ctx, await model('tiny-all-on'), { weights: 'f32' });
    const off = await Engine.create(ctx, await model('tiny-all-off'), { weights: 'f32' });
    await off.feed(await textTokens(20));
    const foreign = await off.saveMemory();
    await on.feed(await textTokens(20));
    const before = (await on.feed([65], { logits: 'last' })).logits!;
    on.reset();
    await on.feed(await textTokens(20));
    await expect(on.loadMemory(foreign)).rejects.toBeInstanceOf(MemoryMismatchError);
    const own = await on.saveMemory();
    await expect(on.loadMemory(own.subarray(0, own.byteLength - 4))).rejects.toBeInstanceOf(MemoryMismatchError);
    await expect(on.loadMemory(new Uint8Array(40))).rejects.toBeInstanceOf(MemoryMismatchError);
    expect(on.position).toBe(20);
    expect((await on.feed([65], { logits: 'last' })).logits!).toEqual(before);
    on.destroy();
    off.destroy();
  });

  it('abort mid-prefill: the state equals a fresh engine fed exactly the processed tokens, and the next call works', async () => {
    const m = await model('tiny-all-on');
    const tokens = await textTokens(120);
    const engine = await Engine.create(ctx, m, { weights: 'f32' });
    const controller = new AbortController();
    const seen: FeedProgress[] = [];
    const err = await engine.feed(tokens, {
      signal: controller.signal,
      onProgress: (p) => {
        seen.push(p);
        if (p.processed >= 40) controller.abort();
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineAbortedError);
    const processed = (err as EngineAbortedError).processed;
    expect(processed).toBeGreaterThanOrEqual(40);
    expect(processed).toBeLessThan(120);
    // At most one block (here one chunk of 16) past the point of abort.
    expect(processed - seen.find((p) => p.processed >= 40)!.processed).toBeLessThanOrEqual(configOfFamily(m.config, 'lact').chunkSize);
    expect(engine.position).toBe(processed);
    const after = (await engine.feed([65], { logits: 'last' })).logits!;

    const fresh = await Engine.create(ctx, m, { weights: 'f32' });
    await fresh.feed(tokens.slice(0, processed));
    // The same tokens through the same kernels: equal up to a block split's reordering of sums (~16u of |logit| <= 4).
    expectClose(after, (await fresh.feed([65], { logits: 'last' })).logits!, { atol: 1e-6, rtol: 1e-6, label: 'aborted vs fresh' });
    engine.destroy();
    fresh.destroy();
  });

  it('progress after every block, monotone to the total; stats report throughput, latency and memory', async () => {
    const engine = await Engine.create(ctx, await model('tiny-all-on'), { weights: 'f32' });
    const seen: FeedProgress[] = [];
    await engine.feed(await textTokens(70), { onProgress: (p) => seen.push(p) });
    expect(seen.map((p) => p.processed)).toEqual([16, 32, 48, 64, 70]);
    expect(seen.map((p) => p.position)).toEqual([16, 32, 48, 64, 70]);
    let tok = 65;
    for (let i = 0; i < 5; i++) tok = await engine.step(tok, { temperature: 0 });
    const s = engine.stats();
    expect(s.position).toBe(75);
    expect(s.prefillTokensPerSecond).toBeGreaterThan(0);
    expect(s.decodeMsLast).toBeGreaterThan(0);
    expect(s.decodeMsRolling).toBeGreaterThan(0);
    expect(s.memory.total).toBe(engine.memory().total);
    expect(s.memory.fastWeights).toBeGreaterThan(0);
    // The window (24 positions) is full at 75: every allocated KV byte holds a live position.
    expect(s.kvBytesInUse).toBe(24 * 2 * 64 * 4 * 2);
    expect(s.kvBytesInUse).toBeLessThanOrEqual(s.memory.kv);
    expect(s.dispatchesLastBlock).toBeGreaterThan(10);
    // A decode step that only samples is one command buffer: the block, then the sampled id's copy.
    expect(s.submitsLastFeed).toBe(1);
    // Asking for its logits as well: the block, then the logits' and the id's read-backs, one each.
    await engine.feed([tok], { sample: { temperature: 0 }, logits: 'last' });
    expect(engine.stats().submitsLastFeed).toBe(3);
    expect(s.timing).toMatch(/wall clock/);
    // lavapipe has timestamp-query: the GPU time of the last step is measured, and below its wall time.
    if (hasFeature(ctx, 'timestampQuery', 'GPU time of the last step (timestamp queries)')) {
      expect(s.timing).toMatch(/timestamp queries/);
      expect(s.gpuMsLast).toBeGreaterThan(0);
      expect(s.gpuMsLast!).toBeLessThan(s.decodeMsLast! * 1.5);
    }
    engine.destroy();
  });
});
