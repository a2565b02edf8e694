import { describe, expect, it } from 'vitest';
import { chooseKernelVariant, isCpuEmulator, isSwiftShader, KernelChoiceError, parseKernelChoice } from '../../src/gpu/kernel-variant.ts';

describe('kernel variant per adapter class', () => {
  // What these adapters report (Dawn in Node, Chromium), and real GPUs' reports for contrast.
  const lavapipe = { vendor: 'mesa', architecture: 'software', device: 'llvmpipe-llvm-15-0-6-256-bits-', description: 'llvmpipe: Mesa 25.0.7' };
  const swiftshader = { vendor: 'google', architecture: 'swiftshader', device: '', description: 'SwiftShader Device (Subzero)' };
  const warp = { vendor: 'microsoft', architecture: '', device: '', description: 'Microsoft Basic Render Driver' };
  const nvidia = { vendor: 'nvidia', architecture: 'hopper', device: '', description: 'NVIDIA H200' };
  const apple = { vendor: 'apple', architecture: 'metal-3', device: '', description: '' };
  const intel = { vendor: 'intel', architecture: 'gen-12lp', device: '', description: 'Intel(R) Iris(R) Xe Graphics' };

  it('CPU emulators are recognised, real GPUs are not', () => {
    for (const a of [lavapipe, swiftshader, warp, { isFallbackAdapter: true }]) expect(isCpuEmulator(a), JSON.stringify(a)).toBe(true);
    for (const a of [nvidia, apple, intel, {}]) expect(isCpuEmulator(a), JSON.stringify(a)).toBe(false);
    expect(isCpuEmulator(undefined)).toBe(false);
  });

  it('SwiftShader is told apart (the benchmarks give onnxruntime-web no subgroups there)', () => {
    expect(isSwiftShader(swiftshader)).toBe(true);
    for (const a of [lavapipe, warp, nvidia, apple, intel, {}]) expect(isSwiftShader(a), JSON.stringify(a)).toBe(false);
    expect(isSwiftShader(undefined)).toBe(false);
  });

  it('auto follows the adapter; cpu and gpu force a variant', () => {
    expect(chooseKernelVariant(lavapipe)).toBe('cpu');
    expect(chooseKernelVariant(swiftshader, 'auto')).toBe('cpu');
    expect(chooseKernelVariant(nvidia)).toBe('gpu');
    expect(chooseKernelVariant(undefined)).toBe('gpu');
    expect(chooseKernelVariant(lavapipe, 'gpu')).toBe('gpu');
    expect(chooseKernelVariant(nvidia, 'cpu')).toBe('cpu');
  });

  it('a choice given as text is parsed, and a bad one is a named error', () => {
    expect(parseKernelChoice(undefined, 'TTT_KERNELS')).toBe('auto');
    expect(parseKernelChoice('', 'TTT_KERNELS')).toBe('auto');
    expect(parseKernelChoice(' GPU ', 'TTT_KERNELS')).toBe('gpu');
    expect(() => parseKernelChoice('fast', 'TTT_KERNELS')).toThrow(KernelChoiceError);
    expect(() => parseKernelChoice('fast', 'TTT_KERNELS')).toThrow(/TTT_KERNELS: 'fast' is not a kernel variant/);
  });
});
