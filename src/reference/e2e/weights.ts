/**
 * The TTT-E2E reference's view of a checkpoint: per-block tensors in f64 by their project names
 * (`e2eExpectedTensors`, linear weights [out, in]), and the dynamic weights θ.
 */
import type { TensorF32, WeightMap } from '../../model/config.ts';
import { e2eExpectedTensors, e2eTensorRequirement, e2eUnexpectedHint, isE2ETttLayer, parseE2EConfig, type E2EConfig } from '../../model/e2e-config.ts';
import { MissingTensorError, NonFiniteWeightError, ShapeMismatchError, UnexpectedTensorError, UnsupportedDtypeError } from '../../model/errors.ts';
import { FLOAT_DTYPES, isFloatDtype, SafetensorsFile } from '../../model/safetensors.ts';
import { toF64 } from '../linalg.ts';

/** The dynamic ("prime") MLP weights of one TTT block, in the dyn_mlp.*.weight layout: w1, w3 [fd, d], w2 [d, fd]. */
export interface DynamicWeights {
  w1: Float64Array;
  w2: Float64Array;
  w3: Float64Array;
}

/** θ: one DynamicWeights per TTT block, in block order (θ[j] belongs to block L − S + j). */
export type Theta = DynamicWeights[];

export interface E2EBlockWeights {
  attnNorm: Float64Array;
  wq: Float64Array;
  wk: Float64Array;
  wv: Float64Array;
  wo: Float64Array;
  /** [hd], shared by the heads. */
  qNorm: Float64Array;
  kNorm: Float64Array;
  attnPostNorm: Float64Array;
  /** TTT blocks only: the dynamic MLP's norms and its initial weights θ_0. */
  dyn: { norm: Float64Array; postNorm: Float64Array; initial: DynamicWeights } | null;
  mlpNorm: Float64Array;
  mlpW1: Float64Array;
  mlpW2: Float64Array;
  mlpW3: Float64Array;
  mlpPostNorm: Float64Array;
}

export interface E2EWeights {
  /** [V, d]; also the tied head. */
  embed: Float64Array;
  layers: E2EBlockWeights[];
  finalNorm: Float64Array;
}

export function e2eReferenceWeights(c: E2EConfig, w: WeightMap): E2EWeights {
  const get = (name: string): Float64Array => {
    const t = w.get(name);
    if (!t) throw new Error(`e2e reference: tensor ${name} is missing`);
    return toF64(t.data);
  };
  const layers: E2EBlockWeights[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`;
    layers.push({
      attnNorm: get(p + 'attn_norm.weight'),
      wq: get(p + 'attn.q_proj.weight'),
      wk: get(p + 'attn.k_proj.weight'),
      wv: get(p + 'attn.v_proj.weight'),
      wo: get(p + 'attn.o_proj.weight'),
      qNorm: get(p + 'attn.q_norm.weight'),
      kNorm: get(p + 'attn.k_norm.weight'),
      attnPostNorm: get(p + 'attn_post_norm.weight'),
      dyn: isE2ETttLayer(c, i)
        ? {
          norm: get(p + 'dyn_norm.weight'),
          postNorm: get(p + 'dyn_post_norm.weight'),
          initial: { w1: get(p + 'dyn_mlp.w1.weight'), w2: get(p + 'dyn_mlp.w2.weight'), w3: get(p + 'dyn_mlp.w3.weight') },
        }
        : null,
      mlpNorm: get(p + 'mlp_norm.weight'),
      mlpW1: get(p + 'mlp.w1.weight'),
      mlpW2: get(p + 'mlp.w2.weight'),
      mlpW3: get(p + 'mlp.w3.weight'),
      mlpPostNorm: get(p + 'mlp_post_norm.weight'),
    });
  }
  return { embed: get('model.embed.weight'), layers, finalNorm: get('model.norm.weight') };
}

export function cloneTheta(theta: readonly DynamicWeights[]): Theta {
  return theta.map((t) => ({ w1: Float64Array.from(t.w1), w2: Float64Array.from(t.w2), w3: Float64Array.from(t.w3) }));
}

/**
 * A model folder's config.json (parsed JSON) and model.safetensors bytes → config and f32 weights,
 * checked as the loader checks a registered family (names, float dtypes, shapes, finiteness), with the
 * same error classes. The loader itself still refuses ttt_e2e (not registered): this is the reference's
 * and the tests' way in.
 */
export function e2eModelFromFiles(configJson: unknown, safetensors: Uint8Array, source?: string): { config: E2EConfig; weights: Map<string, TensorF32> } {
  const config = parseE2EConfig(configJson, source);
  const file = SafetensorsFile.parse(safetensors, { source });
  const expected = e2eExpectedTensors(config);
  const stored = file.header.tensors;
  for (const name of expected.keys()) {
    if (!stored.has(name)) throw new MissingTensorError(name, e2eTensorRequirement(config, name), source);
  }
  for (const [name, shape] of expected) {
    const t = stored.get(name)!;
    if (!isFloatDtype(t.dtype)) throw new UnsupportedDtypeError(name, t.dtype, FLOAT_DTYPES, source);
    if (t.shape.length !== shape.length || t.shape.some((v, i) => v !== shape[i])) throw new ShapeMismatchError(name, shape, t.shape, source);
  }
  for (const name of stored.keys()) {
    if (!expected.has(name)) throw new UnexpectedTensorError(name, source, e2eUnexpectedHint(config, name) ?? undefined);
  }
  const weights = new Map<string, TensorF32>();
  for (const [name, info] of stored) {
    const data = file.float32(name);
    const bad = data.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new NonFiniteWeightError(name, bad, data[bad], source);
    weights.set(name, { shape: info.shape, data });
  }
  return { config, weights };
}
