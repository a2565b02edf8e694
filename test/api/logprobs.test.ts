// prefill(input, { logprobs: true }) through the public API, in process: one value per token of the call
// (a prepended BOS included, NaN at position 0), equal to the engine's own log-softmax of its logits,
// continuous across calls, generate and a saved memory, and refused by name where the engine has none.
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine } from '../../src/api/index.ts';
import { Engine } from '../../src/engine/engine.ts';
import { GpuContext } from '../../src/gpu/context.ts';
import { loadModel } from '../../src/model/load.ts';
import { NodeDirectorySource } from '../../src/model/source.ts';
import { tokenLogprobs } from '../../src/reference/token-logprobs.ts';
import { openTestGpu } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/close.ts';

const dir = (name: string) => fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
const TEXT = 'Test-time training keeps learning while it reads, one chunk at a time; the window forgets, the weights do not.';
const SAME = { atol: 1e-5, rtol: 1e-5 };

describe('prefill with logprobs through the API', () => {
  let device: GPUDevice;
  beforeAll(async () => {
    device = (await openTestGpu()).gpu.device;
  });
  afterAll(() => device?.destroy());

  for (const name of ['tiny-all-on', 'tiny-e2e-s1']) {
    it(`${name}: one log-probability per token, BOS first (NaN), equal to the log-softmax of the engine's logits; in two calls the same`, async () => {
      const model = await loadModel(new NodeDirectorySource(dir(name)));
      const bos = model.tokenizer.bosId!;
      const ids = [bos, ...new TextEncoder().encode(TEXT)];
      const direct = await Engine.create(new GpuContext(device), model, { weights: 'f32', allLogits: true });
      const want = tokenLogprobs((await direct.feed(ids, { logits: 'all' })).logits!, model.config.vocabSize, ids, null);
      await direct.destroy();

      const engine = await createEngine({ model: name, source: new NodeDirectorySource(dir(name)), device, weights: 'f32' });
      expect(engine.info.logprobs).toBe(true);
      const r = await engine.prefill(TEXT, { logprobs: true });
      expect(r.processed).toBe(ids.length);
      expect(r.logprobs).toBeInstanceOf(Float32Array);
      expect(r.logprobs!.length).toBe(ids.length);
      expect(Number.isNaN(r.logprobs![0])).toBe(true);
      expectClose(r.logprobs!.subarray(1), want.subarray(1), { ...SAME, label: `${name} one call` });

      // Two calls: the second's first token is scored from where the first stopped (the held-back token too).
      await engine.reset();
      const a = await engine.prefill(TEXT.slice(0, 40), { logprobs: true });
      const b = await engine.prefill(TEXT.slice(40), { logprobs: true });
      expectClose(Float64Array.from([...a.logprobs!.subarray(1), ...b.logprobs!]), want.subarray(1), { ...SAME, label: `${name} two calls` });
      // A plain prefill returns none; generate continues from the held token as always.
      const plain = await engine.prefill(' more');
      expect(plain.logprobs).toBeUndefined();
      const out = engine.generate('', { maxTokens: 3, temperature: 0, ignoreEos: true });
      for await (const _ of out) { /* drain */ }
      expect((await out.result).generatedTokens).toBe(3);
      // After generation: the next prefill's first token is scored against the last sampled token's row.
      const c = await engine.prefill('!', { logprobs: true });
      expect(c.logprobs!.length).toBe(1);
      expect(Number.isFinite(c.logprobs![0]) && c.logprobs![0] <= 0).toBe(true);
      await engine.dispose();
    });
  }

  it('a memory round trip keeps the scores continuous; an engine created with logprobs: false refuses them by name', async () => {
    const src = () => new NodeDirectorySource(dir('tiny-all-on'));
    const one = await createEngine({ model: 'm', source: src(), device, weights: 'f32' });
    const whole = (await one.prefill(TEXT, { logprobs: true })).logprobs!;
    await one.reset();
    await one.prefill(TEXT.slice(0, 50));
    // stats() says how large the memory is before it is saved (the held-back token counted).
    const predicted = (await one.stats()).savedMemoryBytes;
    const { blob, bytes } = await one.saveMemory();
    expect(bytes).toBe(predicted);
    const two = await createEngine({ model: 'm', source: src(), device, weights: 'f32' });
    await two.loadMemory(blob);
    const rest = (await two.prefill(TEXT.slice(50), { logprobs: true })).logprobs!;
    expectClose(rest, whole.subarray(51), { ...SAME, label: 'after loadMemory' });
    const off = await createEngine({ model: 'm', source: src(), device, weights: 'f32', logprobs: false });
    expect(off.info.logprobs).toBe(false);
    await expect(off.prefill('abc', { logprobs: true })).rejects.toThrow(/logprobs: true needs an engine created with logprobs: true/);
    // Without them the engine holds less: the all-rows logits are not allocated.
    expect((await off.stats()).memory.activations).toBeLessThan((await one.stats()).memory.activations);
    for (const e of [one, two, off]) await e.dispose();
  });
});
