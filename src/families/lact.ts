/**
 * The LaCT family (and its two baselines, the same blocks without the fast-weight branch: sliding-window
 * and full attention) on the GPU: one block of tokens, token → embedding → every layer (attention over
 * the window beside the fast-weight MLP, then the SwiGLU MLP) → final norm → LM head → sample. The math
 * is ../shared/spec/lact-language-model.md; the CPU twin is src/reference/model.ts.
 *
 * Every pipeline, bind group and buffer is made once here; per block the data path writes one 16-byte
 * uniform (rows, pos0) and the token ids, then records its launches. When the block completes a chunk,
 * the chunk update (gradient, momentum, Muon, renorm) is recorded right after the apply.
 */
import { concatFloats } from '../engine/float-arrays.ts';
import type { LactConfig } from '../model/config.ts';
import { BlockParams } from '../gpu/block.ts';
import type { GpuContext } from '../gpu/context.ts';
import type { MemorySection, RestoreWrite, SectionSource } from '../gpu/saved-state.ts';
import { AttentionOp } from '../gpu/ops/attention.ts';
import { EmbedOp } from '../gpu/ops/embed.ts';
import { FastWeightLayer, FastWeightScratch, gateColumns, ownQkvRows, projectionRowWidth, type FastWeightInit } from '../gpu/ops/fast-weights.ts';
import { KvCache } from '../gpu/ops/kv-cache.ts';
import { LinearOp } from '../gpu/ops/linear.ts';
import { CPU_TILES, ROW_TILES } from '../gpu/ops/matmul.ts';
import { RmsNormOp } from '../gpu/ops/rmsnorm.ts';
import { RopeOp } from '../gpu/ops/rope.ts';
import { SampleOp } from '../gpu/ops/sample.ts';
import { SwigluOp } from '../gpu/ops/swiglu.ts';
import type { BlockWork, EngineLayout, EngineMode, EngineOptions, FamilyModel, ModelBuilder, ModelFamily } from '../engine/family.ts';
import { lactPlan } from './lact-plan.ts';
import { GpuWeights } from './lact-weights.ts';
import { resolveLearnWhileReading, TopMlpLearner, topMlpTensors } from './top-mlp-learning.ts';
import type { LearningLog } from '../engine/family.ts';

/** eps of q_norm and k_norm (the library RMSNorm default; block norms use config.normEps). */
const INNER_NORM_EPS = 1e-5;

interface LayerOps {
  /**
   * q|k|v (and with fast weights the gates lr | momentum | ttt scale, which read the same normed input)
   * = attn_norm(x) Wqkv^T, the norm fused into the projection's loads (LinearSpec.norm).
   */
  qkv: LinearOp;
  /** q/k norm and RoPE; in a fast-weight layer null: its inputs launch does both. */
  qkNorm: RmsNormOp | null;
  fast: FastWeightLayer | null;
  rope: RopeOp | null;
  kv: KvCache;
  attention: AttentionOp;
  oProj: LinearOp;
  /** g|u = mlp_norm(x) [Wg; Wu]^T, the norm fused. */
  gateUp: LinearOp;
  swiglu: SwigluOp;
  down: LinearOp;
  /** down reading silu(g) * u straight from gate|up (the SwiGLU fused into its loads): one launch fewer. */
  downGlu: LinearOp;
}

class LactModel implements FamilyModel {
  readonly mode: EngineMode;
  readonly vocabSize: number;
  readonly logits: GPUBuffer;
  readonly sampled: GPUBuffer;
  readonly allLogits: boolean;
  readonly learningLog: LearningLog | null;
  private readonly block: BlockParams;
  /** Learns while reading with the top block's MLP (sliding-window models, when asked). */
  private readonly learner: TopMlpLearner | null;
  readonly tokens: GPUBuffer;
  private readonly embed: EmbedOp;
  private readonly layers: LayerOps[];
  /** logits = norm(x) Wlm^T, the final norm fused into the head. */
  private readonly headLast: LinearOp;
  private readonly headAll: LinearOp | null;
  private readonly sampler: SampleOp;

  constructor(private readonly ctx: GpuContext, readonly config: LactConfig, w: GpuWeights, fast: readonly (FastWeightInit | null)[], layout: EngineLayout, opts: EngineOptions) {
    const c = config, D = c.hiddenSize, V = c.vocabSize, I = c.intermediateSize;
    const { maxRows, maxBindingBytes: maxBinding, capacity } = layout;
    const tiles = opts.tiles ?? { wide: CPU_TILES, narrow: ROW_TILES };
    this.mode = lactMode(c);
    this.vocabSize = V;
    this.allLogits = opts.allLogits ?? false;
    const A = ctx.allocator;
    const act = (label: string, floats: number) => A.create(label, 'activations', floats * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST);
    const block = (this.block = new BlockParams(ctx));

    // Activations, shared by every layer (a block runs the layers one after another).
    this.tokens = A.create('tokens', 'activations', maxRows * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
    const x = act('x: residual stream [rows, D]', maxRows * D);
    const G = c.useFastWeights ? gateColumns(c).total : 0, F = ownQkvRows(c);
    // A row: q | k | v | the branch's own q | k | v (F = 3D with fw_own_qkv, else 0) | the fast-weight gates (G = 0 without fast weights).
    const S = projectionRowWidth(c);
    const qkv = act(G ? (F ? 'qkv|fw qkv|gates [rows, 6D + G]' : 'qkv|gates [rows, 3D + G]') : 'qkv [rows, 3D]', maxRows * S);
    const o = act('o: mixer output [rows, D]', maxRows * D);
    const gu = act('gate|up [rows, 2I]', maxRows * 2 * I);
    const s = act('swiglu [rows, I]', maxRows * I);
    this.logits = act('logits', (this.allLogits ? maxRows : 1) * V);

    const learning = resolveLearnWhileReading(c, opts.learnWhileReading);
    // The fast-weight intermediates are per block, not per layer: one set serves every layer.
    const fwScratch = c.useFastWeights ? new FastWeightScratch(ctx, c, maxRows) : null;
    this.embed = new EmbedOp(ctx, 'embed', D, w.embeddings, { tokens: this.tokens, x }, block);
    this.layers = w.layers.map((lw, l) => {
      const init = fast[l];
      const L = `layer ${l}`;
      const attnSpec = { D, heads: c.numAttnHeads, window: c.windowSize, maxRows, capacity: capacity === Infinity ? 0 : capacity, maxBindingBytes: maxBinding };
      const kv = new KvCache(ctx, `${L} kv`, attnSpec);
      const attnNorm = { gain: lw.attnNorm, eps: c.normEps };
      if (lw.gateRows !== G || lw.fwRows !== F) throw new Error(`${L}: ${lw.fwRows} + ${lw.gateRows} rows after q|k|v, expected ${F} + ${G}`);
      const fastLayer = init
        ? new FastWeightLayer(ctx, `${L} fast weights`, c, init, { qkv, out: o }, block, maxRows, { scratch: fwScratch!, tiles, attention: { qkNorm: lw.qkNorm, eps: INNER_NORM_EPS } })
        : null;
      return {
        kv,
        qkv: new LinearOp(ctx, `${L} qkv`, lw.qkv, { x, y: qkv, bias: lw.qkvBias ?? undefined }, { inStride: D, outStride: S, norm: attnNorm }, block, tiles),
        qkNorm: lw.qkNorm && !fastLayer ? new RmsNormOp(ctx, `${L} q/k norm`, { n: D, eps: INNER_NORM_EPS, segments: 2, segStride: D, inStride: S, outStride: S }, { weight: lw.qkNorm, x: qkv, y: qkv }, block) : null,
        fast: fastLayer,
        rope: fastLayer ? null : new RopeOp(ctx, `${L} rope`, { dim: D, headDim: c.attnHeadDim, theta: c.ropeTheta, rowStride: S, segments: 2, segStride: D }, qkv, block),
        attention: new AttentionOp(ctx, `${L} attention`, attnSpec, { qkv, out: o, qkvStride: S }, kv, block),
        oProj: new LinearOp(ctx, `${L} o_proj`, lw.oProj, { x: o, y: x }, { inStride: D, outStride: D, accumulate: true }, block, tiles),
        gateUp: new LinearOp(ctx, `${L} gate|up`, lw.gateUp, { x, y: gu }, { inStride: D, outStride: 2 * I, norm: { gain: lw.mlpNorm, eps: c.normEps } }, block, tiles),
        swiglu: new SwigluOp(ctx, `${L} swiglu`, I, { gu, s }, block),
        down: new LinearOp(ctx, `${L} down`, lw.down, { x: s, y: x }, { inStride: I, outStride: D, accumulate: true }, block, tiles),
        downGlu: new LinearOp(ctx, `${L} down (swiglu fused)`, lw.down, { x: gu, y: x }, { inStride: 2 * I, outStride: D, accumulate: true, glu: I }, block, tiles),
      };
    });
    const finalNorm = { gain: w.finalNorm, eps: c.normEps };
    this.headLast = new LinearOp(ctx, 'lm_head (last row)', w.lmHead, { x, y: this.logits }, { inStride: D, outStride: V, lastRow: true, norm: finalNorm }, block, tiles);
    this.headAll = this.allLogits ? new LinearOp(ctx, 'lm_head (all rows)', w.lmHead, { x, y: this.logits }, { inStride: D, outStride: V, norm: finalNorm }, block, tiles) : null;
    this.sampler = new SampleOp(ctx, 'sample', this.logits, V);
    this.sampled = this.sampler.result;

    this.learner = learning
      ? new TopMlpLearner(ctx, c, learning, concatFloats(topMlpTensors(c).map((n) => w.kept.get(n)!)), { mlpNorm: w.layers[c.numLayers - 1].mlpNorm, finalNorm: w.finalNorm, lmHead: w.lmHead }, { x, gu, s, tokens: this.tokens }, block, { tiles, maxBindingBytes: maxBinding })
      : null;
    this.learningLog = this.learner?.learningLog ?? null;
  }

  /** The data path of one block, top to bottom. */
  encodeBlock(pass: GPUComputePassEncoder, { plan, tokens, head, sampling }: BlockWork): void {
    const { rows, pos0 } = plan;
    this.block.write(rows, pos0);
    this.ctx.device.queue.writeBuffer(this.tokens, 0, Uint32Array.from(tokens));

    this.learner?.encodeUpdate(pass, pos0, tokens[0]); //                   learning while reading: the chunk pos0 completes learns first
    this.embed.encode(pass, rows); //                            x = E[tokens]
    const top = this.layers[this.layers.length - 1];
    for (const l of this.layers) {
      l.qkv.encode(pass, rows); //                               q|k|v|gates = RMSNorm(x) Wqkv^T (+ b), the norm in the loads
      if (l.fast) {
        l.fast.encodeInputs(pass, rows); //                      one launch: q, k = RoPE(RMSNorm?(q, k)) in place; fast q, k, v
      } else { //                                                from the normed, un-roped q, k, v; the chunk's fk, fv, lr, beta
        l.qkNorm?.encode(pass, rows); //                         q, k = RMSNorm(q), RMSNorm(k)
        l.rope!.encode(pass, rows); //                           RoPE(q), RoPE(k)
      }
      l.attention.encode(pass, rows, pos0); //                   o = windowed softmax attention (writes K/V)
      if (l.fast) {
        l.fast.encodeApply(pass, rows); //                       o += ttt_norm(f_W(fast q)) * scale
        if (plan.endsChunk) l.fast.encodeLearn(pass); //         W <- renorm(W + Muon(momentum(grad)))
      }
      l.oProj.encode(pass, rows); //                             x += o Wo^T
      if (this.learner && l === top) {
        this.learner.encodeKeep(pass, rows); //                  keep x (the top MLP's input stream) and the tokens for the update
        this.learner.encodeMlp(pass, rows); //                   x += θd(silu(θg a) * θu a), a = RMSNorm(x): the learning copy
        continue;
      }
      l.gateUp.encode(pass, rows); //                            g|u = RMSNorm(x) [Wg; Wu]^T, the norm in the loads
      if (this.fuseSwiglu(rows)) {
        l.downGlu.encode(pass, rows); //                         x += (silu(g) * u) Wd^T, the SwiGLU in the loads
      } else {
        l.swiglu.encode(pass, rows); //                          s = silu(g) * u
        l.down.encode(pass, rows); //                            x += s Wd^T
      }
    }
    if (head === 'none') return;
    if (head === 'all') this.headAll!.encode(pass, rows); //     logits = RMSNorm(x) Wlm^T, the norm in the loads
    else this.headLast.encode(pass, rows);
    if (sampling) this.sampler.encode(pass, sampling, pos0 + rows, head === 'all' ? rows - 1 : 0); // next id, drawn with (seed, position), from the last row
  }

  /**
   * Whether a block runs the SwiGLU inside the down projection. On GPUs always (each element is
   * recomputed by the 4 workgroups that read it); on CPU emulators only for decode rows, where a launch
   * costs more than the recomputation (a prefill tile would recompute each element N / 4 times).
   */
  private fuseSwiglu(rows: number): boolean {
    return this.ctx.kernelVariant === 'gpu' || rows <= 2;
  }

  reset(): void {
    for (const l of this.layers) l.fast?.reset();
    this.learner?.reset();
  }

  async save(position: number): Promise<MemorySection[]> {
    const out: MemorySection[] = [];
    for (const [i, l] of this.layers.entries()) {
      out.push(...(await l.kv.save(`layer${i}`, position)));
      if (l.fast) out.push(...(await l.fast.save(`layer${i}`)));
    }
    if (this.learner) out.push(...(await this.learner.save(position)));
    return out;
  }

  planRestore(position: number, sections: SectionSource): RestoreWrite[] {
    return [
      ...this.layers.flatMap((l, i) => [...l.kv.planRestore(`layer${i}`, position, sections), ...(l.fast?.planRestore(`layer${i}`, sections) ?? [])]),
      ...(this.learner?.planRestore(position, sections) ?? []),
    ];
  }

  kvBytesInUse(position: number): number {
    return this.layers.reduce((n, l) => n + l.kv.liveBytes(position), 0);
  }
}

function lactMode(c: LactConfig): EngineMode {
  return c.useFastWeights ? 'ttt' : c.windowSize === null ? 'full-attention' : 'sliding-window';
}

function defaultMaxRows(c: LactConfig): number {
  return c.useFastWeights ? Math.min(c.chunkSize, 512) : 64;
}

export const LACT_FAMILY: ModelFamily<LactConfig> = {
  name: 'lact',

  layout(caps, c, opts) {
    return {
      maxRows: opts.maxRows ?? defaultMaxRows(c),
      maxBindingBytes: opts.maxBindingBytes ?? caps.maxStorageBufferBindingSize,
      storage: opts.weights === 'f32' ? 'f32' : caps.shaderF16 ? 'f16' : 'f16-packed',
      capacity: c.windowSize === null ? opts.maxContext ?? 4096 : Infinity,
      chunkSize: c.useFastWeights ? c.chunkSize : resolveLearnWhileReading(c, opts.learnWhileReading)?.chunk ?? null,
    };
  },

  plan: lactPlan,

  resize(c, opts, key, value) {
    const field = ({ window_size: 'windowSize', lact_chunk_size: 'chunkSize', intermediate_size: 'intermediateSize', vocab_size: 'vocabSize' } as const)[key as 'window_size'];
    if (field) return { config: { ...c, [field]: value }, opts };
    if (key === 'maxRows' || key === 'maxContext') return { config: c, opts: { ...opts, [key]: value } };
    return null;
  },

  // Weights are split to the binding limit, so the largest buffer is an activation or one binding's worth of weights.
  deviceNeeds(c, opts, adapterBinding) {
    const D = c.hiddenSize;
    const maxRows = opts.maxRows ?? defaultMaxRows(c);
    const wbytes = opts.weights === 'f32' ? 4 : 2;
    const largestWeight = Math.max(c.vocabSize * D, 2 * c.intermediateSize * D, 3 * D * D) * wbytes;
    const largestActivation = 4 * maxRows * Math.max(2 * c.intermediateSize, 3 * D, opts.allLogits ? c.vocabSize : 0);
    return { largestBuffer: Math.max(largestActivation, Math.min(largestWeight, adapterBinding)) };
  },

  prepare(ctx, config, layout, opts): ModelBuilder {
    const w = new GpuWeights(ctx, config, layout.storage, layout.maxBindingBytes, resolveLearnWhileReading(config, opts.learnWhileReading) ? topMlpTensors(config) : []);
    return {
      tensorCount: w.tensorCount,
      write: (name, shape, data) => w.write(name, shape, data),
      finish: () => {
        const { modelId, fast } = w.finish();
        return { model: new LactModel(ctx, config, w, fast, layout, opts), modelId };
      },
    };
  },
};
