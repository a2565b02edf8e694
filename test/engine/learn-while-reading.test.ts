/**
 * A sliding-window model learning while reading with its top block's MLP (src/families/top-mlp-learning.ts,
 * the `learnWhileReading` engine option) against its f64 CPU twin (src/reference/top-mlp-learning.ts).
 * Tolerances as the TTT-E2E engine's against its twin: 1e-4 relative (floors 1e-5 for logits, 1e-6 for
 * weights), the f32 engine after four inner steps.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.ts';
import { deviceCaps, Engine } from '../../src/engine/engine.ts';
import { decodeMemory } from '../../src/engine/memory-blob.ts';
import { topMlpLearning } from '../../src/reference/top-mlp-learning.ts';
import { expectPlanHeld } from '../helpers/memory-plan.ts';
import { openTestGpu } from '../helpers/gpu.ts';
import { expectClose, expectNotClose } from '../helpers/close.ts';
import { ALL_ON, FULL_ATTN, randomModel, SWA_ONLY } from '../helpers/random-model.ts';
import { configOfFamily } from '../../src/model/model-config.ts';

const SETTINGS = { chunk: 16, lr: 1, clip: 1 };

function tokensOf(n: number, seed: number): number[] {
  let s = seed;
  // Bytes, with the model's BOS (256) at position 0 and once inside (a target the loss must skip).
  return Array.from({ length: n }, (_, i) => (i === 0 || i === 37 ? 256 : (s = (Math.imul(s, 1103515245) + 12345) >>> 0) % 256));
}

async function thetaOf(engine: Engine): Promise<Float32Array> {
  const { sections } = decodeMemory(await engine.saveMemory());
  return new Float32Array(sections.get('topMlp.theta')!.slice().buffer);
}

describe('learn while reading (a sliding-window model\'s top MLP) against its CPU twin', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = (await openTestGpu()).ctx;
  });
  afterAll(() => ctx?.device.destroy());

  const model = randomModel(SWA_ONLY, 7);
  const config = configOfFamily(model.config, 'lact');
  const tokens = tokensOf(75, 3);
  const twin = topMlpLearning(config, model.weights, tokens, SETTINGS);

  it('logits at every position, each update\'s loss, gradient norm and clip scale, and the weights after them', async () => {
    expect(twin.chunkLosses.length).toBe(4);
    const engine = await Engine.create(ctx, model, { weights: 'f32', allLogits: true, learnWhileReading: SETTINGS });
    const got = (await engine.feed(tokens, { logits: 'all' })).logits!;
    expectClose(got, twin.logits, { atol: 1e-5, rtol: 1e-4, label: 'logits' });
    const l = engine.stats().learning!;
    expect(l.updates).toBe(4);
    expectClose(l.recent.map((u) => u.loss), twin.chunkLosses, { atol: 1e-6, rtol: 1e-4, label: 'chunk loss' });
    expectClose(l.recent.map((u) => u.gradNorm), twin.gradNorms, { atol: 1e-6, rtol: 1e-4, label: 'gradient norm' });
    expectClose(l.recent.map((u) => u.clipScale), twin.clipScales, { atol: 1e-6, rtol: 1e-4, label: 'clip scale' });
    expect(l.recent.map((u) => u.validTargets)).toEqual([16, 16, 15, 16]); // position 36's target is the BOS at 37
    expectClose(await thetaOf(engine), twin.theta, { atol: 1e-6, rtol: 1e-4, label: 'θ after four updates' });
    // The learning moved the numbers: the plain model's logits differ after the first chunk.
    const plain = await Engine.create(ctx, model, { weights: 'f32', allLogits: true });
    const base = (await plain.feed(tokens, { logits: 'all' })).logits!;
    const V = config.vocabSize;
    expectClose(got.subarray(0, 16 * V), base.subarray(0, 16 * V), { atol: 0, rtol: 0, label: 'chunk 0: no update yet' });
    expectNotClose(got.subarray(17 * V), base.subarray(17 * V), { atol: 1e-3, rtol: 1e-3 });
    await plain.destroy();
    await engine.destroy();
  });

  it('streams like every family: prefill + steps across a boundary, a memory round trip, reset, and lr 0 is the plain model', async () => {
    const engine = await Engine.create(ctx, model, { weights: 'f32', learnWhileReading: SETTINGS });
    await engine.feed(tokens.slice(0, 30));
    for (let p = 30; p < 40; p++) await engine.feed([tokens[p]]);
    const blob = await engine.saveMemory();
    const last = (await engine.feed(tokens.slice(40), { logits: 'last' })).logits!;
    const V = config.vocabSize;
    expectClose(last, twin.logits.subarray((tokens.length - 1) * V), { atol: 1e-5, rtol: 1e-4, label: 'after steps' });
    const other = await Engine.create(ctx, model, { weights: 'f32', learnWhileReading: SETTINGS, maxRows: 5 });
    await other.loadMemory(blob);
    expectClose((await other.feed(tokens.slice(40), { logits: 'last' })).logits!, last, { atol: 1e-6, rtol: 1e-5, label: 'restored' });
    await other.reset();
    expect(other.stats().learning!.updates).toBe(0);
    const plain = await Engine.create(ctx, model, { weights: 'f32' });
    const frozen = await Engine.create(ctx, model, { weights: 'f32', learnWhileReading: { ...SETTINGS, lr: 0 } });
    expectClose((await frozen.feed(tokens, { logits: 'last' })).logits!, (await plain.feed(tokens, { logits: 'last' })).logits!, { atol: 0, rtol: 0, label: 'lr 0' });
    for (const e of [engine, other, plain, frozen]) await e.destroy();
  });

  it('is refused by name for models that cannot learn this way, and its memory plan is what it allocates', async () => {
    await expect(Engine.create(ctx, randomModel(ALL_ON, 1), { learnWhileReading: true })).rejects.toThrow(/already learns with its fast weights/);
    await expect(Engine.create(ctx, randomModel(FULL_ATTN, 1), { learnWhileReading: true })).rejects.toThrow(/full attention/);
    await expect(Engine.create(ctx, model, { learnWhileReading: { chunk: 0 } })).rejects.toThrow(/chunk must be a positive integer/);
    const opts = { learnWhileReading: SETTINGS };
    const plan = Engine.plan(model.config, opts, deviceCaps(ctx));
    const engine = await Engine.create(ctx, model, opts);
    const held = engine.memory();
    expectPlanHeld(plan, held);
    expect(held.innerStep).toBeGreaterThan(0);
    await engine.destroy();
  });
});
