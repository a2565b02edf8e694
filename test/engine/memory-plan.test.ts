// The engine's memory plan: what it says before anything is allocated is what the allocator then
// holds, and a config that cannot fit the device fails when planned, naming the key, the size, the limit
// and the largest value that would fit.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine } from '../../src/api/index.ts';
import type { LoadProgress } from '../../src/api/types.ts';
import type { GpuContext } from '../../src/gpu/context.ts';
import { deviceCaps, Engine, type EngineOptions } from '../../src/engine/engine.ts';
import { DeviceLimitError } from '../../src/engine/errors.ts';
import { MemorySource } from '../../src/model/source.ts';
import { parseConfig } from '../../src/model/config.ts';
import { openTestGpu } from '../helpers/gpu.ts';
import { expectPlanHeld, UNIFORM_SLACK } from '../helpers/memory-plan.ts';
import { ALL_OFF, ALL_ON, FULL_ATTN, randomModel, SWA_ONLY } from '../helpers/random-model.ts';
import { writeSafetensors } from '../../src/model/safetensors-writer.ts';
import { modelTensors } from '../model/model-files.ts';


describe('memory plan', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = (await openTestGpu()).ctx;
  });
  afterAll(() => ctx?.device.destroy());

  const cases: [string, Record<string, unknown>, EngineOptions][] = [
    ['every option on, f32', ALL_ON, { weights: 'f32' }],
    ['every option off, f16', ALL_OFF, {}],
    ['sliding window, 5-row blocks', SWA_ONLY, { maxRows: 5 }],
    ['full attention, paged KV (small bindings), all logits', FULL_ATTN, { weights: 'f32', maxContext: 300, maxBindingBytes: 8192, allLogits: true }],
    ['every option on, weights split across bindings', ALL_ON, { weights: 'f32', maxBindingBytes: 16384 }],
    ['the fast-weight branch with its own q|k|v, f16', { ...ALL_OFF, fw_own_qkv: true }, {}],
  ];
  for (const [what, raw, opts] of cases) {
    it(`${what}: the plan's bytes by category are what the allocator holds once the engine exists`, async () => {
      const model = randomModel(raw, 5);
      const plan = Engine.plan(model.config, opts, deviceCaps(ctx));
      const engine = await Engine.create(ctx, model, opts);
      expectPlanHeld(plan, engine.memory());
      expect(plan.bytes.weights).toBeGreaterThan(0);
      await engine.destroy();
    });
  }

  it('window_size 10,000,000 is a DeviceLimitError before anything is allocated, with the largest window that fits', async () => {
    const caps = deviceCaps(ctx);
    const config = parseConfig({ ...SWA_ONLY, window_size: 10_000_000 });
    let e: unknown;
    try {
      Engine.plan(config, {}, caps);
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(DeviceLimitError);
    const d = e as DeviceLimitError;
    expect(d.key).toBe('window_size');
    expect(d.limitName).toBe('maxStorageBufferBindingSize');
    expect(d.limit).toBe(caps.maxStorageBufferBindingSize);
    expect(d.bytes).toBe((10_000_000 + 64 - 1) * 64 * 4); // (W + maxRows - 1) positions x D floats
    // The largest window that fits is exactly the one whose ring fills the binding.
    const best = d.largestFitting!;
    expect((best + 64 - 1) * 64 * 4).toBeLessThanOrEqual(caps.maxStorageBufferBindingSize);
    expect((best + 1 + 64 - 1) * 64 * 4).toBeGreaterThan(caps.maxStorageBufferBindingSize);
    expect(() => Engine.plan(parseConfig({ ...SWA_ONLY, window_size: best }), {}, caps)).not.toThrow();
    expect(d.message).toMatch(/window_size is too large for this device: the layer 0 K cache buffer would take 2560016128 bytes, over its maxStorageBufferBindingSize of \d+; the largest window_size that fits is \d+/);

    // Engine.create fails the same way, allocating nothing; the device then runs a good engine.
    await expect(Engine.create(ctx, randomModel({ ...SWA_ONLY, window_size: 10_000_000 }, 1))).rejects.toBeInstanceOf(DeviceLimitError);
    const good = await Engine.create(ctx, randomModel(SWA_ONLY, 1), { weights: 'f32' });
    expect((await good.feed([1, 2, 3], { sample: { temperature: 0 } })).token).not.toBeNull();
    await good.destroy();
  });

  it('lact_chunk_size 10,000,000 names the chunk (not WebGPU\'s raw "exceeds the max buffer size" text)', () => {
    const caps = deviceCaps(ctx);
    let e: unknown;
    try {
      Engine.plan(parseConfig({ ...ALL_ON, lact_chunk_size: 10_000_000 }), {}, caps);
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(DeviceLimitError);
    const d = e as DeviceLimitError;
    expect(d.key).toBe('lact_chunk_size');
    expect(d.largestFitting).not.toBeNull();
    expect(() => Engine.plan(parseConfig({ ...ALL_ON, lact_chunk_size: d.largestFitting! }), {}, caps)).not.toThrow();
    expect(() => Engine.plan(parseConfig({ ...ALL_ON, lact_chunk_size: d.largestFitting! + 1 }), {}, caps)).toThrow(DeviceLimitError);
  });

  it('createEngine reports the plan (stage "plan") before reading any weight, and refuses a config too large by name', async () => {
    const device = ctx.device;
    const weights = writeSafetensors(modelTensors(ALL_ON));
    const files = (config: Record<string, unknown>) => new MemorySource([new File([JSON.stringify(config)], 'config.json'), new File([weights], 'model.safetensors')]);
    const seen: LoadProgress[] = [];
    const engine = await createEngine({ model: 'planned', source: files(ALL_ON), device, weights: 'f32', onProgress: (p) => void seen.push(p) });
    const planned = seen.find((p) => p.stage === 'plan');
    expect(planned?.memoryPlan?.total).toBeGreaterThan(0);
    expect(planned!.message).toMatch(/^the engine needs [\d.]+ (KB|MB) of GPU memory: weights/);
    // Before the plan only the config and the weights' header were read: no tensor is on the GPU yet.
    const before = seen.slice(0, seen.indexOf(planned!)).filter((p) => p.stage === 'weights');
    for (const p of before) expect(p.message).toMatch(/ 0\/(\d+|\?) tensors on the GPU/);
    const after = seen.slice(seen.indexOf(planned!)).filter((p) => p.stage === 'weights');
    expect(after.length).toBeGreaterThan(0);
    for (const p of after) expect(p.message).toMatch(/the engine needs [\d.]+ (KB|MB) of GPU memory/);
    const stats = await engine.stats();
    expect(Math.abs(stats.memory.total - planned!.memoryPlan!.total)).toBeLessThan(UNIFORM_SLACK);
    await engine.dispose();

    const events: LoadProgress[] = [];
    const refused = createEngine({ model: 'too big', source: files({ ...ALL_ON, window_size: 10_000_000 }), device, weights: 'f32', onProgress: (p) => void events.push(p) });
    await expect(refused).rejects.toBeInstanceOf(DeviceLimitError);
    await expect(refused).rejects.toThrow(/window_size is too large for this device/);
    // Refused with the header read and no tensor uploaded.
    expect(events.some((p) => p.stage === 'plan' || p.stage === 'engine')).toBe(false);
    for (const p of events.filter((e) => e.stage === 'weights')) expect(p.message).toMatch(/ 0\/(\d+|\?) tensors on the GPU/);
  });
});
