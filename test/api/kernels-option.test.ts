// createEngine({ kernels }): the kernel shapes a caller asks for, reported in info.kernels; on lavapipe
// 'auto' picks the CPU-emulator shapes; both give the same per-token log-probabilities on whole models.
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine } from '../../src/api/index.ts';
import { NodeDirectorySource } from '../../src/model/source.ts';
import { openTestGpu } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/close.ts';

const dir = (name: string) => fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
const TEXT = 'The window forgets what the weights keep: a chunk at a time, learned while reading. '.repeat(3);
// Two f32 forwards that differ only in summation order (tiled vs register matmuls, per-tile vs per-key
// softmax rescaling): ~1e-6 on these logits; 1e-5 leaves 10x.
const SAME = { atol: 1e-5, rtol: 1e-5 };
// A LaCT model with Muon is further apart: its chunk updates put each variant's f32 gradient through five
// Newton-Schulz steps, which amplify its rounding (test/gpu/fast-weights.test.ts bounds a layer's outputs
// after three updates at 1.5e-4 of the f64 ones, THREE_CHUNK_TOL.on); two variants, each that far from
// f64, may differ by twice that. Measured on tiny-all-on (16 updates in this text): 7.8e-5 (2026-12-03,
// before the update became one launch), 1.3e-4 after.
const SAME_MUON = { atol: 3e-4, rtol: 1e-5 };

describe('the kernels option', () => {
  let device: GPUDevice;
  beforeAll(async () => {
    device = (await openTestGpu()).gpu.device;
  });
  afterAll(() => device?.destroy());

  for (const name of ['tiny-all-on', 'tiny-full', 'tiny-e2e-s2']) {
    it(`${name}: auto is the CPU-emulator shapes on lavapipe; gpu forced gives the same log-probabilities`, async () => {
      const open = (kernels?: 'auto' | 'cpu' | 'gpu') => createEngine({ model: name, source: new NodeDirectorySource(dir(name)), device, weights: 'f32', kernels });
      const auto = await open();
      const gpu = await open('gpu');
      try {
        expect(auto.info.kernels).toBe('cpu');
        expect(gpu.info.kernels).toBe('gpu');
        const a = (await auto.prefill(TEXT, { logprobs: true })).logprobs!;
        const g = (await gpu.prefill(TEXT, { logprobs: true })).logprobs!;
        expect(g.length).toBe(a.length);
        expectClose(g.subarray(1), a.subarray(1), { ...(name === 'tiny-all-on' ? SAME_MUON : SAME), label: `${name} gpu vs cpu shapes` });
      } finally {
        await auto.dispose();
        await gpu.dispose();
      }
    });
  }

  it('a value other than auto, cpu or gpu is refused by name', async () => {
    await expect(createEngine({ model: 'x', source: new NodeDirectorySource(dir('tiny-all-on')), device, kernels: 'tpu' as 'gpu' })).rejects.toThrow(/kernels must be 'auto', 'cpu' or 'gpu', got tpu/);
  });
});
