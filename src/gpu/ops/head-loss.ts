/**
 * The next-token loss of a chunk and its gradient back to the residual stream, for inner training steps
 * (TTT-E2E's, and a sliding-window model learning with its top MLP): final RMSNorm, the LM head over
 * the vocabulary in tiles (never across a part of a split head matrix, at most `headTileColumns` wide),
 * cross-entropy over targets[targetOff + r] (BOS skipped), then dlogits → d(norm out) → d(stream).
 * Launches (rows fixed at B, read from the caller's chunk uniform by the ops that need it):
 *
 *   one tile:  logits (the final norm in its loads), loss and gradient (one launch), dx = dlogits·E, norm backward
 *   several:   per tile: logits, stats; finish; per tile: logits again, grad, dx += dlogits·E; norm backward
 *
 * CPU twin: E2EReference.head / headBackward with crossEntropyBackward (src/reference/e2e/).
 */
import type { BlockParams } from '../block.ts';
import type { GpuContext } from '../context.ts';
import type { WeightParts } from '../weights.ts';
import { CrossEntropyOp } from './e2e-cross-entropy.ts';
import { MatmulOp, type MatmulTiles } from './matmul.ts';
import { RmsNormBackwardOp } from './rmsnorm-backward.ts';

export interface HeadLossSpec {
  readonly rows: number;
  readonly d: number;
  readonly vocab: number;
  readonly eps: number;
  /** Targets equal to it do not count (null: all count). */
  readonly bos: number | null;
  /** Row r's target is targets[targetOff + r]. */
  readonly targetOff: number;
  readonly maxBindingBytes: number;
}

/** The widest vocabulary tile of the chunk's logits (a [rows, tile] f32 buffer), within the binding limit. */
export function headTileColumns(rows: number, vocab: number, maxBindingBytes: number): number {
  return Math.max(1, Math.min(vocab, 8192, Math.floor(maxBindingBytes / (4 * rows))));
}

/** The head's vocabulary tiles: at most `cap` columns, never across a part of the (split) head matrix. */
export function headTiles(E: WeightParts, cap: number): { v0: number; width: number; part: number }[] {
  const out: { v0: number; width: number; part: number }[] = [];
  E.parts.forEach((p, i) => {
    for (let v = p.row0; v < p.row0 + p.rows; v += cap) out.push({ v0: v, width: Math.min(cap, p.row0 + p.rows - v), part: i });
  });
  return out;
}

/** Every buffer a HeadLossOp allocates, in floats (for memory plans): category innerStep unless noted. */
export function headLossBuffers(s: Pick<HeadLossSpec, 'rows' | 'd' | 'vocab' | 'maxBindingBytes'>): { name: string; floats: number; category: 'innerStep' | 'scratch' }[] {
  const B = s.rows, d = s.d;
  return [
    { name: 'logits tile', floats: B * headTileColumns(B, s.vocab, s.maxBindingBytes), category: 'innerStep' },
    { name: 'nll', floats: B, category: 'innerStep' },
    { name: 'loss', floats: 1 + B, category: 'innerStep' },
    { name: 'cross-entropy stats', floats: 4 * B, category: 'innerStep' },
    { name: 'd head', floats: B * d, category: 'innerStep' },
    { name: 'final norm backward r', floats: B, category: 'scratch' },
  ];
}

/**
 * The stream's last step formed in the logits' loads instead of a launch of its own: x = resid +
 * post_norm(s) (TTT-E2E's top block's sandwich post-norm and residual add, MatmulSpec.aResid), written
 * to x by the first logits launch for the final norm's backward, whose launch also runs the post-norm's:
 * dx (the stream's gradient, resid's too) and ds.
 */
export interface HeadLossPost {
  /** The sublayer's output s [rows, d]. */
  readonly s: GPUBuffer;
  /** The stream before the add [rows, d] (not x). */
  readonly resid: GPUBuffer;
  /** The post-norm's gain [d]. */
  readonly gain: GPUBuffer;
  /** Where the post-norm's backward (chained into the final norm's, one launch) writes d s. */
  readonly ds: GPUBuffer;
}

export class HeadLossOp {
  /** f32 [1 + rows]: (#valid, each row's share of the mean loss), after encode (see CrossEntropyOp). */
  readonly loss: GPUBuffer;
  readonly tiles: readonly { v0: number; width: number; part: number }[];
  private readonly launches: ((pass: GPUComputePassEncoder) => void)[];
  /** The forward part alone: norm, logits and cross-entropy stats per tile, the finish (the loss). */
  private readonly lossLaunches: ((pass: GPUComputePassEncoder) => void)[];

  constructor(
    ctx: GpuContext, label: string, readonly spec: HeadLossSpec,
    io: { x: GPUBuffer; gain: GPUBuffer; head: WeightParts; targets: GPUBuffer; dx: GPUBuffer; post?: HeadLossPost },
    chunk: BlockParams, tiles: { wide: MatmulTiles; narrow: MatmulTiles },
  ) {
    const { rows: B, d, vocab: V, eps } = spec;
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const made = new Map(headLossBuffers(spec).filter((b) => b.category === 'innerStep').map((b) => [b.name, ctx.allocator.create(`${label}: ${b.name}`, 'innerStep', 4 * b.floats, usage)]));
    const buf = (n: string) => made.get(n)!;
    const logits = buf('logits tile'), dHead = buf('d head');
    this.loss = buf('loss');
    const cap = headTileColumns(B, V, spec.maxBindingBytes);
    this.tiles = headTiles(io.head, cap);
    const storage = io.head.storage;
    const ce = new CrossEntropyOp(ctx, `${label} cross-entropy`, { rows: B, vocab: V, tileList: this.tiles, ld: cap, bos: spec.bos, targetOff: spec.targetOff }, { logits, targets: io.targets, nll: buf('nll'), loss: this.loss, stats: buf('cross-entropy stats') }, chunk);
    // The final norm in the logits' loads (its output is not needed: the head is frozen, and the norm's
    // backward starts again from x); with io.post the stream itself too, stored by the first launch.
    const post = io.post;
    const logitsOp = (t: { v0: number; width: number; part: number }, write: boolean) => {
      const part = io.head.parts[t.part], off = (t.v0 - part.row0) * d;
      return new MatmulOp(ctx, `${label} logits [${t.v0}, +${t.width})`, {
        M: 'rows', N: t.width, K: d, a: { row: d, col: 1 }, b: { off, row: d, col: 1 }, c: { row: cap, col: 1 }, weight: storage,
        aNorm: { eps }, aResid: post ? { row: d, write } : undefined,
      }, post ? { a: post.s, b: part.buffer, c: logits, gain: io.gain, resid: post.resid, postGain: post.gain, residOut: io.x } : { a: io.x, b: part.buffer, c: logits, gain: io.gain }, chunk, tiles);
    };
    const mm = this.tiles.map((t, i) => {
      const part = io.head.parts[t.part], off = (t.v0 - part.row0) * d;
      return {
        logits: logitsOp(t, i === 0),
        // The gradient pass's recomputed tiles: the stream is already stored.
        again: logitsOp(t, false),
        // d xn (+)= dlogits_tile · E_tile: B[n = i, k = v] = E[v0 + v, i]
        back: new MatmulOp(ctx, `${label} head backward [${t.v0}, +${t.width})`, { M: 'rows', N: d, K: t.width, a: { row: cap, col: 1 }, b: { off, row: 1, col: d }, c: { row: d, col: 1 }, beta: t.v0 === 0 ? 0 : 1, weight: storage }, { a: logits, b: part.buffer, c: dHead }, chunk, tiles),
      };
    });
    const back = new RmsNormBackwardOp(ctx, `${label} final norm backward${post ? ' + post-norm backward' : ''}`, { n: d, eps, rows: B }, {
      x: io.x, gain: io.gain, dy: dHead, dx: io.dx, then: post && { x: post.s, gain: post.gain, dx: post.ds },
    }, chunk);
    if (mm.length === 1) {
      // One tile: the loss and the gradient in one launch (the loss alone costs the same).
      this.lossLaunches = [(pass) => mm[0].logits.encode(pass, B), (pass) => ce.encode(pass)];
      this.launches = [...this.lossLaunches, (pass) => mm[0].back.encode(pass, B), (pass) => back.encode(pass)];
    } else {
      this.lossLaunches = [
        ...mm.map((h, t) => (pass: GPUComputePassEncoder) => { h.logits.encode(pass, B); ce.encodeStats(pass, t); }),
        (pass) => ce.encodeFinish(pass),
      ];
      this.launches = [
        ...this.lossLaunches,
        // Each tile's logits are recomputed before its gradient.
        ...mm.map((h, t) => (pass: GPUComputePassEncoder) => { h.again.encode(pass, B); ce.encodeGrad(pass, t); h.back.encode(pass, B); }),
        (pass) => back.encode(pass),
      ];
    }
  }

  encode(pass: GPUComputePassEncoder): void {
    for (const launch of this.launches) launch(pass);
  }

  /** The loss only (`loss`), no gradient. */
  encodeLoss(pass: GPUComputePassEncoder): void {
    for (const launch of this.lossLaunches) launch(pass);
  }
}
