/**
 * The streaming form of the TTT-E2E reference: one token at a time, carrying only the state an engine
 * carries (the spec's "Prefill and decode"):
 *
 *  - per block, the roped keys and values of the last W − 1 positions (a TTT block also keeps the W − 1
 *    before the pending chunk, which its update needs, so at most W − 1 + B rows);
 *  - θ, and the pending chunk: the h_pre rows (input of the first TTT block) and tokens of the
 *    positions since the last update (at most B);
 *  - the position.
 *
 * Decode: every block, one query over the visible keys (its own attention loop below), with the current
 * θ. Update ("apply, then update"): when the token at position p > 0 with p % B = 0 is fed, chunk
 * p/B − 1 learns FIRST (token p is its last target): its TTT-block forward is recomputed from the kept
 * h_pre rows with the θ that produced its logits, the K/V of the positions before it constants, then
 * loss, backward, clip and SGD (the chunk step of model.ts); token p and everything after it run with
 * the new θ. The K/V cached while decoding the chunk are kept, never recomputed. So after P tokens,
 * floor((P − 1)/B) updates have been taken.
 */
import type { E2EOptions, E2EReference, KvRows, ResolvedOptions } from './model.ts';
import { linear, qkNorm, rmsNormRows, rope, swiglu } from './ops.ts';
import { clipAndStep } from './update.ts';
import { cloneTheta, type Theta } from './weights.ts';

interface LayerKv {
  /** Position of keys[0]. */
  first: number;
  keys: Float64Array[];
  values: Float64Array[];
}

export class E2EStream {
  /** The position of the next token. */
  position = 0;
  private theta: Theta;
  readonly chunkLosses: number[] = [];
  readonly gradNorms: number[] = [];
  readonly clipScales: number[] = [];
  /** θ after every update. */
  readonly thetas: Theta[] = [];
  private readonly kv: LayerKv[];
  private pendingH: Float64Array[] = [];
  private pendingTokens: number[] = [];
  private readonly opt: ResolvedOptions;

  constructor(private readonly ref: E2EReference, private readonly options: E2EOptions = {}) {
    this.opt = ref.resolve(options);
    this.theta = ref.initialTheta();
    this.kv = ref.weights.layers.map(() => ({ first: 0, keys: [], values: [] }));
  }

  /** Feeds the token at `position`; returns its logits [V] (the next-token distribution). */
  feed(token: number): Float64Array {
    const c = this.ref.config, p = this.position, B = c.miniBatchSize;
    if (p > 0 && p % B === 0) {
      if (c.numTttLayers > 0) this.update(token);
      this.pendingH = [];
      this.pendingTokens = [];
    }
    const logits = this.decode(token);
    this.pendingTokens.push(token);
    this.trim();
    this.position++;
    return logits;
  }

  /** Feeds tokens one at a time; the logits after each, [T, V]. */
  run(tokens: readonly number[]): Float64Array {
    const V = this.ref.config.vocabSize;
    const out = new Float64Array(tokens.length * V);
    tokens.forEach((t, i) => out.set(this.feed(t), i * V));
    return out;
  }

  /** The current dynamic weights (a copy). */
  currentTheta(): Theta {
    return cloneTheta(this.theta);
  }

  get updates(): number {
    return this.gradNorms.length;
  }

  /** [first, end) positions of the K/V rows block `layer` keeps. */
  kvSpan(layer: number): [number, number] {
    const s = this.kv[layer];
    return [s.first, s.first + s.keys.length];
  }

  /** Rows of the chunk waiting for its last target. */
  get pendingRows(): number {
    return this.pendingH.length;
  }

  // ---- decode: one token through every block ----
  private decode(token: number): Float64Array {
    const ref = this.ref, c = ref.config, p = this.position;
    const { hiddenSize: d, numHeads: H, headDim: hd, rmsNormEps: eps } = c;
    const x = ref.embed([token]);
    ref.weights.layers.forEach((lw, i) => {
      if (i === c.firstTttLayer) this.pendingH.push(Float64Array.from(x));
      const a = rmsNormRows(x, 1, d, lw.attnNorm, eps);
      const q = rope(qkNorm(linear(a, 1, d, lw.wq, d), 1, H, hd, lw.qNorm, eps), 1, H, hd, [p], c.ropeTheta, this.opt.layout);
      const k = rope(qkNorm(linear(a, 1, d, lw.wk, d), 1, H, hd, lw.kNorm, eps), 1, H, hd, [p], c.ropeTheta, this.opt.layout);
      const st = this.kv[i];
      st.keys.push(k);
      st.values.push(linear(a, 1, d, lw.wv, d));
      const o = this.attendOne(q, st, p);
      addInPlace(x, rmsNormRows(linear(o, 1, d, lw.wo, d), 1, d, lw.attnPostNorm, eps));
      if (lw.dyn) {
        const th = this.theta[i - c.firstTttLayer];
        const y = swiglu(rmsNormRows(x, 1, d, lw.dyn.norm, eps), 1, d, th.w1, th.w2, th.w3, c.intermediateSizeDynamicMlp);
        addInPlace(x, rmsNormRows(y, 1, d, lw.dyn.postNorm, eps));
      }
      const z = swiglu(rmsNormRows(x, 1, d, lw.mlpNorm, eps), 1, d, lw.mlpW1, lw.mlpW2, lw.mlpW3, c.intermediateSizeStaticMlp);
      addInPlace(x, rmsNormRows(z, 1, d, lw.mlpPostNorm, eps));
    });
    return ref.head(x, 1);
  }

  /** softmax(q·k_j/√hd) v_j per head over the kept keys j in (p − W, p]. */
  private attendOne(q: Float64Array, st: LayerKv, p: number): Float64Array {
    const c = this.ref.config, { numHeads: H, headDim: hd } = c, d = H * hd;
    const lo = Math.max(st.first, p - c.slidingWindow + 1);
    const rows = p - lo + 1;
    const o = new Float64Array(d);
    const w = new Float64Array(rows);
    for (let h = 0; h < H; h++) {
      let max = -Infinity;
      for (let r = 0; r < rows; r++) {
        const key = st.keys[lo + r - st.first];
        let s = 0;
        for (let i = 0; i < hd; i++) s += q[h * hd + i] * key[h * hd + i];
        w[r] = s / Math.sqrt(hd);
        max = Math.max(max, w[r]);
      }
      let sum = 0;
      for (let r = 0; r < rows; r++) sum += (w[r] = Math.exp(w[r] - max));
      for (let r = 0; r < rows; r++) {
        const val = st.values[lo + r - st.first];
        for (let i = 0; i < hd; i++) o[h * hd + i] += (w[r] / sum) * val[h * hd + i];
      }
    }
    return o;
  }

  // ---- the update of the chunk that `nextToken` completes ----
  private update(nextToken: number): void {
    const ref = this.ref, c = ref.config, B = c.miniBatchSize, d = c.hiddenSize;
    const s = this.position - B;
    if (this.pendingH.length !== B || this.pendingTokens.length !== B) throw new Error(`stream: pending chunk has ${this.pendingH.length} rows, expected ${B}`);
    const hPre = new Float64Array(B * d);
    this.pendingH.forEach((row, t) => hPre.set(row, t * d));
    const lo = Math.max(0, s - c.slidingWindow + 1);
    const past: KvRows[] = [];
    for (let j = 0; j < c.numTttLayers; j++) {
      const st = this.kv[c.firstTttLayer + j];
      if (st.first > lo) throw new Error(`stream: block ${c.firstTttLayer + j} dropped K/V it still needs (kept from ${st.first}, needs ${lo})`);
      const k = new Float64Array((s - lo) * d), v = new Float64Array((s - lo) * d);
      for (let pos = lo; pos < s; pos++) {
        k.set(st.keys[pos - st.first], (pos - lo) * d);
        v.set(st.values[pos - st.first], (pos - lo) * d);
      }
      past.push({ k, v, positions: Array.from({ length: s - lo }, (_, t) => lo + t) });
    }
    const targets = [...this.pendingTokens.slice(1), nextToken];
    const fwd = ref.chunkForward({ hPre, start: s, n: B, past }, this.theta, this.options);
    const g = ref.chunkGradient(fwd, targets, this.options);
    const st = clipAndStep(this.theta, g.grads, this.opt.lr, this.opt.clip);
    this.theta = st.theta;
    this.chunkLosses.push(g.loss);
    this.gradNorms.push(st.gradNorm);
    this.clipScales.push(st.clipScale);
    this.thetas.push(cloneTheta(st.theta));
  }

  /** Drops the K/V rows no later query or update can see. */
  private trim(): void {
    const c = this.ref.config, p = this.position, W = c.slidingWindow, B = c.miniBatchSize;
    const pendingStart = Math.floor(p / B) * B; // the chunk that holds p has not learned yet
    this.kv.forEach((st, i) => {
      const keep = i >= c.firstTttLayer ? Math.max(0, pendingStart - W + 1) : Math.max(0, p - W + 2);
      const drop = Math.max(0, keep - st.first);
      st.keys.splice(0, drop);
      st.values.splice(0, drop);
      st.first += drop;
    });
  }
}

function addInPlace(a: Float64Array, b: Float64Array): void {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
}
