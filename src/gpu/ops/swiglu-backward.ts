/**
 * Backward of the SwiGLU MLP y = (silu(x W1^T) ⊙ (x W3^T)) W2^T, x [rows, d], W1, W3 [f, d], W2 [d, f]
 * ([out, in], as the checkpoint stores them; CPU twin swigluBackward in src/reference/e2e/backward.ts):
 * dx, dW1, dW2, dW3 from x and dy, all matmul.wgsl launches (every transpose is a choice of strides),
 * in this order:
 *
 *   [u | g] = x [W1; W3]^T                       (the forward's gate|up, unless handed in)
 *   hm = dy W2, and in its epilogue (C_GLU_BACK): u ← du = dm ⊙ g ⊙ silu'(u),  g ← dg = dm ⊙ silu(u),
 *                                                 hm ← m = silu(u) ⊙ g
 *   dW2 = dy^T m,  [dW1; dW3] = [du | dg]^T x,  dx = [du | dg] [W1; W3]
 *
 * u and g share one [rows, 2f] scratch (row-major, u first), so where W3 directly follows W1 in one
 * buffer (the checkpoint's fused gate|up, a block of θ) and dW3 follows dW1, each pair is one launch of
 * twice the width: 5 launches with the weight gradients, 3 without (8 and 5 when the pairs are apart);
 * one fewer when the forward's [u | g] is handed in (spec.ugFromForward).
 *
 * The row count is fixed at construction (a chunk: the dW launches contract over the rows). Weights and
 * gradients may sit at element offsets inside larger buffers (every layer's θ in one buffer); a gradient
 * must not share a buffer with anything the same launch reads.
 */
import type { BlockParams } from '../block.ts';
import type { GpuContext, WeightStorage } from '../context.ts';
import { MatmulOp, type MatmulSpec, type MatmulTiles } from './matmul.ts';

/** A tensor: a whole buffer, or one starting at an element offset of a buffer. */
export type Operand = GPUBuffer | { readonly buffer: GPUBuffer; readonly off: number };

function split(t: Operand): { buffer: GPUBuffer; off: number } {
  return 'off' in t ? t : { buffer: t, off: 0 };
}

export interface SwigluBackwardSpec {
  readonly rows: number;
  readonly d: number;
  readonly f: number;
  /** dx += (a residual gradient already there) instead of dx =. */
  readonly accumulateDx?: boolean;
  /** dW1, dW2, dW3 += instead of =. */
  readonly accumulateGrads?: boolean;
  /** How W1, W2, W3 are stored (default f32; a frozen checkpoint MLP may be f16). */
  readonly weight?: WeightStorage;
  /** false: dx only (a frozen MLP the gradient passes through): the three dW launches are not recorded. Default true. */
  readonly weightGrads?: boolean;
  /**
   * scratch[0] already holds the forward's [u | g] = x [W1; W3]^T (a tape kept from the forward, which
   * this op then overwrites): its launch is not recorded.
   */
  readonly ugFromForward?: boolean;
}

export interface SwigluBackwardBuffers {
  /** The MLP's input; only read to recompute [u | g] or for dW1, dW3 (not needed by a frozen MLP with ugFromForward). */
  readonly x?: Operand;
  readonly dy: Operand;
  readonly w1: Operand;
  readonly w2: Operand;
  readonly w3: Operand;
  readonly dx: Operand;
  /** Required unless spec.weightGrads is false. */
  readonly dw1?: Operand;
  readonly dw2?: Operand;
  readonly dw3?: Operand;
  /** f32 scratch: [rows, 2f] (u|g, then du|dg) and [rows, f] (dm, then m); made here when absent. */
  readonly scratch?: readonly [GPUBuffer, GPUBuffer];
}

export class SwigluBackwardOp {
  readonly scratch: readonly [GPUBuffer, GPUBuffer];
  private readonly before: MatmulOp[];
  private readonly after: MatmulOp[];

  constructor(ctx: GpuContext, readonly label: string, readonly spec: SwigluBackwardSpec, bufs: SwigluBackwardBuffers, block: BlockParams, tiles?: { wide: MatmulTiles; narrow: MatmulTiles }) {
    const { rows, d, f } = spec;
    if (!(rows >= 1 && d >= 1 && f >= 1)) throw new RangeError(`${label}: rows ${rows}, d ${d}, f ${f}`);
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    this.scratch = bufs.scratch ?? [ctx.allocator.create(`${label} u|g`, 'scratch', 8 * rows * f, usage), ctx.allocator.create(`${label} dm`, 'scratch', 4 * rows * f, usage)];
    const [ug, hm] = this.scratch;
    if (ug.size < 8 * rows * f || hm.size < 4 * rows * f) throw new RangeError(`${label}: the scratch must hold ${rows}×${2 * f} and ${rows}×${f} floats`);
    const grads = spec.weightGrads !== false;
    if (!bufs.x && (grads || !spec.ugFromForward)) throw new Error(`${label}: x is needed (for [u | g] or the weight gradients)`);
    // Without x no launch reads it (checked above); dy stands in so the views below need no case of their own.
    const x = split(bufs.x ?? bufs.dy), dy = split(bufs.dy), w1 = split(bufs.w1), w2 = split(bufs.w2), w3 = split(bufs.w3);
    if (grads && !(bufs.dw1 && bufs.dw2 && bufs.dw3)) throw new Error(`${label}: weight gradients need dw1, dw2 and dw3`);
    const dx = split(bufs.dx);
    const accW = spec.accumulateGrads ? 1 : 0;
    const weight = spec.weight ?? 'f32';
    // Launches whose B operand is a weight read it in the weights' storage; the others are f32 activations.
    const mm = (name: string, s: MatmulSpec, a: GPUBuffer, b: GPUBuffer, c: GPUBuffer, bIsWeight = false) =>
      new MatmulOp(ctx, `${label} ${name}`, bIsWeight ? { ...s, weight } : s, { a, b, c }, block, tiles);
    const adjacent = (p: { buffer: GPUBuffer; off: number }, q: { buffer: GPUBuffer; off: number }) => p.buffer === q.buffer && q.off === p.off + f * d;
    const w13 = adjacent(w1, w3);
    // [u | g] = x [W1; W3]^T: [rows, 2f] = [rows, d] · [2f, d]^T (or each half on its own).
    if (spec.ugFromForward && !bufs.scratch) throw new Error(`${label}: ugFromForward needs the forward's [u | g] as scratch[0]`);
    const gateUp = spec.ugFromForward ? [] : w13
      ? [mm('u|g', { M: rows, N: 2 * f, K: d, a: { off: x.off, row: d, col: 1 }, b: { off: w1.off, row: d, col: 1 }, c: { row: 2 * f, col: 1 } }, x.buffer, w1.buffer, ug, true)]
      : [w1, w3].map((w, i) => mm(i === 0 ? 'u' : 'g', { M: rows, N: f, K: d, a: { off: x.off, row: d, col: 1 }, b: { off: w.off, row: d, col: 1 }, c: { off: i * f, row: 2 * f, col: 1 } }, x.buffer, w.buffer, ug, true));
    this.before = [
      ...gateUp,
      // dm = dy W2: B[n = j, k = i] = W2[i, j]; the elementwise gate in its epilogue: u|g → du|dg, dm → m.
      new MatmulOp(ctx, `${label} dm + gate`, { M: rows, N: f, K: d, a: { off: dy.off, row: d, col: 1 }, b: { off: w2.off, row: 1, col: f }, c: { row: f, col: 1 }, weight, cGluBack: true }, { a: dy.buffer, b: w2.buffer, c: hm, ug }, block, tiles),
    ];
    // dx = [du | dg] [W1; W3]: B[n = i, k = j] = W13[j, i]
    const dxLaunches = w13
      ? [mm('dx', { M: rows, N: d, K: 2 * f, a: { row: 2 * f, col: 1 }, b: { off: w1.off, row: 1, col: d }, c: { off: dx.off, row: d, col: 1 }, beta: spec.accumulateDx ? 1 : 0 }, ug, w1.buffer, dx.buffer, true)]
      : [w1, w3].map((w, i) => mm(i === 0 ? 'dx du' : 'dx dg', {
        M: rows, N: d, K: f, a: { off: i * f, row: 2 * f, col: 1 }, b: { off: w.off, row: 1, col: d }, c: { off: dx.off, row: d, col: 1 }, beta: i === 1 || spec.accumulateDx ? 1 : 0,
      }, ug, w.buffer, dx.buffer, true));
    if (!grads) {
      this.after = dxLaunches;
    } else {
      const dw1 = split(bufs.dw1!), dw2 = split(bufs.dw2!), dw3 = split(bufs.dw3!);
      // [dW1; dW3] [2f, d] = [du | dg]^T x: A[m = j, k = t] = ug[t, j], B[n = i, k = t] = x[t, i]
      const dw13 = w13 && adjacent(dw1, dw3)
        ? [mm('dW1|dW3', { M: 2 * f, N: d, K: rows, a: { row: 1, col: 2 * f }, b: { off: x.off, row: 1, col: d }, c: { off: dw1.off, row: d, col: 1 }, beta: accW }, ug, x.buffer, dw1.buffer)]
        : [dw1, dw3].map((dw, i) => mm(i === 0 ? 'dW1' : 'dW3', {
          M: f, N: d, K: rows, a: { off: i * f, row: 1, col: 2 * f }, b: { off: x.off, row: 1, col: d }, c: { off: dw.off, row: d, col: 1 }, beta: accW,
        }, ug, x.buffer, dw.buffer));
      this.after = [
        // dW2 [d, f] = dy^T m: A[m = i, k = t] = dy[t, i], B[n = j, k = t] = m[t, j]
        mm('dW2', { M: d, N: f, K: rows, a: { off: dy.off, row: 1, col: d }, b: { row: 1, col: f }, c: { off: dw2.off, row: f, col: 1 }, beta: accW }, dy.buffer, hm, dw2.buffer),
        ...dw13,
        ...dxLaunches,
      ];
    }
  }

  /** Records the launches (see the file comment for how many). */
  encode(pass: GPUComputePassEncoder): void {
    for (const op of [...this.before, ...this.after]) op.encode(pass, this.spec.rows);
  }

  /** Launches encode records. */
  dispatches(): number {
    return this.before.length + this.after.length;
  }

  /** 8 matmuls of 2·rows·d·f each (16·rows·d·f), plus ~14 flops and one exp per hidden element. */
  flops(): number {
    const { rows, d, f } = this.spec;
    return (this.spec.weightGrads === false ? 10 : 16) * rows * d * f + 15 * rows * f;
  }
}
