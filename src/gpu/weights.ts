/**
 * Weight upload: once, in the storage the kernels read (f32, or f16 — native or packed two per u32,
 * the same bytes either way), split by rows into parts whenever a matrix would exceed the device's
 * storage-binding limit (128 MiB on many devices, lavapipe included).
 */
import { float32ToF16Bits } from '../model/f16.ts';
import { writeAligned } from './allocator.ts';
import type { GpuContext, WeightStorage } from './context.ts';

export interface WeightPart {
  readonly buffer: GPUBuffer;
  /** First row of the matrix this part holds, and how many. */
  readonly row0: number;
  readonly rows: number;
}

export interface WeightParts {
  readonly storage: WeightStorage;
  readonly rows: number;
  readonly cols: number;
  readonly parts: readonly WeightPart[];
}

function bytesPerWeight(storage: WeightStorage): number {
  return storage === 'f32' ? 4 : 2;
}

/** f32 → f16 bits, round to nearest even (the engine's only conversion; done once at load). */
export function toHalf(data: Float32Array): Uint16Array {
  const out = new Uint16Array(data.length + (data.length % 2));
  for (let i = 0; i < data.length; i++) out[i] = float32ToF16Bits(data[i]);
  return out;
}

/** Rows per part so that a part fits in `maxBindingBytes` (an even count, so packed halves stay u32-aligned). */
function rowsPerPart(cols: number, storage: WeightStorage, maxBindingBytes: number): number {
  const rowBytes = cols * bytesPerWeight(storage);
  let rows = Math.floor(maxBindingBytes / rowBytes);
  if (storage !== 'f32' && cols % 2 === 1) rows -= rows % 2;
  if (rows < 1) throw new RangeError(`one row of ${cols} weights (${rowBytes} bytes) exceeds the storage binding limit ${maxBindingBytes}`);
  return rows;
}

/** A [rows, cols] matrix (row-major f32) uploaded in `storage`, split by rows to fit the binding limit. */
export function uploadMatrix(ctx: GpuContext, label: string, data: Float32Array, rows: number, cols: number, storage: WeightStorage, maxBindingBytes: number): WeightParts {
  if (data.length !== rows * cols) throw new RangeError(`${label}: ${data.length} values for [${rows}, ${cols}]`);
  const per = rowsPerPart(cols, storage, maxBindingBytes);
  const parts: WeightPart[] = [];
  for (let row0 = 0; row0 < rows; row0 += per) {
    const n = Math.min(per, rows - row0);
    const slice = data.subarray(row0 * cols, (row0 + n) * cols);
    const bytes = storage === 'f32' ? slice : toHalf(slice);
    parts.push({ buffer: ctx.allocator.upload(`${label}[${row0}:${row0 + n}]`, 'weights', bytes), row0, rows: n });
  }
  return { storage, rows, cols, parts };
}

/** An empty [rows, cols] matrix in `storage`, split like `uploadMatrix`, to be filled by `writeRows`. */
export function allocMatrix(ctx: GpuContext, label: string, rows: number, cols: number, storage: WeightStorage, maxBindingBytes: number): WeightParts {
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  const parts = matrixParts(rows, cols, storage, maxBindingBytes).map(({ row0, rows: n, bytes }) => ({ buffer: ctx.allocator.create(`${label}[${row0}:${row0 + n}]`, 'weights', bytes, usage), row0, rows: n }));
  return { storage, rows, cols, parts };
}

/** The parts a [rows, cols] matrix is split into (as allocMatrix and uploadMatrix split it), with their bytes. */
export function matrixParts(rows: number, cols: number, storage: WeightStorage, maxBindingBytes: number): { row0: number; rows: number; bytes: number }[] {
  const per = rowsPerPart(cols, storage, maxBindingBytes);
  const out: { row0: number; rows: number; bytes: number }[] = [];
  for (let row0 = 0; row0 < rows; row0 += per) {
    const n = Math.min(per, rows - row0);
    out.push({ row0, rows: n, bytes: n * cols * bytesPerWeight(storage) });
  }
  return out;
}

/**
 * Writes rows [row0, row0 + n) of a matrix from f32 data (n·cols values), converting to the matrix's
 * storage and crossing part boundaries. Half storage needs an even row length (u32-aligned writes).
 */
export function writeRows(ctx: GpuContext, m: WeightParts, row0: number, data: Float32Array): void {
  const n = data.length / m.cols;
  if (!Number.isInteger(n) || row0 < 0 || row0 + n > m.rows) throw new RangeError(`rows [${row0}, ${row0 + n}) do not fit a [${m.rows}, ${m.cols}] matrix`);
  if (m.storage !== 'f32' && m.cols % 2 === 1) throw new RangeError(`f16 weights need an even row length; this matrix has ${m.cols} columns (load it with weights: 'f32')`);
  const bytes = bytesPerWeight(m.storage);
  for (const part of m.parts) {
    const a = Math.max(row0, part.row0), b = Math.min(row0 + n, part.row0 + part.rows);
    if (a >= b) continue;
    const slice = data.subarray((a - row0) * m.cols, (b - row0) * m.cols);
    const payload = m.storage === 'f32' ? slice : toHalf(slice);
    writeAligned(ctx.device, part.buffer, (a - part.row0) * m.cols * bytes, payload);
  }
}
