/**
 * The TTT-E2E engine (src/families/ttt-e2e.ts: the forward and the GPU inner step) against the PyTorch
 * twin's golden runs (test/fixtures/tiny-e2e-s1 and -s2, train/make_e2e_fixtures.py: 90 tokens, B = 16,
 * W = 24, five updates, a BOS inside), and the streaming rules every family keeps.
 *
 * Tolerances. Golden values are f64 results stored as f32; the engine computes in f32 (f32 weights).
 * Through 2 or 4 blocks and up to five inner steps (each a backward through the whole chunk), f32
 * rounding grows to at most 7.9e-6 absolute in the logits (0.37x the bound below) and 6e-7 in θ
 * (measured with CLOSE_LOG=1); the bound is 1e-4 relative, with an absolute floor of 1e-5 for values near zero (logits are O(1..10)). θ after each
 * update: the same 1e-4 relative, floor 1e-6 (θ entries are O(0.1)). The same engine fed in other block
 * shapes differs only by the order of f32 sums (matmul tiles, attention splits): 1e-5 relative (measured:
 * bit-identical).
 */
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GpuContext } from '../../src/gpu/context.ts';
import { openNodeGpu } from '../../src/node/webgpu.ts';
import { deviceCaps, Engine, type EngineOptions } from '../../src/engine/engine.ts';
import { EngineAbortedError, MemoryMismatchError } from '../../src/engine/errors.ts';
import { decodeMemory } from '../../src/engine/memory-blob.ts';
import { loadModel, type LoadedModel } from '../../src/model/load.ts';
import { configOfFamily } from '../../src/model/model-config.ts';
import { SafetensorsFile } from '../../src/model/safetensors.ts';
import { NodeDirectorySource } from '../../src/model/source.ts';
import { hasFeature, openTestGpu, registerTestGpu, roundToF16 } from '../helpers/gpu.ts';
import { expectPlanHeld } from '../helpers/memory-plan.ts';
import { expectClose, expectNotClose } from '../helpers/close.ts';
import { randomModel, SWA_ONLY } from '../helpers/random-model.ts';
import { E2EReference } from '../../src/reference/e2e/index.ts';

const FIXTURES = ['tiny-e2e-s1', 'tiny-e2e-s2'] as const;
const GOLDEN_LOGITS = { atol: 1e-5, rtol: 1e-4 };
const GOLDEN_THETA = { atol: 1e-6, rtol: 1e-4 };
const SAME_ENGINE = { atol: 1e-6, rtol: 1e-5 };

async function fixture(name: string) {
  const dir = fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
  const model = await loadModel(new NodeDirectorySource(dir));
  const golden = SafetensorsFile.parse(readFileSync(`${dir}golden.safetensors`), { source: `${name}/golden.safetensors` });
  const raw = golden.rawBytes('tokens');
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const tokens = Array.from({ length: raw.byteLength / 4 }, (_, i) => view.getInt32(4 * i, true));
  return { model, golden, tokens, config: configOfFamily(model.config, 'ttt-e2e') };
}

/** θ as the engine holds it (its saved memory's section): per TTT block [W1 | W3 | W2]. */
async function thetaOf(engine: Engine): Promise<Float32Array> {
  const { sections } = decodeMemory(await engine.saveMemory());
  return new Float32Array(sections.get('theta')!.slice().buffer);
}

/** The golden θ after update c, in the engine's layout. */
function goldenTheta(golden: SafetensorsFile, c: number, first: number, S: number): Float32Array {
  const parts: Float32Array[] = [];
  for (let j = 0; j < S; j++) for (const w of ['w1', 'w3', 'w2']) parts.push(golden.float32(`theta.${c}.layers.${first + j}.${w}`));
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

/** NLL of token p + 1 under the logits at p. */
function nllOf(logits: Float32Array, tokens: readonly number[], V: number): Float64Array {
  const out = new Float64Array(tokens.length - 1);
  for (let p = 0; p < tokens.length - 1; p++) {
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, logits[p * V + v]);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(logits[p * V + v] - m);
    out[p] = m + Math.log(s) - logits[p * V + tokens[p + 1]];
  }
  return out;
}

describe('TTT-E2E engine against the PyTorch twin', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = (await openTestGpu()).ctx;
  });
  afterAll(() => ctx?.device.destroy());

  for (const name of FIXTURES) {
    describe(name, () => {
      it('one prefill: every position\'s logits and NLL, and each update\'s chunk loss, gradient norm and clip scale', async () => {
        const { model, golden, tokens, config: c } = await fixture(name);
        const engine = await Engine.create(ctx, model, { weights: 'f32', allLogits: true });
        expect(engine.info.family).toBe('ttt-e2e');
        expect(engine.info.mode).toBe('ttt');
        const got = (await engine.feed(tokens, { logits: 'all' })).logits!;
        expectClose(got, golden.float32('logits'), { ...GOLDEN_LOGITS, label: `${name} logits` });
        expectClose(nllOf(got, tokens, c.vocabSize), golden.float32('nll'), { ...GOLDEN_LOGITS, label: `${name} nll` });
        const learning = engine.stats().learning!;
        expect(learning.updates).toBe(5);
        expect(learning.recent.map((u) => u.chunk)).toEqual([0, 1, 2, 3, 4]);
        expectClose(learning.recent.map((u) => u.loss), golden.float32('chunk_loss'), { atol: 1e-6, rtol: 1e-4, label: 'chunk loss' });
        expectClose(learning.recent.map((u) => u.gradNorm), golden.float32('grad_norm'), { atol: 1e-6, rtol: 1e-4, label: 'gradient norm' });
        expectClose(learning.recent.map((u) => u.clipScale), golden.float32('clip_scale'), { atol: 1e-6, rtol: 1e-4, label: 'clip scale' });
        // The chunk with the BOS at position 40 (chunk 2) has 15 valid targets, the others 16.
        expect(learning.recent.map((u) => u.validTargets)).toEqual([16, 16, 15, 16, 16]);
        expect(learning.recent.every((u) => u.lossAfter === null)).toBe(true); // not asked for
        await engine.destroy();
      });

      it('lossAfterStep: each chunk scored again with the weights its step made equals the CPU twin\'s, and changes nothing else', async () => {
        const { model, tokens, config: c } = await fixture(name);
        const plain = await Engine.create(ctx, model, { weights: 'f32', allLogits: true });
        const want = (await plain.feed(tokens, { logits: 'all' })).logits!;
        const thetaWant = await thetaOf(plain);
        const engine = await Engine.create(ctx, model, { weights: 'f32', allLogits: true, lossAfterStep: true });
        const got = (await engine.feed(tokens, { logits: 'all' })).logits!;
        expectClose(got, want, { atol: 0, rtol: 0, label: 'logits with and without the second look' });
        expectClose(await thetaOf(engine), thetaWant, { atol: 0, rtol: 0, label: 'θ with and without the second look' });
        const ups = engine.stats().learning!.recent;
        expect(ups.length).toBe(5);
        // The twin (f64): chunk k's loss under θ after its own update.
        const ref = new E2EReference(c, model.weights).forward(tokens);
        const updated = ref.chunks.filter((ch) => ch.targets !== null);
        const twin = new E2EReference(c, model.weights);
        const after = updated.map((ch, u) => twin.chunkLoss(ch.input, ref.thetas[u], ch.targets!));
        expectClose(ups.map((u) => u.lossAfter!), after, { atol: 1e-6, rtol: 1e-4, label: 'loss after the step' });
        // What the step learned: the same chunk is predicted better right after it.
        expect(ups.every((u) => u.lossAfter! < u.loss)).toBe(true);
        for (const e of [plain, engine]) await e.destroy();
      });

      it('θ after every update, each read when the token that triggers it has been fed', async () => {
        const { model, golden, tokens, config: c } = await fixture(name);
        const engine = await Engine.create(ctx, model, { weights: 'f32' });
        const B = c.miniBatchSize;
        let fed = 0;
        for (let u = 0; u < 5; u++) {
          // Update u runs when position (u + 1)B is fed: before it θ is the previous one.
          const before = await thetaOf(engine);
          await engine.feed(tokens.slice(fed, (u + 1) * B + 1));
          fed = (u + 1) * B + 1;
          const after = await thetaOf(engine);
          expectClose(after, goldenTheta(golden, u, c.firstTttLayer, c.numTttLayers), { ...GOLDEN_THETA, label: `θ after update ${u}` });
          expectNotClose(after, before, { atol: 1e-6, rtol: 0 });
        }
        await engine.destroy();
      });

      it('inner_lr 0 is the plain sliding-window forward with the checkpoint θ (the update is what moves the numbers)', async () => {
        const { model, golden, tokens, config: c } = await fixture(name);
        const frozen = await Engine.create(ctx, model, { weights: 'f32', allLogits: true, innerLr: 0 });
        const got = (await frozen.feed(tokens, { logits: 'all' })).logits!;
        expectClose(got, golden.float32('logits_static'), { ...GOLDEN_LOGITS, label: 'logits_static' });
        // The learning engine's logits after the first update differ from these by far more than the tolerance.
        const V = c.vocabSize, from = (c.miniBatchSize + 1) * V;
        expectNotClose(golden.float32('logits').subarray(from), got.subarray(from), { atol: 1e-3, rtol: 1e-3 });
        expect(frozen.stats().learning!.recent.every((u) => u.gradNorm > 0)).toBe(true); // the gradient is still taken; only η is 0
        // learn: false skips the inner step altogether: the same logits, no inner-step memory, no learning stats.
        const off = await Engine.create(ctx, model, { weights: 'f32', allLogits: true, learn: false });
        expectClose((await off.feed(tokens, { logits: 'all' })).logits!, got, { atol: 0, rtol: 0, label: 'learn: false vs inner_lr 0' });
        expect(off.memory().innerStep).toBe(0);
        expect(off.stats().learning).toBeNull();
        // Their memories load into each other (the pending chunk is kept either way).
        await frozen.loadMemory(await off.saveMemory());
        await off.destroy();
        await frozen.destroy();
        for (const bad of [-1, Number.NaN, Infinity]) await expect(Engine.create(ctx, model, { innerLr: bad })).rejects.toThrow(/innerLr must be a finite number >= 0/);
      });
    });
  }

  it('prefill(n) then step() one token at a time equals one prefill, with the chunk boundary at every offset (θ too)', async () => {
    const { model, tokens, config: c } = await fixture('tiny-e2e-s2');
    const B = c.miniBatchSize, T = 3 * B + 5;
    const engine = await Engine.create(ctx, model, { weights: 'f32' });
    const whole = (await engine.feed(tokens.slice(0, T), { logits: 'last' })).logits!;
    const thetaWhole = await thetaOf(engine);
    for (let n = 2 * B; n <= 3 * B; n++) {
      await engine.reset();
      await engine.feed(tokens.slice(0, n));
      let last: Float32Array | null = null;
      for (let p = n; p < T; p++) last = (await engine.feed([tokens[p]], { logits: 'last' })).logits;
      expectClose(last!, whole, { ...SAME_ENGINE, label: `prefill ${n} + ${T - n} steps: logits` });
      expectClose(await thetaOf(engine), thetaWhole, { ...SAME_ENGINE, label: `prefill ${n}: θ` });
    }
    await engine.destroy();
  });

  it('one long prefill equals many short ones (feeds of 5 and blocks of 3 rows)', async () => {
    const { model, tokens } = await fixture('tiny-e2e-s2');
    const one = await Engine.create(ctx, model, { weights: 'f32', allLogits: true });
    const want = (await one.feed(tokens, { logits: 'all' })).logits!;
    const many = await Engine.create(ctx, model, { weights: 'f32', allLogits: true, maxRows: 3 });
    const parts: Float32Array[] = [];
    for (let i = 0; i < tokens.length; i += 5) parts.push((await many.feed(tokens.slice(i, i + 5), { logits: 'all' })).logits!);
    const got = new Float32Array(want.length);
    let o = 0;
    for (const p of parts) { got.set(p, o); o += p.length; }
    expectClose(got, want, { ...SAME_ENGINE, label: 'feeds of 5, blocks of 3' });
    expectClose(await thetaOf(many), await thetaOf(one), { ...SAME_ENGINE, label: 'θ' });
    await one.destroy();
    await many.destroy();
  });

  it('the inner step\'s head in vocabulary tiles (small bindings: the LM head split in parts) equals the one-tile head', async () => {
    const { model, tokens } = await fixture('tiny-e2e-s2');
    const one = await Engine.create(ctx, model, { weights: 'f16', allLogits: true });
    const want = (await one.feed(tokens, { logits: 'all' })).logits!;
    // 8 KiB bindings: the f16 head (256 x 32) in two parts, logits tiles of 8192 / (4 B) = 128 columns.
    const tiled = await Engine.create(ctx, model, { weights: 'f16', allLogits: true, maxBindingBytes: 8192 });
    const got = (await tiled.feed(tokens, { logits: 'all' })).logits!;
    // Not bit-identical: the tiles' merged log-sum-exp rounds differently, and five updates carry that into
    // θ and the logits (measured: 2.9e-6 at most in the logits); the golden bound holds.
    expectClose(got, want, { ...GOLDEN_LOGITS, label: 'head in tiles: logits' });
    expectClose(await thetaOf(tiled), await thetaOf(one), { ...GOLDEN_THETA, label: 'head in tiles: θ' });
    const [a, b] = [one.stats().learning!.recent, tiled.stats().learning!.recent];
    expectClose(b.map((u) => u.loss), a.map((u) => u.loss), { atol: 1e-6, rtol: 1e-4, label: 'head in tiles: chunk losses' });
    expect(b.length).toBe(5);
    await one.destroy();
    await tiled.destroy();
  });

  it('an abort mid-prefill stops within one chunk and leaves the state of a fresh engine fed the reported tokens; an aborted step changes nothing', async () => {
    const { model, tokens, config: c } = await fixture('tiny-e2e-s2');
    const opts: EngineOptions = { weights: 'f32', maxRows: 4 };
    const engine = await Engine.create(ctx, model, opts);
    const ac = new AbortController();
    let at = -1;
    const err = await engine.feed(tokens, {
      signal: ac.signal,
      onProgress: (p) => {
        if (p.processed >= 37 && at < 0) { at = p.processed; ac.abort(new Error('stop')); }
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineAbortedError);
    const processed = (err as EngineAbortedError).processed;
    expect(processed - at).toBeLessThanOrEqual(c.miniBatchSize);
    expect(engine.position).toBe(processed);
    const fresh = await Engine.create(ctx, model, opts);
    await fresh.feed(tokens.slice(0, processed));
    expectClose(await thetaOf(engine), await thetaOf(fresh), { atol: 0, rtol: 0, label: 'θ after the abort' });
    expect(engine.stats().learning!.updates).toBe(fresh.stats().learning!.updates);
    const rest = tokens.slice(processed);
    const a = (await engine.feed(rest, { logits: 'last' })).logits!;
    const b = (await fresh.feed(rest, { logits: 'last' })).logits!;
    expectClose(a, b, { atol: 0, rtol: 0, label: 'logits after resuming' });

    // Mid-decode: an already-aborted step is refused before any block; the state is untouched.
    const thetaBefore = await thetaOf(engine);
    const pos = engine.position;
    const stop = new AbortController();
    stop.abort();
    await expect(engine.step(tokens[0], { temperature: 0 }, { signal: stop.signal })).rejects.toBeInstanceOf(EngineAbortedError);
    expect(engine.position).toBe(pos);
    expectClose(await thetaOf(engine), thetaBefore, { atol: 0, rtol: 0, label: 'θ after the aborted step' });
    await engine.destroy();
    await fresh.destroy();
  });

  it('the memory blob round trip: mid-chunk and with a complete chunk waiting for its update, into an engine of another block size', async () => {
    const { model, tokens, config: c } = await fixture('tiny-e2e-s2');
    const B = c.miniBatchSize;
    const whole = await Engine.create(ctx, model, { weights: 'f32' });
    const want = (await whole.feed(tokens, { logits: 'last' })).logits!;
    const thetaWant = await thetaOf(whole);
    const sizes = new Set<number>();
    for (const at of [2 * B + 7, 3 * B, 3 * B + 1]) {
      const first = await Engine.create(ctx, model, { weights: 'f32' });
      await first.feed(tokens.slice(0, at));
      const blob = await first.saveMemory();
      sizes.add(blob.byteLength);
      const second = await Engine.create(ctx, model, { weights: 'f32', maxRows: 5 });
      await second.loadMemory(blob);
      expect(second.position).toBe(at);
      expect(second.stats().learning!.updates).toBe(Math.floor((at - 1) / B));
      const got = (await second.feed(tokens.slice(at), { logits: 'last' })).logits!;
      expectClose(got, want, { ...SAME_ENGINE, label: `restored at ${at}` });
      expectClose(await thetaOf(second), thetaWant, { ...SAME_ENGINE, label: `θ restored at ${at}` });
      await first.destroy();
      await second.destroy();
    }
    // Past W + B positions the blob's size depends only on how far into its chunk the position is.
    expect(sizes.size).toBe(3);
    // Another family's memory is refused by name, the state untouched.
    const lact = await Engine.create(ctx, randomModel(SWA_ONLY, 3), { weights: 'f32' });
    await lact.feed([1, 2, 3]);
    const pos = whole.position;
    await expect(whole.loadMemory(await lact.saveMemory())).rejects.toThrow(MemoryMismatchError);
    await expect(whole.loadMemory(await lact.saveMemory())).rejects.toThrow(/lact model; the engine runs a ttt-e2e model/);
    expect(whole.position).toBe(pos);
    await lact.destroy();
    await whole.destroy();
  });

  it('f16 and packed-f16 weights (θ stays f32): the f32 engine given the same rounded matrices, exactly', async () => {
    const { model, tokens } = await fixture('tiny-e2e-s1');
    // The engine stores every matrix but θ in f16; norms and θ_0 stay f32.
    const rounded: LoadedModel = { ...model, weights: new Map([...model.weights].map(([n, w]) => [n, /(embed|_proj|mlp\.w)[^.]*\.weight$/.test(n) && !n.includes('dyn_mlp') ? { ...w, data: roundToF16(w.data) } : w])) };
    const ref = await Engine.create(ctx, rounded, { weights: 'f32', allLogits: true });
    const want = (await ref.feed(tokens, { logits: 'all' })).logits!;
    const thetaWant = await thetaOf(ref);
    for (const storage of ['f16', 'f16-packed'] as const) {
      if (storage === 'f16' && !hasFeature(ctx, 'shaderF16', 'TTT-E2E engine with native f16 weights')) continue;
      // Packed: the same adapter opened without shader-f16 (as headless Chromium's SwiftShader runs).
      const gpu = storage === 'f16' ? null : await openNodeGpu({ requiredFeatures: ['subgroups' as GPUFeatureName] });
      if (gpu) registerTestGpu(gpu);
      const c2 = gpu ? new GpuContext(gpu.device) : ctx;
      const engine = await Engine.create(c2, model, { weights: 'f16', allLogits: true });
      expect(engine.info.weights).toBe(storage);
      const got = (await engine.feed(tokens, { logits: 'all' })).logits!;
      expectClose(got, want, { atol: 0, rtol: 0, label: `${storage} logits` });
      expectClose(await thetaOf(engine), thetaWant, { atol: 0, rtol: 0, label: `${storage} θ` });
      await engine.destroy();
      gpu?.device.destroy();
    }
    await ref.destroy();
  });

  for (const [what, name, opts] of [['S = 1, f32', 'tiny-e2e-s1', { weights: 'f32' }], ['S = 2, f16, 5-row blocks, all logits', 'tiny-e2e-s2', { maxRows: 5, allLogits: true }]] as const) {
    it(`memory plan (${what}): the plan's bytes by category are what the allocator holds, constant while it reads`, async () => {
      const { model, tokens } = await fixture(name);
      const plan = Engine.plan(model.config, opts, deviceCaps(ctx));
      const engine = await Engine.create(ctx, model, opts);
      const held = engine.memory();
      expectPlanHeld(plan, held);
      expect(held.innerStep).toBeGreaterThan(0);
      expect(held.fastWeights).toBeGreaterThan(0);
      await engine.feed(tokens);
      expect(engine.memory()).toEqual(held);
      await engine.destroy();
    });
  }
});
