/** Shared plumbing for kernel tests: a device with shader-f16 where the adapter has it, upload, read back. */
import { GpuContext } from '../../src/gpu/context.ts';
import { openNodeGpu, type NodeGpu } from '../../src/node/webgpu.ts';
import { float32ToF16Bits } from '../../src/model/f16.ts';
import type { MemoryCategory } from '../../src/gpu/allocator.ts';

export async function openTestGpu(): Promise<{ gpu: NodeGpu; ctx: GpuContext }> {
  const gpu = await openNodeGpu({ requiredFeatures: ['shader-f16', 'subgroups' as GPUFeatureName, 'timestamp-query'], log: true });
  return { gpu, ctx: new GpuContext(gpu.device) };
}

export function upload(ctx: GpuContext, data: ArrayLike<number>, category: MemoryCategory = 'scratch'): GPUBuffer {
  return ctx.allocator.upload('test input', category, Float32Array.from(data));
}

export function zeros(ctx: GpuContext, n: number, category: MemoryCategory = 'scratch'): GPUBuffer {
  return ctx.allocator.create('test output', category, n * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST);
}

/** f32 values as f16 bits (round to nearest even), as Uint16Array. */
export function toF16Bits(data: ArrayLike<number>): Uint16Array {
  return Uint16Array.from(Array.from(data, (v) => float32ToF16Bits(v)));
}

export async function readF32(ctx: GpuContext, buf: GPUBuffer, n?: number, offsetElems = 0): Promise<Float32Array> {
  const bytes = (n ?? buf.size / 4 - offsetElems) * 4;
  const staging = ctx.device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = ctx.device.createCommandEncoder();
  enc.copyBufferToBuffer(buf, offsetElems * 4, staging, 0, bytes);
  ctx.device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  staging.destroy();
  return out;
}

export async function readU32(ctx: GpuContext, buf: GPUBuffer, n: number): Promise<Uint32Array> {
  return new Uint32Array((await readF32(ctx, buf, n)).buffer);
}

/** Encodes `record` into one compute pass, submits, and waits for the queue. */
export async function runPass(ctx: GpuContext, record: (pass: GPUComputePassEncoder) => void): Promise<void> {
  const enc = ctx.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  record(pass);
  pass.end();
  ctx.device.queue.submit([enc.finish()]);
  await ctx.device.queue.onSubmittedWorkDone();
}

/** max |a-b| / max |b| (the tolerance measure every kernel test states). */
export function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let d = 0, r = 0;
  for (let i = 0; i < a.length; i++) {
    const x = Math.abs(a[i] - b[i]);
    d = Number.isNaN(x) ? Infinity : Math.max(d, x);
    r = Math.max(r, Math.abs(b[i]));
  }
  return d / (r || 1);
}
