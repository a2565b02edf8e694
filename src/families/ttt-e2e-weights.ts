/**
 * A TTT-E2E checkpoint's tensors on the GPU, laid out the way the kernels want them: q|k|v in one
 * [3d, d] matrix, each MLP's W1|W3 (gate, up) in one [2f, d] matrix, q_norm and k_norm side by side.
 * Buffers are allocated from the config first and each tensor is written into its place as it arrives
 * (a streamed model is never whole in JS memory). The dynamic MLPs' initial weights θ_0 are kept on
 * the CPU (f32, 3·fd·d per TTT block): the model uploads them into θ and restores them on reset().
 */
import { e2eExpectedTensors, isE2ETttLayer, type E2EConfig } from '../model/e2e-config.ts';
import type { GpuContext, WeightStorage } from '../gpu/context.ts';
import { allocMatrix, type WeightParts } from '../gpu/weights.ts';
import { CheckpointTargets, type PlacedTarget } from './checkpoint-targets.ts';

export interface E2ELayerWeights {
  attnNorm: GPUBuffer;
  qkv: WeightParts; // [3d, d]: q_proj, k_proj, v_proj
  qkNorm: GPUBuffer; // [2hd]: q_norm then k_norm
  oProj: WeightParts; // [d, d]
  attnPostNorm: GPUBuffer;
  /** TTT blocks only: the norms around the dynamic MLP (its weights are θ). */
  dynNorm: GPUBuffer | null;
  dynPostNorm: GPUBuffer | null;
  mlpNorm: GPUBuffer;
  gateUp: WeightParts; // [2f, d]: w1 then w3
  down: WeightParts; // [d, f]: w2
  mlpPostNorm: GPUBuffer;
}

/** A dynamic-MLP tensor: part of θ_0 (block j, at a float offset). */
type ThetaTarget = { readonly kind: 'theta'; readonly block: number; readonly offset: number };

/** Floats of one TTT block's θ: [W1 (fd·d) | W3 (fd·d) | W2 (d·fd)], W1|W3 the dynamic gate|up [2fd, d]. */
export function thetaBlockFloats(c: E2EConfig): number {
  return 3 * c.intermediateSizeDynamicMlp * c.hiddenSize;
}

export class E2EGpuWeights {
  readonly embeddings: WeightParts;
  readonly finalNorm: GPUBuffer;
  readonly layers: E2ELayerWeights[] = [];
  /** θ_0 of every TTT block, packed as the model's θ buffer. */
  readonly theta0: Float32Array;
  private readonly targets: CheckpointTargets<ThetaTarget>;

  constructor(ctx: GpuContext, readonly config: E2EConfig, storage: WeightStorage, maxBinding: number) {
    const c = config, d = c.hiddenSize, f = c.intermediateSizeStaticMlp, fd = c.intermediateSizeDynamicMlp, hd = c.headDim;
    this.targets = new CheckpointTargets<ThetaTarget>(ctx, c, (t, data) => this.theta0.set(data, t.block * thetaBlockFloats(c) + t.offset));
    const mat = (label: string, rows: number, cols: number) => allocMatrix(ctx, label, rows, cols, storage, maxBinding);
    const vec = (label: string, n: number) => ctx.allocator.create(label, 'weights', n * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC);
    const at = (name: string, t: PlacedTarget | ThetaTarget) => this.targets.at(name, t);
    const vecAt = (name: string, buffer: GPUBuffer, offset = 0) => at(name, { kind: 'vector', buffer, offset });
    this.theta0 = new Float32Array(c.numTttLayers * thetaBlockFloats(c));

    this.embeddings = mat('embeddings (tied head)', c.vocabSize, d);
    at('model.embed.weight', { kind: 'matrix', m: this.embeddings, row0: 0 });
    this.finalNorm = vec('final norm', d);
    vecAt('model.norm.weight', this.finalNorm);
    for (let i = 0; i < c.numLayers; i++) {
      const p = `model.layers.${i}.`, L = `layer ${i}`;
      const ttt = isE2ETttLayer(c, i);
      const lw: E2ELayerWeights = {
        attnNorm: vec(`${L} attn_norm`, d),
        qkv: mat(`${L} qkv`, 3 * d, d),
        qkNorm: vec(`${L} q/k norm`, 2 * hd),
        oProj: mat(`${L} o_proj`, d, d),
        attnPostNorm: vec(`${L} attn_post_norm`, d),
        dynNorm: ttt ? vec(`${L} dyn_norm`, d) : null,
        dynPostNorm: ttt ? vec(`${L} dyn_post_norm`, d) : null,
        mlpNorm: vec(`${L} mlp_norm`, d),
        gateUp: mat(`${L} mlp w1|w3`, 2 * f, d),
        down: mat(`${L} mlp w2`, d, f),
        mlpPostNorm: vec(`${L} mlp_post_norm`, d),
      };
      this.layers.push(lw);
      vecAt(p + 'attn_norm.weight', lw.attnNorm);
      at(p + 'attn.q_proj.weight', { kind: 'matrix', m: lw.qkv, row0: 0 });
      at(p + 'attn.k_proj.weight', { kind: 'matrix', m: lw.qkv, row0: d });
      at(p + 'attn.v_proj.weight', { kind: 'matrix', m: lw.qkv, row0: 2 * d });
      at(p + 'attn.o_proj.weight', { kind: 'matrix', m: lw.oProj, row0: 0 });
      vecAt(p + 'attn.q_norm.weight', lw.qkNorm, 0);
      vecAt(p + 'attn.k_norm.weight', lw.qkNorm, hd);
      vecAt(p + 'attn_post_norm.weight', lw.attnPostNorm);
      if (ttt) {
        const j = i - c.firstTttLayer;
        vecAt(p + 'dyn_norm.weight', lw.dynNorm!);
        vecAt(p + 'dyn_post_norm.weight', lw.dynPostNorm!);
        at(p + 'dyn_mlp.w1.weight', { kind: 'theta', block: j, offset: 0 });
        at(p + 'dyn_mlp.w3.weight', { kind: 'theta', block: j, offset: fd * d });
        at(p + 'dyn_mlp.w2.weight', { kind: 'theta', block: j, offset: 2 * fd * d });
      }
      vecAt(p + 'mlp_norm.weight', lw.mlpNorm);
      at(p + 'mlp.w1.weight', { kind: 'matrix', m: lw.gateUp, row0: 0 });
      at(p + 'mlp.w3.weight', { kind: 'matrix', m: lw.gateUp, row0: f });
      at(p + 'mlp.w2.weight', { kind: 'matrix', m: lw.down, row0: 0 });
      vecAt(p + 'mlp_post_norm.weight', lw.mlpPostNorm);
    }
    const expected = e2eExpectedTensors(c);
    for (const name of this.targets.names()) if (!expected.has(name)) throw new Error(`E2EGpuWeights: ${name} is not a tensor of the config (the two lists disagree)`);
    for (const name of expected.keys()) if (!this.targets.has(name)) throw new Error(`E2EGpuWeights: the config's ${name} has no place on the GPU`);
  }

  get tensorCount(): number {
    return this.targets.count;
  }

  write(name: string, shape: readonly number[], data: Float32Array): void {
    this.targets.write(name, shape, data);
  }

  finish(): { modelId: string } {
    return { modelId: this.targets.finish() };
  }
}
