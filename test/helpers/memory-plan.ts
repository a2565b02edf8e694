/** The memory plan's bytes against what an engine's allocator holds once it exists. */
import { expect } from 'vitest';
import { MEMORY_CATEGORIES, type MemoryReport } from '../../src/gpu/allocator.ts';
import type { MemoryPlan } from '../../src/engine/memory-plan.ts';

/** The uniform buffers each op makes for its parameters are not planned: a bound on them. */
export const UNIFORM_SLACK = 64 * 1024;

/** Every category equal, but scratch, which may exceed the plan by the unplanned uniforms only. */
export function expectPlanHeld(plan: MemoryPlan, held: MemoryReport): void {
  for (const c of MEMORY_CATEGORIES) {
    if (c === 'scratch') {
      expect(held.scratch - plan.bytes.scratch, 'unplanned scratch: the per-op uniforms only').toBeGreaterThanOrEqual(0);
      expect(held.scratch - plan.bytes.scratch).toBeLessThan(UNIFORM_SLACK);
    } else {
      expect(plan.bytes[c], c).toBe(held[c]);
    }
  }
}
