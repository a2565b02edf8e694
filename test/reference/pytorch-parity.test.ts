import { configOfFamily } from '../../src/model/model-config.ts';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../src/model/load.ts';
import { SafetensorsFile } from '../../src/model/safetensors.ts';
import { NodeDirectorySource } from '../../src/model/source.ts';
import { ReferenceModel } from '../../src/reference/index.ts';
import { expectClose, expectNotClose, type CloseTolerance } from '../helpers/close.ts';

/** Golden outputs written by the PyTorch twin (`train/make_fixtures.py`), committed so CI needs no torch. */
const FIXTURES = ['tiny-all-on', 'tiny-all-off', 'tiny-swa', 'tiny-full', 'tiny-own-qkv'] as const;

/**
 * Element-wise |ours - golden| <= ATOL + RTOL·|golden|.
 *
 * The golden is PyTorch's float64 forward on the F32 weights (cast exactly), stored as F32; the reference
 * computes in float64 on the same weights. So the two differ by
 *   (a) the F32 storage of the golden: round to nearest, |stored - exact| <= 2^-24·|stored| (half an ulp,
 *       normal range; the smallest |golden| in the fixtures is 5e-6, far from f32's subnormals), and
 *   (b) two float64 evaluations in different summation orders: about n·2^-53·sum|terms| per reduction
 *       (n <= 256 terms of magnitude <= ~10: ~3e-13), carried through two layers.
 * RTOL 1e-6 is 16.8x the bound of (a) (2^-24 = 5.96e-8): measured, every element of every fixture is within
 * 0.5 ulp, i.e. ~0.06 of this bound (the f64 result even rounds to exactly the stored F32 everywhere).
 * ATOL 1e-12 is (b), with margin, for elements near zero where (a) vanishes; it matters only below
 * |golden| = 1e-6, where the F32 rounding of (a) is itself < 6e-14.
 */
const GOLDEN_TOL = { atol: 1e-12, rtol: 1e-6 } as const;
const tol = (label: string): CloseTolerance => ({ ...GOLDEN_TOL, label });

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
  return { model, golden, tokens, reference: new ReferenceModel(configOfFamily(model.config, 'lact'), model.weights) };
}

describe('CPU reference equals the PyTorch twin (golden fixtures)', () => {
  for (const name of FIXTURES) {
    it(`${name}: whole-chunk logits and every layer's hidden state`, async () => {
      const { model, golden, reference, tokens } = await loadFixture(name);
      expect(tokens.length).toBe(100);
      // The sequence must cross several chunk boundaries for the fast-weight update to be exercised.
      expect(tokens.length).toBeGreaterThan(3 * configOfFamily(model.config, 'lact').chunkSize);
      const out = reference.forward(tokens);
      expectClose(out.logits, golden.float32('logits'), tol(`${name} logits`));
      expect(out.hidden.length).toBe(model.config.numLayers + 1);
      out.hidden.forEach((h, i) => expectClose(h, golden.float32(`hidden.${i}`), tol(`${name} hidden.${i}`)));
    });

    it(`${name}: one token at a time with carried state`, async () => {
      const { golden, reference, tokens } = await loadFixture(name);
      const streamed = reference.stream().run(tokens);
      expectClose(streamed, golden.float32('logits'), tol(`${name} streamed logits`));
    });
  }

  it('the golden check can fail: one weight matrix scaled by 1 + 1e-5 moves the logits past the tolerance', async () => {
    // 1e-5 relative on o_proj of layer 0 moves the logits by about 1e-5 relative: 10x RTOL. (The former
    // metric, max|diff| / max|golden| < 1e-4, let this through.)
    const { model, golden, tokens } = await loadFixture('tiny-all-on');
    const name = 'model.layers.0.attn.o_proj.weight';
    const w = model.weights.get(name);
    if (!w) throw new Error(`${name} missing`);
    const bumped = new Map(model.weights);
    bumped.set(name, { ...w, data: w.data.map((v) => v * (1 + 1e-5)) });
    const out = new ReferenceModel(configOfFamily(model.config, 'lact'), bumped).forward(tokens);
    expectNotClose(out.logits, golden.float32('logits'), tol('o_proj x (1 + 1e-5)'));
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
      // f16 keeps 11 significant bits: round to nearest is off by at most half an ulp, 2^-11·|w| in the
      // normal range, and half the subnormal spacing 2^-24, i.e. 2^-25, below it.
      expectClose(b.data, w.data, { atol: 2 ** -25, rtol: 2 ** -11, label: name });
    }
  });
});
