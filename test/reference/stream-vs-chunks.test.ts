import { describe, expect, it } from 'vitest';
import { ReferenceModel } from '../../src/reference/index.ts';
import { ALL_OFF, ALL_ON, FULL_ATTN, SWA_ONLY, randomModel, rng } from '../helpers/random-model.ts';
import { expectClose, maxAbs, maxAbsDiff } from '../helpers/close.ts';

const CASES: Record<string, Record<string, unknown>> = {
  'every option on': ALL_ON,
  'every option off': ALL_OFF,
  'sliding-window only': SWA_ONLY,
  'full attention': FULL_ATTN,
  'window smaller than chunk': { ...ALL_ON, window_size: 8 },
  'the fast-weight branch with its own q|k|v': { ...ALL_ON, fw_own_qkv: true },
};

/**
 * Both sides are the same float64 model evaluated in two orders (one row at a time with carried state,
 * or whole chunks): they differ by f64 rounding only, about n·2^-53·sum|terms| per reduction (n <= 96,
 * |terms| <= ~10: ~1e-13), carried through two layers and the fast-weight updates. The former bound
 * (1e-5 of the largest logit) was f32-sized; this is 1e-10 per element plus 1e-12 near zero.
 */
const F64_TOL = { atol: 1e-12, rtol: 1e-10 } as const;

function tokens(n: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.floor(r() * 256));
}

describe('CPU reference: one token at a time equals whole chunks', () => {
  for (const [label, cfg] of Object.entries(CASES)) {
    it(label, () => {
      const { config, weights } = randomModel(cfg, 7);
      const model = new ReferenceModel(config, weights);
      const toks = tokens(70, 3); // 4 full chunks of 16 and a partial one
      const whole = model.forward(toks).logits;
      const streamed = model.stream().run(toks);
      expectClose(streamed, whole, { ...F64_TOL, label });
    });
  }

  it('the fast-weight update changes the output (the test above is not vacuous)', () => {
    const { config, weights } = randomModel(ALL_ON, 7);
    const toks = tokens(70, 3);
    const learned = new ReferenceModel(config, weights).forward(toks).logits;
    const frozen = new ReferenceModel({ ...config, chunkSize: 10_000 }, weights).forward(toks).logits;
    const V = config.vocabSize;
    // Before the first chunk completes nothing has been learned: identical.
    expect(learned.subarray(0, 16 * V)).toEqual(frozen.subarray(0, 16 * V));
    // After it, the learned weights move the logits: by more than 1e-3 of the largest logit, 1e9 times F64_TOL.
    expect(maxAbsDiff(learned.subarray(16 * V), frozen.subarray(16 * V))).toBeGreaterThan(1e-3 * maxAbs(frozen.subarray(16 * V)));
  });

  it('the window matters: sliding-window differs from full attention past the window', () => {
    const swa = randomModel(SWA_ONLY, 9);
    const full = randomModel(FULL_ATTN, 9);
    const toks = tokens(40, 5);
    const a = new ReferenceModel(swa.config, swa.weights).forward(toks).logits;
    const b = new ReferenceModel(full.config, full.weights).forward(toks).logits;
    const V = swa.config.vocabSize;
    expect(a.subarray(0, 16 * V)).toEqual(b.subarray(0, 16 * V));
    expect(maxAbsDiff(a.subarray(20 * V), b.subarray(20 * V))).toBeGreaterThan(1e-3 * maxAbs(b.subarray(20 * V)));
  });

  it('a stream resumed mid-chunk continues exactly (state carries the pending chunk)', () => {
    const { config, weights } = randomModel(ALL_ON, 11);
    const model = new ReferenceModel(config, weights);
    const toks = tokens(45, 8);
    const s = model.stream();
    s.run(toks.slice(0, 23));
    expect(s.layers[0].pending.fk.length).toBe(23 - 16);
    const tail = s.run(toks.slice(23));
    const whole = model.forward(toks).logits;
    expectClose(tail, whole.subarray(23 * config.vocabSize), { ...F64_TOL, label: 'resumed at 23' });
  });
});
