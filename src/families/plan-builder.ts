/** The rows of a family's memory plan, added in allocation order (lact-plan.ts, ttt-e2e-plan.ts). */
import type { MemoryCategory } from '../gpu/allocator.ts';
import { matrixParts } from '../gpu/weights.ts';
import type { EngineLayout } from '../engine/family.ts';
import type { PlannedBuffer } from '../engine/memory-plan.ts';

export interface PlanBuilder {
  readonly out: PlannedBuffer[];
  /** One buffer; `bound`: bound whole as a storage binding (default true). */
  buf(label: string, category: MemoryCategory, bytes: number, key: string, bound?: boolean): void;
  /** A weight matrix, split into parts at the binding limit as allocMatrix splits it. */
  matrix(label: string, rows: number, cols: number, key: string): void;
}

export function planBuilder(layout: EngineLayout): PlanBuilder {
  const out: PlannedBuffer[] = [];
  const buf = (label: string, category: MemoryCategory, bytes: number, key: string, bound = true) => { out.push({ label, category, bytes, bound, key }); };
  const matrix = (label: string, rows: number, cols: number, key: string) => {
    let parts: { bytes: number }[];
    try {
      parts = matrixParts(rows, cols, layout.storage, layout.maxBindingBytes);
    } catch {
      parts = [{ bytes: cols * (layout.storage === 'f32' ? 4 : 2) }]; // one row is already over the binding limit
    }
    for (const p of parts) buf(label, 'weights', p.bytes, key);
  };
  return { out, buf, matrix };
}
