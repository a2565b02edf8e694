// The helper that keeps a missing adapter feature from passing silently (test/helpers/gpu.ts hasFeature):
// a variant it skips is written down for the test runner's closing output; on lavapipe under CI=true,
// where every feature the tests use exists, a missing one fails instead.
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.ts';
import type { NodeGpu } from '../../src/node/webgpu.ts';
import { hasFeature, LAVAPIPE_FEATURES, registerTestGpu } from '../helpers/gpu.ts';

function fakeGpu(backend: string, description: string, features: Partial<GpuContext['features']>): GpuContext {
  const device = {} as GPUDevice;
  registerTestGpu({ device, backend, description } as unknown as NodeGpu);
  return { device, features: { shaderF16: false, subgroups: false, timestampQuery: false, ...features } } as unknown as GpuContext;
}

describe('hasFeature: skipped variants are reported, never silent', () => {
  const file = join(mkdtempSync(join(tmpdir(), 'uncovered-')), 'uncovered.txt');
  const env = (extra: Record<string, string>) => ({ TTT_UNCOVERED_FILE: file, ...extra });

  it('a present feature runs and records nothing', () => {
    const ctx = fakeGpu('lavapipe', 'lavapipe: mesa llvmpipe', { shaderF16: true });
    expect(hasFeature(ctx, 'shaderF16', 'native f16', env({ CI: 'true' }))).toBe(true);
    expect(existsSync(file)).toBe(false);
  });

  it('a missing feature on another adapter is skipped and written down with the test, the variant and the adapter', () => {
    const ctx = fakeGpu('swiftshader', 'swiftshader: google swiftshader; features: subgroups', { subgroups: true });
    expect(hasFeature(ctx, 'shaderF16', 'native f16 weights', env({ CI: 'true' }))).toBe(false);
    expect(hasFeature(ctx, 'timestampQuery', 'GPU timing', env({}))).toBe(false);
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^test\/gpu\/coverage\.test\.ts > .*written down.*: native f16 weights: needs shader-f16, which the adapter lacks \(swiftshader: google swiftshader\)$/);
    expect(lines[1]).toMatch(/GPU timing: needs timestamp-query/);
  });

  it('on lavapipe a missing feature is skipped outside CI, and fails under CI=true', () => {
    const ctx = fakeGpu('lavapipe', 'lavapipe: mesa software llvmpipe (llvmpipe: Mesa 25.0.7)', {});
    expect(LAVAPIPE_FEATURES).toEqual(['shaderF16', 'subgroups', 'timestampQuery']);
    for (const f of LAVAPIPE_FEATURES) {
      expect(() => hasFeature(ctx, f, 'variant', env({ CI: 'true' }))).toThrow(/which lavapipe has \(CI=true\)/);
      expect(hasFeature(ctx, f, 'variant', env({}))).toBe(false);
    }
    // Recognised by the adapter's description too (a device opened without registerTestGpu).
    const unregistered = { device: { adapterInfo: { vendor: 'mesa', architecture: '', device: '', description: 'llvmpipe (LLVM 15.0.6, 256 bits)' } }, features: { shaderF16: false } } as unknown as GpuContext;
    expect(() => hasFeature(unregistered, 'shaderF16', 'variant', env({ CI: 'true' }))).toThrow(/lavapipe has/);
  });
});
