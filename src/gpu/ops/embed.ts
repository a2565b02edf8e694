/** Embedding gather (see shaders/embed.wgsl), one launch per part of a split table. */
import source from '../../../shaders/embed.wgsl?raw';
import type { BlockParams } from '../block.ts';
import { dispatch, grid, type GpuContext, type Kernel, type WeightStorage } from '../context.ts';
import type { WeightParts } from '../weights.ts';

export class EmbedOp {
  private readonly kernel: Kernel;
  private readonly groups: GPUBindGroup[];

  constructor(ctx: GpuContext, label: string, readonly D: number, table: WeightParts, io: { tokens: GPUBuffer; x: GPUBuffer }, block: BlockParams) {
    const storage: WeightStorage = table.storage;
    this.kernel = ctx.kernel({
      shader: 'embed.wgsl', source, entry: 'main',
      bindings: ['uniform', 'uniform', 'read', 'read', 'rw'],
      defines: { W_F16: storage === 'f16', W_PACKED: storage === 'f16-packed' },
    });
    this.groups = table.parts.map((part, i) => {
      const params = ctx.uniform(`${label} part ${i}`, [['u32', D], ['u32', part.row0], ['u32', part.row0 + part.rows], ['u32', 0]]);
      return ctx.bind(this.kernel, [params, block.buffer, io.tokens, part.buffer, io.x]);
    });
  }

  encode(pass: GPUComputePassEncoder, rows: number): void {
    const [x, y] = grid(Math.ceil((rows * this.D) / 64));
    for (const g of this.groups) dispatch(pass, this.kernel, g, x, y);
  }
}
