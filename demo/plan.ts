/**
 * The demo's arithmetic, kept free of the DOM so that the e2e test can replay exactly what the page does
 * (test/e2e/demo-page.test.ts imports it): how an input is cut or repeated to a length, how a prefill is
 * split around decode probes, and how large a full-attention cache to ask for.
 */

/** `ids` cut to `target` tokens, or repeated until it has that many; `null` keeps them as they are. */
export function shapeTokens(ids: readonly number[], target: number | null): number[] {
  if (target === null) return [...ids];
  if (!Number.isInteger(target) || target < 1) throw new RangeError(`the length must be a whole number of tokens >= 1, got ${target}`);
  if (ids.length === 0) throw new RangeError('the input is empty: there is nothing to repeat');
  if (ids.length >= target) return ids.slice(0, target);
  const out = new Array<number>(target);
  for (let i = 0; i < target; i++) out[i] = ids[i % ids.length];
  return out;
}

/**
 * One call of a planned prefill: `ids[start, end)`. A probe is a one-token call. The engine API holds back
 * the last token of every prefill call and feeds it at the start of the next, so a probe makes the engine
 * feed the previous call's last token alone: a one-token step at that position, timed by the engine like a
 * decode step. The memory at the end is the same as after one prefill of everything.
 */
export interface PlanStep {
  readonly start: number;
  readonly end: number;
  readonly probe: boolean;
}

/** Tokens between two decode probes: about `points` probes over the input, never closer than 16 tokens. */
export function probeInterval(total: number, points = 48): number {
  return Math.max(16, Math.ceil(total / points));
}

/** The calls that prefill `total` tokens with a probe every `every` tokens (`every` null: one call). */
export function prefillPlan(total: number, every: number | null): PlanStep[] {
  if (total <= 0) return [];
  if (every === null) return [{ start: 0, end: total, probe: false }];
  if (!Number.isInteger(every) || every < 2) throw new RangeError(`probe interval must be an integer >= 2, got ${every}`);
  const steps: PlanStep[] = [];
  let start = 0;
  for (let p = every; p < total; p += every) {
    // ids[start, p-1) in bulk, then ids[p-1, p) alone: that call feeds ids[p-2] by itself.
    if (p - 1 > start) steps.push({ start, end: p - 1, probe: false });
    steps.push({ start: p - 1, end: p, probe: true });
    start = p;
  }
  if (start < total) steps.push({ start, end: total, probe: false });
  return steps;
}

/** Positions a full-attention cache is sized in. */
export const CONTEXT_GRANULE = 256;

/**
 * `maxContext` for a full-attention model that reads `inputTokens` and then generates `decodeTokens`:
 * room for both plus one more round of generation, rounded up, so "Generate more" fits once.
 */
export function fullAttentionContext(inputTokens: number, decodeTokens: number): number {
  const need = inputTokens + 2 * Math.max(decodeTokens, 1) + 1;
  return Math.ceil(need / CONTEXT_GRANULE) * CONTEXT_GRANULE;
}
