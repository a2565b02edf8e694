/**
 * Every GPU buffer the engine owns comes from here, tagged with what it holds, so the engine can say at
 * any moment how many bytes are live in each category (WebGPU itself exposes no memory figure).
 */
/**
 * fastWeights: LaCT's fast weights and TTT-E2E's dynamic MLPs (θ); pending: a chunk kept for its update;
 * innerStep: TTT-E2E's inner training step (the chunk's activations for the backward, gradients, loss).
 */
export const MEMORY_CATEGORIES = ['weights', 'kv', 'fastWeights', 'momentum', 'pending', 'innerStep', 'activations', 'scratch'] as const;
export type MemoryCategory = (typeof MEMORY_CATEGORIES)[number];
export type MemoryReport = Record<MemoryCategory, number> & { total: number };

export class GpuAllocator {
  private readonly live = new Map<GPUBuffer, MemoryCategory>();
  private readonly bytes: Record<MemoryCategory, number> = Object.fromEntries(MEMORY_CATEGORIES.map((c) => [c, 0])) as Record<MemoryCategory, number>;

  constructor(readonly device: GPUDevice) {}

  /** A buffer of `size` bytes (rounded up to 4, at least 4), zero-filled as WebGPU guarantees. */
  create(label: string, category: MemoryCategory, size: number, usage: GPUBufferUsageFlags): GPUBuffer {
    const bytes = Math.max(4, Math.ceil(size / 4) * 4);
    const buffer = this.device.createBuffer({ label, size: bytes, usage });
    this.live.set(buffer, category);
    this.bytes[category] += bytes;
    return buffer;
  }

  /** A storage buffer (copyable both ways) holding `data`. */
  upload(label: string, category: MemoryCategory, data: ArrayBufferView): GPUBuffer {
    const buffer = this.create(label, category, data.byteLength, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC);
    writeAligned(this.device, buffer, 0, data);
    return buffer;
  }

  destroy(buffer: GPUBuffer): void {
    const category = this.live.get(buffer);
    if (category === undefined) return;
    this.bytes[category] -= buffer.size;
    this.live.delete(buffer);
    buffer.destroy();
  }

  destroyAll(): void {
    for (const b of [...this.live.keys()]) this.destroy(b);
  }

  report(): MemoryReport {
    let total = 0;
    for (const c of MEMORY_CATEGORIES) total += this.bytes[c];
    return { ...this.bytes, total };
  }
}

/** queue.writeBuffer needs a size that is a multiple of 4: pad a copy when it is not. */
export function writeAligned(device: GPUDevice, buffer: GPUBuffer, offset: number, data: ArrayBufferView): void {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (bytes.byteLength === 0) return;
  if (bytes.byteLength % 4 === 0 && bytes.byteOffset % 4 === 0 && !(typeof SharedArrayBuffer !== 'undefined' && bytes.buffer instanceof SharedArrayBuffer)) {
    device.queue.writeBuffer(buffer, offset, bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength);
    return;
  }
  const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
  padded.set(bytes);
  device.queue.writeBuffer(buffer, offset, padded);
}
