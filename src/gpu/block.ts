/**
 * The per-block uniform every kernel of a forward block shares: how many token rows the block has and
 * the absolute position of its first row. Written once per block (queue-ordered, so earlier blocks
 * already submitted keep their own values); static shapes live in each op's own params.
 */
import type { GpuContext } from './context.ts';

/** WGSL: struct Block { rows: u32, pos0: u32, _a: u32, _b: u32 } */
export class BlockParams {
  readonly buffer: GPUBuffer;
  private readonly data = new Uint32Array(4);

  constructor(private readonly ctx: GpuContext) {
    this.buffer = ctx.allocator.create('block params', 'scratch', 16, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
  }

  write(rows: number, pos0: number): void {
    this.data[0] = rows;
    this.data[1] = pos0;
    this.ctx.device.queue.writeBuffer(this.buffer, 0, this.data);
  }
}
