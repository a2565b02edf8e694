/**
 * RMSNorm backward (see shaders/rmsnorm-backward.wgsl; CPU twin rmsnormBackward in
 * src/reference/e2e/backward.ts): dx per row, then, when a `dgain` buffer is given, the gain gradient
 * summed over the rows from the per-row r that the dx launch keeps.
 */
import source from '../../../shaders/rmsnorm-backward.wgsl?raw';
import type { BlockParams } from '../block.ts';
import { dispatch, grid, type GpuContext, type Kernel } from '../context.ts';

export interface RmsNormBackwardSpec {
  /** Width of a row. */
  readonly n: number;
  readonly eps: number;
  /** Rows; with `blockRows`, the most rows a launch may have. */
  readonly rows: number;
  /** Take the row count from the block uniform at run time (≤ rows). */
  readonly blockRows?: boolean;
  /** Row strides and first elements of x, dy and dx (default: n and 0). */
  readonly xStride?: number;
  readonly xOff?: number;
  readonly dyStride?: number;
  readonly dyOff?: number;
  readonly dxStride?: number;
  readonly dxOff?: number;
  /** dx += the norm's input gradient (a residual stream's gradient already there), instead of dx =. */
  readonly accumulateDx?: boolean;
  /** dgain += Σ_rows ..., instead of dgain =. */
  readonly accumulateDgain?: boolean;
}

export interface RmsNormBackwardBuffers {
  /** The forward's input [rows, n]. */
  readonly x: GPUBuffer;
  /** The gain [n]. */
  readonly gain: GPUBuffer;
  /** The gradient w.r.t. the forward's output. */
  readonly dy: GPUBuffer;
  /** The gradient w.r.t. x (a different buffer from dy). */
  readonly dx: GPUBuffer;
  /** The gradient w.r.t. the gain [n]; absent: not computed. */
  readonly dgain?: GPUBuffer;
  /** f32 [rows] scratch for r; made here when absent. */
  readonly rstd?: GPUBuffer;
  /**
   * In the same launch, the backward of a second norm whose output gradient is this one's dx (after any
   * accumulation): dx2 = the gradient w.r.t. its input x2 ([rows, n], stride n; dx2 likewise), gain2 its
   * gain (no gain gradient).
   */
  readonly then?: { readonly x: GPUBuffer; readonly gain: GPUBuffer; readonly dx: GPUBuffer };
}

export class RmsNormBackwardOp {
  readonly rstd: GPUBuffer;
  private readonly dxKernel: Kernel;
  private readonly dgKernel: Kernel;
  private readonly dxGroup: GPUBindGroup;
  private readonly dgGroup: GPUBindGroup | null;

  constructor(ctx: GpuContext, readonly label: string, readonly spec: RmsNormBackwardSpec, bufs: RmsNormBackwardBuffers, block: BlockParams) {
    const { n, rows } = spec;
    if (bufs.dx === bufs.dy) throw new Error(`${label}: dx and dy must be different buffers`);
    const then = bufs.then;
    if (then && [bufs.x, bufs.dy, bufs.dx, then.x].includes(then.dx)) throw new Error(`${label}: the second norm's dx must be a buffer of its own`);
    this.dxKernel = ctx.kernel({
      shader: 'rmsnorm-backward.wgsl', source, entry: 'dx_rows',
      bindings: ['uniform', 'uniform', 'read', 'read', 'read', 'rw', 'rw', ...(then ? ['read', 'read', 'rw'] as const : [])], defines: { DX: true, THEN: !!then },
    });
    this.dgKernel = ctx.kernel({ shader: 'rmsnorm-backward.wgsl', source, entry: 'dgain_cols', bindings: ['uniform', 'uniform', 'read', 'read', 'read', 'rw'], defines: { DGAIN: true } });
    this.rstd = bufs.rstd ?? ctx.allocator.create(`${label} rstd`, 'scratch', 4 * rows, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    const fields = (accumulate: boolean) => ctx.uniform(`${label} params`, [
      ['u32', n], ['u32', rows], ['u32', (spec.blockRows ? 1 : 0) | (accumulate ? 2 : 0)], ['f32', spec.eps],
      ['u32', spec.xStride ?? n], ['u32', spec.xOff ?? 0], ['u32', spec.dyStride ?? n], ['u32', spec.dyOff ?? 0],
      ['u32', spec.dxStride ?? n], ['u32', spec.dxOff ?? 0], ['u32', 0], ['u32', 0],
    ]);
    this.dxGroup = ctx.bind(this.dxKernel, [fields(!!spec.accumulateDx), block.buffer, bufs.x, bufs.gain, bufs.dy, bufs.dx, this.rstd, ...(then ? [then.x, then.gain, then.dx] : [])]);
    this.dgGroup = bufs.dgain ? ctx.bind(this.dgKernel, [fields(!!spec.accumulateDgain), block.buffer, bufs.x, bufs.dy, this.rstd, bufs.dgain]) : null;
  }

  /** dx (and dgain when it has a buffer); `rows`: the launch's row count (default spec.rows). */
  encode(pass: GPUComputePassEncoder, rows = this.spec.rows): void {
    if (rows > this.spec.rows) throw new RangeError(`${this.label}: ${rows} rows, made for at most ${this.spec.rows}`);
    const [x, y] = grid(rows);
    dispatch(pass, this.dxKernel, this.dxGroup, x, y);
    if (this.dgGroup) dispatch(pass, this.dgKernel, this.dgGroup, Math.ceil(this.spec.n / 64));
  }

  /** ~6 flops per element for dx (two reductions, the two-term output) and 3 for dgain. */
  flops(rows = this.spec.rows): number {
    return (this.dgGroup ? 9 : 6) * rows * this.spec.n;
  }
}
