/** Shared plumbing for kernel tests: a device with shader-f16 where the adapter has it, upload, read back. */
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { GpuContext } from '../../src/gpu/context.ts';
import { parseKernelChoice } from '../../src/gpu/kernel-variant.ts';
import { openNodeGpu, type NodeGpu } from '../../src/node/webgpu.ts';
import { float32ToF16Bits } from '../../src/model/f16.ts';
import type { MemoryCategory } from '../../src/gpu/allocator.ts';

export async function openTestGpu(): Promise<{ gpu: NodeGpu; ctx: GpuContext }> {
  const gpu = await openNodeGpu({ requiredFeatures: ['shader-f16', 'subgroups' as GPUFeatureName, 'timestamp-query'], log: true });
  registerTestGpu(gpu);
  return { gpu, ctx: new GpuContext(gpu.device, { adapterInfo: gpu.adapter.info, kernels: parseKernelChoice(process.env.TTT_KERNELS, 'TTT_KERNELS') }) };
}

// ---- Variants a test could not run for want of a feature -------------------------------------------

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** One line per variant a test skipped for want of an adapter feature; scripts/test.mjs clears it, then prints it before its closing line. */
export const UNCOVERED_FILE = `${ROOT}test-results/uncovered.txt`;

/** The optional device features some kernels have variants for (GpuContext.features). */
export type TestFeature = 'shaderF16' | 'subgroups' | 'timestampQuery';
const FEATURE_NAMES: Record<TestFeature, string> = { shaderF16: 'shader-f16', subgroups: 'subgroups', timestampQuery: 'timestamp-query' };
/** What Mesa's lavapipe (the CI adapter) offers: missing there, a feature means a broken setup, not a smaller adapter. */
export const LAVAPIPE_FEATURES: readonly (TestFeature)[] = ['shaderF16', 'subgroups', 'timestampQuery'];

const adapters = new WeakMap<GPUDevice, { backend: string; description: string }>();

/** Records which adapter a device came from (openTestGpu does; call it for devices opened otherwise). */
export function registerTestGpu(gpu: NodeGpu): void {
  adapters.set(gpu.device, { backend: gpu.backend, description: gpu.description });
}

function adapterOf(device: GPUDevice): { description: string; lavapipe: boolean } {
  const known = adapters.get(device);
  const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  const description = known?.description ?? (info ? `${info.vendor} ${info.architecture} ${info.device} (${info.description})` : 'unknown adapter');
  return { description, lavapipe: known?.backend === 'lavapipe' || /llvmpipe|lavapipe/i.test(description) };
}

/**
 * Whether `ctx` has `feature`, for the test variant `variant` that needs it. When it does not, the
 * variant is not silently passed over: on lavapipe under CI=true this throws (lavapipe has every feature
 * the tests use, so its absence there is a broken setup); anywhere else the variant is recorded in
 * UNCOVERED_FILE with the test's name and the adapter, for the test runner's closing output, and the
 * caller skips it.
 */
export function hasFeature(ctx: GpuContext, feature: TestFeature, variant: string, env: NodeJS.ProcessEnv = process.env): boolean {
  if (ctx.features[feature]) return true;
  const adapter = adapterOf(ctx.device);
  const name = FEATURE_NAMES[feature];
  if (env.CI === 'true' && adapter.lavapipe && LAVAPIPE_FEATURES.includes(feature)) {
    throw new Error(`${variant}: the device lacks ${name}, which lavapipe has (CI=true): fix the adapter setup rather than skip (${adapter.description})`);
  }
  recordUncovered(`${variant}: needs ${name}, which the adapter lacks (${adapter.description.split(';')[0]})`, env);
  return false;
}

/** Appends "file > test: what" to UNCOVERED_FILE (or to $TTT_UNCOVERED_FILE, for the helper's own test). */
export function recordUncovered(what: string, env: NodeJS.ProcessEnv = process.env): void {
  const state = expect.getState();
  const file = state.testPath ? relative(ROOT, state.testPath) : 'unknown file';
  const line = `${file} > ${state.currentTestName ?? '(outside a test)'}: ${what}`.replace(/\s+/g, ' ');
  const out = env.TTT_UNCOVERED_FILE ?? UNCOVERED_FILE;
  mkdirSync(dirname(out), { recursive: true });
  appendFileSync(out, line + '\n');
  // The helper's own test writes to a file of its own; only real gaps go to the log.
  if (!env.TTT_UNCOVERED_FILE) process.stderr.write(`[not covered] ${line}\n`);
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

/** The value of f16 bits `h` (exact in f32). */
export function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** f32 values rounded to f16 as the engine stores weights (round to nearest even), back as f32. */
export function roundToF16(data: Float32Array): Float32Array {
  return data.map((v) => f16Value(float32ToF16Bits(v)));
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

/**
 * @deprecated max |a-b| / max |b| hides errors in elements small next to the largest (test/helpers/close.ts
 * explains): use expectClose. Kept only for exact-equality uses (`toBe(0)`) in files not yet moved over.
 */
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
