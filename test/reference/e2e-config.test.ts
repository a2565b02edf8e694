/**
 * The TTT-E2E config format (src/model/e2e-config.ts) reads config.json exactly as the PyTorch twin's
 * `train/e2e/config.py` does, names the key of every bad value, implies exactly the twin's tensors, and
 * is registered in the loader's config formats (src/model/model-config.ts).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { E2E_CONFIG, E2E_DEFAULTS, e2eExpectedTensors, e2eTensorRequirement, e2eUnexpectedHint, parseE2EConfig } from '../../src/model/e2e-config.ts';
import { ConfigError, MissingTensorError, NonFiniteWeightError, ShapeMismatchError, UnexpectedTensorError } from '../../src/model/errors.ts';
import { LACT_CONFIG } from '../../src/model/lact-format.ts';
import { parseModelConfig } from '../../src/model/model-config.ts';
import { SafetensorsFile } from '../../src/model/safetensors.ts';
import { writeSafetensors, type TensorToWrite } from '../../src/model/safetensors-writer.ts';
import { e2eModelFromFiles } from '../../src/reference/e2e/index.ts';

function fixtureFiles(name: string) {
  const dir = fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
  return { config: JSON.parse(readFileSync(`${dir}config.json`, 'utf8')) as Record<string, unknown>, weights: new Uint8Array(readFileSync(`${dir}model.safetensors`)) };
}

const S1 = fixtureFiles('tiny-e2e-s1');
const S2 = fixtureFiles('tiny-e2e-s2');

function configErrorKey(raw: unknown): string {
  try {
    parseE2EConfig(raw, 'x/config.json');
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as Error).message).toContain('x/config.json');
    return (e as ConfigError).key;
  }
  throw new Error(`accepted ${JSON.stringify(raw)}`);
}

describe('parseE2EConfig', () => {
  it('reads the fixture configs', () => {
    const c = parseE2EConfig(S2.config);
    expect(c).toEqual({
      family: 'ttt-e2e', modelType: 'ttt_e2e', vocabSize: 256, hiddenSize: 32, numHeads: 2, headDim: 16,
      intermediateSizeStaticMlp: 64, intermediateSizeDynamicMlp: 64, numLayers: 4, numTttLayers: 2, firstTttLayer: 2,
      miniBatchSize: 16, slidingWindow: 24, ropeTheta: 500000, rmsNormEps: 1e-6, bosTokenId: 1, eosTokenId: 2,
      innerLr: 0.7, innerClipGlobalNorm: 2.5, tieWordEmbeddings: true, tokenizer: 'byte', extra: {},
    });
    expect(parseE2EConfig(S1.config).firstTttLayer).toBe(1);
  });

  it("absent keys take the twin's dataclass defaults (an empty object is the 125M shape)", () => {
    const c = parseE2EConfig({});
    expect([c.vocabSize, c.hiddenSize, c.numHeads, c.headDim, c.intermediateSizeStaticMlp, c.intermediateSizeDynamicMlp, c.numLayers, c.numTttLayers])
      .toEqual([256, 768, 12, 64, 1664, 1664, 12, 3]);
    expect([c.miniBatchSize, c.slidingWindow, c.ropeTheta, c.rmsNormEps, c.bosTokenId, c.eosTokenId, c.innerLr, c.innerClipGlobalNorm, c.tokenizer])
      .toEqual([1024, 8192, 500000, 1e-6, 1, 2, 1, 1, 'byte']);
    expect(E2E_DEFAULTS.model_type).toBe('ttt_e2e');
  });

  it('tied_head is an alias of tie_word_embeddings; unknown keys are kept in extra', () => {
    const { tie_word_embeddings: _, ...rest } = S1.config;
    expect(parseE2EConfig({ ...rest, tied_head: true }).tieWordEmbeddings).toBe(true);
    expect(configErrorKey({ ...rest, tied_head: false })).toBe('tie_word_embeddings');
    expect(parseE2EConfig({ ...S1.config, note: 'hi', torch_dtype: 'float32' }).extra).toEqual({ note: 'hi', torch_dtype: 'float32' });
  });

  it('accepts the edge values the twin accepts', () => {
    expect(parseE2EConfig({ ...S1.config, inner_clip_global_norm: 0 }).innerClipGlobalNorm).toBe(0); // no clip
    expect(parseE2EConfig({ ...S1.config, inner_clip_global_norm: -1 }).innerClipGlobalNorm).toBe(-1);
    expect(parseE2EConfig({ ...S1.config, inner_lr: 0 }).innerLr).toBe(0);
    expect(parseE2EConfig({ ...S1.config, num_ttt_layers: 0 }).firstTttLayer).toBe(2);
    expect(parseE2EConfig({ ...S1.config, num_ttt_layers: 2 }).firstTttLayer).toBe(0);
    expect(parseE2EConfig({ ...S1.config, tokenizer: 'tokenizer.json', vocab_size: 100, bos_token_id: 99 }).vocabSize).toBe(100);
    expect(parseE2EConfig({ ...S1.config, intermediate_size_dynamic_mlp: 8 }).intermediateSizeDynamicMlp).toBe(8);
  });

  const BAD: [string, Record<string, unknown>][] = [
    ['model_type', { model_type: 'lact_swiglu' }],
    ['model_type', { model_type: null }],
    ...(['vocab_size', 'hidden_size', 'num_heads', 'head_dim', 'intermediate_size_static_mlp', 'intermediate_size_dynamic_mlp', 'num_layers', 'mini_batch_size', 'sliding_window'] as const)
      .flatMap((k): [string, Record<string, unknown>][] => [0, -3, 1.5, '16', true, null].map((v) => [k, { [k]: v }])),
    ['head_dim', { head_dim: 8 }], // 2 * 8 != 32
    ['head_dim', { hidden_size: 30, num_heads: 2, head_dim: 15 }], // odd: no rotary pairs
    ['num_ttt_layers', { num_ttt_layers: -1 }],
    ['num_ttt_layers', { num_ttt_layers: 3 }], // > num_layers (2)
    ['num_ttt_layers', { num_ttt_layers: 0.5 }],
    ['num_ttt_layers', { num_ttt_layers: null }],
    ['tie_word_embeddings', { tie_word_embeddings: false }],
    ['tie_word_embeddings', { tie_word_embeddings: 1 }],
    ['tokenizer', { tokenizer: 'bpe' }],
    ['vocab_size', { vocab_size: 200 }], // byte tokenizer needs 256
    ['bos_token_id', { bos_token_id: 256 }],
    ['bos_token_id', { bos_token_id: -1 }],
    ['bos_token_id', { bos_token_id: true }],
    ['bos_token_id', { bos_token_id: null }],
    ['eos_token_id', { eos_token_id: 1000 }],
    ['eos_token_id', { eos_token_id: 2.5 }],
    ['inner_lr', { inner_lr: -0.1 }],
    ['inner_lr', { inner_lr: '1' }],
    ['rms_norm_eps', { rms_norm_eps: 0 }],
    ['rms_norm_eps', { rms_norm_eps: null }],
    ['rope_theta', { rope_theta: -1 }],
    ['rope_theta', { rope_theta: 'big' }],
    ['inner_clip_global_norm', { inner_clip_global_norm: null }],
  ];
  for (const [key, over] of BAD) {
    it(`refuses ${JSON.stringify(over)} naming "${key}"`, () => {
      expect(configErrorKey({ ...S1.config, ...over })).toBe(key);
    });
  }

  it('refuses what is not a JSON object', () => {
    for (const raw of [null, [], 'ttt_e2e', 3]) expect(configErrorKey(raw)).toBe('(root)');
  });
});

describe('e2eExpectedTensors and the format', () => {
  it("equals the fixtures' tensor names and shapes (the twin's expected_tensors)", () => {
    for (const fx of [S1, S2]) {
      const c = parseE2EConfig(fx.config);
      const file = SafetensorsFile.parse(fx.weights);
      const stored = new Map([...file.header.tensors].map(([n, t]) => [n, [...t.shape]]));
      expect(new Map([...e2eExpectedTensors(c)].sort())).toEqual(new Map([...stored].sort()));
    }
  });

  it('only TTT blocks (the last S) hold the dynamic MLP: S = 0, 1 < S < L, S = L', () => {
    const dyn = (S: number) => [...e2eExpectedTensors(parseE2EConfig({ ...S2.config, num_ttt_layers: S })).keys()].filter((n) => n.includes('.dyn_'));
    expect(dyn(0)).toEqual([]);
    expect(dyn(2).map((n) => n.split('.')[2])).toEqual([...Array(5).fill('2'), ...Array(5).fill('3')]);
    expect(new Set(dyn(4).map((n) => n.split('.')[2]))).toEqual(new Set(['0', '1', '2', '3']));
    expect(e2eExpectedTensors(parseE2EConfig(S2.config)).get('model.layers.3.dyn_mlp.w2.weight')).toEqual([32, 64]);
    expect(e2eExpectedTensors(parseE2EConfig(S2.config)).get('model.layers.0.attn.q_norm.weight')).toEqual([16]);
  });

  it('says why a tensor is wanted or not, in config keys', () => {
    const c = parseE2EConfig(S2.config);
    expect(e2eTensorRequirement(c, 'model.layers.3.dyn_mlp.w1.weight')).toMatch(/num_ttt_layers=2 \(blocks 2\.\.3 are the TTT blocks/);
    expect(e2eTensorRequirement(c, 'model.layers.0.attn.q_proj.weight')).toMatch(/every block, in layer 0 of num_layers=4/);
    expect(e2eTensorRequirement(c, 'model.embed.weight')).toMatch(/tied output head/);
    expect(e2eUnexpectedHint(c, 'model.layers.1.dyn_norm.weight')).toMatch(/num_ttt_layers=2: blocks 2\.\.3/);
    expect(e2eUnexpectedHint(c, 'model.layers.7.mlp.w1.weight')).toMatch(/layer 7, but num_layers=4/);
    expect(e2eUnexpectedHint(c, 'lm_head.weight')).toMatch(/tied/);
    expect(e2eUnexpectedHint(c, 'language_model.model.wte.weight')).toMatch(/convert_e2e\.py/);
    expect(e2eUnexpectedHint(c, 'model.layers.0.attn.q_proj.weight')).toBeNull();
  });

  it('E2E_CONFIG claims ttt_e2e and nothing else; LaCT does not claim ttt_e2e', () => {
    expect(E2E_CONFIG.family).toBe('ttt-e2e');
    expect(E2E_CONFIG.claims({ model_type: 'ttt_e2e' })).toBe(true);
    for (const mt of [undefined, 'lact_swiglu', 'ttt-e2e', 'llama']) expect(E2E_CONFIG.claims({ model_type: mt })).toBe(false);
    expect(LACT_CONFIG.claims({ model_type: 'ttt_e2e' })).toBe(false);
    expect(E2E_CONFIG.parse(S1.config).numLayers).toBe(2);
  });

  it('is registered: the loader reads a ttt_e2e config as this family\'s, and a bad one by its own rules', () => {
    const c = parseModelConfig(S1.config, 'config.json');
    expect(c.family).toBe('ttt-e2e');
    expect(c).toEqual(parseE2EConfig(S1.config, 'config.json'));
    expect(() => parseModelConfig({ ...S1.config, head_dim: 15 }, 'config.json')).toThrow(/head_dim/);
  });
});

describe('e2eModelFromFiles (the reference\'s checked way in)', () => {
  const file = SafetensorsFile.parse(S1.weights);
  const tensors = () => new Map<string, TensorToWrite>([...file.header.tensors.keys()].map((n) => [n, { dtype: 'F32', shape: file.info(n).shape, data: file.float32(n) }]));
  const load = (config: unknown, t: Map<string, TensorToWrite>) => () => e2eModelFromFiles(config, writeSafetensors(t), 'm.safetensors');

  it('loads the fixture', () => {
    const { config, weights } = e2eModelFromFiles(S1.config, S1.weights);
    expect(weights.size).toBe(e2eExpectedTensors(config).size);
  });

  it('refuses a missing, unexpected, misshapen or non-finite tensor with the loader\'s error classes', () => {
    const missing = tensors();
    missing.delete('model.layers.1.dyn_mlp.w3.weight');
    expect(load(S1.config, missing)).toThrow(MissingTensorError);
    expect(load(S1.config, missing)).toThrow(/num_ttt_layers=1/);
    const extra = tensors();
    extra.set('lm_head.weight', { dtype: 'F32', shape: [256, 32], data: new Float32Array(256 * 32) });
    expect(load(S1.config, extra)).toThrow(UnexpectedTensorError);
    const bad = tensors();
    bad.set('model.layers.0.attn.q_norm.weight', { dtype: 'F32', shape: [32], data: new Float32Array(32) });
    expect(load(S1.config, bad)).toThrow(ShapeMismatchError);
    const nan = tensors();
    nan.set('model.norm.weight', { dtype: 'F32', shape: [32], data: new Float32Array(32).fill(Number.NaN) });
    expect(load(S1.config, nan)).toThrow(NonFiniteWeightError);
  });

  it('a config whose num_ttt_layers disagrees with the weights is refused either way', () => {
    expect(load({ ...S1.config, num_ttt_layers: 2 }, tensors())).toThrow(/missing tensor "model\.layers\.0\.dyn_norm\.weight"/);
    expect(load({ ...S1.config, num_ttt_layers: 0 }, tensors())).toThrow(/num_ttt_layers=0: no block is a TTT block/);
  });
});
