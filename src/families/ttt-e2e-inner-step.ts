/**
 * TTT-E2E's inner training step on the GPU, nothing read back (the math: the spec's "Inner loop"; the
 * CPU twin: E2EReference.chunkForward / chunkGradient and clipAndStep in src/reference/e2e/). Recorded
 * at the start of the block holding position (c + 1)B, it makes chunk c learn:
 *
 *   forward   the S TTT blocks over the chunk's B rows from its kept h_pre, with the θ that produced its
 *             logits; the K/V of the W − 1 positions before the chunk are read from each block's ring
 *             (constants); every activation the backward needs goes to one tape, which holds one block.
 *   loss      final norm, tied head (vocabulary tiles), cross-entropy over targets pending[1 .. B]
 *             (targets equal to BOS skipped).
 *   backward  through the head, the final norm, then block by block from the top (a lower block's tape
 *             is recomputed from its input first): sandwich norms, static MLP (frozen: dx only), dynamic
 *             MLP (dθ), attention (flash-style, from the saved log-sum-exp), RoPE, q/k norm, q|k|v.
 *   update    one global-norm clip over every TTT block's dθ, SGD in place: θ ← θ − η·c·dθ, and the
 *             learning log's record (one launch).
 *
 * Its own block uniform says (B, cB), so every op here is built once with the chunk's shape.
 */
import type { E2EConfig } from '../model/e2e-config.ts';
import { BlockParams } from '../gpu/block.ts';
import type { GpuContext } from '../gpu/context.ts';
import type { WeightParts } from '../gpu/weights.ts';
import { ClipSgdOp } from '../gpu/ops/e2e-clip-sgd.ts';
import { HeadLossOp } from '../gpu/ops/head-loss.ts';
import { E2EAttentionBackwardOp, E2EAttentionOp, kvRingOf, type RowView } from '../gpu/ops/e2e-attention.ts';
import type { PendingChunk } from '../gpu/ops/e2e-keep.ts';
import type { KvCache } from '../gpu/ops/kv-cache.ts';
import { LinearOp } from '../gpu/ops/linear.ts';
import { MatmulOp, type MatmulTiles } from '../gpu/ops/matmul.ts';
import { RmsNormBackwardOp } from '../gpu/ops/rmsnorm-backward.ts';
import { RmsNormOp } from '../gpu/ops/rmsnorm.ts';
import { SwigluBackwardOp } from '../gpu/ops/swiglu-backward.ts';
import type { E2EGpuWeights } from './ttt-e2e-weights.ts';
import { thetaBlockFloats } from './ttt-e2e-weights.ts';
import { LEARNING_LOG_FLOATS, LEARNING_LOG_SLOTS } from './learning-log.ts';

/** The [rows, width] buffers of the inner step, by name (sizes for the memory plan too; the loss's own: headLossBuffers). */
export function innerStepBuffers(c: E2EConfig): { name: string; floats: number }[] {
  const B = c.miniBatchSize, d = c.hiddenSize, F = Math.max(c.intermediateSizeStaticMlp, c.intermediateSizeDynamicMlp);
  const rowsOf = (name: string, width: number) => ({ name, floats: B * width });
  return [
    ...['ao', 'h1', 'b', 'y', 'h2', 'z'].map((n) => rowsOf(`tape ${n}`, d)),
    // o, then its gradient: the attention backward reads both from one binding.
    rowsOf('tape o | d o', 2 * d),
    rowsOf('tape q|k|v (before the q/k norm)', 3 * d),
    rowsOf('tape q|k|v (q, k normed and roped)', 3 * d),
    rowsOf('tape gate|up', 2 * c.intermediateSizeStaticMlp),
    rowsOf('tape dyn gate|up', 2 * c.intermediateSizeDynamicMlp),
    { name: 'tape attention lse', floats: B * c.numHeads * 2 },
    ...Array.from({ length: c.numTttLayers }, (_, j) => rowsOf(`block ${c.firstTttLayer + j} output`, d)),
    ...['d stream', 'd post-norm', 'd norm out'].map((n) => rowsOf(n, d)),
    rowsOf('d q|k|v', 3 * d),
    rowsOf('swiglu backward dm', F),
    { name: 'dθ', floats: c.numTttLayers * thetaBlockFloats(c) },
    { name: 'learning log', floats: LEARNING_LOG_FLOATS * LEARNING_LOG_SLOTS },
  ];
}

/** One recorded launch (or a few) of the chunk, its shape fixed at construction. */
type Launch = (pass: GPUComputePassEncoder) => void;

interface BlockStep {
  forward: Launch[];
  backward: Launch[];
}

export class E2EInnerStep {
  /** f32 [LEARNING_LOG_SLOTS, LEARNING_LOG_FLOATS]: per update (loss before the step, #valid targets, ||dθ||, clip scale, loss after or NaN). */
  readonly log: GPUBuffer;
  private readonly clip: ClipSgdOp;
  private readonly chunk: BlockParams;
  private readonly blocks: BlockStep[];
  private readonly head: Launch[];
  /** With lossAfterStep: the chunk's loss again with the new θ (a forward, no backward), logged beside the first. */
  private readonly after: Launch[];

  constructor(
    ctx: GpuContext, readonly config: E2EConfig, w: E2EGpuWeights,
    io: { theta: GPUBuffer; pending: PendingChunk; kv: readonly KvCache[] },
    opts: { tiles: { wide: MatmulTiles; narrow: MatmulTiles }; maxBindingBytes: number; innerLr: number; clip: number; lossAfterStep?: boolean },
  ) {
    const c = config, B = c.miniBatchSize, d = c.hiddenSize, H = c.numHeads, hd = c.headDim, eps = c.rmsNormEps;
    const f = c.intermediateSizeStaticMlp, fd = c.intermediateSizeDynamicMlp, S = c.numTttLayers, V = c.vocabSize;
    const tiles = opts.tiles;
    const chunk = (this.chunk = new BlockParams(ctx));
    const bufs = new Map<string, GPUBuffer>();
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    for (const b of innerStepBuffers(c)) bufs.set(b.name, ctx.allocator.create(`inner step: ${b.name}`, 'innerStep', 4 * b.floats, usage));
    const buf = (name: string) => bufs.get(name)!;
    const one = (m: WeightParts, label: string) => {
      if (m.parts.length !== 1) throw new RangeError(`TTT-E2E's inner step reads ${label} as one binding; at ${m.rows}x${m.cols} it is split in ${m.parts.length} (raise maxBindingBytes or use f16 weights)`);
      return m.parts[0].buffer;
    };
    this.log = buf('learning log');

    const [ao, h1, bN, y, h2, z] = ['ao', 'h1', 'b', 'y', 'h2', 'z'].map((n) => buf(`tape ${n}`));
    const oDo = buf('tape o | d o');
    const qkvRaw = buf('tape q|k|v (before the q/k norm)'), qkvR = buf('tape q|k|v (q, k normed and roped)');
    // Each MLP's gate|up stays on the tape for its backward (which overwrites it with du|dg).
    const gu = buf('tape gate|up'), guDyn = buf('tape dyn gate|up'), lse = buf('tape attention lse');
    const res = [io.pending.hPre, ...Array.from({ length: S }, (_, j) => buf(`block ${c.firstTttLayer + j} output`))];
    const dRes = buf('d stream'), dPost = buf('d post-norm'), dIn = buf('d norm out');
    const dqkv = buf('d q|k|v');
    const dm = buf('swiglu backward dm');
    const dTheta = buf('dθ');
    const view = (buffer: GPUBuffer, stride: number, offset = 0): RowView => ({ buffer, stride, offset });
    // A post-norm with the residual add, and with `next` the next sublayer's pre-norm of the new stream in the same launch.
    const norm = (label: string, weight: GPUBuffer, x: GPUBuffer, out: GPUBuffer, residual?: GPUBuffer, next?: { weight: GPUBuffer; y: GPUBuffer }) =>
      new RmsNormOp(ctx, label, { n: d, eps, inStride: d, outStride: d }, { weight, x, y: out, residual, next }, chunk);
    // With `then`, the backward of the post-norm below in the same launch (its dy: this one's dx).
    const normBack = (label: string, x: GPUBuffer, gain: GPUBuffer, dy: GPUBuffer, dx: GPUBuffer, accumulateDx = false, then?: { x: GPUBuffer; gain: GPUBuffer; dx: GPUBuffer }): Launch => {
      const op = new RmsNormBackwardOp(ctx, label, { n: d, eps, rows: B, accumulateDx }, { x, gain, dy, dx, then }, chunk);
      return (pass) => op.encode(pass);
    };
    // Every op reads the chunk uniform (B rows at cB); `rows` and pos0 given here only pass the ops' range checks.
    const rows = (op: { encode(pass: GPUComputePassEncoder, rows: number, pos0: number): void }): Launch => (pass) => op.encode(pass, B, 0);
    const storage = w.embeddings.storage;
    const swigluBack = (...args: ConstructorParameters<typeof SwigluBackwardOp>): Launch => {
      const op = new SwigluBackwardOp(...args);
      return (pass) => op.encode(pass);
    };
    const attnSpec = { heads: H, headDim: hd, window: c.slidingWindow, maxRows: B };
    // The SwiGLU runs in the down projections' loads on every adapter: on CPU emulators the register tiles
    // recompute it per column tile, which cost a chunk's prefill no more than the VM's noise (4K tokens of
    // the bench model: 3.2-3.4 s either way, 2026-12-04), and it saves two launches per chunk.

    this.blocks = Array.from({ length: S }, (_, j) => {
      const i = c.firstTttLayer + j, lw = w.layers[i], L = `inner step block ${i}`;
      const ring = kvRingOf(io.kv[i]);
      const th = thetaBlockFloats(c) * j;
      // q, k normed and roped, v: what the attention reads (written by its forward, read by its backward).
      const q = view(qkvR, 3 * d, 0), k = view(qkvR, 3 * d, d), v = view(qkvR, 3 * d, 2 * d);
      const o = view(oDo, d), dO = view(oDo, d, B * d);
      // The q/k norm and RoPE run in the attention's loads, from the projection's q|k|v.
      const attention = new E2EAttentionOp(ctx, `${L} q/k norm + rope + attention`, attnSpec, {
        q: view(qkvRaw, 3 * d, 0), k: view(qkvRaw, 3 * d, d), v: view(qkvRaw, 3 * d, 2 * d), ring, o, stats: lse,
        norm: { gain: lw.qkNorm, eps, ropeTheta: c.ropeTheta, out: { q, k, v } },
      }, chunk);
      const forward = [
        // The attention's normed input is not on the tape (the backward needs only the stream): the norm runs in q|k|v's loads.
        rows(new LinearOp(ctx, `${L} q|k|v`, lw.qkv, { x: res[j], y: qkvRaw }, { inStride: d, outStride: 3 * d, norm: { gain: lw.attnNorm, eps } }, chunk, tiles)),
        rows(attention),
        rows(new LinearOp(ctx, `${L} o_proj`, lw.oProj, { x: oDo, y: ao }, { inStride: d, outStride: d }, chunk, tiles)),
        rows(norm(`${L} attn_post_norm + dyn_norm`, lw.attnPostNorm, ao, h1, res[j], { weight: lw.dynNorm!, y: bN })),
        rows(new MatmulOp(ctx, `${L} dyn w1|w3`, { M: 'rows', N: 2 * fd, K: d, a: { row: d, col: 1 }, b: { off: th, row: d, col: 1 }, c: { row: 2 * fd, col: 1 } }, { a: bN, b: io.theta, c: guDyn }, chunk, tiles)),
        rows(new MatmulOp(ctx, `${L} dyn w2 (swiglu fused)`, {
          M: 'rows', N: d, K: fd, a: { row: 2 * fd, col: 1 }, b: { off: th + 2 * fd * d, row: fd, col: 1 }, c: { row: d, col: 1 }, aGlu: fd,
        }, { a: guDyn, b: io.theta, c: y }, chunk, tiles)),
        // h2 = h1 + dyn_post_norm(y) and its mlp_norm in the frozen MLP's loads (its backward needs neither
        // normed input: the gate|up stays on the tape, and it has no weight gradients); h2 stored for the
        // backward and the head.
        rows(new LinearOp(ctx, `${L} mlp w1|w3 (dyn_post_norm + mlp_norm fused)`, lw.gateUp, { x: y, y: gu }, {
          inStride: d, outStride: 2 * f, norm: { gain: lw.mlpNorm, eps }, residual: { from: h1, to: h2, gain: lw.dynPostNorm!, stride: d, write: true },
        }, chunk, tiles)),
        rows(new LinearOp(ctx, `${L} mlp w2 (swiglu fused)`, lw.down, { x: gu, y: z }, { inStride: 2 * f, outStride: d, glu: f }, chunk, tiles)),
        // The top block's last post-norm and residual add run in the head's loads (HeadLossOp's post).
        ...(j < S - 1 ? [rows(norm(`${L} mlp_post_norm`, lw.mlpPostNorm, z, res[j + 1], h2))] : []),
      ];
      const gateUp = one(lw.gateUp, `${L} mlp w1|w3`);
      const backward = [
        // static MLP (frozen): out = h2 + post(swiglu(mlp_norm(h2))); the top block's post-norm backward ran in the head's last launch.
        ...(j < S - 1 ? [normBack(`${L} mlp_post_norm backward`, z, lw.mlpPostNorm, dRes, dPost)] : []),
        swigluBack(ctx, `${L} mlp backward`, { rows: B, d, f, weight: storage, weightGrads: false, ugFromForward: true }, {
          dy: dPost, w1: { buffer: gateUp, off: 0 }, w3: { buffer: gateUp, off: f * d }, w2: one(lw.down, `${L} mlp w2`), dx: dIn, scratch: [gu, dm],
        }, chunk, tiles),
        // dynamic MLP: h2 = h1 + dyn_post(swiglu_θ(dyn_norm(h1))); its post-norm's backward in the mlp_norm's launch
        normBack(`${L} mlp_norm + dyn_post_norm backward`, h2, lw.mlpNorm, dIn, dRes, true, { x: y, gain: lw.dynPostNorm!, dx: dPost }),
        swigluBack(ctx, `${L} dyn backward`, { rows: B, d, f: fd, ugFromForward: true }, {
          x: bN, dy: dPost,
          w1: { buffer: io.theta, off: th }, w3: { buffer: io.theta, off: th + fd * d }, w2: { buffer: io.theta, off: th + 2 * fd * d },
          dx: dIn, dw1: { buffer: dTheta, off: th }, dw3: { buffer: dTheta, off: th + fd * d }, dw2: { buffer: dTheta, off: th + 2 * fd * d }, scratch: [guDyn, dm],
        }, chunk, tiles),
        // attention: h1 = h + attn_post(o_proj(attn(rope(qk_norm(a Wq^T)), rope(qk_norm(a Wk^T)), a Wv^T))); its post-norm's backward in the dyn_norm's launch
        normBack(`${L} dyn_norm + attn_post_norm backward`, h1, lw.dynNorm!, dIn, dRes, true, { x: ao, gain: lw.attnPostNorm, dx: dPost }),
        rows(new MatmulOp(ctx, `${L} o_proj backward`, { M: 'rows', N: d, K: d, a: { row: d, col: 1 }, b: { row: 1, col: d }, c: { off: B * d, row: d, col: 1 }, weight: storage }, { a: dPost, b: one(lw.oProj, `${L} o_proj`), c: oDo }, chunk, tiles)),
        // The RoPE's and the q/k norm's backward as dq and dk are stored: the gradients of the pre-norm q|k|v.
        rows(new E2EAttentionBackwardOp(ctx, `${L} attention + rope + q/k norm backward`, attnSpec, {
          q, k, v, ring, o, dO, stats: lse, dq: view(dqkv, 3 * d, 0), dk: view(dqkv, 3 * d, d), dv: view(dqkv, 3 * d, 2 * d),
          norm: { q: view(qkvRaw, 3 * d, 0), k: view(qkvRaw, 3 * d, d), gain: lw.qkNorm, eps, ropeTheta: c.ropeTheta },
        }, chunk)),
        rows(new MatmulOp(ctx, `${L} q|k|v backward`, { M: 'rows', N: d, K: 3 * d, a: { row: 3 * d, col: 1 }, b: { row: 1, col: d }, c: { row: d, col: 1 }, weight: storage }, { a: dqkv, b: one(lw.qkv, `${L} q|k|v`), c: dIn }, chunk, tiles)),
        // The lowest TTT block's input is a constant (h_pre): its gradient is not needed.
        ...(j > 0 ? [normBack(`${L} attn_norm backward`, res[j], lw.attnNorm, dIn, dRes, true)] : []),
      ];
      return { forward, backward };
    });

    // The loss: final norm, the tied head tile by tile, cross-entropy over pending[1 .. B], and its gradient back to the stream.
    const head = new HeadLossOp(ctx, 'inner step', { rows: B, d, vocab: V, eps, bos: c.bosTokenId, targetOff: 1, maxBindingBytes: opts.maxBindingBytes }, {
      x: res[S], gain: w.finalNorm, head: w.embeddings, targets: io.pending.tokens, dx: dRes,
      post: { s: buf('tape z'), resid: buf('tape h2'), gain: w.layers[c.firstTttLayer + S - 1].mlpPostNorm, ds: buf('d post-norm') },
    }, chunk, tiles);
    this.head = [(pass) => head.encode(pass)];
    const loss = head.loss;

    this.clip = new ClipSgdOp(ctx, 'inner step clip + SGD', [{ theta: io.theta, grad: dTheta, n: S * thetaBlockFloats(c) }], {
      lr: opts.innerLr, maxNorm: opts.clip, record: { loss, log: this.log, slots: LEARNING_LOG_SLOTS, chunk: B, block: chunk },
    });
    // Nothing but the tape and the loss is written by a forward here (the chunk's own K/V stay in the
    // tape, the ring is only read), so measuring again changes no state.
    const recordAfter = this.clip.recorder('inner step log (after)', { loss, log: this.log, slots: LEARNING_LOG_SLOTS, chunk: B }, chunk, true);
    this.after = opts.lossAfterStep ? [...this.blocks.flatMap((b) => b.forward), (pass) => head.encodeLoss(pass), recordAfter] : [];
  }

  /** Records chunk `c0 / B`'s update (c0: its first position); the pending tokens' slot B must hold its last target. */
  encode(pass: GPUComputePassEncoder, c0: number): void {
    this.chunk.write(this.config.miniBatchSize, c0);
    const S = this.blocks.length;
    for (const b of this.blocks) for (const launch of b.forward) launch(pass);
    for (const launch of this.head) launch(pass);
    for (let j = S - 1; j >= 0; j--) {
      // The tape holds the top block after the forward; every lower one is recomputed from its input.
      if (j < S - 1) for (const launch of this.blocks[j].forward) launch(pass);
      for (const launch of this.blocks[j].backward) launch(pass);
    }
    this.clip.encode(pass);
    for (const launch of this.after) launch(pass);
  }
}
