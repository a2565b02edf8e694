/**
 * The checks on what a caller feeds, in one place: the API host runs them before a request is queued
 * (so a bad request fails at once) and the engine runs them again on every feed (it can be driven
 * directly). Both throw the same errors with the same messages and fields.
 */
import { ContextOverflowError, InvalidTokenError } from './errors.ts';

/**
 * Throws InvalidTokenError (`token`, `index`, `vocabSize`) for the first id that is not an integer in
 * [0, vocabSize). Holes of a sparse array are skipped, as `forEach` skips them.
 */
export function checkTokens(tokens: readonly unknown[], vocabSize: number): void {
  tokens.forEach((t, i) => {
    if (!Number.isInteger(t) || (t as number) < 0 || (t as number) >= vocabSize) throw new InvalidTokenError(t, i, vocabSize);
  });
}

/**
 * Throws ContextOverflowError (`position`, `requested`, `capacity`) when `adding` more tokens at
 * `position` would not fit in `capacity` positions (Infinity for a sliding window: never throws).
 */
export function checkCapacity(position: number, adding: number, capacity: number): void {
  if (position + adding > capacity) throw new ContextOverflowError(position, adding, capacity);
}
