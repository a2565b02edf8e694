/**
 * The JavaScript heap in use by this thread, where the runtime exposes it: Chromium's non-standard
 * `performance.memory` (pages and workers), Node's `process.memoryUsage()`. Null elsewhere (Firefox,
 * Safari): a number that is not measured is never made up.
 */
export function jsHeapBytes(): number | null {
  const perf = (globalThis as { performance?: { memory?: { usedJSHeapSize?: unknown } } }).performance;
  const used = perf?.memory?.usedJSHeapSize;
  if (typeof used === 'number' && used > 0) return used;
  const proc = (globalThis as { process?: { memoryUsage?: () => { heapUsed: number } } }).process;
  if (typeof proc?.memoryUsage === 'function') return proc.memoryUsage().heapUsed;
  return null;
}
