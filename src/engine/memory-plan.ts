/**
 * An engine's memory plan: every buffer a config and the engine options imply, with its size, its memory
 * category and the config key (or engine option) that sizes it, computed before anything is allocated.
 * The engine checks it against the device's limits first, so a config that cannot fit fails with a
 * DeviceLimitError naming the key, the size, the limit and the largest value that would fit, instead of
 * WebGPU's raw "Buffer size exceeds" text half-way through an upload. The same figures are what the
 * allocator reports once the engine exists (test/engine/memory-plan.test.ts checks they agree).
 */
import { MEMORY_CATEGORIES, type MemoryCategory, type MemoryReport } from '../gpu/allocator.ts';
import { DeviceLimitError } from './errors.ts';

export interface PlannedBuffer {
  readonly label: string;
  readonly category: MemoryCategory;
  readonly bytes: number;
  /** Bound whole as a storage binding (then maxStorageBufferBindingSize applies, not only maxBufferSize). */
  readonly bound: boolean;
  /** What sizes it, as a user would change it: a config.json key (`window_size`) or an engine option (`maxRows`). */
  readonly key: string;
}

export interface MemoryPlan {
  readonly buffers: readonly PlannedBuffer[];
  /** Bytes by category and in total, as `Engine.memory()` will report them (small uniform buffers aside). */
  readonly bytes: MemoryReport;
}

/** The device limits a plan is checked against. */
export interface PlanLimits {
  readonly maxBufferSize: number;
  readonly maxStorageBufferBindingSize: number;
  /** What the binding limit is called in an error (default the WebGPU limit's name). */
  readonly bindingLimitName?: string;
}

export function summarize(buffers: readonly PlannedBuffer[]): MemoryPlan {
  const bytes = Object.fromEntries(MEMORY_CATEGORIES.map((c) => [c, 0])) as Record<MemoryCategory, number>;
  let total = 0;
  for (const b of buffers) {
    // As the allocator rounds: up to a multiple of 4, at least 4.
    const n = Math.max(4, Math.ceil(b.bytes / 4) * 4);
    bytes[b.category] += n;
    total += n;
  }
  return { buffers, bytes: { ...bytes, total } };
}

/** The limit that applies to a planned buffer. */
export function limitFor(b: PlannedBuffer, limits: PlanLimits): { limit: number; name: string } {
  return b.bound && limits.maxStorageBufferBindingSize < limits.maxBufferSize
    ? { limit: limits.maxStorageBufferBindingSize, name: limits.bindingLimitName ?? 'maxStorageBufferBindingSize' }
    : { limit: limits.maxBufferSize, name: 'maxBufferSize' };
}

/**
 * Throws DeviceLimitError for the first planned buffer over its limit. `largestFitting(key)` is asked for
 * the largest value of that key with which every buffer fits (null when the family cannot say).
 */
export function checkPlan(plan: MemoryPlan, limits: PlanLimits, largestFitting: (key: string) => number | null): void {
  for (const b of plan.buffers) {
    const { limit, name } = limitFor(b, limits);
    if (b.bytes > limit) throw new DeviceLimitError(b.key, b.label, b.bytes, name, limit, largestFitting(b.key));
  }
}

/** The largest integer v in [lo, hi] with fits(v), for a predicate that holds up to some point (null if none). */
export function largestWhere(lo: number, hi: number, fits: (v: number) => boolean): number | null {
  if (!fits(lo)) return null;
  while (lo < hi) {
    const mid = Math.floor((lo + hi + 1) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** "12.3 MB". */
export function formatBytes(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(1)} KB`;
}
