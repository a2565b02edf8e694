/**
 * The fast-weight branch of one layer on the GPU (the math: ../shared/spec, and the CPU oracle in
 * src/reference/fast-weights.ts and layer-math.ts). Per block the engine records, in order:
 *
 *   encodeInputs   one launch: fq, fk, fv (scale/offset, silu, per-head L2 norm, RoPE), the activated gates,
 *                  the block's fk, fv, lr, beta into the chunk being filled (row pos0 % C), and, when the
 *                  layer is given `attention`, attention's own q/k norm and RoPE in place in qkv
 *   encodeApply    out += ttt_norm(f_W(fq)) * ttt_scale, with the weights as of the last chunk
 *   encodeLearn    when that chunk is full: gradient, momentum, Muon, W += dW, row renorm
 *
 * Every matrix product is one batched MatmulOp launch over all heads (batch = Hf, or 3·Hf for Muon);
 * the rest lives in shaders/fast-weights.wgsl and shaders/newton-schulz.wgsl.
 *
 * State layout ("packed", f32): one buffer [Hf, 3, dh, df], per head the [dh, df] blocks W0, W2, W1^T.
 * W1 is kept transposed so that all 3·Hf matrices share one shape: the gradients come out in the same
 * layout, and Newton-Schulz runs on all of them in one batched launch per product. Momentum uses the same
 * layout. `packFastWeights` / `unpackFastWeights` convert to and from the checkpoint's [Hf, dh, df] /
 * [Hf, df, dh] tensors (for tests and save/restore).
 */
import { readBufferBytes } from '../readback.ts';
import type { MemorySection, RestoreWrite, SectionSource } from '../saved-state.ts';
import fwSource from '../../../shaders/fast-weights.wgsl?raw';
import nsSource from '../../../shaders/newton-schulz.wgsl?raw';
import type { LactConfig } from '../../model/config.ts';
import type { BlockParams } from '../block.ts';
import { dispatch, grid, type BindingKind, type GpuContext, type Kernel, type Param } from '../context.ts';
import { NS5_COEFFS } from '../newton-schulz-coefficients.ts';
import { CPU_TILES, MatmulOp, ROW_TILES, type MatmulTiles } from './matmul.ts';
import { ropeTurnTable } from './rope-turn-table.ts';

/** Blocks of at most this many rows take the apply in one launch (applyRows in fast-weights.wgsl). */
export const APPLY_ROWS_MAX = 4;

export interface FastWeightInit {
  /** Initial W0 [Hf, dh, df] (low rank already expanded by the caller). */
  readonly w0: Float32Array;
  /** Initial W1 [Hf, df, dh]. */
  readonly w1: Float32Array;
  /** Initial W2 [Hf, dh, df]. */
  readonly w2: Float32Array;
  readonly qkScale: Float32Array; // [D, 2]
  readonly qkOffset: Float32Array; // [D, 2]
  readonly tttNorm: Float32Array; // [df]
}

/** Column offsets of the concatenated gate projection's output [rows, total]: lr (3Hf), momentum (Hf)?, ttt scale (Hf)?. */
export function gateColumns(c: LactConfig): { lr: number; momentum: number | null; scale: number | null; total: number } {
  const Hf = c.numFwHeads;
  const momentum = c.useMomentum ? 3 * Hf : null;
  const scale = c.learnableTttScale ? 3 * Hf + (c.useMomentum ? Hf : 0) : null;
  return { lr: 0, momentum, scale, total: 3 * Hf + (c.useMomentum ? Hf : 0) + (c.learnableTttScale ? Hf : 0) };
}

/**
 * The columns of the branch's own q|k|v in a projection row (fw_own_qkv: 3D, after attention's q|k|v),
 * 0 when it reads attention's. Its q, k, v then start at this column of the row.
 */
export function ownQkvRows(c: LactConfig): number {
  return c.useFastWeights && c.fwOwnQkv ? 3 * c.hiddenSize : 0;
}

/** Floats per row of the q|k|v projection: attention's q|k|v, the branch's own q|k|v, the raw gates. */
export function projectionRowWidth(c: LactConfig): number {
  return 3 * c.hiddenSize + ownQkvRows(c) + (c.useFastWeights ? gateColumns(c).total : 0);
}

/** lr = softplus(x + inv_softplus(0.001)): the official "mamba" parameterisation's base learning rate. */
const BASE_LR = 0.001;
const LR_SHIFT = BASE_LR + Math.log(-Math.expm1(-BASE_LR));
const TTT_NORM_EPS = 1e-5;
const NONE = 0xffffffff;

/** Floats per pending row: fk (D) | fv (D) | lr (3Hf) | beta (Hf, zero without momentum), as state-size.ts counts it. */
function pendingWidth(c: LactConfig): number {
  return 2 * c.hiddenSize + 4 * c.numFwHeads;
}

/** Checkpoint tensors → the packed [Hf, 3, dh, df] layout (W0, W2, W1^T per head). */
export function packFastWeights(c: LactConfig, w0: ArrayLike<number>, w1: ArrayLike<number>, w2: ArrayLike<number>): Float32Array<ArrayBuffer> {
  const { numFwHeads: Hf, fwHeadDim: df, fwHidden: dh } = c;
  const S = dh * df;
  for (const [name, w] of [['w0', w0], ['w1', w1], ['w2', w2]] as const) {
    if (w.length !== Hf * S) throw new RangeError(`fast weights: ${name} has ${w.length} values, expected ${Hf * S}`);
  }
  const out = new Float32Array(3 * Hf * S);
  for (let h = 0; h < Hf; h++) {
    const o = 3 * h * S;
    for (let e = 0; e < S; e++) {
      out[o + e] = w0[h * S + e];
      out[o + S + e] = w2[h * S + e];
    }
    for (let r = 0; r < df; r++) for (let j = 0; j < dh; j++) out[o + 2 * S + j * df + r] = w1[h * S + r * dh + j];
  }
  return out;
}

/** The packed layout → w0, w2 [Hf, dh, df] and w1 [Hf, df, dh] (weights or momentum alike). */
export function unpackFastWeights(c: LactConfig, packed: ArrayLike<number>): { w0: Float32Array; w1: Float32Array; w2: Float32Array } {
  const { numFwHeads: Hf, fwHeadDim: df, fwHidden: dh } = c;
  const S = dh * df;
  const w0 = new Float32Array(Hf * S), w1 = new Float32Array(Hf * S), w2 = new Float32Array(Hf * S);
  for (let h = 0; h < Hf; h++) {
    const o = 3 * h * S;
    for (let e = 0; e < S; e++) {
      w0[h * S + e] = packed[o + e];
      w2[h * S + e] = packed[o + S + e];
    }
    for (let r = 0; r < df; r++) for (let j = 0; j < dh; j++) w1[h * S + r * dh + j] = packed[o + 2 * S + j * df + r];
  }
  return { w0, w1, w2 };
}

/** The buffers of FastWeightScratch: per-block activations (maxRows rows) and the chunk update's temporaries. */
export function fastWeightScratchBuffers(c: LactConfig, maxRows: number): { name: string; category: 'activations' | 'scratch'; floats: number }[] {
  const D = c.hiddenSize, Hf = c.numFwHeads, df = c.fwHeadDim, dh = c.fwHidden, C = c.chunkSize, m = Math.min(dh, df);
  const act = (name: string, floats: number) => ({ name, category: 'activations' as const, floats });
  const tmp = (name: string, floats: number) => ({ name, category: 'scratch' as const, floats });
  return [
    act('fq|fk|fv', maxRows * 3 * D),
    act('gates', maxRows * gateColumns(c).total),
    act('G|U', maxRows * Hf * 2 * dh),
    act('silu(G)*U', maxRows * Hf * dh),
    act('y', maxRows * D),
    tmp('chunk G|U|P', C * Hf * 3 * dh),
    // With Muon the update's workspace follows the gradients in one buffer (see shaders/newton-schulz.wgsl).
    tmp('gradients', 3 * Hf * dh * df + (c.useMuon ? 3 * Hf * (dh * df + 2 * m * m) : 0)),
  ];
}

/** Floats of one layer's state and constants: weights, momentum, pending chunk, row-norm targets, qk scale/offset, ttt norm, RoPE turns. */
export function fastWeightLayerFloats(c: LactConfig): { weights: number; momentum: number; pending: number; constants: [string, number][] } {
  const D = c.hiddenSize, Hf = c.numFwHeads, df = c.fwHeadDim, dh = c.fwHidden;
  return {
    weights: 3 * Hf * dh * df,
    momentum: c.useMomentum ? 3 * Hf * dh * df : 0,
    pending: c.chunkSize * pendingWidth(c),
    constants: [['row-norm targets', Hf * (2 * dh + df)], ['qk_scale', 2 * D], ['qk_offset', 2 * D], ['ttt_norm', df], ['rope turns', c.attnHeadDim]],
  };
}

/**
 * Intermediates of the branch: per-block activations sized by maxRows, and the chunk update's
 * temporaries. Layers run one after another, so one instance can serve every layer of a model (pass it
 * to each FastWeightLayer; a layer given none makes its own).
 */
export class FastWeightScratch {
  /** [maxRows, 3D] fast q | k | v (after norm and RoPE). */
  readonly fqkv: GPUBuffer;
  /** [maxRows, G] activated gates, same columns as the raw gates. */
  readonly act: GPUBuffer;
  /** [maxRows, Hf, 2dh] G | U of the apply. */
  readonly gu: GPUBuffer;
  /** [maxRows, Hf, dh] silu(G) * U. */
  readonly hd: GPUBuffer;
  /** [maxRows, D] f(fq) per head, before ttt_norm. */
  readonly y: GPUBuffer;
  /** [C, Hf, 3dh] G | U | P, then the gradient factors. */
  readonly s: GPUBuffer;
  /**
   * [3Hf, dh, df] gradients, then with Muon the update's workspace: per matrix X [m, n] and the [m, m]
   * products A and B (m = min(dh, df)).
   */
  readonly grad: GPUBuffer;

  constructor(ctx: GpuContext, readonly config: LactConfig, readonly maxRows: number) {
    const c = config, D = c.hiddenSize, Hf = c.numFwHeads, df = c.fwHeadDim, dh = c.fwHidden, C = c.chunkSize;
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const made = new Map(fastWeightScratchBuffers(c, maxRows).map((b) => [b.name, ctx.allocator.create(`fast weights: ${b.name}`, b.category, b.floats * 4, usage)]));
    const get = (name: string) => made.get(name) ?? null;
    this.fqkv = get('fq|fk|fv')!;
    this.act = get('gates')!;
    this.gu = get('G|U')!;
    this.hd = get('silu(G)*U')!;
    this.y = get('y')!;
    this.s = get('chunk G|U|P')!;
    this.grad = get('gradients')!;
  }

  /** Whether this scratch fits a layer of config `c` with blocks of up to `maxRows`. */
  fits(c: LactConfig, maxRows: number): boolean {
    const a = this.config;
    return maxRows <= this.maxRows && a.hiddenSize === c.hiddenSize && a.numFwHeads === c.numFwHeads && a.fwHidden === c.fwHidden &&
      a.chunkSize === c.chunkSize && (a.useMuon || !c.useMuon) && gateColumns(a).total === gateColumns(c).total;
  }
}

export interface FastWeightLayerOptions {
  /** Shared intermediates (one per model); default: the layer makes its own. */
  readonly scratch?: FastWeightScratch;
  /** Matmul tiles, as the engine's other matmuls. */
  readonly tiles?: { readonly wide: MatmulTiles; readonly narrow: MatmulTiles };
  /**
   * The inputs launch also prepares attention's q and k in qkv in place: RMSNorm with these gains
   * (q_norm | k_norm, [2D], eps) where the layer has them, then RoPE. qkv is then the projection's raw
   * output, and the fast inputs read the normed q, k. Without it qkv must hold q, k already normed (if
   * the layer norms them) and is only read.
   */
  readonly attention?: { readonly qkNorm: GPUBuffer | null; readonly eps: number };
}

type Step = (pass: GPUComputePassEncoder, rows: number) => void;

export class FastWeightLayer {
  /**
   * The live state. `weights`: [Hf, 3, dh, df], per head W0, W2, W1^T (see the file comment and
   * unpackFastWeights); `momentum`: the same layout, null without use_momentum.
   */
  readonly state: { readonly weights: GPUBuffer; readonly momentum: GPUBuffer | null };
  /** The chunk being filled: [C, 2D + 4Hf], rows fk | fv | lr (3Hf) | beta (Hf). */
  readonly pending: GPUBuffer;
  readonly scratch: FastWeightScratch;

  private readonly initial: Float32Array<ArrayBuffer>;
  private readonly inputSteps: Step[] = [];
  private readonly applySteps: Step[] = [];
  private readonly learnSteps: Step[] = [];
  private readonly learnOps: MatmulOp[] = [];
  /** The last of learnSteps: momentum, Muon and renorm in one launch. */
  private readonly updateStep: Step;

  constructor(
    private readonly ctx: GpuContext,
    readonly label: string,
    readonly config: LactConfig,
    init: FastWeightInit,
    /**
     * qkv: [rows, projectionRowWidth], per row q | k | v | the branch's own q | k | v (fw_own_qkv) | the raw
     * gates (one projection of the same input); out: [rows, D].
     */
    io: { qkv: GPUBuffer; out: GPUBuffer },
    block: BlockParams,
    readonly maxRows: number,
    opts: FastWeightLayerOptions = {},
  ) {
    const c = config;
    if (!c.useFastWeights) throw new Error(`${label}: the config has no fast-weight branch`);
    const D = c.hiddenSize, Hf = c.numFwHeads, df = c.fwHeadDim, dh = c.fwHidden, C = c.chunkSize;
    const S = dh * df, Z = 3 * Hf, P = pendingWidth(c);
    const gc = gateColumns(c), G = gc.total, F = ownQkvRows(c), W = projectionRowWidth(c);
    if (!Number.isInteger(maxRows) || maxRows < 1) throw new RangeError(`${label}: maxRows ${maxRows} must be a positive integer`);
    // A block never crosses a chunk boundary, so it never has more than C rows.
    const rowCap = Math.min(maxRows, C);
    if (rowCap > ctx.limits.maxComputeWorkgroupsPerDimension) throw new RangeError(`${label}: ${rowCap} rows exceed the workgroup grid`);
    if (init.qkScale.length !== 2 * D || init.qkOffset.length !== 2 * D || init.tttNorm.length !== df) {
      throw new RangeError(`${label}: qk_scale/qk_offset must hold ${2 * D} values and ttt_norm ${df}`);
    }
    if (io.qkv.size < rowCap * W * 4) throw new RangeError(`${label}: qkv holds ${io.qkv.size} bytes, less than ${rowCap} rows of q|k|v|gates (${W} values each)`);
    const scratch = opts.scratch ?? new FastWeightScratch(ctx, c, rowCap);
    if (!scratch.fits(c, rowCap)) throw new RangeError(`${label}: the shared scratch was made for another shape`);
    this.scratch = scratch;
    const tiles = opts.tiles ?? { wide: CPU_TILES, narrow: ROW_TILES };
    const A = ctx.allocator;
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

    this.initial = packFastWeights(c, init.w0, init.w1, init.w2);
    const weights = A.upload(`${label}: W0|W2|W1^T`, 'fastWeights', this.initial);
    const momentum = c.useMomentum ? A.create(`${label}: momentum`, 'momentum', Z * S * 4, usage) : null;
    this.state = { weights, momentum };
    this.pending = A.create(`${label}: pending chunk`, 'pending', C * P * 4, usage);
    // Constant: derived from the checkpoint once, like the weights themselves.
    const targets = A.upload(`${label}: row-norm targets`, 'weights', rowNormTargets(c, this.initial));
    const qkScale = A.upload(`${label}: qk_scale`, 'weights', init.qkScale);
    const qkOffset = A.upload(`${label}: qk_offset`, 'weights', init.qkOffset);
    const tttNorm = A.upload(`${label}: ttt_norm`, 'weights', init.tttNorm);
    const ropeTurns = A.upload(`${label}: rope turns`, 'weights', ropeTurnTable(c.attnHeadDim, c.ropeTheta));
    const { fqkv, act, gu, hd, y, s, grad } = scratch;

    const kernel = (source: string, shader: string, entry: string, bindings: BindingKind[], defines: Record<string, boolean | number>) =>
      ctx.kernel({ shader, source, entry, bindings, defines });
    const fw = (entry: string, define: string, bindings: BindingKind[]) => kernel(fwSource, 'fast-weights.wgsl', entry, bindings, { [define]: true });
    const launch = (k: Kernel, params: readonly Param[], resources: GPUBuffer[], size: (rows: number) => [number, number]): Step => {
      const group = ctx.bind(k, [ctx.uniform(`${label} ${k.spec.entry} params`, params), ...resources]);
      return (pass, rows) => dispatch(pass, k, group, ...size(rows));
    };
    const flat = (n: number): [number, number] => grid(Math.ceil(n / 64));
    const mm = (name: string, spec: ConstructorParameters<typeof MatmulOp>[2], bufs: ConstructorParameters<typeof MatmulOp>[3]) =>
      new MatmulOp(ctx, `${label} ${name}`, spec, bufs, block, tiles);

    // Inputs (and the pending row, and attention's q/k when asked): one launch, a workgroup per row.
    const attn = opts.attention ?? null;
    if (c.attnHeadDim % 2 !== 0 || D % c.attnHeadDim !== 0) throw new RangeError(`${label}: the RoPE head dim ${c.attnHeadDim} must be even and divide ${D}`);
    const gateCols = 3 * Hf + (c.useMomentum ? Hf : 0);
    this.inputSteps.push(launch(
      fw('inputs', 'INPUTS', ['uniform', 'uniform', 'rw', 'read', 'read', 'read', 'rw', 'rw', 'rw', 'read']),
      [
        ['u32', D], ['u32', Hf], ['u32', df], ['u32', G], ['u32', gc.momentum ?? NONE], ['u32', gc.scale ?? NONE], ['u32', c.qkvSilu ? 1 : 0], ['f32', LR_SHIFT],
        ['u32', C], ['u32', P], ['u32', gateCols], ['u32', c.attnHeadDim], ['u32', F], ['u32', attn ? 1 : 0], ['u32', attn?.qkNorm ? 1 : 0], ['f32', attn?.eps ?? 0],
      ],
      [block.buffer, io.qkv, qkScale, qkOffset, attn?.qkNorm ?? qkScale, fqkv, act, this.pending, ropeTurns],
      (rows) => [rows, 1],
    ));

    // Apply: [G | U] = fq [W0; W2]^T per head, silu(G) * U, y = (silu(G) * U) W1^T, then norm, scale, add.
    const applyGU = mm('apply G|U', {
      M: 'rows', N: 2 * dh, K: df, batch: Hf,
      a: { batch: df, row: 3 * D, col: 1 },
      b: { batch: 3 * S, row: df, col: 1 },
      c: { batch: 2 * dh, row: Hf * 2 * dh, col: 1 },
    }, { a: fqkv, b: weights, c: gu });
    const applyY = mm('apply y', {
      M: 'rows', N: df, K: dh, batch: Hf,
      a: { batch: dh, row: Hf * dh, col: 1 },
      b: { off: 2 * S, batch: 3 * S, row: 1, col: df }, // W1[n, k] = W1^T[k, n]
      c: { batch: df, row: D, col: 1 },
    }, { a: hd, b: weights, c: y });
    const applyWide: Step[] = [
      (pass, rows) => applyGU.encode(pass, rows),
      launch(fw('glu', 'GLU', ['uniform', 'uniform', 'read', 'rw']), [['u32', Hf], ['u32', dh]], [block.buffer, gu, hd], (rows) => flat(rows * Hf * dh)),
      (pass, rows) => applyY.encode(pass, rows),
      launch(
        fw('normAdd', 'NORM_ADD', ['uniform', 'uniform', 'read', 'read', 'read', 'rw']),
        [['u32', D], ['u32', df], ['u32', G], ['u32', gc.scale ?? NONE], ['f32', TTT_NORM_EPS]],
        [block.buffer, y, tttNorm, act, io.out],
        (rows) => [rows, Hf],
      ),
    ];
    // A few rows (decode): the whole apply in one launch, a workgroup per (row, head); more rows share
    // the weights better through the matmuls above. Both sum in the same order.
    const applyRows = launch(
      kernel(fwSource, 'fast-weights.wgsl', 'applyRows', ['uniform', 'uniform', 'read', 'read', 'read', 'read', 'rw'], { APPLY_ROWS: true, DF: df, DH: dh }),
      [['u32', D], ['u32', df], ['u32', dh], ['u32', G], ['u32', gc.scale ?? NONE], ['u32', S], ['f32', TTT_NORM_EPS]],
      [block.buffer, fqkv, weights, tttNorm, act, io.out],
      (rows) => [rows, Hf],
    );
    this.applySteps.push((pass, rows) => {
      if (rows <= APPLY_ROWS_MAX) applyRows(pass, rows);
      else for (const st of applyWide) st(pass, rows);
    });

    // Learn. Forward on the chunk's keys/values: s = [G | U | P] per (token, head).
    const lGU = mm('learn G|U', {
      M: C, N: 2 * dh, K: df, batch: Hf,
      a: { batch: df, row: P, col: 1 },
      b: { batch: 3 * S, row: df, col: 1 },
      c: { batch: 3 * dh, row: Hf * 3 * dh, col: 1 },
    }, { a: this.pending, b: weights, c: s });
    const lP = mm('learn P', {
      M: C, N: dh, K: df, batch: Hf,
      a: { off: D, batch: df, row: P, col: 1 },
      b: { off: 2 * S, batch: 3 * S, row: df, col: 1 }, // P = V W1: B[j, n] = W1[n, j] = W1^T[j, n]
      c: { off: 2 * dh, batch: 3 * dh, row: Hf * 3 * dh, col: 1 },
    }, { a: this.pending, b: weights, c: s });
    // Gradients straight into the packed layout: [dW0; dW2] = [dG | dU]^T K, dW1^T = H^T V.
    const lW02 = mm('learn dW0|dW2', {
      M: 2 * dh, N: df, K: C, batch: Hf,
      a: { batch: 3 * dh, row: 1, col: Hf * 3 * dh },
      b: { batch: df, row: 1, col: P },
      c: { batch: 3 * S, row: df, col: 1 },
    }, { a: s, b: this.pending, c: grad });
    const lW1 = mm('learn dW1^T', {
      M: dh, N: df, K: C, batch: Hf,
      a: { off: 2 * dh, batch: 3 * dh, row: 1, col: Hf * 3 * dh },
      b: { off: D, batch: df, row: 1, col: P },
      c: { off: 2 * S, batch: 3 * S, row: df, col: 1 },
    }, { a: s, b: this.pending, c: grad });
    const op = (m: MatmulOp): Step => {
      this.learnOps.push(m);
      return (pass) => m.encode(pass, C);
    };
    this.learnSteps.push(
      op(lGU),
      op(lP),
      launch(fw('grad', 'GRAD', ['uniform', 'read', 'rw']), [['u32', C], ['u32', Hf], ['u32', dh], ['u32', P], ['u32', 2 * D]], [this.pending, s], () => flat(C * Hf * dh)),
      op(lW02),
      op(lW1),
    );

    // Muon on X wide ([m, n], m <= n): tall blocks are read transposed, which the update does while
    // normalising, and undoes in the renorm.
    const transposed = c.useMuon && dh > df;
    const bindings: BindingKind[] = ['uniform', 'rw', 'read', 'rw'];
    const resources: GPUBuffer[] = [grad, targets, weights];
    if (momentum) { bindings.push('read', 'rw'); resources.push(this.pending, momentum); }
    // Whole-vec4 products where every Newton-Schulz slot and row is 4-aligned (m and n multiples of 4).
    const vec4 = c.useMuon && dh % 4 === 0 && df % 4 === 0;
    const update = kernel(nsSource, 'newton-schulz.wgsl', 'update', bindings, { UPDATE: true, MOMENTUM: c.useMomentum, MUON: c.useMuon, NS_STEPS: NS5_COEFFS.length, VEC4: vec4 });
    const coefficients = NS5_COEFFS.flatMap(([a, b, cc]): Param[] => [['f32', a], ['f32', b], ['f32', cc], ['f32', 0]]);
    this.updateStep = launch(update,
      [['u32', S], ['u32', dh], ['u32', df], ['u32', C], ['u32', P], ['u32', 2 * D + 3 * Hf], ['u32', transposed ? 1 : 0], ['u32', Z], ...coefficients],
      resources, () => [Z, 1]);
    this.learnSteps.push(this.updateStep);
  }

  encodeInputs(pass: GPUComputePassEncoder, rows: number): void {
    for (const s of this.inputSteps) s(pass, rows);
  }

  encodeApply(pass: GPUComputePassEncoder, rows: number): void {
    for (const s of this.applySteps) s(pass, rows);
  }

  /** The pending chunk must be full (its last block's encodeInputs already recorded). */
  encodeLearn(pass: GPUComputePassEncoder): void {
    for (const s of this.learnSteps) s(pass, this.config.chunkSize);
  }

  /**
   * Only the update's last launch (momentum, Muon, renorm on whatever the gradients hold): for the kernel
   * benchmark, which times it apart from the gradient products.
   */
  encodeUpdate(pass: GPUComputePassEncoder): void {
    this.updateStep(pass, this.config.chunkSize);
  }

  /** Fast weights back to the checkpoint's, momentum to zero (queue writes, ordered before later submits). */
  reset(): void {
    this.ctx.device.queue.writeBuffer(this.state.weights, 0, this.initial);
    if (this.state.momentum) this.ctx.device.queue.writeBuffer(this.state.momentum, 0, new Float32Array(this.initial.length));
  }

  /** Sections `${name}.fastWeights`, `${name}.momentum` (with momentum) and `${name}.pending`. */
  async save(name: string): Promise<MemorySection[]> {
    const read = (b: GPUBuffer) => readBufferBytes(this.ctx.device, b);
    const out: MemorySection[] = [{ name: `${name}.fastWeights`, bytes: await read(this.state.weights) }];
    if (this.state.momentum) out.push({ name: `${name}.momentum`, bytes: await read(this.state.momentum) });
    out.push({ name: `${name}.pending`, bytes: await read(this.pending) });
    return out;
  }

  /** Checks the sections `save` wrote and returns the writes that restore them (none done yet). */
  planRestore(name: string, sections: SectionSource): RestoreWrite[] {
    const whole = (buffer: GPUBuffer, section: string): RestoreWrite => ({ buffer, offset: 0, data: sections.need(`${name}.${section}`, buffer.size) });
    const writes = [whole(this.state.weights, 'fastWeights')];
    if (this.state.momentum) writes.push(whole(this.state.momentum, 'momentum'));
    writes.push(whole(this.pending, 'pending'));
    return writes;
  }

  /** Dispatches one encode call records (the same for every block size). */
  dispatches(kind: 'inputs' | 'apply' | 'learn' | 'update', rows = 1): number {
    if (kind === 'apply') return rows <= APPLY_ROWS_MAX ? 1 : 4;
    if (kind === 'update') return 1;
    return { inputs: this.inputSteps, learn: this.learnSteps }[kind].length;
  }

  /**
   * FLOPs of one chunk update, counting the matrix products (2·M·N·K each), which dominate:
   * 12·C·Hf·dh·df for the gradient, plus with Muon 5 steps × 3Hf × (4·m²·n + 2·m³), m = min(dh, df),
   * n = max(dh, df), all of which the update launch does. The elementwise and reduction work
   * (O(C·Hf·dh + Hf·dh·df)) is not counted. These are the products' nominal FLOPs: the vec4 path
   * computes only the upper triangle of the two symmetric ones (X X^T, A A), m²·n + m³ of each step's 4·m²·n + 2·m³ less.
   */
  flops(kind: 'learn' | 'update' = 'learn'): number {
    const c = this.config, m = Math.min(c.fwHidden, c.fwHeadDim), n = Math.max(c.fwHidden, c.fwHeadDim);
    const muon = c.useMuon ? NS5_COEFFS.length * 3 * c.numFwHeads * (4 * m * m * n + 2 * m * m * m) : 0;
    return kind === 'update' ? muon : this.learnOps.reduce((sum, op) => sum + op.flops(c.chunkSize), 0) + muon;
  }
}

/** Row norms of the initial weights, per head: W0 rows, W2 rows (over df), then W1 rows (over dh). */
function rowNormTargets(c: LactConfig, packed: Float32Array): Float32Array {
  const { numFwHeads: Hf, fwHeadDim: df, fwHidden: dh } = c;
  const S = dh * df, perHead = 2 * dh + df;
  const out = new Float32Array(Hf * perHead);
  for (let h = 0; h < Hf; h++) {
    const o = 3 * h * S;
    for (let t = 0; t < 2 * dh; t++) {
      let ss = 0;
      for (let k = 0; k < df; k++) ss += packed[o + t * df + k] ** 2;
      out[h * perHead + t] = Math.sqrt(ss);
    }
    for (let r = 0; r < df; r++) {
      let ss = 0;
      for (let j = 0; j < dh; j++) ss += packed[o + 2 * S + j * df + r] ** 2;
      out[h * perHead + 2 * dh + r] = Math.sqrt(ss);
    }
  }
  return out;
}
