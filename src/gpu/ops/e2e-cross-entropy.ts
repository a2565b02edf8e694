/**
 * The TTT-E2E chunk loss over the vocabulary and its gradient w.r.t. the logits (see
 * shaders/e2e-cross-entropy.wgsl; CPU twin crossEntropyBackward in src/reference/e2e/backward.ts).
 *
 * The logits come whole ([rows, V], one tile) or in column tiles of `tile` columns that the caller
 * produces one after another into the same buffer (row stride `ld`), so a large vocabulary never needs
 * a [rows, V] buffer. The order of launches for one chunk:
 *
 *   for each tile t: (write logits tile t) → encodeStats(pass, t)
 *   encodeFinish(pass)                                  → nll [rows], loss [1 + rows] (see below)
 *   for each tile t: (write logits tile t again) → encodeGrad(pass, t) → dlogits of tile t
 *
 * `encode` does it all for the one-tile case: in ONE launch (a workgroup per row) when the gradient
 * goes over the logits in place, else the three. The gradient goes to `dlogits` or, when that is
 * absent, over the logits in place. Every uniform and bind group is made here, once.
 *
 * loss = [#valid, share_0, .., share_{rows-1}]: the chunk's mean loss is the sum of the shares in row
 * order (chunkLoss below), which no single launch of the one-launch path could form.
 */
import source from '../../../shaders/e2e-cross-entropy.wgsl?raw';
import type { BlockParams } from '../block.ts';
import { dispatch, grid, type GpuContext, type Kernel } from '../context.ts';

export interface CrossEntropySpec {
  /** Rows of the chunk (B); with `blockRows`, the most rows a launch may have. */
  readonly rows: number;
  /** Take the row count from the block uniform at run time (≤ rows) instead of `rows`. */
  readonly blockRows?: boolean;
  readonly vocab: number;
  /** Columns per logits tile (default: the whole vocabulary, one tile). The last tile may be narrower. */
  readonly tile?: number;
  /** Row stride of the logits (and dlogits) buffer in elements (default: tile). */
  readonly ld?: number;
  /** Targets equal to this id do not count; null: every target counts. */
  readonly bos: number | null;
  /** Row r's target is targets[targetOff + r] (default 0; the engine keeps a chunk's tokens and reads them one on). */
  readonly targetOff?: number;
  /** Explicit vocabulary tiles [v0, width) in order, covering [0, V) (default: `tile`-wide tiles); e.g. tiles that never straddle a split weight's parts. */
  readonly tileList?: readonly { readonly v0: number; readonly width: number }[];
}

export interface CrossEntropyBuffers {
  /** f32 [rows, ld]: the logits tile being processed (or all of them). */
  readonly logits: GPUBuffer;
  /** u32 [rows]: the next tokens (< vocab). */
  readonly targets: GPUBuffer;
  /** f32 [rows]: every row's NLL, BOS targets included. */
  readonly nll: GPUBuffer;
  /** f32 [1 + rows]: the valid targets' count, then each row's share of their mean loss. */
  readonly loss: GPUBuffer;
  /** f32 [rows, ld]: the gradient tile; absent: written over `logits`. */
  readonly dlogits?: GPUBuffer;
  /** f32 [4·rows] scratch for the running stats; made here when absent. */
  readonly stats?: GPUBuffer;
}

const WG = 64;
const NO_BOS = 0xffffffff;

/** The chunk's mean loss from a loss buffer's contents ([#valid, shares...]), in the GPU readers' order (f32). */
export function chunkLoss(loss: Float32Array, rows: number): number {
  let s = 0;
  for (let r = 0; r < rows; r++) s = Math.fround(s + loss[1 + r]);
  return s;
}

export class CrossEntropyOp {
  /** Number of vocabulary tiles (launches of encodeStats and encodeGrad per chunk). */
  readonly tiles: number;
  /** The widest tile (the logits buffer holds rows × ld ≥ this). */
  readonly tile: number;
  readonly tileList: readonly { readonly v0: number; readonly width: number }[];
  readonly stats: GPUBuffer;
  private readonly statsKernel: Kernel;
  private readonly finishKernel: Kernel;
  private readonly gradKernel: Kernel;
  private readonly statsGroups: GPUBindGroup[];
  private readonly gradGroups: GPUBindGroup[];
  private readonly finishGroup: GPUBindGroup;
  /** The one-launch path (one tile, gradient in place). */
  private readonly rowLaunch?: { kernel: Kernel; group: GPUBindGroup };

  constructor(ctx: GpuContext, readonly label: string, readonly spec: CrossEntropySpec, bufs: CrossEntropyBuffers, block: BlockParams) {
    const { rows, vocab } = spec;
    const tile = spec.tileList ? Math.max(...spec.tileList.map((t) => t.width)) : Math.min(spec.tile ?? vocab, vocab);
    const ld = spec.ld ?? tile;
    if (!(rows >= 1 && vocab >= 1 && tile >= 1 && ld >= tile)) throw new RangeError(`${label}: rows ${rows}, vocab ${vocab}, tile ${tile}, ld ${ld}`);
    if (spec.bos !== null && !(spec.bos >= 0 && spec.bos < NO_BOS)) throw new RangeError(`${label}: BOS id ${spec.bos}`);
    const list = spec.tileList ?? Array.from({ length: Math.ceil(vocab / tile) }, (_, t) => ({ v0: t * tile, width: Math.min(tile, vocab - t * tile) }));
    list.forEach((t, i) => {
      if (t.v0 !== (i === 0 ? 0 : list[i - 1].v0 + list[i - 1].width) || !(t.width >= 1)) throw new RangeError(`${label}: tile ${i} [${t.v0}, +${t.width}) does not follow the one before`);
    });
    if (list[list.length - 1].v0 + list[list.length - 1].width !== vocab) throw new RangeError(`${label}: the tiles do not end at the vocabulary ${vocab}`);
    this.tileList = list;
    this.tile = tile;
    this.tiles = list.length;
    const inPlace = !bufs.dlogits;
    this.statsKernel = ctx.kernel({ shader: 'e2e-cross-entropy.wgsl', source, entry: 'stats_tile', bindings: ['uniform', 'uniform', 'read', 'read', 'rw'], defines: { STATS: true, ROW_LSE: true } });
    this.finishKernel = ctx.kernel({ shader: 'e2e-cross-entropy.wgsl', source, entry: 'finish', bindings: ['uniform', 'uniform', 'read', 'rw', 'rw', 'rw'], defines: { FINISH: true } });
    this.gradKernel = ctx.kernel({
      shader: 'e2e-cross-entropy.wgsl', source, entry: 'grad',
      bindings: inPlace ? ['uniform', 'uniform', 'read', 'read', 'rw'] : ['uniform', 'uniform', 'read', 'read', 'read', 'rw'],
      defines: { GRAD: true, IN_PLACE: inPlace },
    });
    this.stats = bufs.stats ?? ctx.allocator.create(`${label} stats`, 'scratch', 16 * rows, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    const params = list.map((tl, t) => ctx.uniform(`${label} tile ${t}`, [
      ['u32', rows], ['u32', spec.blockRows ? 1 : 0], ['u32', spec.bos ?? NO_BOS], ['u32', ld],
      ['u32', tl.v0], ['u32', tl.width], ['u32', t === 0 ? 1 : 0], ['u32', spec.targetOff ?? 0],
    ]));
    this.statsGroups = params.map((u) => ctx.bind(this.statsKernel, [u, block.buffer, bufs.logits, bufs.targets, this.stats]));
    if (bufs.loss.size < 4 * (1 + rows)) throw new RangeError(`${label}: the loss buffer must hold ${1 + rows} floats`);
    this.finishGroup = ctx.bind(this.finishKernel, [params[0], block.buffer, bufs.targets, this.stats, bufs.nll, bufs.loss]);
    if (list.length === 1 && inPlace) {
      const kernel = ctx.kernel({ shader: 'e2e-cross-entropy.wgsl', source, entry: 'row', bindings: ['uniform', 'uniform', 'read', 'rw', 'rw', 'rw'], defines: { ROW: true, ROW_LSE: true } });
      this.rowLaunch = { kernel, group: ctx.bind(kernel, [params[0], block.buffer, bufs.targets, bufs.logits, bufs.nll, bufs.loss]) };
    }
    this.gradGroups = params.map((u) => ctx.bind(this.gradKernel, inPlace
      ? [u, block.buffer, bufs.targets, this.stats, bufs.logits]
      : [u, block.buffer, bufs.targets, this.stats, bufs.logits, bufs.dlogits!]));
  }

  private rowsOf(rows?: number): number {
    const n = rows ?? this.spec.rows;
    if (n > this.spec.rows) throw new RangeError(`${this.label}: ${n} rows, made for at most ${this.spec.rows}`);
    return n;
  }

  /** Folds logits tile `t` into the running (max, sum-exp) of every row; `rows`: the launch's row count (default spec.rows). */
  encodeStats(pass: GPUComputePassEncoder, t = 0, rows?: number): void {
    const [x, y] = grid(this.rowsOf(rows));
    dispatch(pass, this.statsKernel, this.statsGroups[t], x, y);
  }

  /** nll, loss and the per-row gradient weights, after every tile's stats. */
  encodeFinish(pass: GPUComputePassEncoder): void {
    dispatch(pass, this.finishKernel, this.finishGroup, 1);
  }

  /** dlogits of tile `t` (the same logits as its encodeStats saw), after encodeFinish. */
  encodeGrad(pass: GPUComputePassEncoder, t = 0, rows?: number): void {
    const width = this.tileList[t].width;
    dispatch(pass, this.gradKernel, this.gradGroups[t], Math.ceil(width / WG), this.rowsOf(rows));
  }

  /** Whether encode is one launch. */
  get oneLaunch(): boolean {
    return this.rowLaunch !== undefined;
  }

  /** The whole loss and gradient when the logits are one tile. */
  encode(pass: GPUComputePassEncoder, rows?: number): void {
    if (this.tiles !== 1) throw new Error(`${this.label}: ${this.tiles} tiles: encode each tile's stats and grad between the launches that write it`);
    if (this.rowLaunch) {
      const [x, y] = grid(this.rowsOf(rows));
      dispatch(pass, this.rowLaunch.kernel, this.rowLaunch.group, x, y);
      return;
    }
    this.encodeStats(pass, 0, rows);
    this.encodeFinish(pass);
    this.encodeGrad(pass, 0, rows);
  }

  /**
   * Arithmetic of one chunk (all tiles), for GFLOP/s: per logit, the stats pass costs one exp and ~3
   * flops (compare, add, rescale) and the gradient pass one exp and ~4 (subtract, divide, the onehot
   * test, the weight): counted as 2 exp + 7 flops = 9 "flops" per logit, plus O(rows) for finish. The
   * kernel is memory-bound: bytes() is the better figure of merit.
   */
  flops(rows = this.spec.rows): number {
    return 9 * rows * this.spec.vocab;
  }

  /** Bytes moved per chunk: the logits read twice, the gradient written once (f32). */
  bytes(rows = this.spec.rows): number {
    return 3 * 4 * rows * this.spec.vocab;
  }
}
