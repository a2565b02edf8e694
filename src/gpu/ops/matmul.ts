/**
 * One matmul launch, built once (pipeline, params, bind group) and encoded per block. See
 * shaders/matmul.wgsl for the math; here: strides, shape choice and the dispatch grid. On the 'cpu'
 * kernel variant the shape is a register tile (`MatmulTiles`, the caller's choice); on 'gpu' it is the
 * workgroup-tiled GEMM for M > 2 and the GEMV for M <= 2, with vector loads where the strides allow.
 */
import source from '../../../shaders/matmul.wgsl?raw';
import type { BlockParams } from '../block.ts';
import { dispatch, type GpuContext, type Kernel, type Resource, type WeightStorage } from '../context.ts';

/** Element strides of a [batch, rows, cols] view of a buffer. */
export interface View {
  readonly off?: number;
  readonly batch?: number;
  readonly row: number;
  readonly col: number;
}

export interface MatmulSpec {
  /** M is fixed, or 'rows': the block's token count at encode time. */
  readonly M: number | 'rows';
  readonly N: number;
  readonly K: number;
  readonly batch?: number;
  /** A as [batch, M, K]. */
  readonly a: View;
  /** B as [batch, N, K] (a Linear weight [N, K] is { row: K, col: 1 }). */
  readonly b: View;
  /** C as [batch, M, N]. */
  readonly c: View;
  readonly alpha?: number;
  /** C = alpha·AB + beta·C (beta = 1: accumulate, e.g. a residual add). */
  readonly beta?: number;
  /** Element offset of the bias in the bias buffer, when there is one. */
  readonly biasOff?: number;
  /** Read only A's last block row (M must be 1): the LM head after a prefill. */
  readonly lastRow?: boolean;
  /** How B is stored (A and C are always f32). */
  readonly weight?: WeightStorage;
  /**
   * A is the gate half of [g | u] rows and the product reads silu(g) * u, u this many elements after g:
   * the block MLP's SwiGLU fused into the down projection (shaders/matmul.wgsl, A_GLU).
   */
  readonly aGlu?: number;
  /**
   * The RMSNorm before a projection fused into it (shaders/matmul.wgsl, A_NORM): row m of A is read as
   * x[m, k] * gain[gainOff + k] / sqrt(mean_k x[m, k]^2 + eps), over the K columns (the gain buffer is
   * MatmulBuffers.gain). Not with aGlu.
   */
  readonly aNorm?: { readonly eps: number; readonly gainOff?: number };
  /**
   * With aNorm: TTT-E2E's sandwich post-norm and residual add before this projection, fused into its loads
   * (shaders/matmul.wgsl, A_RESID). A is a sublayer's output s; the row aNorm norms is the stream
   * x'[m, k] = resid[m, k] + postGain[k] · s[m, k] / sqrt(mean_k s[m, k]^2 + eps), with resid's rows `row`
   * elements apart (MatmulBuffers.resid, .postGain). With `write`, x' is also stored in
   * MatmulBuffers.residOut (a different buffer) by the launch's first column tile.
   */
  readonly aResid?: { readonly row: number; readonly write: boolean };
  /**
   * The SwiGLU backward's elementwise step in the epilogue (shaders/matmul.wgsl, C_GLU_BACK): C = dm is
   * [rows, f] (f = N), MatmulBuffers.ug the forward's [u | g] [rows, 2f], overwritten by [du | dg]; C
   * gets silu(u)·g. Unbatched, without aNorm.
   */
  readonly cGluBack?: boolean;
}

/** Register tile per invocation (TM x TN) and workgroup shape (WGX x WGY invocations). */
export interface MatmulTiles {
  readonly tm: number;
  readonly tn: number;
  readonly wgx: number;
  readonly wgy: number;
}

/** Shapes measured fastest on the CPU backends (4x4 register tiles, no shared memory). */
export const CPU_TILES: MatmulTiles = { tm: 4, tn: 4, wgx: 8, wgy: 8 };
/** For M = 1 (decode): one row, four columns per invocation. */
export const ROW_TILES: MatmulTiles = { tm: 1, tn: 4, wgx: 64, wgy: 1 };

/** The GPU shapes' tile sizes (fixed in matmul.wgsl): a 64 x 64 block of C per GEMM workgroup, 4 columns per GEMV workgroup. */
export const GPU_GEMM_TILE = { m: 64, n: 64 } as const;
export const GPU_GEMV_COLUMNS = 4;

type Shape = { kind: 'register'; tiles: MatmulTiles } | { kind: 'tiled'; aVec: boolean; bVec: boolean } | { kind: 'gemv'; vec: boolean };

const BINDINGS = ['uniform', 'uniform', 'read', 'read', 'read', 'rw'] as const;
const NORM_BINDINGS = [...BINDINGS, 'read'] as const;
const RESID_BINDINGS = [...NORM_BINDINGS, 'read', 'rw', 'read'] as const;
const GLU_BACK_BINDINGS = [...BINDINGS, 'rw'] as const;

function matmulKernel(ctx: GpuContext, weight: WeightStorage, shape: Shape, glu: boolean, norm: boolean, resid: boolean, gluBack = false): Kernel {
  const storage = { W_F16: weight === 'f16', W_PACKED: weight === 'f16-packed', A_GLU: glu, A_NORM: norm, A_RESID: resid, C_GLU_BACK: gluBack };
  const defines = shape.kind === 'register'
    ? { TM: shape.tiles.tm, TN: shape.tiles.tn, WGX: shape.tiles.wgx, WGY: shape.tiles.wgy, ...storage }
    : shape.kind === 'tiled'
      ? { TILED: true, A_VEC: shape.aVec, B_VEC: shape.bVec, ...storage }
      : { GEMV: true, A_VEC: shape.vec, B_VEC: shape.vec, SUBGROUPS: ctx.features.subgroups, ...storage };
  const bindings = resid ? RESID_BINDINGS : norm ? NORM_BINDINGS : gluBack ? GLU_BACK_BINDINGS : BINDINGS;
  return ctx.kernel({ shader: 'matmul.wgsl', source, entry: 'main', bindings, defines });
}

/**
 * Whether a view can be read as vec4 along k: unit k stride, and every offset and row/batch stride (and K)
 * a multiple of 4 elements, so that a row's k = 0 is 16-byte aligned and index / 4 is exact.
 */
export function vectorReadable(v: View, K: number): boolean {
  return v.col === 1 && K % 4 === 0 && (v.off ?? 0) % 4 === 0 && v.row % 4 === 0 && (v.batch ?? 0) % 4 === 0;
}

const FLAG_BIAS = 1, FLAG_M_ROWS = 2, FLAG_LAST_ROW = 4, FLAG_RESID_WRITE = 8;

export interface MatmulBuffers {
  readonly a: Resource;
  readonly b: Resource;
  readonly c: Resource;
  readonly bias?: Resource;
  /** The norm's gain, with MatmulSpec.aNorm. */
  readonly gain?: Resource;
  /** With MatmulSpec.aResid: the stream before the add, the post-norm's gain, and where x' goes (when written). */
  readonly resid?: GPUBuffer;
  readonly postGain?: Resource;
  readonly residOut?: GPUBuffer;
  /** With MatmulSpec.cGluBack: the forward's [u | g], overwritten by [du | dg]. */
  readonly ug?: GPUBuffer;
}

export class MatmulOp {
  private readonly wide: Kernel;
  private readonly narrow: Kernel;
  private readonly group: GPUBindGroup;
  private readonly gpu: boolean;

  constructor(
    private readonly ctx: GpuContext,
    readonly label: string,
    readonly spec: MatmulSpec,
    bufs: MatmulBuffers,
    block: BlockParams,
    private readonly tiles: { wide: MatmulTiles; narrow: MatmulTiles } = { wide: CPU_TILES, narrow: ROW_TILES },
  ) {
    const w = spec.weight ?? 'f32';
    const glu = spec.aGlu !== undefined;
    if (glu && (!Number.isInteger(spec.aGlu) || spec.aGlu! < 1)) throw new RangeError(`${label}: aGlu ${spec.aGlu} must be a positive integer`);
    const norm = spec.aNorm !== undefined;
    if (norm && glu) throw new RangeError(`${label}: aNorm and aGlu exclude one another`);
    if (norm !== (bufs.gain !== undefined)) throw new RangeError(`${label}: aNorm needs the gain buffer, and the gain buffer aNorm`);
    if (norm && !(spec.aNorm!.eps >= 0)) throw new RangeError(`${label}: aNorm eps ${spec.aNorm!.eps} must be >= 0`);
    const resid = spec.aResid !== undefined;
    if (resid) {
      if (!norm) throw new RangeError(`${label}: aResid is the stream aNorm norms, so it needs aNorm`);
      if ((spec.batch ?? 1) !== 1) throw new RangeError(`${label}: aResid is for unbatched rows`);
      if (!bufs.resid || !bufs.postGain || !bufs.residOut) throw new RangeError(`${label}: aResid needs the resid, postGain and residOut buffers`);
      if (bufs.resid === bufs.residOut) throw new RangeError(`${label}: aResid's residOut must not be resid (the other column tiles still read the old stream)`);
      if (!(Number.isInteger(spec.aResid!.row) && spec.aResid!.row >= spec.K)) throw new RangeError(`${label}: aResid row stride ${spec.aResid!.row} must be an integer >= K = ${spec.K}`);
    } else if (bufs.resid || bufs.postGain || bufs.residOut) {
      throw new RangeError(`${label}: resid, postGain and residOut are for aResid`);
    }
    const gluBack = spec.cGluBack === true;
    if (gluBack) {
      if (norm || glu || (spec.batch ?? 1) !== 1) throw new RangeError(`${label}: cGluBack is for unbatched rows without aNorm or aGlu`);
      if (!bufs.ug || bufs.ug === bufs.c) throw new RangeError(`${label}: cGluBack needs the ug buffer (not C)`);
    } else if (bufs.ug) {
      throw new RangeError(`${label}: ug is for cGluBack`);
    }
    this.gpu = ctx.kernelVariant === 'gpu';
    if (this.gpu) {
      const aVec = vectorReadable(spec.a, spec.K) && (spec.aGlu ?? 0) % 4 === 0 && (spec.aResid?.row ?? 0) % 4 === 0;
      const bVec = vectorReadable(spec.b, spec.K);
      this.wide = matmulKernel(ctx, w, { kind: 'tiled', aVec, bVec }, glu, norm, resid, gluBack);
      this.narrow = matmulKernel(ctx, w, { kind: 'gemv', vec: aVec && bVec }, glu, norm, resid, gluBack);
    } else {
      this.wide = matmulKernel(ctx, w, { kind: 'register', tiles: tiles.wide }, glu, norm, resid, gluBack);
      this.narrow = matmulKernel(ctx, w, { kind: 'register', tiles: tiles.narrow }, glu, norm, resid, gluBack);
    }
    let flags = 0;
    if (bufs.bias) flags |= FLAG_BIAS;
    if (spec.M === 'rows') flags |= FLAG_M_ROWS;
    if (spec.lastRow) flags |= FLAG_LAST_ROW;
    if (spec.aResid?.write) flags |= FLAG_RESID_WRITE;
    const v = (x: View): [number, number, number, number] => [x.off ?? 0, x.batch ?? 0, x.row, x.col];
    const params = ctx.uniform(`${label} params`, [
      ['u32', spec.M === 'rows' ? 0 : spec.M], ['u32', spec.N], ['u32', spec.K], ['u32', flags],
      ...v(spec.a).map((x) => ['u32', x] as const),
      ...v(spec.b).map((x) => ['u32', x] as const),
      ...v(spec.c).map((x) => ['u32', x] as const),
      ['f32', spec.alpha ?? 1], ['f32', spec.beta ?? 0], ['u32', spec.biasOff ?? 0], ['u32', spec.aGlu ?? 0],
      ['f32', spec.aNorm?.eps ?? 0], ['u32', spec.aNorm?.gainOff ?? 0], ['u32', spec.aResid?.row ?? 0],
    ]);
    // Both tile variants share one bind group layout, so one bind group serves both pipelines.
    const shared = [params, block.buffer, bufs.a, bufs.b, bufs.bias ?? bufs.a, bufs.c];
    this.group = ctx.bind(this.wide, resid ? [...shared, bufs.gain!, bufs.resid!, bufs.residOut!, bufs.postGain!] : norm ? [...shared, bufs.gain!] : gluBack ? [...shared, bufs.ug!] : shared);
  }

  /** Records the launch; `rows` is the block's token count (used when M is 'rows'). */
  encode(pass: GPUComputePassEncoder, rows: number): void {
    const M = this.spec.M === 'rows' ? rows : this.spec.M;
    const k = M <= 2 ? this.narrow : this.wide;
    let x: number, y: number;
    if (this.gpu) {
      [x, y] = M <= 2 ? [Math.ceil(this.spec.N / GPU_GEMV_COLUMNS), 1] : [Math.ceil(this.spec.N / GPU_GEMM_TILE.n), Math.ceil(M / GPU_GEMM_TILE.m)];
    } else {
      const t = M <= 2 ? this.tiles.narrow : this.tiles.wide;
      x = Math.ceil(this.spec.N / (t.tn * t.wgx));
      y = Math.ceil(M / (t.tm * t.wgy));
    }
    const z = this.spec.batch ?? 1;
    const max = this.ctx.limits.maxComputeWorkgroupsPerDimension;
    if (x > max || y > max || z > max) throw new RangeError(`${this.label}: grid ${x}x${y}x${z} exceeds ${max} per dimension`);
    dispatch(pass, k, this.group, x, y, z);
  }

  /** Floating-point operations of one launch. */
  flops(rows: number): number {
    const M = this.spec.M === 'rows' ? rows : this.spec.M;
    return 2 * M * this.spec.N * this.spec.K * (this.spec.batch ?? 1);
  }
}
