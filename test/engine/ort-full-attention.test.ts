/**
 * onnxruntime-web's WebGPU execution provider and our engine compute the same full-attention model: the
 * benchmark's (bench/models.ts), as the graphs train/export_onnx.py exported (test/fixtures/
 * ort-full-attention/{plain,fused}.onnx: standard ONNX ops, and onnxruntime's SimplifiedLayerNormalization
 * + GroupQueryAttention), whose weights are external references into the very model.safetensors bytes the
 * engine loads here. Prefill, then decode steps with ORT's present K/V kept on the GPU and fed back as
 * past: every logit within 3e-5 of the engine's (f32 weights; see TOL).
 */
import { configOfFamily } from '../../src/model/model-config.ts';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { benchModelFiles, sha256, type ModelFolderFiles } from '../../bench/model-folder.ts';
import { GpuDeviceCounter, loadOrtWebGpu, OrtKvDecoder, OrtSharedKvDecoder, type Ort, type OrtDecoderShape } from '../../bench/ort-webgpu.ts';
import { Engine } from '../../src/engine/engine.ts';
import { GpuContext } from '../../src/gpu/context.ts';
import { loadModel, type LoadedModel } from '../../src/model/load.ts';
import { SafetensorsFile } from '../../src/model/safetensors.ts';
import { MemorySource } from '../../src/model/source.ts';
import { openNodeGpu, type NodeGpu } from '../../src/node/webgpu.ts';
import { openTestGpu } from '../helpers/gpu.ts';
import { closeness, expectClose, maxAbsDiff, type CloseTolerance } from '../helpers/close.ts';

const FIXTURE = fileURLToPath(new URL('../fixtures/ort-full-attention/', import.meta.url));
const TEXT = 'The quick brown fox jumps over the lazy dog.';
const PREFILL = 24;
const DECODE = 8;
/**
 * Element-wise |ORT - engine| <= 3e-5. Two float32 forwards of one model each differ from the exact
 * result by their own rounding, which is absolute (sums of terms larger than the logit), not relative:
 * the engine's is measured at ~2e-6 on the full-attention fixture (test/engine/engine.test.ts), and ORT's
 * kernels (other tilings, fused attention) reorder the same sums. Measured: 1.0e-5 at worst (logits up to
 * 7), so 3e-5 leaves 3x. The former bound was 1e-4 of the largest logit: 7e-4.
 */
const TOL: CloseTolerance = { atol: 3e-5, rtol: 0 };

interface ExportInfo {
  safetensors_sha256: string;
  variant: string;
  inputs: string[];
  outputs: string[];
  ops: Record<string, number>;
}

const VARIANTS = ['plain', 'fused'] as const;
/** Every graph in the fixture, the shared-buffer one (last-row logits, genai names) included. */
const GRAPHS = [...VARIANTS, 'shared'] as const;

function argmax(a: Float32Array, row: number, V: number): number {
  let best = 0;
  for (let i = 1; i < V; i++) if (a[row * V + i] > a[row * V + best]) best = i;
  return best;
}

/** [T, V] logits of ORT for `tokens`: one prefill run, then one run per token with the cache fed back. */
async function ortLogits(ort: Ort, gpu: NodeGpu, onnx: Uint8Array, safetensors: Uint8Array, shape: OrtDecoderShape, tokens: number[]): Promise<Float32Array> {
  const dec = await OrtKvDecoder.create(ort, gpu.device, { onnx, safetensors, shape });
  const out = new Float32Array(tokens.length * shape.vocab);
  out.set(await dec.feed(tokens.slice(0, PREFILL)), 0);
  for (let i = PREFILL; i < tokens.length; i++) {
    const logits = await dec.feed([tokens[i]]);
    expect(logits.length).toBe(shape.vocab);
    out.set(logits, i * shape.vocab);
  }
  expect(dec.pos).toBe(tokens.length);
  await dec.release();
  return out;
}

describe('onnxruntime-web (WebGPU EP, Node + Dawn) against the engine, full attention, same weights', () => {
  let files: ModelFolderFiles;
  let model: LoadedModel;
  const onnx: Record<string, Uint8Array> = {};
  const info: Record<string, ExportInfo> = {};
  let shape: OrtDecoderShape;
  let tokens: number[];
  let engineLogits: Float32Array;
  let ortGpu: NodeGpu;
  let ort: Ort;
  let bytes: GpuDeviceCounter;
  const measured: Record<string, number> = {};

  beforeAll(async () => {
    files = benchModelFiles('full-attention');
    model = await loadModel(new MemorySource({ 'config.json': files.config, 'model.safetensors': files.safetensors }, 'bench full-attention'));
    for (const v of GRAPHS) {
      onnx[v] = new Uint8Array(await readFile(`${FIXTURE}${v}.onnx`));
      info[v] = JSON.parse(await readFile(`${FIXTURE}${v}.onnx.json`, 'utf8')) as ExportInfo;
    }
    const c = configOfFamily(model.config, 'lact');
    shape = { layers: c.numLayers, heads: c.numAttnHeads, headDim: c.attnHeadDim, vocab: c.vocabSize };
    tokens = [c.bosTokenId ?? 0, ...new TextEncoder().encode(TEXT)].slice(0, PREFILL + DECODE);

    // The engine: f32 weights, the prompt as one block, then one token per feed (its decode path).
    const { ctx } = await openTestGpu();
    const engine = await Engine.create(ctx, model, { weights: 'f32', allLogits: true, maxContext: 64 });
    engineLogits = new Float32Array(tokens.length * c.vocabSize);
    engineLogits.set((await engine.feed(tokens.slice(0, PREFILL), { logits: 'all' })).logits!, 0);
    for (let i = PREFILL; i < tokens.length; i++) engineLogits.set((await engine.feed([tokens[i]], { logits: 'last' })).logits!, i * c.vocabSize);
    engine.destroy();
    ctx.device.destroy();

    ortGpu = await openNodeGpu({ requiredFeatures: ['shader-f16', 'subgroups' as GPUFeatureName], log: true });
    bytes = new GpuDeviceCounter(ortGpu.device);
    ort = await loadOrtWebGpu(ortGpu);
  });

  afterAll(() => {
    console.info(Object.entries(measured).map(([k, v]) => `${k}: ${v.toExponential(2)}`).join('\n'));
    ortGpu?.device.destroy();
  });

  it('the ONNX graphs were exported from these exact weights (sha256 of model.safetensors)', () => {
    // If this fails, the bench model or the safetensors writer changed: re-export (test/fixtures/ort-full-attention/README.md).
    for (const v of GRAPHS) {
      expect(sha256(files.safetensors)).toBe(info[v].safetensors_sha256);
      expect(info[v].variant).toBe(v);
    }
    expect(info.plain.inputs.slice(0, 2)).toEqual(['input_ids', 'position_ids']);
    expect(info.fused.ops.GroupQueryAttention).toBe(model.config.numLayers);
    expect(configOfFamily(model.config, 'lact').windowSize).toBeNull();
    expect(configOfFamily(model.config, 'lact').useFastWeights).toBe(false);
  });

  for (const v of VARIANTS) {
    it(`${v} graph: prefill ${PREFILL} tokens, then ${DECODE} decode steps on GPU-resident K/V: logits equal the engine's`, async () => {
      const before = bytes.created;
      const got = await ortLogits(ort, ortGpu, onnx[v], files.safetensors, shape, tokens);
      measured[`${v}: ORT vs engine max |dlogit|`] = maxAbsDiff(got, engineLogits);
      measured[`${v}: decode steps only, max |dlogit|`] = maxAbsDiff(got.subarray(PREFILL * shape.vocab), engineLogits.subarray(PREFILL * shape.vocab));
      measured[`${v}: worst element in units of the bound`] = expectClose(got, engineLogits, { ...TOL, label: `${v} graph vs engine` }).ratio;
      for (let t = 0; t < tokens.length; t++) expect(argmax(got, t, shape.vocab)).toBe(argmax(engineLogits, t, shape.vocab));
      // ORT really ran on our WebGPU device: it made GPU buffers there, at peak more than the weights.
      expect(bytes.created).toBeGreaterThan(before);
      expect(bytes.peak).toBeGreaterThan(files.safetensors.byteLength * 0.9);
    });
  }

  it(`shared graph: K/V buffers of fixed capacity bound as past and present are updated in place, and the last row's logits equal the engine's`, async () => {
    expect(info.shared.inputs.slice(0, 3)).toEqual(['input_ids', 'attention_mask', 'past_key_values.0.key']);
    expect(info.shared.outputs.slice(0, 2)).toEqual(['logits', 'present.0.key']);
    const capacity = 64;
    const dec = await OrtSharedKvDecoder.create(ort, ortGpu.device, { onnx: onnx.shared, safetensors: files.safetensors, shape, capacity });
    expect(dec.kvBytes()).toBe(2 * shape.layers * shape.heads * capacity * shape.headDim * 4);
    const rows: Float32Array[] = [await dec.feed(tokens.slice(0, PREFILL))];
    let liveAfterTwoSteps = 0;
    for (let i = PREFILL; i < tokens.length; i++) {
      rows.push(await dec.feed([tokens[i]]));
      if (i === PREFILL + 1) liveAfterTwoSteps = bytes.live;
    }
    expect(dec.pos).toBe(tokens.length);
    let worst = 0;
    for (const [j, got] of rows.entries()) {
      const t = PREFILL - 1 + j;
      expect(got.length).toBe(shape.vocab);
      const want = engineLogits.subarray(t * shape.vocab, (t + 1) * shape.vocab);
      worst = Math.max(worst, expectClose(got, want, { ...TOL, label: `shared graph, position ${t}` }).ratio);
      expect(argmax(got, 0, shape.vocab)).toBe(argmax(want, 0, shape.vocab));
    }
    measured['shared: worst element in units of the bound'] = worst;
    // Decode steps allocate no cache: once the first steps have made the one-row temporaries, ORT's
    // live bytes stay where they are (a growing cache would add 2 · layers · heads · headDim · 4 per step).
    expect(bytes.live).toBeLessThanOrEqual(liveAfterTwoSteps);
    // Rewinding is moving the position back: the same step again gives the same logits.
    dec.checkpoint();
    const a = (await dec.feed([70])).slice();
    dec.rewind();
    expect(maxAbsDiff(await dec.feed([70]), a)).toBe(0);
    await expect(dec.feed(new Array(capacity).fill(65))).rejects.toThrow(/capacity of 64/);
    await dec.release();
  });

  it('checkpoint and rewind (how the benchmark suite decodes and comes back): decoding after a rewind gives the same logits, and nothing leaks', async () => {
    const dec = await OrtKvDecoder.create(ort, ortGpu.device, { onnx: onnx.fused, safetensors: files.safetensors, shape });
    await dec.feed(tokens.slice(0, PREFILL));
    const liveAtCheckpoint = bytes.live;
    dec.checkpoint();
    const first: Float32Array[] = [];
    for (const t of [65, 66, 67]) first.push((await dec.feed([t])).slice());
    dec.rewind();
    expect(dec.pos).toBe(PREFILL);
    // The decode steps' caches are freed by the rewind (ORT may keep their memory in its buffer cache,
    // which it reuses: the second round must not grow it).
    const liveAfterFirstRound = bytes.live;
    dec.checkpoint();
    for (const [i, t] of [65, 66, 67].entries()) expect(maxAbsDiff(await dec.feed([t]), first[i])).toBe(0);
    dec.rewind();
    expect(bytes.live).toBeLessThanOrEqual(liveAfterFirstRound);
    expect(liveAfterFirstRound).toBeGreaterThanOrEqual(liveAtCheckpoint);
    // And the rewound cache is the prefill's: the next token's logits equal the engine's at PREFILL.
    const next = await dec.feed([tokens[PREFILL]]);
    expectClose(next, engineLogits.subarray(PREFILL * shape.vocab, (PREFILL + 1) * shape.vocab), { ...TOL, label: 'after the rewind' });
    await dec.release();
  });

  it('the comparison can fail: o_proj of layer 1 scaled by 1.01 in the bytes ORT reads moves its logits past the tolerance', async () => {
    // Edited in place in a copy of the file: every tensor keeps its offset, which the graph's external
    // data references point at.
    const bumped = files.safetensors.slice();
    const t = SafetensorsFile.parse(bumped).info('model.layers.1.attn.o_proj.weight');
    const w = new Float32Array(bumped.buffer, t.fileOffset, t.byteLength / 4);
    for (let i = 0; i < w.length; i++) w[i] *= 1.01;
    const got = await ortLogits(ort, ortGpu, onnx.fused, bumped, shape, tokens);
    const c = closeness(got, engineLogits, TOL);
    measured['bumped weight: worst element in units of the bound'] = c.ratio;
    expect(c.ratio).toBeGreaterThan(10);
  });
});
