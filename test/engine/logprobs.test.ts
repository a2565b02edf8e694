/**
 * Per-token log-probabilities from the engine (`feed(…, { logprobs: true })`, computed on the GPU by
 * src/gpu/ops/token-logprobs.ts), for every family: against the log-softmax of the same engine's logits
 * (the CPU twin, src/reference/token-logprobs.ts), against PyTorch's golden NLL, across feed boundaries,
 * block shapes and a saved memory.
 *
 * Tolerances: the engine's logprob is a log-softmax of its own f32 logits, so against the twin on those
 * logits the bound is the kernel's f32 rounding, (V + 8)·2^-24·(1 + max |logit|) absolute (as in
 * test/gpu/token-logprobs.test.ts). Against PyTorch's f64 NLL it is the logits' own f32 error: the E2E
 * golden bound of ttt-e2e.test.ts (1e-4 relative, 1e-5 absolute).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.ts';
import { Engine, type EngineOptions } from '../../src/engine/engine.ts';
import { loadModel, type LoadedModel } from '../../src/model/load.ts';
import { SafetensorsFile } from '../../src/model/safetensors.ts';
import { NodeDirectorySource } from '../../src/model/source.ts';
import { tokenLogprobs } from '../../src/reference/token-logprobs.ts';
import { openTestGpu } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/close.ts';

const FIXTURES = ['tiny-all-on', 'tiny-swa', 'tiny-full', 'tiny-e2e-s1'] as const;

async function fixture(name: string): Promise<{ model: LoadedModel; tokens: number[]; golden: SafetensorsFile }> {
  const dir = fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
  const model = await loadModel(new NodeDirectorySource(dir));
  const golden = SafetensorsFile.parse(readFileSync(`${dir}golden.safetensors`), { source: `${name}/golden.safetensors` });
  const raw = golden.rawBytes('tokens');
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  return { model, golden, tokens: Array.from({ length: raw.byteLength / 4 }, (_, i) => view.getInt32(4 * i, true)) };
}

/** log P(tokens[p] | before) from every-row logits of one feed from position 0 (NaN at 0). */
function fromLogits(logits: Float32Array, tokens: readonly number[], V: number): Float64Array {
  return tokenLogprobs(logits, V, tokens, null);
}

const kernelTol = (V: number, logits: Float32Array) => ({ atol: (V + 8) * 2 ** -24 * (1 + logits.reduce((m, x) => Math.max(m, Math.abs(x)), 0)), rtol: 0 });

describe('per-token log-probabilities from the engine', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = (await openTestGpu()).ctx;
  });
  afterAll(() => ctx?.device.destroy());

  const opts: EngineOptions = { weights: 'f32', logprobs: true, allLogits: true };

  for (const name of FIXTURES) {
    it(`${name}: logprobs of feeds of 1, 7, 30 and the rest equal the log-softmax of the logits of one feed, the first NaN`, async () => {
      const { model, tokens } = await fixture(name);
      const V = model.config.vocabSize;
      const one = await Engine.create(ctx, model, opts);
      const whole = await one.feed(tokens, { logits: 'all', logprobs: true });
      const want = fromLogits(whole.logits!, tokens, V);
      expect(whole.logprobs).toHaveLength(tokens.length);
      expect(Number.isNaN(whole.logprobs![0])).toBe(true);
      expectClose(whole.logprobs!.subarray(1), want.subarray(1), { ...kernelTol(V, whole.logits!), label: `${name} one feed` });
      await one.destroy();

      // In pieces, the first token of each piece scored from the carried row of the piece before.
      const parts = await Engine.create(ctx, model, opts);
      const got: number[] = [];
      let i = 0;
      for (const n of [1, 7, 30, tokens.length - 38]) {
        const r = await parts.feed(tokens.slice(i, i + n), { logprobs: true });
        expect(r.logprobs).toHaveLength(n);
        got.push(...r.logprobs!);
        i += n;
      }
      expect(Number.isNaN(got[0])).toBe(true);
      expect(got.slice(1).every(Number.isFinite)).toBe(true);
      expectClose(Float64Array.from(got.slice(1)), want.subarray(1), { atol: 1e-5, rtol: 1e-5, label: `${name} in pieces vs one feed` });
      await parts.destroy();
    });
  }

  it('tiny-e2e-s1: -logprobs equal PyTorch golden NLL, inner steps included (1e-4 relative)', async () => {
    const { model, tokens, golden } = await fixture('tiny-e2e-s1');
    const engine = await Engine.create(ctx, model, { weights: 'f32', logprobs: true });
    const lp = (await engine.feed(tokens, { logprobs: true })).logprobs!;
    const nll = golden.float32('nll'); // nll[p]: token p + 1 under position p's logits
    expectClose(Float64Array.from(lp.subarray(1), (x) => -x), nll.subarray(0, tokens.length - 1), { atol: 1e-5, rtol: 1e-4, label: 'E2E -logprob vs golden NLL' });
    expect(engine.stats().learning!.updates).toBeGreaterThan(0);
    await engine.destroy();
  });

  it('a feed without logprobs, a decode step and a sampled feed keep the carry: the next feed\'s first token is scored', async () => {
    const { model, tokens } = await fixture('tiny-all-on');
    const V = model.config.vocabSize;
    const ref = await Engine.create(ctx, model, opts);
    const want = fromLogits((await ref.feed(tokens.slice(0, 60), { logits: 'all' })).logits!, tokens.slice(0, 60), V);
    await ref.destroy();
    const e = await Engine.create(ctx, model, opts);
    await e.feed(tokens.slice(0, 20)); //                       plain prefill
    await e.feed([tokens[20]], { sample: { temperature: 0 } }); // a decode step
    const r = await e.feed(tokens.slice(21, 60), { logprobs: true });
    expectClose(Float64Array.from(r.logprobs!), want.subarray(21, 60), { atol: 1e-5, rtol: 1e-5, label: 'after a plain feed and a step' });
    await e.destroy();
  });

  it('sampling in a feed with logprobs draws from the last row (as without them)', async () => {
    const { model, tokens } = await fixture('tiny-all-on');
    const a = await Engine.create(ctx, model, opts);
    const b = await Engine.create(ctx, model, { weights: 'f32' });
    for (const sample of [{ temperature: 0 }, { temperature: 1, seed: 3 }]) {
      const x = await a.feed(tokens.slice(0, 50), { logprobs: true, sample });
      const y = await b.feed(tokens.slice(0, 50), { sample });
      expect(x.token).toBe(y.token);
      await a.reset();
      await b.reset();
    }
    await a.destroy();
    await b.destroy();
  });

  it('a saved memory carries the next token\'s distribution; one saved without logprobs leaves that token NaN; reset forgets it', async () => {
    const { model, tokens } = await fixture('tiny-e2e-s1');
    const V = model.config.vocabSize;
    const ref = await Engine.create(ctx, model, opts);
    const want = fromLogits((await ref.feed(tokens, { logits: 'all' })).logits!, tokens, V);
    await ref.destroy();
    const a = await Engine.create(ctx, model, opts);
    await a.feed(tokens.slice(0, 37));
    const blob = await a.saveMemory();
    const b = await Engine.create(ctx, model, { ...opts, maxRows: 8 });
    await b.loadMemory(blob);
    // nextLogprob scores a token against that distribution without feeding it.
    expect(await b.nextLogprob(tokens[37])).toBeCloseTo(want[37], 5);
    expect(b.position).toBe(37);
    const r = await b.feed(tokens.slice(37), { logprobs: true });
    expectClose(Float64Array.from(r.logprobs!), want.subarray(37), { atol: 1e-5, rtol: 1e-5, label: 'after a memory round trip' });
    // Without the distribution in the memory: that one value is unknown, the rest as before.
    const plain = await Engine.create(ctx, model, { weights: 'f32' });
    await plain.feed(tokens.slice(0, 37));
    const c = await Engine.create(ctx, model, opts);
    await c.loadMemory(await plain.saveMemory());
    const r2 = await c.feed(tokens.slice(37), { logprobs: true });
    expect(Number.isNaN(r2.logprobs![0])).toBe(true);
    expectClose(Float64Array.from(r2.logprobs!.subarray(1)), want.subarray(38), { atol: 1e-5, rtol: 1e-5, label: 'memory without the distribution' });
    await c.reset();
    expect(Number.isNaN(await c.nextLogprob(tokens[0]))).toBe(true);
    expect(Number.isNaN((await c.feed(tokens.slice(0, 3), { logprobs: true })).logprobs![0])).toBe(true);
    await expect(c.nextLogprob(V)).rejects.toThrow(/token/i);
    for (const e of [a, b, plain, c]) await e.destroy();
  });

  it('savedMemoryBytes is the size of the blob saveMemory returns, for every family, with and without logprobs, at any position', async () => {
    for (const name of FIXTURES) {
      const { model, tokens } = await fixture(name);
      for (const o of [{ weights: 'f32' as const }, opts]) {
        const e = await Engine.create(ctx, model, o);
        for (const n of [0, 1, 17, 40, tokens.length - 41]) {
          if (n) await e.feed(tokens.slice(e.position, e.position + n));
          expect(e.savedMemoryBytes(), `${name} at ${e.position}, logprobs ${o.logprobs ?? false}`).toBe((await e.saveMemory()).byteLength);
        }
        await e.destroy();
      }
    }
  });

  it('an engine created without logprobs refuses them by name, and with them its memory plan holds its buffers', async () => {
    const { model, tokens } = await fixture('tiny-swa');
    const e = await Engine.create(ctx, model, { weights: 'f32' });
    await expect(e.feed(tokens.slice(0, 4), { logprobs: true })).rejects.toThrow(/logprobs: true needs an engine created with logprobs: true/);
    await expect(e.nextLogprob(1)).rejects.toThrow(/nextLogprob needs an engine created with logprobs: true/);
    const withLp = await Engine.create(ctx, model, { weights: 'f32', logprobs: true });
    const extra = withLp.memory().activations - e.memory().activations;
    // The all-rows logits (maxRows·V floats beyond the one row), the carried row and the out array.
    const V = model.config.vocabSize, R = withLp.info.maxRows;
    expect(extra).toBe(4 * (R - 1) * V + 4 * V + 4 * R);
    await e.destroy();
    await withLp.destroy();
  });
});
