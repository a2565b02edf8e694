/**
 * The TTT-E2E engine (src/families/ttt-e2e.ts) against the PyTorch twin's golden runs
 * (test/fixtures/tiny-e2e-s1 and -s2: 90 tokens, B = 16, W = 24, five updates, a BOS inside).
 */
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.ts';
import { Engine } from '../../src/engine/engine.ts';
import { decodeMemory } from '../../src/engine/memory-blob.ts';
import { loadModel, type LoadedModel } from '../../src/model/load.ts';
import { SafetensorsFile } from '../../src/model/safetensors.ts';
import { NodeDirectorySource } from '../../src/model/source.ts';
import { openTestGpu } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/close.ts';

const FIXTURES = ['tiny-e2e-s1', 'tiny-e2e-s2'] as const;

async function fixture(name: string) {
  const dir = fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
  const model = await loadModel(new NodeDirectorySource(dir));
  const golden = SafetensorsFile.parse(readFileSync(`${dir}golden.safetensors`), { source: `${name}/golden.safetensors` });
  const raw = golden.rawBytes('tokens');
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const tokens = Array.from({ length: raw.byteLength / 4 }, (_, i) => view.getInt32(4 * i, true));
  return { model, golden, tokens };
}

describe('TTT-E2E engine against the PyTorch twin', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = (await openTestGpu()).ctx;
  });
  afterAll(() => ctx?.device.destroy());

  for (const name of FIXTURES) {
    it(`${name}: logits of one prefill`, async () => {
      const { model, golden, tokens } = await fixture(name);
      const engine = await Engine.create(ctx, model as LoadedModel, { weights: 'f32', allLogits: true });
      const got = (await engine.feed(tokens, { logits: 'all' })).logits!;
      expectClose(got, golden.float32('logits'), { atol: 1e-5, rtol: 1e-4, label: `${name} logits` });
      console.log(engine.stats().learning);
      await engine.destroy();
    });
  }
});
