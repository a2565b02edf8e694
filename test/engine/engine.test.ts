import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GpuContext } from '../../src/gpu/context.ts';
import { openNodeGpu } from '../../src/node/webgpu.ts';
import { Engine } from '../../src/engine/engine.ts';
import { ContextOverflowError, EngineDestroyedError, InvalidTokenError } from '../../src/engine/errors.ts';
import { loadModel, type LoadedModel } from '../../src/model/load.ts';
import { SafetensorsFile } from '../../src/model/safetensors.ts';
import { NodeDirectorySource } from '../../src/model/source.ts';
import { ReferenceModel } from '../../src/reference/index.ts';
import { maxRelError, openTestGpu } from '../helpers/gpu.ts';

const FIXTURES = ['tiny-all-on', 'tiny-all-off', 'tiny-swa', 'tiny-full'] as const;
const dir = (name: string) => fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));

async function fixture(name: string): Promise<{ model: LoadedModel; tokens: number[]; logits: Float32Array }> {
  const model = await loadModel(new NodeDirectorySource(dir(name)));
  const golden = SafetensorsFile.parse(await readFile(`${dir(name)}golden.safetensors`));
  const raw = golden.rawBytes('tokens');
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const tokens = Array.from({ length: raw.byteLength / 4 }, (_, i) => view.getInt32(4 * i, true));
  return { model, tokens, logits: golden.float32('logits') };
}

function argmax(a: ArrayLike<number>, off = 0, n = a.length): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (a[off + i] > a[off + best]) best = i;
  return best;
}

/** Measured errors, printed at the end so a CI log records them. */
const measured: Record<string, number> = {};
function record(label: string, err: number): number {
  measured[label] = err;
  return err;
}

describe('GPU engine against the PyTorch fixtures and the CPU reference', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = (await openTestGpu()).ctx;
  });
  afterAll(() => {
    console.info(Object.entries(measured).map(([k, v]) => `${k}: ${v.toExponential(2)}`).join('\n'));
    ctx?.device.destroy();
  });

  for (const name of FIXTURES) {
    it(`${name}: 100-token prefill logits equal the golden logits (f32 weights, 1e-4)`, async () => {
      const { model, tokens, logits } = await fixture(name);
      const engine = await Engine.create(ctx, model, { weights: 'f32', allLogits: true });
      const out = await engine.feed(tokens, { logits: 'all' });
      const err = record(`${name} golden`, maxRelError(out.logits!, logits));
      expect(err).toBeLessThan(1e-4);
      engine.destroy();
    });
  }

  it('tiny-all-on with f16 weights (native, and packed in u32 as on adapters without shader-f16): within 2e-2 of golden', async () => {
    const { model, tokens, logits } = await fixture('tiny-all-on');
    const engine = await Engine.create(ctx, model, { weights: 'f16', allLogits: true });
    expect(engine.info.weights).toBe(ctx.features.shaderF16 ? 'f16' : 'f16-packed');
    const err = record('f16 golden', maxRelError((await engine.feed(tokens, { logits: 'all' })).logits!, logits));
    expect(err).toBeLessThan(2e-2);
    engine.destroy();
  });

  it('on SwiftShader (no shader-f16, as in headless Chromium) f16 weights run packed in u32 and match', async () => {
    const gpu = await openNodeGpu({ backends: ['swiftshader'], requiredFeatures: ['subgroups' as GPUFeatureName], log: true });
    const sw = new GpuContext(gpu.device);
    expect(sw.features.shaderF16).toBe(false);
    const { model, tokens, logits } = await fixture('tiny-all-on');
    const engine = await Engine.create(sw, model, { weights: 'f16', allLogits: true });
    expect(engine.info.weights).toBe('f16-packed');
    expect(record('swiftshader f16-packed golden', maxRelError((await engine.feed(tokens.slice(0, 40), { logits: 'all' })).logits!, logits.subarray(0, 40 * model.config.vocabSize)))).toBeLessThan(2e-2);
    engine.destroy();
    gpu.device.destroy();
  });

  it('weights and KV split across bindings (tiny binding limit) give the same logits', async () => {
    const { model, tokens, logits } = await fixture('tiny-all-on');
    const engine = await Engine.create(ctx, model, { weights: 'f32', allLogits: true, maxBindingBytes: 16 * 1024 });
    expect(record('split bindings golden', maxRelError((await engine.feed(tokens, { logits: 'all' })).logits!, logits))).toBeLessThan(1e-4);
    engine.destroy();
  });

  it('prefill(n) then step() m times equals prefill(n+m), with the chunk boundary at every offset', async () => {
    const { model, tokens } = await fixture('tiny-all-on');
    const C = model.config.chunkSize;
    const engine = await Engine.create(ctx, model, { weights: 'f32' });
    const total = 2 * C + 5;
    const whole = (await engine.feed(tokens.slice(0, total), { logits: 'last' })).logits!;
    let worst = 0;
    for (let n = 1; n <= C + 1; n++) {
      engine.reset();
      await engine.feed(tokens.slice(0, n));
      let last: Float32Array | null = null;
      for (let i = n; i < total; i++) last = (await engine.feed([tokens[i]], { logits: 'last' })).logits;
      worst = Math.max(worst, maxRelError(last!, whole));
    }
    expect(record('prefill+step vs prefill (worst offset)', worst)).toBeLessThan(1e-5);
    // Not vacuous: one token more moves the logits.
    const further = (await engine.feed([tokens[total]], { logits: 'last' })).logits!;
    expect(maxRelError(further, whole)).toBeGreaterThan(1e-3);
  });

  it('prefill in blocks smaller than a chunk equals whole-chunk prefill', async () => {
    const { model, tokens, logits } = await fixture('tiny-all-on');
    const engine = await Engine.create(ctx, model, { weights: 'f32', allLogits: true, maxRows: 5 });
    expect(record('5-row blocks golden', maxRelError((await engine.feed(tokens, { logits: 'all' })).logits!, logits))).toBeLessThan(1e-4);
    engine.destroy();
  });

  for (const name of ['tiny-all-on', 'tiny-swa', 'tiny-full'] as const) {
    it(`${name}: greedy generation of 50 tokens equals the CPU reference's`, async () => {
      const { model, tokens } = await fixture(name);
      const prompt = tokens.slice(0, 20);
      const engine = await Engine.create(ctx, model, { weights: 'f32' });
      const got = await engine.generate(prompt, 50, { temperature: 0 });
      const stream = new ReferenceModel(model.config, model.weights).stream();
      let logits = stream.run(prompt).subarray((prompt.length - 1) * model.config.vocabSize);
      const want: number[] = [];
      for (let i = 0; i < 50; i++) {
        const id = argmax(logits);
        want.push(id);
        logits = stream.step(id);
      }
      expect(got).toEqual(want);
      engine.destroy();
    });
  }

  it('state memory is constant in context length for TTT; the full-attention cache is capped and refuses overflow', async () => {
    const ttt = await Engine.create(ctx, (await fixture('tiny-all-on')).model, { weights: 'f32' });
    const before = ttt.memory();
    await ttt.feed(Array.from({ length: 300 }, (_, i) => i % 256));
    expect(ttt.memory()).toEqual(before);
    ttt.destroy();

    const full = await Engine.create(ctx, (await fixture('tiny-full')).model, { weights: 'f32', maxContext: 40 });
    await full.feed(Array.from({ length: 30 }, (_, i) => i));
    await expect(full.feed(Array.from({ length: 11 }, (_, i) => i))).rejects.toBeInstanceOf(ContextOverflowError);
    // Nothing was fed by the refused call: the engine goes on from position 30.
    expect(full.position).toBe(30);
    await full.feed(Array.from({ length: 10 }, (_, i) => i));
    expect(full.position).toBe(40);
    full.destroy();
  });

  it('fromStream: tensors uploaded one at a time in any order give the same engine (logits, identity)', async () => {
    const { model, tokens, logits } = await fixture('tiny-all-on');
    const names = [...model.weights.keys()].reverse();
    const uploads: number[] = [];
    async function* stream() {
      for (const name of names) {
        const t = model.weights.get(name)!;
        yield { name, shape: t.shape, data: Float32Array.from(t.data) };
      }
    }
    const streamed = await Engine.fromStream(ctx, { config: model.config, tensors: stream() }, { weights: 'f32', allLogits: true, onUpload: (p) => uploads.push(p.tensors) });
    expect(uploads).toEqual(names.map((_, i) => i + 1));
    expect(maxRelError((await streamed.feed(tokens, { logits: 'all' })).logits!, logits)).toBeLessThan(1e-4);
    const direct = await Engine.create(ctx, model, { weights: 'f32' });
    expect(streamed.modelId).toBe(direct.modelId);
    const other = await Engine.create(ctx, (await fixture('tiny-all-off')).model, { weights: 'f32' });
    expect(other.modelId).not.toBe(direct.modelId);
    for (const e of [streamed, direct, other]) e.destroy();
  });

  it('a stream that ends early is an error naming the missing tensors, and nothing stays allocated', async () => {
    const { model } = await fixture('tiny-all-on');
    async function* partial() {
      for (const [name, t] of [...model.weights].slice(0, 5)) yield { name, shape: t.shape, data: t.data };
    }
    await expect(Engine.fromStream(ctx, { config: model.config, tensors: partial() }, { weights: 'f32' })).rejects.toThrow(/never arrived/);
  });

  it('two engines on one device keep separate memory; destroying one leaves the other working', async () => {
    const { model, tokens, logits } = await fixture('tiny-all-on');
    const a = await Engine.create(ctx, model, { weights: 'f32' });
    const b = await Engine.create(ctx, (await fixture('tiny-full')).model, { weights: 'f32' });
    expect(a.memory().fastWeights).toBeGreaterThan(0);
    expect(b.memory().fastWeights).toBe(0);
    b.destroy();
    const V = model.config.vocabSize;
    const last = (await a.feed(tokens.slice(0, 30), { logits: 'last' })).logits!;
    expect(maxRelError(last, logits.subarray(29 * V, 30 * V))).toBeLessThan(1e-4);
    a.destroy();
    expect(a.memory().total).toBe(0);
  });

  it('reset and destroy go through the one queue: called during a feed, they wait for it', async () => {
    const { model, tokens } = await fixture('tiny-all-on');
    const engine = await Engine.create(ctx, model, { weights: 'f32', maxRows: 4 });
    const fresh = await Engine.create(ctx, model, { weights: 'f32', maxRows: 4 });
    const feeding = engine.feed(tokens.slice(0, 40));
    const resetting = engine.reset(); // the feed has not finished: the reset must not cut into it
    const after = engine.feed(tokens.slice(0, 10), { logits: 'last' });
    await feeding;
    await resetting;
    const got = (await after).logits!;
    expect(engine.position).toBe(10);
    const want = (await fresh.feed(tokens.slice(0, 10), { logits: 'last' })).logits!;
    expect(Array.from(got)).toEqual(Array.from(want));

    // destroy() while a feed is queued or running: the feed ends in EngineDestroyedError (never a raw
    // WebGPU error), and the buffers are released once it has stopped.
    const running = engine.feed(tokens.slice(0, 60));
    const destroying = engine.destroy();
    await expect(running).rejects.toBeInstanceOf(EngineDestroyedError);
    await destroying;
    expect(engine.memory().total).toBe(0);
    await fresh.destroy();
  });

  it('bad tokens and a destroyed engine are named errors', async () => {
    const engine = await Engine.create(ctx, (await fixture('tiny-all-on')).model, { weights: 'f32' });
    await expect(engine.feed([1, 2, 258])).rejects.toBeInstanceOf(InvalidTokenError);
    await expect(engine.feed([1.5])).rejects.toBeInstanceOf(InvalidTokenError);
    expect(engine.position).toBe(0);
    engine.destroy();
    await expect(engine.feed([1])).rejects.toBeInstanceOf(EngineDestroyedError);
  });
});
