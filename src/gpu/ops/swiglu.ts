/** The block MLP's gate: s = silu(gate) * up, from the side-by-side [rows, 2I] projection. */
import source from '../../../shaders/swiglu.wgsl?raw';
import type { BlockParams } from '../block.ts';
import { dispatch, grid, type GpuContext, type Kernel } from '../context.ts';

export class SwigluOp {
  private readonly kernel: Kernel;
  private readonly group: GPUBindGroup;

  constructor(ctx: GpuContext, label: string, readonly I: number, io: { gu: GPUBuffer; s: GPUBuffer }, block: BlockParams) {
    this.kernel = ctx.kernel({ shader: 'swiglu.wgsl', source, entry: 'main', bindings: ['uniform', 'uniform', 'read', 'rw'] });
    const params = ctx.uniform(`${label} params`, [['u32', I]]);
    this.group = ctx.bind(this.kernel, [params, block.buffer, io.gu, io.s]);
  }

  encode(pass: GPUComputePassEncoder, rows: number): void {
    const [x, y] = grid(Math.ceil((rows * this.I) / 64));
    dispatch(pass, this.kernel, this.group, x, y);
  }
}
