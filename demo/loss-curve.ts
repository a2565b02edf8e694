/**
 * Loss by position while a model reads: from the engine's per-token log-probabilities (prefill's
 * `logprobs`), the running mean in bits per token of each position bucket, and a smoothed per-token line
 * (the mean of the last `smooth` tokens, sampled every `every`). DOM-free, so that the e2e test replays
 * exactly what the page plots.
 *
 * Buckets double: [0, 256), [256, 512), [512, 1K), ... so that the window's edge (a power of two for
 * every bundled model) is a bucket edge and a long document still has a handful of points.
 */

/** The bucket of position p: 0 for p < 256, then 1 + floor(log2(p / 256)). */
export function bucketOf(p: number): number {
  return p < 256 ? 0 : 1 + Math.floor(Math.log2(p / 256));
}

/** [start, end) of bucket b. */
export function bucketRange(b: number): [number, number] {
  return b === 0 ? [0, 256] : [256 * 2 ** (b - 1), 256 * 2 ** b];
}

export interface LossPoint {
  readonly position: number;
  readonly bits: number;
}

export class LossCurve {
  private readonly sums: number[] = [];
  private readonly counts: number[] = [];
  private readonly positionSums: number[] = [];
  private readonly recent: number[] = [];
  private recentSum = 0;
  private total = 0;
  private scored = 0;
  /** Positions scored so far (NaN values, e.g. position 0, are skipped). */
  next = 0;

  /**
   * minBucketTokens: a bucket is drawn once it holds this many scored tokens, so that the first tokens
   * of a new bucket (the 8,193rd token of an 8K read opens bucket 8K-16K alone) are not a point that
   * looks like a mean.
   */
  constructor(readonly smooth = 256, readonly every = 32, readonly minBucketTokens = 32) {}

  /**
   * Takes the log-probabilities (natural log) of tokens at positions start, start + 1, ...; returns the
   * points of the smoothed line that this call completed.
   */
  push(start: number, logprobs: ArrayLike<number>): LossPoint[] {
    if (start !== this.next) throw new RangeError(`loss curve: expected position ${this.next}, got ${start}`);
    const out: LossPoint[] = [];
    for (let i = 0; i < logprobs.length; i++) {
      const p = start + i;
      const lp = logprobs[i];
      if (Number.isFinite(lp)) {
        const bits = -lp / Math.LN2;
        const b = bucketOf(p);
        this.sums[b] = (this.sums[b] ?? 0) + bits;
        this.counts[b] = (this.counts[b] ?? 0) + 1;
        this.positionSums[b] = (this.positionSums[b] ?? 0) + p;
        this.total += bits;
        this.scored++;
        this.recent.push(bits);
        this.recentSum += bits;
        if (this.recent.length > this.smooth) this.recentSum -= this.recent.shift()!;
      }
      if (this.recent.length > 0 && (p + 1) % this.every === 0) out.push({ position: p + 1, bits: this.recentSum / this.recent.length });
    }
    this.next = start + logprobs.length;
    return out;
  }

  /**
   * Running mean of every bucket with at least minBucketTokens scored positions, plotted at the mean position of the tokens it
   * holds: a bucket still filling sits over the part read so far, not at a middle far past the text
   * (the chart replaces the whole series each call, so a point that moves leaves no trail).
   */
  buckets(): { bucket: number; from: number; to: number; position: number; bits: number; tokens: number }[] {
    const out = [];
    for (let b = 0; b < this.counts.length; b++) {
      const n = this.counts[b];
      if (!n || n < this.minBucketTokens) continue;
      const [from, to] = bucketRange(b);
      out.push({ bucket: b, from, to, position: this.positionSums[b] / n, bits: this.sums[b] / n, tokens: n });
    }
    return out;
  }

  /** Mean bits per token over every scored position. */
  get meanBits(): number | null {
    return this.scored ? this.total / this.scored : null;
  }

  get scoredTokens(): number {
    return this.scored;
  }
}
