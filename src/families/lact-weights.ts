/**
 * A checkpoint's tensors on the GPU, laid out the way the kernels want them: projections that read the
 * same input share one matrix (q|k|v and, with fast weights, the branch's own q|k|v where it has one and
 * the lr/momentum/ttt-scale gates after them; the MLP's gate and up), q/k norm weights sit
 * side by side. Buffers are allocated from the config first and each checkpoint tensor is written into
 * its place as it arrives, so a streamed model never has to be whole in JS memory. Only the initial
 * fast weights (small: 3·Hf·df·dh per layer) are kept on the CPU, because the fast-weight layers
 * restore them on reset().
 */
import { expectedTensors, type LactConfig } from '../model/config.ts';
import type { GpuContext, WeightStorage } from '../gpu/context.ts';
import { ownQkvRows, projectionRowWidth, type FastWeightInit } from '../gpu/ops/fast-weights.ts';
import { allocMatrix, type WeightParts } from '../gpu/weights.ts';
import { CheckpointTargets, type PlacedTarget } from './checkpoint-targets.ts';

export interface LayerWeights {
  attnNorm: GPUBuffer;
  /**
   * [3D + F + G, D]: q, k, v, then (F = 3D: fw_own_qkv) the fast-weight branch's own q, k, v, then (G > 0:
   * with fast weights) lr_proj, momentum_proj.0, ttt_scale_proj.
   */
  qkv: WeightParts;
  /** [3D + F + G]: qkv's bias (zeros where the config has none, and for the branch's own q|k|v) then the gates'; null with neither. */
  qkvBias: GPUBuffer | null;
  qkNorm: GPUBuffer | null; // [2D]: q_norm then k_norm
  /** F: the rows of the fast-weight branch's own q|k|v after attention's (3D with fw_own_qkv, else 0). */
  fwRows: number;
  /** G: the gate rows after them (0 without fast weights). */
  gateRows: number;
  oProj: WeightParts;
  mlpNorm: GPUBuffer;
  gateUp: WeightParts; // [2I, D]: gate_proj then up_proj
  down: WeightParts; // [D, I]
}

/** A tensor of the fast-weight branch, kept on the CPU. */
type CpuTarget = { readonly kind: 'cpu' };

export class GpuWeights {
  readonly embeddings: WeightParts;
  readonly lmHead: WeightParts;
  readonly finalNorm: GPUBuffer;
  readonly layers: LayerWeights[] = [];
  private readonly targets: CheckpointTargets<CpuTarget>;
  private readonly cpu = new Map<string, Float32Array>();

  /** Checkpoint tensors also kept on the CPU as f32 (`keep` of the constructor), until finish(). */
  readonly kept = new Map<string, Float32Array>();

  /** `keep`: tensors to keep an f32 copy of as well (e.g. the weights a learning top MLP starts from). */
  constructor(ctx: GpuContext, readonly config: LactConfig, storage: WeightStorage, maxBinding: number, private readonly keep: readonly string[] = []) {
    const c = config, D = c.hiddenSize, V = c.vocabSize, I = c.intermediateSize;
    this.targets = new CheckpointTargets<CpuTarget>(ctx, c, (_, data, name) => this.cpu.set(name, Float32Array.from(data)));
    const mat = (label: string, rows: number, cols: number) => allocMatrix(ctx, label, rows, cols, storage, maxBinding);
    const vec = (label: string, n: number) => ctx.allocator.create(label, 'weights', n * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC);
    const at = (name: string, t: PlacedTarget | CpuTarget) => this.targets.at(name, t);

    this.embeddings = mat('embeddings', V, D);
    at('model.embeddings.weight', { kind: 'matrix', m: this.embeddings, row0: 0 });
    // Tied embeddings: the LM head reads the embedding table itself (uploaded once).
    this.lmHead = c.tieWordEmbeddings ? this.embeddings : mat('lm_head', V, D);
    if (!c.tieWordEmbeddings) at('lm_head.weight', { kind: 'matrix', m: this.lmHead, row0: 0 });
    this.finalNorm = vec('final norm', D);
    at('model.norm.weight', { kind: 'vector', buffer: this.finalNorm, offset: 0 });

    for (let l = 0; l < c.numLayers; l++) {
      const p = `model.layers.${l}.`, L = `layer ${l}`;
      const f = c.useFastWeights;
      const gateNames = f ? ['attn.lr_proj', ...(c.useMomentum ? ['attn.momentum_proj.0'] : []), ...(c.learnableTttScale ? ['attn.ttt_scale_proj'] : [])] : [];
      const gateRows = gateNames.map((n) => (n === 'attn.lr_proj' ? 3 * c.numFwHeads : c.numFwHeads));
      const G = gateRows.reduce((a, b) => a + b, 0);
      const F = ownQkvRows(c), S = projectionRowWidth(c);
      const lw: LayerWeights = {
        attnNorm: vec(`${L} attn_norm`, D),
        qkv: mat(f ? `${L} qkv|gates` : `${L} qkv`, S, D),
        qkvBias: c.qkvBias || f ? vec(f ? `${L} qkv|gates bias` : `${L} qkv bias`, S) : null,
        qkNorm: c.attnQkNorm ? vec(`${L} q/k norm`, 2 * D) : null,
        fwRows: F,
        gateRows: G,
        oProj: mat(`${L} o_proj`, D, D),
        mlpNorm: vec(`${L} mlp_norm`, D),
        gateUp: mat(`${L} gate|up`, 2 * I, D),
        down: mat(`${L} down`, D, I),
      };
      this.layers.push(lw);
      at(p + 'attn_norm.weight', { kind: 'vector', buffer: lw.attnNorm, offset: 0 });
      at(p + 'attn.qkv.weight', { kind: 'matrix', m: lw.qkv, row0: 0 });
      if (c.qkvBias) at(p + 'attn.qkv.bias', { kind: 'vector', buffer: lw.qkvBias!, offset: 0 });
      if (lw.qkNorm) {
        at(p + 'attn.q_norm.weight', { kind: 'vector', buffer: lw.qkNorm, offset: 0 });
        at(p + 'attn.k_norm.weight', { kind: 'vector', buffer: lw.qkNorm, offset: D });
      }
      if (F > 0) at(p + 'attn.fw_qkv.weight', { kind: 'matrix', m: lw.qkv, row0: 3 * D });
      let row = 3 * D + F;
      gateNames.forEach((n, i) => {
        at(p + n + '.weight', { kind: 'matrix', m: lw.qkv, row0: row });
        at(p + n + '.bias', { kind: 'vector', buffer: lw.qkvBias!, offset: row });
        row += gateRows[i];
      });
      at(p + 'attn.o_proj.weight', { kind: 'matrix', m: lw.oProj, row0: 0 });
      at(p + 'mlp_norm.weight', { kind: 'vector', buffer: lw.mlpNorm, offset: 0 });
      at(p + 'mlp.gate_proj.weight', { kind: 'matrix', m: lw.gateUp, row0: 0 });
      at(p + 'mlp.up_proj.weight', { kind: 'matrix', m: lw.gateUp, row0: I });
      at(p + 'mlp.down_proj.weight', { kind: 'matrix', m: lw.down, row0: 0 });
    }
    // Everything else the config requires belongs to the fast-weight branch and stays on the CPU.
    for (const name of expectedTensors(c).keys()) if (!this.targets.has(name)) at(name, { kind: 'cpu' });
  }

  get tensorCount(): number {
    return this.targets.count;
  }

  /** Puts one checkpoint tensor (f32, transient: not kept unless it is a small fast-weight tensor or asked for) in place. */
  write(name: string, shape: readonly number[], data: Float32Array): void {
    this.targets.write(name, shape, data);
    if (this.keep.includes(name)) this.kept.set(name, Float32Array.from(data));
  }

  /** After every tensor is written: the model's identity and each layer's initial fast weights. */
  finish(): { modelId: string; fast: (FastWeightInit | null)[] } {
    const modelId = this.targets.finish();
    const c = this.config;
    const fast = this.layers.map((_, l) => {
      if (!c.useFastWeights) return null;
      const p = `model.layers.${l}.attn.`;
      const get = (n: string) => this.cpu.get(p + n)!;
      return {
        w0: initialFastWeight(c, get, 'w0'),
        w1: get('w1'),
        w2: initialFastWeight(c, get, 'w2'),
        qkScale: get('qk_scale'),
        qkOffset: get('qk_offset'),
        tttNorm: get('ttt_norm.weight'),
      };
    });
    this.cpu.clear();
    return { modelId, fast };
  }
}

/** W0 or W2 [Hf, dh, df]: stored whole, or low rank as w_left @ w_right + 0.5·I. */
function initialFastWeight(c: LactConfig, get: (n: string) => Float32Array, name: 'w0' | 'w2'): Float32Array {
  const { numFwHeads: Hf, fwHeadDim: df, fwHidden: dh, w0w2LowRank: r } = c;
  if (r <= 0) return get(name);
  const left = get(name + '.w_left'), right = get(name + '.w_right');
  const out = new Float32Array(Hf * dh * df);
  for (let h = 0; h < Hf; h++) {
    for (let i = 0; i < dh; i++) {
      for (let j = 0; j < df; j++) {
        let s = i === j ? 0.5 : 0;
        for (let k = 0; k < r; k++) s += left[h * dh * r + i * r + k] * right[h * r * df + k * df + j];
        out[h * dh * df + i * df + j] = s;
      }
    }
  }
  return out;
}
