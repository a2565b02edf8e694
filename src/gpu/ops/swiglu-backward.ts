/**
 * Backward of the SwiGLU MLP y = (silu(x W1^T) ⊙ (x W3^T)) W2^T, x [rows, d], W1, W3 [f, d], W2 [d, f]
 * ([out, in], as the checkpoint stores them; CPU twin swigluBackward in src/reference/e2e/backward.ts):
 * dx, dW1, dW2, dW3 from x and dy. Eight matmul.wgsl launches (every transpose is a choice of strides)
 * and one elementwise launch (shaders/swiglu-backward.wgsl), in this order:
 *
 *   h1 = x W1^T,  h3 = x W3^T,  hm = dy W2          (the forward's u and g recomputed; dm)
 *   gate: h1 ← du = dm ⊙ g ⊙ silu'(u),  h3 ← dg = dm ⊙ silu(u),  hm ← m = silu(u) ⊙ g
 *   dW2 = dy^T m,  dW1 = du^T x,  dW3 = dg^T x,  dx = du W1 + dg W3
 *
 * The row count is fixed at construction (a chunk: the dW launches contract over the rows). Weights and
 * gradients may sit at element offsets inside larger buffers (every layer's θ in one buffer); a gradient
 * must not share a buffer with anything the same launch reads.
 */
import source from '../../../shaders/swiglu-backward.wgsl?raw';
import type { BlockParams } from '../block.ts';
import { dispatch, grid, type GpuContext, type Kernel, type WeightStorage } from '../context.ts';
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
}

export interface SwigluBackwardBuffers {
  readonly x: Operand;
  readonly dy: Operand;
  readonly w1: Operand;
  readonly w2: Operand;
  readonly w3: Operand;
  readonly dx: Operand;
  /** Required unless spec.weightGrads is false. */
  readonly dw1?: Operand;
  readonly dw2?: Operand;
  readonly dw3?: Operand;
  /** Three [rows, f] f32 scratch buffers (u/du, g/dg, dm/m); made here when absent. */
  readonly scratch?: readonly [GPUBuffer, GPUBuffer, GPUBuffer];
}

export class SwigluBackwardOp {
  readonly scratch: readonly [GPUBuffer, GPUBuffer, GPUBuffer];
  private readonly before: MatmulOp[];
  private readonly after: MatmulOp[];
  private readonly gate: Kernel;
  private readonly gateGroup: GPUBindGroup;

  constructor(ctx: GpuContext, readonly label: string, readonly spec: SwigluBackwardSpec, bufs: SwigluBackwardBuffers, block: BlockParams, tiles?: { wide: MatmulTiles; narrow: MatmulTiles }) {
    const { rows, d, f } = spec;
    if (!(rows >= 1 && d >= 1 && f >= 1)) throw new RangeError(`${label}: rows ${rows}, d ${d}, f ${f}`);
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    this.scratch = bufs.scratch ?? [0, 1, 2].map((i) => ctx.allocator.create(`${label} h${i}`, 'scratch', 4 * rows * f, usage)) as unknown as [GPUBuffer, GPUBuffer, GPUBuffer];
    const [h1, h3, hm] = this.scratch;
    const x = split(bufs.x), dy = split(bufs.dy), w1 = split(bufs.w1), w2 = split(bufs.w2), w3 = split(bufs.w3);
    const grads = spec.weightGrads !== false;
    if (grads && !(bufs.dw1 && bufs.dw2 && bufs.dw3)) throw new Error(`${label}: weight gradients need dw1, dw2 and dw3`);
    const dx = split(bufs.dx);
    const accW = spec.accumulateGrads ? 1 : 0;
    const weight = spec.weight ?? 'f32';
    // Launches whose B operand is a weight read it in the weights' storage; the others are f32 activations.
    const mm = (name: string, s: MatmulSpec, a: GPUBuffer, b: GPUBuffer, c: GPUBuffer, bIsWeight = false) =>
      new MatmulOp(ctx, `${label} ${name}`, bIsWeight ? { ...s, weight } : s, { a, b, c }, block, tiles);
    this.before = [
      // u = x W1^T, g = x W3^T: [rows, f] = [rows, d] · [f, d]^T
      mm('u', { M: rows, N: f, K: d, a: { off: x.off, row: d, col: 1 }, b: { off: w1.off, row: d, col: 1 }, c: { row: f, col: 1 } }, x.buffer, w1.buffer, h1, true),
      mm('g', { M: rows, N: f, K: d, a: { off: x.off, row: d, col: 1 }, b: { off: w3.off, row: d, col: 1 }, c: { row: f, col: 1 } }, x.buffer, w3.buffer, h3, true),
      // dm = dy W2: B[n = j, k = i] = W2[i, j]
      mm('dm', { M: rows, N: f, K: d, a: { off: dy.off, row: d, col: 1 }, b: { off: w2.off, row: 1, col: f }, c: { row: f, col: 1 } }, dy.buffer, w2.buffer, hm, true),
    ];
    const dxLaunches = [
      // dx = du W1 + dg W3: B[n = i, k = j] = W1[j, i]
      mm('dx du', { M: rows, N: d, K: f, a: { row: f, col: 1 }, b: { off: w1.off, row: 1, col: d }, c: { off: dx.off, row: d, col: 1 }, beta: spec.accumulateDx ? 1 : 0 }, h1, w1.buffer, dx.buffer, true),
      mm('dx dg', { M: rows, N: d, K: f, a: { row: f, col: 1 }, b: { off: w3.off, row: 1, col: d }, c: { off: dx.off, row: d, col: 1 }, beta: 1 }, h3, w3.buffer, dx.buffer, true),
    ];
    if (!grads) {
      this.after = dxLaunches;
    } else {
      const dw1 = split(bufs.dw1!), dw2 = split(bufs.dw2!), dw3 = split(bufs.dw3!);
      this.after = [
        // dW2 [d, f] = dy^T m: A[m = i, k = t] = dy[t, i], B[n = j, k = t] = m[t, j]
        mm('dW2', { M: d, N: f, K: rows, a: { off: dy.off, row: 1, col: d }, b: { row: 1, col: f }, c: { off: dw2.off, row: f, col: 1 }, beta: accW }, dy.buffer, hm, dw2.buffer),
        // dW1 [f, d] = du^T x, dW3 = dg^T x
        mm('dW1', { M: f, N: d, K: rows, a: { row: 1, col: f }, b: { off: x.off, row: 1, col: d }, c: { off: dw1.off, row: d, col: 1 }, beta: accW }, h1, x.buffer, dw1.buffer),
        mm('dW3', { M: f, N: d, K: rows, a: { row: 1, col: f }, b: { off: x.off, row: 1, col: d }, c: { off: dw3.off, row: d, col: 1 }, beta: accW }, h3, x.buffer, dw3.buffer),
        ...dxLaunches,
      ];
    }
    this.gate = ctx.kernel({ shader: 'swiglu-backward.wgsl', source, entry: 'main', bindings: ['uniform', 'rw', 'rw', 'rw'] });
    this.gateGroup = ctx.bind(this.gate, [ctx.uniform(`${label} gate`, [['u32', rows * f]]), h1, h3, hm]);
  }

  /** Records the nine launches (six without weight gradients). */
  encode(pass: GPUComputePassEncoder): void {
    for (const op of this.before) op.encode(pass, this.spec.rows);
    const [x, y] = grid(Math.ceil((this.spec.rows * this.spec.f) / 64));
    dispatch(pass, this.gate, this.gateGroup, x, y);
    for (const op of this.after) op.encode(pass, this.spec.rows);
  }

  /** 8 matmuls of 2·rows·d·f each (16·rows·d·f), plus ~14 flops and one exp per hidden element. */
  flops(): number {
    const { rows, d, f } = this.spec;
    return (this.spec.weightGrads === false ? 10 : 16) * rows * d * f + 15 * rows * f;
  }
}
