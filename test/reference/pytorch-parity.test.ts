import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../src/model/load.ts';
import { SafetensorsFile } from '../../src/model/safetensors.ts';
import { NodeDirectorySource } from '../../src/model/source.ts';
import { ReferenceModel } from '../../src/reference/index.ts';
import { relError } from '../helpers/random-model.ts';

/** Golden outputs written by the PyTorch twin (`train/make_fixtures.py`), committed so CI needs no torch. */
const FIXTURES = ['tiny-all-on', 'tiny-all-off', 'tiny-swa', 'tiny-full'] as const;

function fixtureDir(name: string): string {
  return fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
}

async function loadFixture(name: string) {
  const dir = fixtureDir(name);
  const model = await loadModel(new NodeDirectorySource(dir));
  const golden = SafetensorsFile.parse(await readFile(`${dir}golden.safetensors`), { source: `${name}/golden.safetensors` });
  const raw = golden.rawBytes('tokens');
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const tokens = Array.from({ length: raw.byteLength / 4 }, (_, i) => view.getInt32(4 * i, true));
  return { model, golden, tokens, reference: new ReferenceModel(model.config, model.weights) };
}

describe('CPU reference equals the PyTorch twin (golden fixtures)', () => {
  for (const name of FIXTURES) {
    it(`${name}: whole-chunk logits and every layer's hidden state`, async () => {
      const { model, golden, reference, tokens } = await loadFixture(name);
      expect(tokens.length).toBe(100);
      // The sequence must cross several chunk boundaries for the fast-weight update to be exercised.
      expect(tokens.length).toBeGreaterThan(3 * model.config.chunkSize);
      const out = reference.forward(tokens);
      expect(relError(out.logits, golden.float32('logits'))).toBeLessThan(1e-4);
      expect(out.hidden.length).toBe(model.config.numLayers + 1);
      out.hidden.forEach((h, i) => expect(relError(h, golden.float32(`hidden.${i}`))).toBeLessThan(1e-4));
    });

    it(`${name}: one token at a time with carried state`, async () => {
      const { golden, reference, tokens } = await loadFixture(name);
      const streamed = reference.stream().run(tokens);
      expect(relError(streamed, golden.float32('logits'))).toBeLessThan(1e-4);
    });
  }

  it('the golden check can fail: a weight perturbed by 1% moves the logits past the tolerance', async () => {
    const { model, golden, tokens } = await loadFixture('tiny-all-on');
    const name = 'model.layers.0.attn.o_proj.weight';
    const w = model.weights.get(name);
    if (!w) throw new Error(`${name} missing`);
    const bumped = new Map(model.weights);
    bumped.set(name, { ...w, data: w.data.map((v) => v * 1.01) });
    const out = new ReferenceModel(model.config, bumped).forward(tokens);
    expect(relError(out.logits, golden.float32('logits'))).toBeGreaterThan(1e-4);
  });
});

describe('the bundled demo model', () => {
  it('is the tiny-all-on fixture in F16: every weight within half-precision rounding', async () => {
    const bundled = await loadModel(new NodeDirectorySource(fileURLToPath(new URL('../../public/models/tiny-random-lact/', import.meta.url))));
    const fixture = await loadModel(new NodeDirectorySource(fixtureDir('tiny-all-on')));
    expect([...bundled.weights.keys()].sort()).toEqual([...fixture.weights.keys()].sort());
    for (const [name, w] of fixture.weights) {
      const b = bundled.weights.get(name)!;
      expect(b.shape).toEqual(w.shape);
      // f16 keeps 11 significant bits: relative rounding error at most 2^-11 (normal range).
      let worst = 0;
      for (let i = 0; i < w.data.length; i++) worst = Math.max(worst, Math.abs(b.data[i] - w.data[i]) - Math.abs(w.data[i]) * 2 ** -11);
      expect(worst, name).toBeLessThanOrEqual(1e-7);
    }
  });
});
