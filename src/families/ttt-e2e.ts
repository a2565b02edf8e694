/**
 * The TTT-E2E family on the GPU (the math: ../shared/spec/ttt-e2e-language-model.md; the CPU twin:
 * src/reference/e2e/): one block of tokens, token → embedding → every block (sliding-window attention
 * with per-head q/k norm and interleaved RoPE, then, in the top S "TTT blocks", the dynamic MLP with
 * weights θ, then the static MLP; every sublayer between sandwich norms, x += post_norm(f(pre_norm(x))))
 * → final norm → tied head → sample.
 *
 * The model learns while it reads: when a block starts at position (c + 1)B, chunk c is complete and its
 * last target is the block's first token, so chunk c's update runs first (ttt-e2e-inner-step.ts:
 * recompute, loss, backward to θ, one global clip, SGD), and the block runs with the new θ. Every block
 * keeps its rows' h_pre (the first TTT block's input) and tokens for the update of its own chunk.
 */
import type { E2EConfig } from '../model/e2e-config.ts';
import { BlockParams } from '../gpu/block.ts';
import type { GpuContext } from '../gpu/context.ts';
import { writeAligned } from '../gpu/allocator.ts';
import { readBufferBytes } from '../gpu/readback.ts';
import type { MemorySection, RestoreWrite, SectionSource } from '../gpu/saved-state.ts';
import { AttentionOp } from '../gpu/ops/attention.ts';
import { PendingChunk } from '../gpu/ops/e2e-keep.ts';
import { E2EQkNormOp } from '../gpu/ops/e2e-qk-norm.ts';
import { EmbedOp } from '../gpu/ops/embed.ts';
import { KvCache, type AttentionSpec } from '../gpu/ops/kv-cache.ts';
import { LinearOp } from '../gpu/ops/linear.ts';
import { CPU_TILES, MatmulOp, ROW_TILES } from '../gpu/ops/matmul.ts';
import { SampleOp } from '../gpu/ops/sample.ts';
import { SwigluOp } from '../gpu/ops/swiglu.ts';
import type { BlockWork, EngineLayout, EngineMode, EngineOptions, FamilyModel, LearningLog, ModelBuilder, ModelFamily } from '../engine/family.ts';
import { E2EInnerStep } from './ttt-e2e-inner-step.ts';
import { chunkLearningLog } from './learning-log.ts';
import { e2ePlan } from './ttt-e2e-plan.ts';
import { E2EGpuWeights, thetaBlockFloats } from './ttt-e2e-weights.ts';

interface Layer {
  kv: KvCache;
  /** q|k|v = attn_norm(x) [Wq; Wk; Wv]^T: every pre-norm here is fused into the next projection (LinearSpec.norm). */
  qkv: LinearOp;
  /** Per-head q/k RMSNorm and the RoPE in one launch. */
  qkNormRope: E2EQkNormOp;
  attention: AttentionOp;
  /** sub = o Wo^T; its post-norm and residual add run in the loads of the next projection (StreamReader). */
  oProj: LinearOp;
  dyn: { gateUp: MatmulOp; swiglu: SwigluOp; down: MatmulOp; downGlu: MatmulOp } | null;
  gateUp: LinearOp;
  swiglu: SwigluOp;
  down: LinearOp;
  /** down reading silu(g) * u straight from gate|up (the SwiGLU in its loads): one launch fewer. */
  downGlu: LinearOp;
}

/**
 * The residual stream as the layers are built in data-path order. Every sublayer ends x += post_norm(s),
 * and x's only readers are the next pre-normed projection (or the head), so the add is left pending and
 * done in that projection's loads (MatmulSpec.aResid), which stores the new stream into the other of two
 * buffers: no launch of its own. `take` gives the next reader its input and moves the stream on.
 */
class StreamReader {
  private at: GPUBuffer;
  private post: GPUBuffer | null = null;

  constructor(private readonly buffers: readonly [GPUBuffer, GPUBuffer], private readonly sub: GPUBuffer, private readonly d: number) {
    this.at = buffers[0];
  }

  /** Where the stream is, once the last reader taken has run. */
  get current(): GPUBuffer {
    return this.at;
  }

  /** A sublayer has written s to `sub`: x += post_norm(s) with this gain, done by the next reader. */
  addPostNorm(gain: GPUBuffer): void {
    if (this.post) throw new Error('two post-norms pending: a reader was not taken');
    this.post = gain;
  }

  /** The input of the next reader: the stream itself, or s with the pending add (stored when `write`). */
  take(write = true): { x: GPUBuffer; residual?: { from: GPUBuffer; to: GPUBuffer; gain: GPUBuffer; stride: number; write: boolean } } {
    if (!this.post) return { x: this.at };
    const from = this.at, to = from === this.buffers[0] ? this.buffers[1] : this.buffers[0];
    const residual = { from, to, gain: this.post, stride: this.d, write };
    this.post = null;
    if (write) this.at = to;
    return { x: this.sub, residual };
  }
}

class E2EModel implements FamilyModel {
  readonly mode: EngineMode;
  readonly vocabSize: number;
  readonly logits: GPUBuffer;
  readonly sampled: GPUBuffer;
  readonly allLogits: boolean;
  readonly learningLog: LearningLog | null;
  private readonly block: BlockParams;
  readonly tokens: GPUBuffer;
  /** θ: every TTT block's [W1 | W3 | W2], f32, updated in place by the inner step. */
  private readonly theta: GPUBuffer | null;
  private readonly pending: PendingChunk | null;
  private readonly inner: E2EInnerStep | null;
  private readonly embed: EmbedOp;
  private readonly layers: Layer[];
  private readonly headLast: LinearOp;
  private readonly headAll: LinearOp | null;
  private readonly sampler: SampleOp;

  constructor(private readonly ctx: GpuContext, readonly config: E2EConfig, private readonly w: E2EGpuWeights, layout: EngineLayout, opts: EngineOptions) {
    const c = config, d = c.hiddenSize, V = c.vocabSize, B = c.miniBatchSize, S = c.numTttLayers;
    const f = c.intermediateSizeStaticMlp, fd = c.intermediateSizeDynamicMlp, F = Math.max(f, fd), eps = c.rmsNormEps;
    const { maxRows, maxBindingBytes } = layout;
    const tiles = opts.tiles ?? { wide: CPU_TILES, narrow: ROW_TILES };
    this.mode = S > 0 ? 'ttt' : 'sliding-window';
    this.vocabSize = V;
    this.allLogits = opts.allLogits ?? false;
    const A = ctx.allocator;
    const act = (label: string, floats: number) => A.create(label, 'activations', floats * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST);
    const block = (this.block = new BlockParams(ctx));

    // Activations, shared by every layer.
    this.tokens = A.create('tokens', 'activations', maxRows * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
    const x = act('x: residual stream [rows, d]', maxRows * d);
    const x2 = act("x': residual stream after a fused post-norm [rows, d]", maxRows * d);
    const qkv = act('qkv [rows, 3d]', maxRows * 3 * d);
    const o = act('o: attention mix [rows, d]', maxRows * d);
    const sub = act('sublayer output [rows, d]', maxRows * d);
    const gu = act('gate|up [rows, 2F]', maxRows * 2 * F);
    const s = act('swiglu [rows, F]', maxRows * F);
    this.logits = act('logits', (this.allLogits ? maxRows : 1) * V);

    this.theta = S > 0 ? A.upload('θ: dynamic MLPs', 'fastWeights', w.theta0) : null;

    this.embed = new EmbedOp(ctx, 'embed', d, w.embeddings, { tokens: this.tokens, x }, block);
    // Built in the order encodeBlock runs them, since each reader of the stream moves it on.
    const stream = new StreamReader([x, x2], sub, d);
    let keepFrom: GPUBuffer | null = null;
    this.layers = w.layers.map((lw, i) => {
      const L = `layer ${i}`, ttt = i >= c.firstTttLayer;
      const spec: AttentionSpec = { D: d, heads: c.numHeads, window: c.slidingWindow, maxRows, capacity: 0, maxBindingBytes, keepChunk: ttt ? B : undefined };
      const kv = new KvCache(ctx, `${L} kv`, spec);
      const th = (i - c.firstTttLayer) * thetaBlockFloats(c);
      const qkvIn = stream.take();
      if (i === c.firstTttLayer) keepFrom = stream.current; // the first TTT block's input h_pre, once q|k|v has stored it
      const qkvOp = new LinearOp(ctx, `${L} q|k|v`, lw.qkv, { x: qkvIn.x, y: qkv }, { inStride: d, outStride: 3 * d, norm: { gain: lw.attnNorm, eps }, residual: qkvIn.residual }, block, tiles);
      const oProj = new LinearOp(ctx, `${L} o_proj`, lw.oProj, { x: o, y: sub }, { inStride: d, outStride: d }, block, tiles);
      stream.addPostNorm(lw.attnPostNorm);
      let dyn: Layer['dyn'] = null;
      if (ttt) {
        const r = stream.take();
        dyn = {
          gateUp: new MatmulOp(ctx, `${L} dyn w1|w3`, { M: 'rows', N: 2 * fd, K: d, a: { row: d, col: 1 }, b: { off: th, row: d, col: 1 }, c: { row: 2 * fd, col: 1 }, aNorm: { eps }, aResid: r.residual && { row: r.residual.stride, write: r.residual.write } },
            { a: r.x, b: this.theta!, c: gu, gain: lw.dynNorm!, resid: r.residual?.from, residOut: r.residual?.to, postGain: r.residual?.gain }, block, tiles),
          swiglu: new SwigluOp(ctx, `${L} dyn swiglu`, fd, { gu, s }, block),
          down: new MatmulOp(ctx, `${L} dyn w2`, { M: 'rows', N: d, K: fd, a: { row: fd, col: 1 }, b: { off: th + 2 * fd * d, row: fd, col: 1 }, c: { row: d, col: 1 } }, { a: s, b: this.theta!, c: sub }, block, tiles),
          downGlu: new MatmulOp(ctx, `${L} dyn w2 (swiglu fused)`, { M: 'rows', N: d, K: fd, a: { row: 2 * fd, col: 1 }, b: { off: th + 2 * fd * d, row: fd, col: 1 }, c: { row: d, col: 1 }, aGlu: fd }, { a: gu, b: this.theta!, c: sub }, block, tiles),
        };
        stream.addPostNorm(lw.dynPostNorm!);
      }
      const mlpIn = stream.take();
      const layer: Layer = {
        kv,
        qkv: qkvOp,
        qkNormRope: new E2EQkNormOp(ctx, `${L} q/k norm + rope`, { heads: c.numHeads, headDim: c.headDim, eps, maxRows, segments: 2, segStride: d, xStride: 3 * d, ropeTheta: c.ropeTheta }, { gain: lw.qkNorm, x: qkv, y: qkv }, block),
        attention: new AttentionOp(ctx, `${L} attention`, spec, { qkv, out: o }, kv, block),
        oProj,
        dyn,
        gateUp: new LinearOp(ctx, `${L} mlp w1|w3`, lw.gateUp, { x: mlpIn.x, y: gu }, { inStride: d, outStride: 2 * f, norm: { gain: lw.mlpNorm, eps }, residual: mlpIn.residual }, block, tiles),
        swiglu: new SwigluOp(ctx, `${L} mlp swiglu`, f, { gu, s }, block),
        down: new LinearOp(ctx, `${L} mlp w2`, lw.down, { x: s, y: sub }, { inStride: f, outStride: d }, block, tiles),
        downGlu: new LinearOp(ctx, `${L} mlp w2 (swiglu fused)`, lw.down, { x: gu, y: sub }, { inStride: 2 * f, outStride: d, glu: f }, block, tiles),
      };
      stream.addPostNorm(lw.mlpPostNorm);
      return layer;
    });
    // The head is the stream's last reader: it need not store it.
    const headIn = stream.take(false);
    const finalNorm = { gain: w.finalNorm, eps };
    this.headLast = new LinearOp(ctx, 'tied head (last row)', w.embeddings, { x: headIn.x, y: this.logits }, { inStride: d, outStride: V, lastRow: true, norm: finalNorm, residual: headIn.residual }, block, tiles);
    this.headAll = this.allLogits ? new LinearOp(ctx, 'tied head (all rows)', w.embeddings, { x: headIn.x, y: this.logits }, { inStride: d, outStride: V, norm: finalNorm, residual: headIn.residual }, block, tiles) : null;
    this.pending = S > 0 ? new PendingChunk(ctx, 'pending chunk', d, B, { x: keepFrom ?? x, tokens: this.tokens }, block) : null;
    this.sampler = new SampleOp(ctx, 'sample', this.logits, V);
    this.sampled = this.sampler.result;

    this.inner = S > 0 && opts.learn !== false
      ? new E2EInnerStep(ctx, c, w, { theta: this.theta!, pending: this.pending!, kv: this.layers.map((l) => l.kv) }, {
        tiles, maxBindingBytes, innerLr: opts.innerLr ?? c.innerLr, clip: opts.innerClip ?? c.innerClipGlobalNorm, lossAfterStep: opts.lossAfterStep,
      })
      : null;
    this.learningLog = this.inner ? chunkLearningLog(this.inner.log, B) : null;
  }

  /** The data path of one block, top to bottom. */
  encodeBlock(pass: GPUComputePassEncoder, { plan, tokens, head, sampling }: BlockWork): void {
    const { rows, pos0 } = plan;
    const c = this.config, B = c.miniBatchSize;
    this.block.write(rows, pos0);
    this.ctx.device.queue.writeBuffer(this.tokens, 0, Uint32Array.from(tokens));

    if (this.inner && pos0 > 0 && pos0 % B === 0) {
      this.pending!.writeLastTarget(tokens[0]); //                  the chunk's last target: this block's first token
      this.inner.encode(pass, pos0 - B); //                         chunk pos0/B − 1 learns: θ ← θ − η·clip(∇θ loss)
    }
    this.embed.encode(pass, rows); //                               x = E[tokens]
    // The SwiGLU inside the down projections: on GPUs always, on CPU emulators for decode rows (as LaCT's).
    const fuse = this.ctx.kernelVariant === 'gpu' || rows <= 2;
    // x += post_norm(sub) after each sublayer runs in the loads of the projection that reads x next.
    this.layers.forEach((l, i) => {
      l.qkv.encode(pass, rows); //                                  x += mlp_post_norm(sub); q|k|v = attn_norm(x) [Wq; Wk; Wv]^T
      if (i === c.firstTttLayer) this.pending!.encodeKeep(pass, rows); // keep h_pre and the tokens for this chunk's update
      l.qkNormRope.encode(pass, rows); //                           q, k = interleaved RoPE(per-head RMSNorm), one gain per q, k
      l.attention.encode(pass, rows, pos0); //                      o = window attention (writes K/V)
      l.oProj.encode(pass, rows); //                                sub = o Wo^T
      if (l.dyn) {
        l.dyn.gateUp.encode(pass, rows); //                         x += attn_post_norm(sub); g|u = dyn_norm(x) [θW1; θW3]^T
        if (fuse) {
          l.dyn.downGlu.encode(pass, rows); //                      sub = (silu(g) * u) θW2^T, the SwiGLU in the loads
        } else {
          l.dyn.swiglu.encode(pass, rows); //                       s = silu(g) * u
          l.dyn.down.encode(pass, rows); //                         sub = s θW2^T
        }
      }
      l.gateUp.encode(pass, rows); //                               x += (dyn|attn)_post_norm(sub); g|u = mlp_norm(x) [W1; W3]^T
      if (fuse) {
        l.downGlu.encode(pass, rows); //                            sub = (silu(g) * u) W2^T, the SwiGLU in the loads
      } else {
        l.swiglu.encode(pass, rows); //                             s = silu(g) * u
        l.down.encode(pass, rows); //                               sub = s W2^T
      }
    });
    if (head === 'none') return;
    if (head === 'all') this.headAll!.encode(pass, rows); //        x += mlp_post_norm(sub); logits = norm(x) E^T
    else this.headLast.encode(pass, rows);
    if (sampling) this.sampler.encode(pass, sampling, pos0 + rows, head === 'all' ? rows - 1 : 0); // from the last row
  }

  reset(): void {
    if (this.theta) writeAligned(this.ctx.device, this.theta, 0, this.w.theta0);
  }

  async save(position: number): Promise<MemorySection[]> {
    const out: MemorySection[] = [];
    for (const [i, l] of this.layers.entries()) out.push(...(await l.kv.save(`layer${i}`, position)));
    if (this.theta) out.push({ name: 'theta', bytes: await readBufferBytes(this.ctx.device, this.theta) });
    if (this.pending) out.push(...(await this.pending.save('pending', position)));
    return out;
  }

  planRestore(position: number, sections: SectionSource): RestoreWrite[] {
    const writes = this.layers.flatMap((l, i) => l.kv.planRestore(`layer${i}`, position, sections));
    if (this.theta) writes.push({ buffer: this.theta, offset: 0, data: sections.need('theta', this.theta.size) });
    if (this.pending) writes.push(...this.pending.planRestore('pending', position, sections));
    return writes;
  }

  kvBytesInUse(position: number): number {
    return this.layers.reduce((n, l) => n + l.kv.liveBytes(position), 0);
  }
}

function defaultMaxRows(c: E2EConfig): number {
  return c.numTttLayers > 0 ? Math.min(c.miniBatchSize, 512) : 64;
}

export const E2E_FAMILY: ModelFamily<E2EConfig> = {
  name: 'ttt-e2e',

  layout(caps, c, opts) {
    if (opts.innerLr !== undefined && !(Number.isFinite(opts.innerLr) && opts.innerLr >= 0)) throw new RangeError(`innerLr must be a finite number >= 0, got ${opts.innerLr}`);
    if (opts.innerClip !== undefined && !Number.isFinite(opts.innerClip)) throw new RangeError(`innerClip must be a finite number (<= 0: no clip), got ${opts.innerClip}`);
    return {
      maxRows: opts.maxRows ?? defaultMaxRows(c),
      maxBindingBytes: opts.maxBindingBytes ?? caps.maxStorageBufferBindingSize,
      storage: opts.weights === 'f32' ? 'f32' : caps.shaderF16 ? 'f16' : 'f16-packed',
      capacity: Infinity,
      // Blocks end at chunk boundaries, so a block that starts a chunk can record the previous chunk's update first.
      chunkSize: c.numTttLayers > 0 ? c.miniBatchSize : null,
    };
  },

  plan: e2ePlan,

  resize(c, opts, key, value) {
    const field = ({ sliding_window: 'slidingWindow', mini_batch_size: 'miniBatchSize', intermediate_size_static_mlp: 'intermediateSizeStaticMlp', intermediate_size_dynamic_mlp: 'intermediateSizeDynamicMlp', vocab_size: 'vocabSize' } as const)[key as 'sliding_window'];
    if (field) return { config: { ...c, [field]: value }, opts };
    if (key === 'maxRows') return { config: c, opts: { ...opts, maxRows: value } };
    return null;
  },

  deviceNeeds(c, opts, adapterBinding) {
    const d = c.hiddenSize, B = c.miniBatchSize, F = Math.max(c.intermediateSizeStaticMlp, c.intermediateSizeDynamicMlp);
    const maxRows = opts.maxRows ?? defaultMaxRows(c);
    const wbytes = opts.weights === 'f32' ? 4 : 2;
    const largestWeight = Math.max(c.vocabSize * d, 2 * c.intermediateSizeStaticMlp * d, 3 * d * d) * wbytes;
    const rows = Math.max(maxRows, c.numTttLayers > 0 ? B : 0);
    const largestActivation = 4 * rows * Math.max(2 * F, 3 * d, opts.allLogits ? c.vocabSize : 0);
    const theta = 4 * c.numTttLayers * thetaBlockFloats(c);
    return { largestBuffer: Math.max(largestActivation, theta, Math.min(largestWeight, adapterBinding)) };
  },

  prepare(ctx, config, layout, opts): ModelBuilder {
    const w = new E2EGpuWeights(ctx, config, layout.storage, layout.maxBindingBytes);
    return {
      tensorCount: w.tensorCount,
      write: (name, shape, data) => w.write(name, shape, data),
      finish: () => {
        const { modelId } = w.finish();
        return { model: new E2EModel(ctx, config, w, layout, opts), modelId };
      },
    };
  },
};
