/**
 * GPU time of each block's compute pass from timestamp queries (adapters with `timestamp-query`): the
 * pass writes its begin and end ticks into a query set; the caller drains all its blocks' ticks once at
 * the end of a feed, so timing adds no wait inside the token loop.
 */
import type { GpuContext } from './context.ts';

export class GpuTimer {
  static readonly SLOTS = 64;
  private readonly querySet: GPUQuerySet;
  private readonly resolve: GPUBuffer;
  private readonly read: GPUBuffer;
  private used = 0;
  private pendingNs = 0;

  /** A timer when the adapter has `timestamp-query`, else null. */
  static forContext(ctx: GpuContext): GpuTimer | null {
    return ctx.features.timestampQuery ? new GpuTimer(ctx) : null;
  }

  private constructor(private readonly ctx: GpuContext) {
    this.querySet = ctx.device.createQuerySet({ type: 'timestamp', count: 2 * GpuTimer.SLOTS });
    this.resolve = ctx.allocator.create('timestamps', 'scratch', 16 * GpuTimer.SLOTS, GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC);
    this.read = ctx.allocator.create('timestamps readback', 'scratch', 16 * GpuTimer.SLOTS, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
  }

  /** Pass descriptor for the next pass, or undefined when the slots are full (drain() empties them). */
  writes(): GPUComputePassTimestampWrites | undefined {
    if (this.used === GpuTimer.SLOTS) return undefined;
    const i = this.used++;
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Full: the caller drains before the next pass. */
  get full(): boolean {
    return this.used === GpuTimer.SLOTS;
  }

  /** Adds the used slots' durations to the running total and frees them. */
  async drain(): Promise<void> {
    if (this.used === 0) return;
    const bytes = 16 * this.used;
    // Resolved in a command buffer of its own: resolving inside a block's command buffer corrupted the
    // block's results on Dawn + lavapipe (Dawn converts ticks with an internal compute pass).
    const enc = this.ctx.device.createCommandEncoder();
    enc.resolveQuerySet(this.querySet, 0, 2 * this.used, this.resolve, 0);
    enc.copyBufferToBuffer(this.resolve, 0, this.read, 0, bytes);
    this.ctx.device.queue.submit([enc.finish()]);
    await this.read.mapAsync(GPUMapMode.READ, 0, bytes);
    const ticks = new BigUint64Array(this.read.getMappedRange(0, bytes).slice(0));
    this.read.unmap();
    for (let i = 0; i < this.used; i++) if (ticks[2 * i + 1] > ticks[2 * i]) this.pendingNs += Number(ticks[2 * i + 1] - ticks[2 * i]);
    this.used = 0;
  }

  /** Total GPU nanoseconds since the last take(), after a drain. */
  take(): number {
    const ns = this.pendingNs;
    this.pendingNs = 0;
    return ns;
  }
}
