/**
 * The compact numbers under the chat: decode latency, prefill speed, GPU memory and the context position.
 * Pure formatting, so the element only writes strings, and the same words appear wherever it shows them.
 */
import type { TttStats } from '../api/index.ts';

export interface ReadoutText {
  readonly latency: string;
  readonly speed: string;
  readonly memory: string;
  readonly position: string;
  /** For a model that learns while it reads: its updates and the last chunk's loss ('' otherwise). */
  readonly learning: string;
  /** A longer line for the readout's tooltip: what the numbers are and how they were measured. */
  readonly title: string;
}

export const EMPTY_READOUT: ReadoutText = {
  latency: '– ms/token',
  speed: '– tok/s',
  memory: '– GPU',
  position: '0 tokens',
  learning: '',
  title: 'Decode latency (mean of the last 32 tokens), prompt speed, GPU memory held by the engine, tokens in memory',
};

/** 1536 → "1.5 KB"; binary units, one decimal below 100. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 || v >= 100 ? Math.round(v) : v.toFixed(1)} ${units[u]}`;
}

function fixed(n: number): string {
  return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
}

/** "learned 6× · 2.31 bits/byte": the updates so far and the last one's chunk loss (nats → bits per token). */
function formatLearning(s: TttStats): string {
  const l = s.learning;
  if (!l) return '';
  const last = l.recent[l.recent.length - 1];
  return last ? `learned ${l.updates}× · ${(last.loss / Math.LN2).toFixed(2)} bits/token` : 'learning: no chunk yet';
}

/** Mean bits per token of log-probabilities (natural log), NaN entries (nothing before them) skipped; null when none. */
export function meanBits(logprobs: ArrayLike<number>): number | null {
  let sum = 0, n = 0;
  for (let i = 0; i < logprobs.length; i++) {
    if (Number.isNaN(logprobs[i])) continue;
    sum -= logprobs[i] / Math.LN2;
    n++;
  }
  return n ? sum / n : null;
}

export function formatReadout(s: TttStats): ReadoutText {
  const latency = s.decodeMsRolling ?? s.decodeMsLast;
  return {
    latency: latency === null ? EMPTY_READOUT.latency : `${fixed(latency)} ms/token`,
    speed: s.prefillTokensPerSecond === null ? EMPTY_READOUT.speed : `${fixed(s.prefillTokensPerSecond)} tok/s`,
    memory: `${formatBytes(s.memory.total)} GPU`,
    position: `${s.position} ${s.position === 1 ? 'token' : 'tokens'}`,
    learning: formatLearning(s),
    title:
      `${EMPTY_READOUT.title}. Times: ${s.timing}. ` +
      `GPU memory: weights ${formatBytes(s.memory.weights)}, KV ${formatBytes(s.memory.kv)}, fast weights ${formatBytes(s.memory.fastWeights)}` +
      (s.learning ? `, inner step ${formatBytes(s.memory.innerStep)}. Learning: the loss of the last chunk the model learned from, before its step.` : '.'),
  };
}
