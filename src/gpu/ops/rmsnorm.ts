/** RMSNorm launch (see shaders/rmsnorm.wgsl): rows of `segments` vectors of width n. */
import source from '../../../shaders/rmsnorm.wgsl?raw';
import type { BlockParams } from '../block.ts';
import { dispatch, type GpuContext, type Kernel } from '../context.ts';

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
}

export class RmsNormOp {
  private readonly kernel: Kernel;
  private readonly group: GPUBindGroup;

  /** `weight` holds segments·n floats; `x` and `y` may be the same buffer (in place). */
  constructor(ctx: GpuContext, label: string, readonly spec: RmsNormSpec, io: { weight: GPUBuffer; x: GPUBuffer; y: GPUBuffer }, block: BlockParams, subgroups = ctx.features.subgroups) {
    const inPlace = io.x === io.y;
    this.kernel = ctx.kernel({
      shader: 'rmsnorm.wgsl', source, entry: 'main',
      bindings: inPlace ? ['uniform', 'uniform', 'read', 'rw'] : ['uniform', 'uniform', 'read', 'rw', 'rw'],
      defines: { SUBGROUPS: subgroups, IN_PLACE: inPlace },
    });
    const params = ctx.uniform(`${label} params`, [
      ['u32', spec.n], ['u32', spec.segments ?? 1], ['u32', spec.inStride], ['u32', spec.inOff ?? 0],
      ['u32', spec.outStride], ['u32', spec.outOff ?? 0], ['u32', spec.segStride ?? spec.n], ['f32', spec.eps],
    ]);
    this.group = ctx.bind(this.kernel, inPlace ? [params, block.buffer, io.weight, io.x] : [params, block.buffer, io.weight, io.x, io.y]);
  }

  encode(pass: GPUComputePassEncoder, rows: number): void {
    dispatch(pass, this.kernel, this.group, rows, this.spec.segments ?? 1);
  }
}
