/**
 * Stop strings over streamed text. Text that could be the start of a stop string is held back until
 * the next piece decides it, so a stop string is never partly emitted: any occurrence lies wholly in
 * the held text plus the new piece (an earlier start would have been held back as a prefix).
 */
export class StopText {
  private held = '';
  private readonly stops: readonly string[];

  constructor(stops: readonly string[] = []) {
    if (!Array.isArray(stops)) throw new TypeError('stop must be an array of strings');
    for (const s of stops) {
      if (typeof s !== 'string' || s.length === 0) throw new RangeError(`stop strings must be non-empty strings, got ${JSON.stringify(s)}`);
    }
    this.stops = stops;
  }

  /** Adds decoded text: returns the text now safe to emit, and whether a stop string was reached. */
  push(piece: string): { text: string; stopped: boolean } {
    const text = this.held + piece;
    let at = -1;
    for (const s of this.stops) {
      const i = text.indexOf(s);
      if (i >= 0 && (at < 0 || i < at)) at = i;
    }
    if (at >= 0) {
      this.held = '';
      return { text: text.slice(0, at), stopped: true };
    }
    const keep = this.heldSuffix(text);
    this.held = text.slice(text.length - keep);
    return { text: text.slice(0, text.length - keep), stopped: false };
  }

  /** The stream ended without a stop string: everything held back. */
  flush(): string {
    const out = this.held;
    this.held = '';
    return out;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
  private heldSuffix(text: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, text.length); n > best; n--) {
        if (text.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
