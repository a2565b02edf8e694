/**
 * The CPU reference of the whole model, in two independent forms that must agree:
 *
 *  - `forward(tokens)`: whole chunks, the way the official training code runs: every layer over the full
 *    sequence, attention with a band mask, fast weights applied and learned chunk by chunk.
 *  - `stream()`: one token at a time with carried state, the way an engine decodes: a window of roped
 *    keys/values, fast weights and momentum per head, and the pending chunk's rows, learned when the
 *    chunk at absolute positions [cC, (c+1)C) completes.
 *
 * Also the two baselines, chosen by the config: `window_size: null` (full attention) and
 * `use_fast_weights: false` (no fast-weight branch). f64 throughout: this is the oracle, not the product.
 */
import type { LactConfig, WeightMap } from '../model/config.ts';
import { FastWeightHead, type ChunkRows } from './fast-weights.ts';
import { addFastOutput, attendRow, mlpResidual, projectRows, type ProjectedRows } from './layer-math.ts';
import { linear, rmsNormRows } from './linalg.ts';
import { referenceWeights, type LayerWeights, type ReferenceWeights } from './weights.ts';

export interface ForwardResult {
  /** [T, vocab] */
  logits: Float64Array;
  /** T×D residual stream: hidden[0] after the embedding, hidden[i] after block i-1 (before the final norm). */
  hidden: Float64Array[];
}

export class ReferenceModel {
  readonly weights: ReferenceWeights;

  constructor(readonly config: LactConfig, weights: WeightMap) {
    this.weights = referenceWeights(config, weights);
  }

  /** Whole-chunk form, from position 0. */
  forward(tokens: readonly number[]): ForwardResult {
    const c = this.config, D = c.hiddenSize, T = tokens.length;
    const positions = tokens.map((_, i) => i);
    const x = this.embed(tokens);
    const hidden = [Float64Array.from(x)];
    for (const lw of this.weights.layers) {
      const a = rmsNormRows(x, T, D, lw.attnNorm, c.normEps);
      const pr = projectRows(c, lw, a, positions);
      const o = new Float64Array(T * D);
      const keys = rowsOf(pr.ka, T, D), values = rowsOf(pr.v, T, D);
      for (let t = 0; t < T; t++) {
        const lo = c.windowSize === null ? 0 : Math.max(0, t - c.windowSize + 1);
        attendRow(c, pr.qa, t * D, keys.slice(lo, t + 1), values.slice(lo, t + 1), o, t * D);
      }
      if (lw.fast) {
        const heads = this.initialHeads(lw);
        for (let s = 0; s < T; s += c.chunkSize) {
          const e = Math.min(T, s + c.chunkSize);
          this.applyHeads(lw, heads, pr, s, e, o, s);
          if (e - s === c.chunkSize) learnHeads(c, heads, chunkFromRows(c, pr, s, e));
        }
      }
      addResidual(x, linear(o, T, D, lw.oW, D));
      mlpResidual(c, lw, x, T);
      hidden.push(Float64Array.from(x));
    }
    return { logits: this.head(x, T), hidden };
  }

  /** A fresh streaming session at position 0. */
  stream(): ReferenceStream {
    return new ReferenceStream(this);
  }

  /** @internal */
  embed(tokens: readonly number[]): Float64Array {
    const c = this.config, D = c.hiddenSize;
    const x = new Float64Array(tokens.length * D);
    tokens.forEach((tok, t) => {
      if (!Number.isInteger(tok) || tok < 0 || tok >= c.vocabSize) {
        throw new RangeError(`token id ${tok} at index ${t} is outside the vocabulary [0, ${c.vocabSize})`);
      }
      x.set(this.weights.embeddings.subarray(tok * D, (tok + 1) * D), t * D);
    });
    return x;
  }

  /** @internal final norm and LM head. */
  head(x: Float64Array, rows: number): Float64Array {
    const c = this.config;
    const h = rmsNormRows(x, rows, c.hiddenSize, this.weights.finalNorm, c.normEps);
    return linear(h, rows, c.hiddenSize, this.weights.lmHead, c.vocabSize);
  }

  /** @internal one FastWeightHead per fast-weight head, at the model's initial weights. */
  initialHeads(lw: LayerWeights): FastWeightHead[] {
    const c = this.config, { numFwHeads: Hf, fwHeadDim: df, fwHidden: dh } = c;
    const f = lw.fast!;
    const opts = { useMomentum: c.useMomentum, useMuon: c.useMuon };
    const heads: FastWeightHead[] = [];
    for (let h = 0; h < Hf; h++) {
      const sz = dh * df;
      heads.push(new FastWeightHead(df, dh, f.w0.subarray(h * sz, (h + 1) * sz), f.w1.subarray(h * sz, (h + 1) * sz), f.w2.subarray(h * sz, (h + 1) * sz), opts));
    }
    return heads;
  }

  /** @internal adds every head's (normed, scaled) fast-weight output for rows [s, e) of pr into o at row oRow. */
  applyHeads(lw: LayerWeights, heads: readonly FastWeightHead[], pr: ProjectedRows, s: number, e: number, o: Float64Array, oRow: number): void {
    const c = this.config, D = c.hiddenSize, df = c.fwHeadDim;
    heads.forEach((head, h) => {
      const q = headSlice(pr.fq!, D, s, e, h * df, df);
      const y = head.apply(q, e - s);
      for (let t = s; t < e; t++) {
        addFastOutput(c, lw, y.subarray((t - s) * df, (t - s + 1) * df), t, h, pr.tttScale, o, (oRow + t - s) * D);
      }
    });
  }
}

/** Rows carried for the chunk being filled (fast-weight keys/values, learning rates, momentum gate). */
interface PendingRows {
  fk: Float64Array[];
  fv: Float64Array[];
  lr: Float64Array[];
  beta: Float64Array[];
}

interface LayerState {
  /** Roped keys and values of the last W positions (all positions for full attention). */
  keys: Float64Array[];
  values: Float64Array[];
  heads: FastWeightHead[];
  pending: PendingRows;
}

/** The streaming form: one token at a time, carrying exactly the state an engine carries. */
export class ReferenceStream {
  position = 0;
  readonly layers: LayerState[];

  constructor(private readonly model: ReferenceModel) {
    this.layers = model.weights.layers.map((lw) => ({
      keys: [],
      values: [],
      heads: lw.fast ? model.initialHeads(lw) : [],
      pending: { fk: [], fv: [], lr: [], beta: [] },
    }));
  }

  /** Feeds one token; returns the logits for the next one. */
  step(token: number): Float64Array {
    const m = this.model, c = m.config, D = c.hiddenSize, p = this.position;
    const x = m.embed([token]);
    m.weights.layers.forEach((lw, l) => {
      const st = this.layers[l];
      const a = rmsNormRows(x, 1, D, lw.attnNorm, c.normEps);
      const pr = projectRows(c, lw, a, [p]);
      st.keys.push(pr.ka);
      st.values.push(pr.v);
      if (c.windowSize !== null && st.keys.length > c.windowSize) {
        st.keys.shift();
        st.values.shift();
      }
      const o = new Float64Array(D);
      attendRow(c, pr.qa, 0, st.keys, st.values, o, 0);
      if (lw.fast) {
        m.applyHeads(lw, st.heads, pr, 0, 1, o, 0);
        st.pending.fk.push(pr.fk!);
        st.pending.fv.push(pr.fv!);
        st.pending.lr.push(pr.lr!);
        st.pending.beta.push(pr.beta ?? new Float64Array(c.numFwHeads));
        if ((p + 1) % c.chunkSize === 0) {
          learnHeads(c, st.heads, chunkFromPending(c, st.pending));
          st.pending = { fk: [], fv: [], lr: [], beta: [] };
        }
      }
      addResidual(x, linear(o, 1, D, lw.oW, D));
      mlpResidual(c, lw, x, 1);
    });
    this.position++;
    return m.head(x, 1);
  }

  /** Feeds tokens one at a time; returns the logits after each, [T, vocab]. */
  run(tokens: readonly number[]): Float64Array {
    const V = this.model.config.vocabSize;
    const out = new Float64Array(tokens.length * V);
    tokens.forEach((t, i) => out.set(this.step(t), i * V));
    return out;
  }
}

/** A chunk's rows per head, from a whole-sequence projection. */
function chunkFromRows(c: LactConfig, pr: ProjectedRows, s: number, e: number): ChunkRows[] {
  const D = c.hiddenSize, df = c.fwHeadDim, Hf = c.numFwHeads, n = e - s;
  const out: ChunkRows[] = [];
  for (let h = 0; h < Hf; h++) {
    const lrCol = (j: number) => Float64Array.from({ length: n }, (_, i) => pr.lr![(s + i) * 3 * Hf + 3 * h + j]);
    out.push({
      n,
      k: headSlice(pr.fk!, D, s, e, h * df, df),
      v: headSlice(pr.fv!, D, s, e, h * df, df),
      lr0: lrCol(0),
      lr1: lrCol(1),
      lr2: lrCol(2),
      beta: Float64Array.from({ length: n }, (_, i) => (pr.beta ? pr.beta[(s + i) * Hf + h] : 0)),
    });
  }
  return out;
}

/** The same from the streaming form's pending rows. */
function chunkFromPending(c: LactConfig, pending: PendingRows): ChunkRows[] {
  const df = c.fwHeadDim, Hf = c.numFwHeads, n = pending.fk.length;
  const out: ChunkRows[] = [];
  for (let h = 0; h < Hf; h++) {
    const k = new Float64Array(n * df), v = new Float64Array(n * df);
    for (let i = 0; i < n; i++) {
      k.set(pending.fk[i].subarray(h * df, (h + 1) * df), i * df);
      v.set(pending.fv[i].subarray(h * df, (h + 1) * df), i * df);
    }
    const col = (rows: Float64Array[], stride: number, j: number) => Float64Array.from(rows, (r) => r[stride * h + j]);
    out.push({ n, k, v, lr0: col(pending.lr, 3, 0), lr1: col(pending.lr, 3, 1), lr2: col(pending.lr, 3, 2), beta: col(pending.beta, 1, 0) });
  }
  return out;
}

function learnHeads(_c: LactConfig, heads: readonly FastWeightHead[], chunk: readonly ChunkRows[]): void {
  heads.forEach((head, h) => head.learn(chunk[h]));
}

/** Rows [s, e) and columns [col, col + width) of a [*, stride] matrix. */
function headSlice(m: Float64Array, stride: number, s: number, e: number, col: number, width: number): Float64Array {
  const out = new Float64Array((e - s) * width);
  for (let t = s; t < e; t++) out.set(m.subarray(t * stride + col, t * stride + col + width), (t - s) * width);
  return out;
}

function rowsOf(m: Float64Array, rows: number, width: number): Float64Array[] {
  return Array.from({ length: rows }, (_, t) => m.subarray(t * width, (t + 1) * width));
}

function addResidual(x: Float64Array, y: Float64Array): void {
  for (let i = 0; i < x.length; i++) x[i] += y[i];
}
