/**
 * The CPU reference of the TTT-E2E language model (shared/spec/ttt-e2e-language-model.md), f64,
 * clarity over speed. Two forms that must agree:
 *
 *  - `forward(tokens)` (this file): whole chunks, the way the official code runs. The embedding and the
 *    L − S non-TTT blocks run once over the whole sequence (they never see θ: `hPre`); then chunk i =
 *    positions [iB, min(iB + B, T)), from position 0: APPLY the S TTT blocks and the head with θ_{i−1}
 *    (the K/V of the W − 1 positions before the chunk, computed in their own chunk, are constants);
 *    if the chunk is complete and token iB + B (its last target) is known, LOSS = mean CE over the
 *    targets ≠ BOS / max(#valid, 1e-10), GRADIENT w.r.t. θ by the hand-written backward (backward.ts)
 *    through the head, the final norm and the S TTT blocks, ONE global-norm CLIP, SGD θ_i = θ_{i−1} − η g.
 *  - `stream()` (stream.ts): one token at a time with the carried state; a chunk learns when the token
 *    after it is fed, recomputing the chunk's TTT-block forward from the kept h_pre rows.
 *
 * The chunk step (`chunkForward`, `chunkGradient`, `clipAndStep`) is the one computation both forms
 * run on a completed chunk; what differs is where its inputs come from (the whole-sequence arrays here,
 * the carried K/V window, pending rows and tokens in the stream) and how the logits are produced (the
 * stream's per-token decode has its own attention loop).
 */
import type { WeightMap } from '../../model/config.ts';
import type { E2EConfig } from '../../model/e2e-config.ts';
import { crossEntropyBackward, linearBackward, qkNormBackward, rmsnormBackward, ropeBackward, slidingWindowAttentionBackward, swigluBackward } from './backward.ts';
import { linear, logSumExp, qkNorm, rmsNormRows, rope, slidingWindowAttention, swiglu, type RopeLayout } from './ops.ts';
import { E2EStream } from './stream.ts';
import { clipAndStep } from './update.ts';
import { cloneTheta, e2eReferenceWeights, type DynamicWeights, type E2EWeights, type Theta } from './weights.ts';

/** Overrides of the config's inner-loop settings, and two planted errors for tests. */
export interface E2EOptions {
  /** η (default: config inner_lr); 0 = the plain sliding-window forward. */
  readonly innerLr?: number;
  /** Max global norm (default: config inner_clip_global_norm); ≤ 0: no clip. */
  readonly clip?: number;
  /** Skip targets equal to BOS in the chunk loss (default true; false plants an error). */
  readonly skipBosTargets?: boolean;
  /** Default 'interleaved'; 'rotate-half' plants an error (LaCT's layout). */
  readonly ropeLayout?: RopeLayout;
}

/** @internal the options with the defaults filled in. */
export interface ResolvedOptions {
  readonly lr: number;
  readonly clip: number;
  readonly bos: number | null;
  readonly layout: RopeLayout;
}

/** Roped keys and values [n, d] of the positions listed (consecutive, ascending). */
export interface KvRows {
  readonly k: Float64Array;
  readonly v: Float64Array;
  readonly positions: readonly number[];
}

/** What one TTT-block chunk step needs: the chunk's h_pre rows and, per TTT block, the visible K/V before it. */
export interface ChunkInput {
  /** [n, d]: the input of the first TTT block (embedding + the non-TTT blocks) at positions start..start+n−1. */
  readonly hPre: Float64Array;
  readonly start: number;
  readonly n: number;
  /** Per TTT block j: roped K and V of the positions before the chunk that its queries can see (constants). */
  readonly past: readonly KvRows[];
}

/** Every activation of one block's forward over some rows, kept for its backward. */
export interface BlockTape {
  readonly layer: number;
  readonly positions: readonly number[];
  /** Block input [n, d]. */
  readonly h: Float64Array;
  /** attn_norm(h). */
  readonly a: Float64Array;
  /** a Wq^T, a Wk^T (before the q/k norm), a Wv^T. */
  readonly q: Float64Array;
  readonly k: Float64Array;
  readonly v: Float64Array;
  /** After the q/k norm and RoPE. */
  readonly qr: Float64Array;
  readonly kr: Float64Array;
  /** Keys and values attended (the past rows, then this call's) and their positions. */
  readonly keys: Float64Array;
  readonly values: Float64Array;
  readonly kPos: readonly number[];
  readonly nPast: number;
  /** Attention mix [n, d] (before o_proj) and o Wo^T. */
  readonly o: Float64Array;
  readonly ao: Float64Array;
  /** h + attn_post_norm(ao). */
  readonly h1: Float64Array;
  /** TTT blocks: the dynamic weights used, dyn_norm(h1) and the dynamic SwiGLU's output. */
  readonly dyn: DynamicWeights | null;
  readonly b: Float64Array | null;
  readonly y: Float64Array | null;
  /** h1 + dyn_post_norm(y) (= h1 in a non-TTT block). */
  readonly h2: Float64Array;
  /** mlp_norm(h2) and the static SwiGLU's output. */
  readonly m: Float64Array;
  readonly z: Float64Array;
  /** Block output. */
  readonly out: Float64Array;
}

export interface ChunkForward {
  readonly input: ChunkInput;
  /** [n, V]: the logits of the chunk's positions. */
  readonly logits: Float64Array;
  /** One tape per TTT block. */
  readonly tapes: readonly BlockTape[];
  /** Per TTT block: this chunk's roped K and V (they stay in the window). */
  readonly cur: readonly KvRows[];
  /** The residual stream after the last TTT block (the final norm's input) [n, d]. */
  readonly final: Float64Array;
}

export interface ChunkGradient {
  readonly loss: number;
  readonly nll: Float64Array;
  readonly valid: Float64Array;
  /** dℓ/dθ, the layout of θ. */
  readonly grads: Theta;
}


/** One chunk of a whole-chunk forward, as it ran: enough to rerun its step (e.g. for finite differences). */
export interface ChunkRecord {
  readonly input: ChunkInput;
  /** θ the chunk was applied with. */
  readonly thetaBefore: Theta;
  /** Its targets tokens[s+1 .. s+B] when it updated, else null. */
  readonly targets: readonly number[] | null;
}

export interface E2EForwardResult {
  /** [T, V], each chunk with its pre-update θ. */
  readonly logits: Float64Array;
  /** [T − 1]: NLL of token p + 1 under the logits at p (BOS targets included). */
  readonly nll: Float64Array;
  /** [T − 1]: 1 where token p + 1 ≠ BOS. */
  readonly lossMask: Uint8Array;
  /** L + 1 arrays [T, d]: hidden[0] the embeddings, hidden[i] after block i − 1 (before the final norm). */
  readonly hidden: readonly Float64Array[];
  /** Per update, in order. */
  readonly chunkLosses: readonly number[];
  readonly gradNorms: readonly number[];
  readonly clipScales: readonly number[];
  /** θ after every update. */
  readonly thetas: readonly Theta[];
  /** The final θ. */
  readonly theta: Theta;
  readonly chunks: readonly ChunkRecord[];
}

export class E2EReference {
  readonly weights: E2EWeights;

  constructor(readonly config: E2EConfig, weights: WeightMap) {
    this.weights = e2eReferenceWeights(config, weights);
  }

  /** @internal */
  resolve(o: E2EOptions = {}): ResolvedOptions {
    const c = this.config;
    return {
      lr: o.innerLr ?? c.innerLr,
      clip: o.clip ?? c.innerClipGlobalNorm,
      bos: o.skipBosTargets === false ? null : c.bosTokenId,
      layout: o.ropeLayout ?? 'interleaved',
    };
  }

  /** θ_0: copies of the checkpoint's dynamic weights, one per TTT block. */
  initialTheta(): Theta {
    return cloneTheta(this.weights.layers.filter((l) => l.dyn).map((l) => l.dyn!.initial));
  }

  /** A fresh streaming session at position 0 (stream.ts). */
  stream(options: E2EOptions = {}): E2EStream {
    return new E2EStream(this, options);
  }

  /** The whole-chunk form over `tokens` from position 0. */
  forward(tokens: readonly number[], options: E2EOptions = {}): E2EForwardResult {
    const c = this.config, opt = this.resolve(options);
    const { hiddenSize: d, vocabSize: V, miniBatchSize: B, slidingWindow: W, firstTttLayer: L0, numTttLayers: S } = c;
    const T = tokens.length;
    if (T < 1) throw new RangeError('forward needs at least one token');
    const all = tokens.map((_, i) => i);

    let x = this.embed(tokens);
    const hidden: Float64Array[] = [Float64Array.from(x)];
    for (let i = 0; i < L0; i++) {
      x = this.blockForward(i, x, all, null, null, opt.layout).out;
      hidden.push(Float64Array.from(x));
    }
    const hPre = x;
    const tttHidden = Array.from({ length: S }, () => new Float64Array(T * d));
    const kAll = Array.from({ length: S }, () => new Float64Array(T * d));
    const vAll = Array.from({ length: S }, () => new Float64Array(T * d));

    let theta = this.initialTheta();
    const logits = new Float64Array(T * V);
    const chunkLosses: number[] = [], gradNorms: number[] = [], clipScales: number[] = [];
    const thetas: Theta[] = [], chunks: ChunkRecord[] = [];
    for (let s = 0; s < T; s += B) {
      const e = Math.min(s + B, T), n = e - s;
      const lo = Math.max(0, s - W + 1);
      const past = kAll.map((k, j) => ({
        k: k.slice(lo * d, s * d),
        v: vAll[j].slice(lo * d, s * d),
        positions: all.slice(lo, s),
      }));
      const input: ChunkInput = { hPre: hPre.slice(s * d, e * d), start: s, n, past };
      const fwd = this.chunkForward(input, theta, options);
      logits.set(fwd.logits, s * V);
      fwd.cur.forEach((kv, j) => {
        kAll[j].set(kv.k, s * d); // carried: never recomputed
        vAll[j].set(kv.v, s * d);
        tttHidden[j].set(fwd.tapes[j].out, s * d);
      });
      const update = S > 0 && n === B && e < T;
      const targets = update ? tokens.slice(s + 1, e + 1) : null;
      chunks.push({ input, thetaBefore: cloneTheta(theta), targets });
      if (update) {
        const g = this.chunkGradient(fwd, targets!, options);
        const st = clipAndStep(theta, g.grads, opt.lr, opt.clip);
        theta = st.theta;
        chunkLosses.push(g.loss);
        gradNorms.push(st.gradNorm);
        clipScales.push(st.clipScale);
        thetas.push(cloneTheta(theta));
      }
    }
    hidden.push(...tttHidden);

    const nll = new Float64Array(T - 1), lossMask = new Uint8Array(T - 1);
    for (let p = 0; p < T - 1; p++) {
      nll[p] = logSumExp(logits, p * V, V) - logits[p * V + tokens[p + 1]];
      lossMask[p] = tokens[p + 1] === c.bosTokenId ? 0 : 1;
    }
    return { logits, nll, lossMask, hidden, chunkLosses, gradNorms, clipScales, thetas, theta, chunks };
  }

  // ---- the chunk step, shared by both forms ----

  /** APPLY: the S TTT blocks and the head on one chunk with θ (the chunk's own K/V differentiable, the past constant). */
  chunkForward(input: ChunkInput, theta: readonly DynamicWeights[], options: E2EOptions = {}): ChunkForward {
    const c = this.config, layout = this.resolve(options).layout;
    const positions = Array.from({ length: input.n }, (_, t) => input.start + t);
    let x = input.hPre;
    const tapes: BlockTape[] = [], cur: KvRows[] = [];
    for (let j = 0; j < c.numTttLayers; j++) {
      const tape = this.blockForward(c.firstTttLayer + j, x, positions, input.past[j] ?? null, theta[j], layout);
      tapes.push(tape);
      cur.push({ k: tape.kr, v: tape.v, positions });
      x = tape.out;
    }
    return { input, logits: this.head(x, input.n), tapes, cur, final: x };
  }

  /** LOSS and GRADIENT: the chunk loss of a chunkForward over `targets` [n] and dℓ/dθ by the hand-written backward. */
  chunkGradient(fwd: ChunkForward, targets: readonly number[], options: E2EOptions = {}): ChunkGradient {
    const c = this.config, opt = this.resolve(options), n = fwd.input.n;
    if (targets.length !== n) throw new RangeError(`chunkGradient: ${targets.length} targets for ${n} rows`);
    const ce = crossEntropyBackward(fwd.logits, n, c.vocabSize, targets, opt.bos);
    let dx = this.headBackward(fwd.final, n, ce.dlogits);
    const grads: DynamicWeights[] = new Array(c.numTttLayers);
    for (let j = c.numTttLayers - 1; j >= 0; j--) {
      const r = this.blockBackward(fwd.tapes[j], dx, opt.layout);
      grads[j] = r.ddyn!;
      dx = r.dh; // for j = 0 this is dℓ/dh_pre, which nothing uses (h_pre is a constant)
    }
    return { loss: ce.loss, nll: ce.nll, valid: ce.valid, grads };
  }

  /** The chunk loss alone for θ (for finite differences). */
  chunkLoss(input: ChunkInput, theta: readonly DynamicWeights[], targets: readonly number[], options: E2EOptions = {}): number {
    const fwd = this.chunkForward(input, theta, options);
    return crossEntropyBackward(fwd.logits, input.n, this.config.vocabSize, targets, this.resolve(options).bos).loss;
  }

  // ---- pieces ----

  /** @internal embedding rows (no √d scaling). */
  embed(tokens: readonly number[]): Float64Array {
    const c = this.config, d = c.hiddenSize;
    const x = new Float64Array(tokens.length * d);
    tokens.forEach((tok, t) => {
      if (!Number.isInteger(tok) || tok < 0 || tok >= c.vocabSize) {
        throw new RangeError(`token id ${tok} at index ${t} is outside the vocabulary [0, ${c.vocabSize})`);
      }
      x.set(this.weights.embed.subarray(tok * d, (tok + 1) * d), t * d);
    });
    return x;
  }

  /** @internal logits = RMSNorm_final(x) @ E^T (tied head). */
  head(x: Float64Array, rows: number): Float64Array {
    const c = this.config;
    return linear(rmsNormRows(x, rows, c.hiddenSize, this.weights.finalNorm, c.rmsNormEps), rows, c.hiddenSize, this.weights.embed, c.vocabSize);
  }

  /** @internal dℓ/dx of head() (the embedding is frozen: its gradient is dropped). */
  headBackward(x: Float64Array, rows: number, dlogits: Float64Array): Float64Array {
    const c = this.config, d = c.hiddenSize;
    const xn = rmsNormRows(x, rows, d, this.weights.finalNorm, c.rmsNormEps);
    const dxn = linearBackward(xn, rows, d, this.weights.embed, c.vocabSize, dlogits).dx;
    return rmsnormBackward(x, rows, d, this.weights.finalNorm, c.rmsNormEps, dxn).dx;
  }

  /**
   * @internal one block over rows h [n, d] at `positions`; `past`: K/V of earlier positions (constants);
   * `dyn`: the dynamic weights of a TTT block (null for the others).
   */
  blockForward(layer: number, h: Float64Array, positions: readonly number[], past: KvRows | null, dyn: DynamicWeights | null, layout: RopeLayout): BlockTape {
    const c = this.config, lw = this.weights.layers[layer];
    const { hiddenSize: d, numHeads: H, headDim: hd, rmsNormEps: eps } = c;
    const n = positions.length;
    const a = rmsNormRows(h, n, d, lw.attnNorm, eps);
    const q = linear(a, n, d, lw.wq, d), k = linear(a, n, d, lw.wk, d), v = linear(a, n, d, lw.wv, d);
    const qr = rope(qkNorm(q, n, H, hd, lw.qNorm, eps), n, H, hd, positions, c.ropeTheta, layout);
    const kr = rope(qkNorm(k, n, H, hd, lw.kNorm, eps), n, H, hd, positions, c.ropeTheta, layout);
    const nPast = past ? past.positions.length : 0;
    const keys = concatRows(past?.k, kr), values = concatRows(past?.v, v);
    const kPos = [...(past?.positions ?? []), ...positions];
    const o = slidingWindowAttention(qr, positions, keys, values, kPos, H, hd, c.slidingWindow);
    const ao = linear(o, n, d, lw.wo, d);
    const h1 = add(h, rmsNormRows(ao, n, d, lw.attnPostNorm, eps));
    let h2 = h1, b: Float64Array | null = null, y: Float64Array | null = null;
    if (lw.dyn) {
      if (!dyn) throw new Error(`block ${layer} is a TTT block: it needs its dynamic weights`);
      b = rmsNormRows(h1, n, d, lw.dyn.norm, eps);
      y = swiglu(b, n, d, dyn.w1, dyn.w2, dyn.w3, c.intermediateSizeDynamicMlp);
      h2 = add(h1, rmsNormRows(y, n, d, lw.dyn.postNorm, eps));
    }
    const m = rmsNormRows(h2, n, d, lw.mlpNorm, eps);
    const z = swiglu(m, n, d, lw.mlpW1, lw.mlpW2, lw.mlpW3, c.intermediateSizeStaticMlp);
    const out = add(h2, rmsNormRows(z, n, d, lw.mlpPostNorm, eps));
    return { layer, positions, h, a, q, k, v, qr, kr, keys, values, kPos, nPast, o, ao, h1, dyn: lw.dyn ? dyn : null, b, y, h2, m, z, out };
  }

  /** @internal the backward of blockForward: dℓ/dh and (TTT blocks) dℓ/d(W1, W2, W3); the past K/V get no gradient. */
  blockBackward(tape: BlockTape, dOut: Float64Array, layout: RopeLayout): { dh: Float64Array; ddyn: DynamicWeights | null } {
    const c = this.config, lw = this.weights.layers[tape.layer];
    const { hiddenSize: d, numHeads: H, headDim: hd, rmsNormEps: eps } = c;
    const n = tape.positions.length;
    // static MLP: out = h2 + post(swiglu(mlp_norm(h2)))
    const dz = rmsnormBackward(tape.z, n, d, lw.mlpPostNorm, eps, dOut).dx;
    const dm = swigluBackward(tape.m, n, d, lw.mlpW1, lw.mlpW2, lw.mlpW3, c.intermediateSizeStaticMlp, dz).dx;
    const dh2 = add(dOut, rmsnormBackward(tape.h2, n, d, lw.mlpNorm, eps, dm).dx);
    // dynamic MLP: h2 = h1 + dyn_post(swiglu_θ(dyn_norm(h1)))
    let dh1 = dh2, ddyn: DynamicWeights | null = null;
    if (lw.dyn) {
      const dy = rmsnormBackward(tape.y!, n, d, lw.dyn.postNorm, eps, dh2).dx;
      const sw = swigluBackward(tape.b!, n, d, tape.dyn!.w1, tape.dyn!.w2, tape.dyn!.w3, c.intermediateSizeDynamicMlp, dy);
      ddyn = { w1: sw.dw1, w2: sw.dw2, w3: sw.dw3 };
      dh1 = add(dh2, rmsnormBackward(tape.h1, n, d, lw.dyn.norm, eps, sw.dx).dx);
    }
    // attention: h1 = h + attn_post(o_proj(attn(rope(qk_norm(a Wq^T)), ...)))
    const dao = rmsnormBackward(tape.ao, n, d, lw.attnPostNorm, eps, dh1).dx;
    const dO = linearBackward(tape.o, n, d, lw.wo, d, dao).dx;
    const att = slidingWindowAttentionBackward(tape.qr, tape.positions, tape.keys, tape.values, tape.kPos, H, hd, c.slidingWindow, dO);
    const dkr = att.dk.subarray(tape.nPast * d), dv = att.dv.subarray(tape.nPast * d); // the past rows are constants
    const dq = qkNormBackward(tape.q, n, H, hd, lw.qNorm, eps, ropeBackward(att.dq, n, H, hd, tape.positions, c.ropeTheta, layout)).dx;
    const dk = qkNormBackward(tape.k, n, H, hd, lw.kNorm, eps, ropeBackward(dkr, n, H, hd, tape.positions, c.ropeTheta, layout)).dx;
    const da = linearBackward(tape.a, n, d, lw.wq, d, dq).dx;
    addInPlace(da, linearBackward(tape.a, n, d, lw.wk, d, dk).dx);
    addInPlace(da, linearBackward(tape.a, n, d, lw.wv, d, dv).dx);
    const dh = add(dh1, rmsnormBackward(tape.h, n, d, lw.attnNorm, eps, da).dx);
    return { dh, ddyn };
  }
}

function concatRows(a: Float64Array | undefined, b: Float64Array): Float64Array {
  if (!a || a.length === 0) return b;
  const out = new Float64Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function add(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}

function addInPlace(a: Float64Array, b: Float64Array): void {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
}
