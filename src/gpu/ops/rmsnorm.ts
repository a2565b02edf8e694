/** RMSNorm launch (see shaders/rmsnorm.wgsl): rows of `segments` vectors of width n. */
import source from '../../../shaders/rmsnorm.wgsl?raw';
import type { BlockParams } from '../block.ts';
import { dispatch, type BindingKind, type GpuContext, type Kernel } from '../context.ts';

export interface RmsNormSpec {
  readonly n: number;
  readonly eps: number;
  readonly segments?: number;
  /** Floats between segments of one row (default n). */
  readonly segStride?: number;
  readonly inStride: number;
  readonly inOff?: number;
  readonly outStride: number;
  readonly outOff?: number;
  /** y += norm(x)·w (a post-sublayer norm added into the residual stream y). */
  readonly accumulate?: boolean;
}

export class RmsNormOp {
  private readonly kernel: Kernel;
  private readonly group: GPUBindGroup;

  /**
   * `weight` holds segments·n floats; `x` and `y` may be the same buffer (in place). `residual`: y = r +
   * norm(x)·w, r laid out as y (neither in place nor with `accumulate`).
   */
  constructor(
    ctx: GpuContext, label: string, readonly spec: RmsNormSpec,
    io: {
      weight: GPUBuffer; x: GPUBuffer; y: GPUBuffer; residual?: GPUBuffer;
      /** With `residual`: also y2 = norm(y)·weight, the next sublayer's pre-norm (laid out as y; one segment). */
      next?: { weight: GPUBuffer; y: GPUBuffer };
    },
    block: BlockParams, subgroups = ctx.features.subgroups,
  ) {
    const inPlace = io.x === io.y;
    const residual = io.residual !== undefined;
    const next = io.next;
    if ((inPlace || spec.accumulate) && (residual || (inPlace && spec.accumulate))) throw new RangeError(`${label}: in place, accumulate and residual exclude one another`);
    if (residual && (io.residual === io.y || io.residual === io.x)) throw new RangeError(`${label}: the residual must be a buffer of its own`);
    if (next && (!residual || (spec.segments ?? 1) !== 1)) throw new RangeError(`${label}: the next norm needs a residual and one segment`);
    if (next && [io.x, io.y, io.residual].includes(next.y)) throw new RangeError(`${label}: the next norm's output must be a buffer of its own`);
    const bindings: BindingKind[] = inPlace ? ['uniform', 'uniform', 'read', 'rw'] : residual ? ['uniform', 'uniform', 'read', 'rw', 'rw', 'read'] : ['uniform', 'uniform', 'read', 'rw', 'rw'];
    if (next) bindings.push('read', 'rw');
    this.kernel = ctx.kernel({
      shader: 'rmsnorm.wgsl', source, entry: 'main', bindings,
      defines: { SUBGROUPS: subgroups, IN_PLACE: inPlace, ACCUMULATE: !!spec.accumulate, RESIDUAL: residual, NEXT: !!next },
    });
    const params = ctx.uniform(`${label} params`, [
      ['u32', spec.n], ['u32', spec.segments ?? 1], ['u32', spec.inStride], ['u32', spec.inOff ?? 0],
      ['u32', spec.outStride], ['u32', spec.outOff ?? 0], ['u32', spec.segStride ?? spec.n], ['f32', spec.eps],
    ]);
    const resources = inPlace ? [params, block.buffer, io.weight, io.x] : residual ? [params, block.buffer, io.weight, io.x, io.y, io.residual!] : [params, block.buffer, io.weight, io.x, io.y];
    if (next) resources.push(next.weight, next.y);
    this.group = ctx.bind(this.kernel, resources);
  }

  encode(pass: GPUComputePassEncoder, rows: number): void {
    dispatch(pass, this.kernel, this.group, rows, this.spec.segments ?? 1);
  }
}
