/**
 * The TTT-E2E CPU reference (src/reference/e2e/) against the PyTorch twin's golden runs
 * (test/fixtures/tiny-e2e-s1, tiny-e2e-s2: train/make_e2e_fixtures.py, computed in f64, stored F32).
 *
 * Tolerance, element-wise: |a − b| ≤ ATOL + RTOL·|b| with a our f64 value, b the golden.
 *  - RTOL = 1e-6: the golden is an f64 result rounded to f32, so |b − b_f64| ≤ 2⁻²⁴|b| ≈ 6e-8|b|; our f64
 *    result differs from the twin's f64 only by summation order (~1e-15 relative). 1e-6 is 16× the
 *    storage rounding, and far below any modelling error (the planted errors below move the logits by
 *    5e-2..8e-1 relative).
 *  - ATOL = 1e-9: an absolute floor for elements near zero (after cancellation), whose f64 noise is
 *    relative to the terms summed, not to the result; 1e-9 is 1e-9 of the logit scale (~2).
 * A tighter check follows: the excess over the golden's own f32 rounding, |a − b| − 2⁻²⁴|b|, is ≤ 1e-10
 * everywhere (i.e. we agree with the twin's f64 values, not just with its f32 copy).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SafetensorsFile } from '../../src/model/safetensors.ts';
import { E2EReference, e2eModelFromFiles, type E2EForwardResult, type Theta } from '../../src/reference/e2e/index.ts';

const RTOL = 1e-6;
const ATOL = 1e-9;
const F32_HALF_ULP = 2 ** -24;

const FIXTURES = ['tiny-e2e-s1', 'tiny-e2e-s2'] as const;

function loadFixture(name: string) {
  const dir = fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
  const { config, weights } = e2eModelFromFiles(JSON.parse(readFileSync(`${dir}config.json`, 'utf8')), readFileSync(`${dir}model.safetensors`), `${name}/model.safetensors`);
  const golden = SafetensorsFile.parse(readFileSync(`${dir}golden.safetensors`), { source: `${name}/golden.safetensors` });
  const int32 = (t: string): number[] => {
    const raw = golden.rawBytes(t);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    return Array.from({ length: raw.byteLength / 4 }, (_, i) => view.getInt32(4 * i, true));
  };
  return { config, weights, golden, tokens: int32('tokens'), lossMask: int32('loss_mask'), reference: new E2EReference(config, weights) };
}

/** Worst element of |a − b| / (ATOL + RTOL|b|) (≤ 1 passes), the worst plain relative error, and the excess over f32 rounding. */
function compare(a: ArrayLike<number>, b: ArrayLike<number>, from = 0) {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let ratio = 0, rel = 0, excess = -Infinity, at = -1;
  for (let i = from; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]);
    const r = e / (ATOL + RTOL * Math.abs(b[i]));
    if (r > ratio) [ratio, at] = [r, i];
    rel = Math.max(rel, e / Math.max(Math.abs(b[i]), 1e-300));
    excess = Math.max(excess, e - F32_HALF_ULP * Math.abs(b[i]));
  }
  return { ratio, rel, excess, at };
}

function expectClose(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  const r = compare(a, b);
  expect(r.ratio, `${what}: worst |a-b|/(atol+rtol|b|) at ${r.at}`).toBeLessThanOrEqual(1);
  expect(r.excess, `${what}: excess over the golden's f32 rounding`).toBeLessThanOrEqual(1e-10);
}

function thetaOf(golden: SafetensorsFile, c: number, firstTtt: number, S: number): Theta {
  return Array.from({ length: S }, (_, j) => ({
    w1: Float64Array.from(golden.float32(`theta.${c}.layers.${firstTtt + j}.w1`)),
    w2: Float64Array.from(golden.float32(`theta.${c}.layers.${firstTtt + j}.w2`)),
    w3: Float64Array.from(golden.float32(`theta.${c}.layers.${firstTtt + j}.w3`)),
  }));
}

describe('TTT-E2E reference equals the PyTorch twin (golden fixtures)', () => {
  for (const name of FIXTURES) {
    describe(name, () => {
      const fx = loadFixture(name);
      const { config: c, golden, tokens } = fx;
      const run: E2EForwardResult = fx.reference.forward(tokens);

      it('the fixture exercises the inner loop: 5 updates, a BOS inside, a partial tail chunk', () => {
        expect(tokens.length).toBe(90);
        expect(c.miniBatchSize).toBe(16);
        expect(tokens.indexOf(c.bosTokenId, 1)).toBe(40);
        expect(run.chunkLosses.length).toBe(5);
        expect(Math.floor((tokens.length - 1) / c.miniBatchSize)).toBe(5);
      });

      it('logits, per-position NLL and the loss mask', () => {
        expectClose(run.logits, golden.float32('logits'), 'logits');
        expectClose(run.nll, golden.float32('nll'), 'nll');
        expect(Array.from(run.lossMask)).toEqual(fx.lossMask);
      });

      it("every block's residual stream", () => {
        expect(run.hidden.length).toBe(c.numLayers + 1);
        run.hidden.forEach((h, i) => expectClose(h, golden.float32(`hidden.${i}`), `hidden.${i}`));
      });

      it('chunk losses, gradient norms and clip scales of every update', () => {
        expectClose(run.chunkLosses, golden.float32('chunk_loss'), 'chunk_loss');
        expectClose(run.gradNorms, golden.float32('grad_norm'), 'grad_norm');
        expectClose(run.clipScales, golden.float32('clip_scale'), 'clip_scale');
        // Both sides of the clip occur (s1: chunks 0-2 clipped; s2: chunk 0).
        expect(run.clipScales.some((s) => s < 1) && run.clipScales.some((s) => s === 1)).toBe(true);
      });

      it('θ after every chunk', () => {
        run.thetas.forEach((theta, ci) => {
          const want = thetaOf(golden, ci, c.firstTttLayer, c.numTttLayers);
          theta.forEach((t, j) => {
            for (const w of ['w1', 'w2', 'w3'] as const) expectClose(t[w], want[j][w], `theta.${ci}.layers.${c.firstTttLayer + j}.${w}`);
          });
        });
      });

      it('each step moves θ by exactly η·min(||g||, clip) (SGD on the clipped gradient)', () => {
        const start = fx.reference.initialTheta();
        run.thetas.forEach((theta, i) => {
          const prev = i === 0 ? start : run.thetas[i - 1];
          let ss = 0;
          theta.forEach((t, j) => {
            for (const w of ['w1', 'w2', 'w3'] as const) for (let k = 0; k < t[w].length; k++) ss += (t[w][k] - prev[j][w][k]) ** 2;
          });
          const want = c.innerLr * Math.min(run.gradNorms[i], c.innerClipGlobalNorm);
          expect(Math.abs(Math.sqrt(ss) - want) / want).toBeLessThan(1e-12);
        });
      });

      it('logits_static: inner_lr 0 is the plain sliding-window forward with the checkpoint θ', () => {
        const frozen = fx.reference.forward(tokens, { innerLr: 0 });
        expectClose(frozen.logits, golden.float32('logits_static'), 'logits_static');
        // The first chunk is applied with θ_0 in both runs: identical there.
        const V = c.vocabSize, B = c.miniBatchSize;
        expect(compare(frozen.logits.subarray(0, B * V), run.logits.subarray(0, B * V)).rel).toBe(0);
      });

      describe('planted errors make the golden comparison fail', () => {
        const V = c.vocabSize, B = c.miniBatchSize;
        const goldenLogits = golden.float32('logits');
        const worst = (r: E2EForwardResult, from = 0) => compare(r.logits, goldenLogits, from * V).ratio;

        it('rotate-half RoPE instead of interleaved', () => {
          expect(worst(fx.reference.forward(tokens, { ropeLayout: 'rotate-half' }))).toBeGreaterThan(1e4);
        });

        it('no clip: logits after the first clipped update and θ differ', () => {
          const r = fx.reference.forward(tokens, { clip: 0 });
          expect(r.clipScales.every((s) => s === 1)).toBe(true);
          expect(worst(r, B)).toBeGreaterThan(1e4);
          expect(compare(r.thetas[0][0].w1, golden.float32(`theta.0.layers.${c.firstTttLayer}.w1`)).ratio).toBeGreaterThan(1e4);
          // ... and nothing before the first update
          expect(compare(r.logits.subarray(0, B * V), goldenLogits.subarray(0, B * V)).ratio).toBeLessThanOrEqual(1);
        });

        it('BOS targets counted by the inner loss: chunk 2 (the BOS target) and everything after it differ', () => {
          const r = fx.reference.forward(tokens, { skipBosTargets: false });
          expect(compare(r.chunkLosses.slice(0, 2), golden.float32('chunk_loss').subarray(0, 2)).ratio).toBeLessThanOrEqual(1);
          expect(compare([r.chunkLosses[2]], [golden.float32('chunk_loss')[2]]).ratio).toBeGreaterThan(1e3);
          expect(worst(r, 3 * B)).toBeGreaterThan(1e4);
        });

        it('the inner loop switched off (inner_lr 0)', () => {
          expect(worst(fx.reference.forward(tokens, { innerLr: 0 }), B)).toBeGreaterThan(1e4);
        });
      });
    });
  }
});
