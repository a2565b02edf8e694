/** RoPE launch over a [rows, rowStride] buffer (see shaders/rope.wgsl). */
import source from '../../../shaders/rope.wgsl?raw';
import type { BlockParams } from '../block.ts';
import { dispatch, grid, type GpuContext, type Kernel } from '../context.ts';
import { ropeTurnTable } from './rope-turn-table.ts';

export interface RopeSpec {
  /** Width of each roped vector (D) and the rotation block (attention head dim). */
  readonly dim: number;
  readonly headDim: number;
  readonly theta: number;
  /** Floats between consecutive rows. */
  readonly rowStride: number;
  /** How many vectors per row are roped (e.g. 2: q and k), `segStride` floats apart, from `colOff`. */
  readonly segments: number;
  readonly segStride: number;
  readonly colOff?: number;
}

export class RopeOp {
  private readonly kernel: Kernel;
  private readonly group: GPUBindGroup;

  constructor(ctx: GpuContext, label: string, readonly spec: RopeSpec, x: GPUBuffer, block: BlockParams) {
    if (!(spec.theta > 0)) throw new RangeError(`${label}: theta ${spec.theta}`);
    if (spec.headDim % 2 !== 0 || spec.dim % spec.headDim !== 0) throw new RangeError(`${label}: headDim ${spec.headDim} must be even and divide ${spec.dim}`);
    this.kernel = ctx.kernel({ shader: 'rope.wgsl', source, entry: 'main', bindings: ['uniform', 'uniform', 'rw', 'read'] });
    const params = ctx.uniform(`${label} params`, [
      ['u32', spec.dim], ['u32', spec.headDim], ['u32', spec.rowStride], ['u32', spec.segments],
      ['u32', spec.segStride], ['u32', spec.colOff ?? 0], ['u32', 0], ['u32', 0],
    ]);
    const turns = ctx.allocator.upload(`${label} turns`, 'weights', ropeTurnTable(spec.headDim, spec.theta));
    this.group = ctx.bind(this.kernel, [params, block.buffer, x, turns]);
  }

  encode(pass: GPUComputePassEncoder, rows: number): void {
    const [x, y] = grid(Math.ceil((rows * this.spec.segments * this.spec.dim) / 2 / 64));
    dispatch(pass, this.kernel, this.group, x, y);
  }
}
