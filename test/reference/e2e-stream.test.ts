/**
 * The TTT-E2E reference's two forms agree: one token at a time with the carried state (E2EStream: the
 * K/V window, θ, the pending chunk's h_pre rows and tokens) equals the whole-chunk forward of the same
 * prompt, for prompts that end mid-chunk, one short of a boundary, exactly at one and one past it.
 * Tolerance 1e-10 element-wise relative to the largest logit (both are f64; they differ only by
 * rounding order).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SafetensorsFile } from '../../src/model/safetensors.ts';
import { E2EReference, e2eModelFromFiles, type Theta } from '../../src/reference/e2e/index.ts';
import { TINY_E2E, randomE2EModel, uniformRng } from '../helpers/random-e2e-model.ts';
import { expectClose, maxAbs, maxAbsDiff } from '../helpers/close.ts';

/** Both forms are f64 and do the same arithmetic (measured: identical); the bound leaves room for reordering only. */
const TOL = { rtol: 1e-10, atol: 1e-12 };

const close = (a: ArrayLike<number>, b: ArrayLike<number>, label: string) => expectClose(a, b, { ...TOL, label });

function expectThetaClose(a: Theta, b: Theta, label: string): void {
  expect(a.length).toBe(b.length);
  a.forEach((t, j) => {
    for (const w of ['w1', 'w2', 'w3'] as const) close(t[w], b[j][w], `${label}, layer ${j} ${w}`);
  });
}

function fixture(name: string) {
  const dir = fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
  const { config, weights } = e2eModelFromFiles(JSON.parse(readFileSync(`${dir}config.json`, 'utf8')), readFileSync(`${dir}model.safetensors`));
  const raw = SafetensorsFile.parse(readFileSync(`${dir}golden.safetensors`)).rawBytes('tokens');
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  return { reference: new E2EReference(config, weights), tokens: Array.from({ length: raw.byteLength / 4 }, (_, i) => view.getInt32(4 * i, true)) };
}

/**
 * Feeds `tokens` one at a time and, at each prompt length P in `lengths`, compares everything with the
 * whole-chunk forward of tokens[:P]: logits of every position so far, the number of updates
 * (floor((P − 1)/B)), their losses, gradient norms and clip scales, θ, and the size of the carried state.
 */
function checkAgreement(reference: E2EReference, tokens: readonly number[], lengths: readonly number[]): void {
  const c = reference.config, V = c.vocabSize, B = c.miniBatchSize, W = c.slidingWindow;
  const stream = reference.stream();
  const logits = new Float64Array(tokens.length * V);
  const want = new Set(lengths);
  for (let p = 0; p < tokens.length; p++) {
    logits.set(stream.feed(tokens[p]), p * V);
    const P = p + 1;
    if (!want.has(P)) continue;
    const whole = reference.forward(tokens.slice(0, P));
    const label = `P = ${P}`;
    close(logits.subarray(0, P * V), whole.logits, label);
    const updates = c.numTttLayers > 0 ? Math.floor((P - 1) / B) : 0;
    expect(stream.updates, label).toBe(updates);
    expect(whole.gradNorms.length, label).toBe(updates);
    if (updates > 0) {
      close(stream.chunkLosses, whole.chunkLosses, `${label}, chunk losses`);
      close(stream.gradNorms, whole.gradNorms, `${label}, gradient norms`);
      close(stream.clipScales, whole.clipScales, `${label}, clip scales`);
      stream.thetas.forEach((t, i) => expectThetaClose(t, whole.thetas[i], `${label}, θ after update ${i}`));
    }
    expectThetaClose(stream.currentTheta(), whole.theta, `${label}, θ now`);
    // The carried state is bounded: W − 1 K/V rows per non-TTT block, W − 1 before the pending chunk plus the chunk per TTT block.
    const pendingStart = Math.floor((P - 1) / B) * B;
    for (let i = 0; i < c.numLayers; i++) {
      const [first, end] = stream.kvSpan(i);
      expect(end, label).toBe(P);
      expect(first, label).toBe(i >= c.firstTttLayer ? Math.max(0, pendingStart - W + 1) : Math.max(0, P - W + 1));
      expect(end - first).toBeLessThanOrEqual(i >= c.firstTttLayer ? W - 1 + B : W - 1);
    }
    if (c.numTttLayers > 0) expect(stream.pendingRows, label).toBe(P - pendingStart);
  }
}

function randomTokens(n: number, seed: number, bosAt: readonly number[] = []): number[] {
  const r = uniformRng(seed);
  const t = Array.from({ length: n }, () => 3 + Math.floor(r() * 250));
  t[0] = 1;
  for (const i of bosAt) t[i] = 1;
  return t;
}

describe('TTT-E2E reference: one token at a time equals whole chunks', () => {
  // B = 16: 15 one short of a boundary, 16 and 32 exactly at one (the chunk waits for its last target),
  // 17 and 33 one past (the update has just run), 40/41 around the BOS, 90 the whole golden input.
  const LENGTHS = [1, 7, 15, 16, 17, 31, 32, 33, 40, 41, 48, 49, 90];
  for (const name of ['tiny-e2e-s1', 'tiny-e2e-s2']) {
    it(`${name}: prompts of ${LENGTHS.join(', ')} tokens`, () => {
      const { reference, tokens } = fixture(name);
      checkAgreement(reference, tokens, LENGTHS);
    });
  }

  const SHAPES: Record<string, Record<string, unknown>> = {
    'window smaller than the chunk (W 5, B 8)': { sliding_window: 5, mini_batch_size: 8 },
    'window 1 (attention sees only itself)': { sliding_window: 1, mini_batch_size: 8 },
    'chunk 1 (an update per token)': { mini_batch_size: 1, sliding_window: 4 },
    'window longer than the sequence': { sliding_window: 200, mini_batch_size: 8 },
    'every block a TTT block (S = L = 3)': { num_layers: 3, num_ttt_layers: 3, mini_batch_size: 8, sliding_window: 6 },
    'no TTT block (S = 0)': { num_ttt_layers: 0, mini_batch_size: 8, sliding_window: 6 },
    'no clip, odd chunk (B 7, W 9)': { inner_clip_global_norm: 0, mini_batch_size: 7, sliding_window: 9 },
    'dynamic MLP wider than the static one': { intermediate_size_dynamic_mlp: 48, intermediate_size_static_mlp: 24, mini_batch_size: 8, sliding_window: 10 },
  };
  for (const [label, over] of Object.entries(SHAPES)) {
    it(label, () => {
      const { config, weights } = randomE2EModel({ ...TINY_E2E, hidden_size: 16, num_heads: 2, head_dim: 8, num_layers: 2, num_ttt_layers: 1, ...over }, 11);
      const reference = new E2EReference(config, weights);
      const B = config.miniBatchSize;
      const tokens = randomTokens(3 * B + 5, 5, [B + 2]);
      checkAgreement(reference, tokens, [1, B - 1, B, B + 1, 2 * B, 2 * B + 1, 3 * B, 3 * B + 5].filter((n, i, a) => n >= 1 && a.indexOf(n) === i));
    });
  }

  it('the agreement is not vacuous: the updates change the logits, and an all-BOS chunk learns nothing', () => {
    const { reference, tokens } = fixture('tiny-e2e-s2');
    const V = reference.config.vocabSize, B = reference.config.miniBatchSize;
    const learned = reference.stream().run(tokens);
    const frozen = reference.stream({ innerLr: 0 }).run(tokens);
    expect(maxAbsDiff(learned.subarray(0, B * V), frozen.subarray(0, B * V))).toBe(0);
    expect(maxAbsDiff(learned.subarray(B * V), frozen.subarray(B * V)) / maxAbs(frozen.subarray(B * V))).toBeGreaterThan(0.1);

    const bos = Array.from({ length: 2 * B + 1 }, () => reference.config.bosTokenId);
    const st = reference.stream();
    st.run(bos);
    expect(st.chunkLosses).toEqual([0, 0]);
    expect(st.gradNorms).toEqual([0, 0]);
    const [now, initial] = [st.currentTheta(), reference.initialTheta()];
    now.forEach((t, j) => (['w1', 'w2', 'w3'] as const).forEach((w) => expect(Array.from(t[w]), `θ of layer ${j} ${w} unchanged`).toEqual(Array.from(initial[j][w]))));
  });
});
