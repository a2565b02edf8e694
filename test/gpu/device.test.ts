import { describe, expect, it } from 'vitest';
import { requestEngineDevice } from '../../src/gpu/device.ts';
import { deviceNeeds } from '../../src/engine/engine.ts';
import { openNodeAdapter } from '../../src/node/webgpu.ts';
import { ALL_ON, randomModel } from '../helpers/random-model.ts';

describe('engine device request', () => {
  it('asks for min(adapter limit, model need), never more than the adapter has, and the optional features it offers', async () => {
    const { adapter } = await openNodeAdapter();
    const { config } = randomModel({ ...ALL_ON, vocab_size: 300_000, hidden_size: 512, num_attn_heads: 4, num_lact_heads: 4 });
    // A 300K x 512 f32 embedding is 585 MiB: the need is capped at one binding, since weights are split.
    const needs = deviceNeeds(config, { weights: 'f32' }, adapter.limits.maxStorageBufferBindingSize);
    expect(needs.largestBuffer).toBe(adapter.limits.maxStorageBufferBindingSize);
    const device = await requestEngineDevice(adapter, needs);
    expect(device.limits.maxStorageBufferBindingSize).toBeLessThanOrEqual(adapter.limits.maxStorageBufferBindingSize);
    expect(device.limits.maxStorageBuffersPerShaderStage).toBeGreaterThanOrEqual(8);
    expect(device.features.has('shader-f16')).toBe(adapter.features.has('shader-f16'));
    device.destroy();
  });

  it('f16 can be declined, so the packed-u32 path can be used even where shader-f16 exists', async () => {
    const { adapter } = await openNodeAdapter();
    const device = await requestEngineDevice(adapter, { largestBuffer: 1 << 20, f16: false });
    expect(device.features.has('shader-f16')).toBe(false);
    device.destroy();
  });
});
