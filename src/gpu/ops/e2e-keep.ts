/**
 * TTT-E2E's pending chunk on the GPU (shaders/e2e-keep.wgsl): each block keeps its rows' h_pre and token
 * ids at their place in the chunk; before a chunk's update, the token that completes it is written after
 * the chunk's own (slot B), so the update's loss reads its targets as pending[1 .. B]. It owns the pending
 * state: rows kept after `position` tokens, saving and restoring them.
 */
import source from '../../../shaders/e2e-keep.wgsl?raw';
import type { BlockParams } from '../block.ts';
import { dispatch, grid, type GpuContext, type Kernel } from '../context.ts';
import { readBufferBytes } from '../readback.ts';
import type { MemorySection, RestoreWrite, SectionSource } from '../saved-state.ts';

/** Bytes of the pending chunk's two buffers: h_pre [B, d] f32 and tokens [B + 1] u32. */
export function pendingChunkBytes(d: number, B: number): { hPre: number; tokens: number } {
  return { hPre: 4 * B * d, tokens: 4 * (B + 1) };
}

export class PendingChunk {
  /** [B, d]: h_pre of the chunk's rows so far. */
  readonly hPre: GPUBuffer;
  /** [B + 1] u32: the chunk's tokens, then (before its update) the token after it. */
  readonly tokens: GPUBuffer;
  private readonly keepKernel: Kernel;
  private readonly keepGroup: GPUBindGroup;
  private readonly params: GPUBuffer;

  constructor(private readonly ctx: GpuContext, label: string, readonly d: number, readonly B: number, io: { x: GPUBuffer; tokens: GPUBuffer }, block: BlockParams) {
    if (!(Number.isInteger(d) && d >= 1 && Number.isInteger(B) && B >= 1)) throw new RangeError(`${label}: d ${d}, B ${B}`);
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const bytes = pendingChunkBytes(d, B);
    this.hPre = ctx.allocator.create(`${label} h_pre`, 'pending', bytes.hPre, usage);
    this.tokens = ctx.allocator.create(`${label} tokens`, 'pending', bytes.tokens, usage);
    const params = (this.params = ctx.uniform(`${label} params`, [['u32', d], ['u32', B], ['u32', 0], ['u32', 0]]));
    this.keepKernel = ctx.kernel({ shader: 'e2e-keep.wgsl', source, entry: 'keep', bindings: ['uniform', 'uniform', 'read', 'read', 'rw', 'rw'], defines: { KEEP: true } });
    this.keepGroup = ctx.bind(this.keepKernel, [params, block.buffer, io.x, io.tokens, this.hPre, this.tokens]);
  }

  /** Keeps the block's rows (rows: what block.write() got; the block never crosses a chunk boundary). */
  encodeKeep(pass: GPUComputePassEncoder, rows: number): void {
    const [x, y] = grid(Math.ceil((rows * this.d) / 64));
    dispatch(pass, this.keepKernel, this.keepGroup, x, y);
  }

  /**
   * pending[B] = the first token of the block about to be submitted: the last target of the chunk
   * before it. A queue write, no launch: the engine submits each block on its own after its tokens are
   * written the same way, so the write lands after every earlier block and before this one, and no
   * block's keep ever writes slot B.
   */
  writeLastTarget(token: number): void {
    this.ctx.device.queue.writeBuffer(this.tokens, 4 * this.B, Uint32Array.of(token));
  }

  /** A launch copying the kept h rows into `dst` (rows from `block`: an update's chunk uniform). */
  copier(dst: GPUBuffer, block: BlockParams): (pass: GPUComputePassEncoder) => void {
    const kernel = this.ctx.kernel({ shader: 'e2e-keep.wgsl', source, entry: 'copyRows', bindings: ['uniform', 'uniform', 'read', 'rw'], defines: { COPY: true } });
    const group = this.ctx.bind(kernel, [this.params, block.buffer, this.hPre, dst]);
    const [x, y] = grid(Math.ceil((this.B * this.d) / 64));
    return (pass) => dispatch(pass, kernel, group, x, y);
  }

  /** Rows of the chunk not yet learned from after `position` tokens (a complete chunk waits for the token after it). */
  rowsAfter(position: number): number {
    return position === 0 ? 0 : position - Math.floor((position - 1) / this.B) * this.B;
  }

  async save(name: string, position: number): Promise<MemorySection[]> {
    const n = this.rowsAfter(position);
    const h = await readBufferBytes(this.ctx.device, this.hPre);
    const t = await readBufferBytes(this.ctx.device, this.tokens);
    return [
      { name: `${name}.hPre`, bytes: h.slice(0, 4 * n * this.d) },
      { name: `${name}.tokens`, bytes: t.slice(0, 4 * n) },
    ];
  }

  planRestore(name: string, position: number, sections: SectionSource): RestoreWrite[] {
    const n = this.rowsAfter(position);
    const h = sections.need(`${name}.hPre`, 4 * n * this.d);
    const t = sections.need(`${name}.tokens`, 4 * n);
    return n === 0 ? [] : [{ buffer: this.hPre, offset: 0, data: h }, { buffer: this.tokens, offset: 0, data: t }];
  }
}
