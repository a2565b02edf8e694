/**
 * Causal softmax attention with its KV cache (see shaders/attention.wgsl): a ring of the last
 * W + maxRows - 1 positions for sliding-window models, or a paged cache of `capacity` positions for full
 * attention. One `attend` launch per page touched writes the block's own k, v into the cache and attends;
 * a `combine` launch follows only when the keys were split across invocations or pages. The context's
 * kernel variant picks the shape of `attend`: one invocation per (row, head, split) for CPU emulators, a
 * workgroup of 64 per (row, head, split) for GPUs (the launch plan and partials are the same).
 */
import source from '../../../shaders/attention.wgsl?raw';
import type { BlockParams } from '../block.ts';
import { dispatch, grid, type BindingKind, type GpuContext, type Kernel } from '../context.ts';
import { checkAttentionSpec, type AttentionSpec, type KvCache } from './kv-cache.ts';

const SPLIT_KEYS = 256;
/** Splits are taken only while rows * splits <= this: many rows already give enough invocations. */
const SPLIT_ROWS = 64;
const WORKGROUP = 64;
const ATTEND_BINDINGS: BindingKind[] = ['uniform', 'uniform', 'read', 'rw', 'rw', 'rw', 'rw'];
/** Query rows per invocation of the CPU-emulator prefill shape (attendRows): each key is loaded once for them all. */
export const CPU_ROW_BLOCK = 16;
/**
 * The GPU prefill shape's tile: BQ query rows and BKV keys per step (attention.wgsl), 16 x 16 unless the
 * workgroup memory it needs, (BQ·da + 2·BKV·da + BQ·BKV + 3·BQ) floats, would pass the device's limit; then
 * BKV, then BQ, are halved. Null: not even one row fits (the per-row shape serves every block).
 */
export function attentionTile(da: number, maxBytes: number): { bq: number; bkv: number } | null {
  const bytes = (bq: number, bkv: number) => 4 * (bq * da + 2 * bkv * da + bq * bkv + 3 * bq);
  let bq = 16, bkv = 16;
  while (bytes(bq, bkv) > maxBytes) {
    if (bkv > 4) bkv /= 2;
    else if (bq > 1) bq /= 2;
    else return null;
  }
  return { bq, bkv };
}

/**
 * The launch shapes of one block, as the shader derives them from (rows, pos0): which pages it touches,
 * how many key splits each gets, and the total (1: `attend` writes the output, no combine).
 */
class Plan {
  constructor(
    private readonly window: number,
    private readonly ring: number,
    private readonly pageTokens: number,
    private readonly splitKeys: number,
  ) {}

  firstKey(pos0: number): number {
    return this.window === 0 || pos0 + 1 <= this.window ? 0 : pos0 + 1 - this.window;
  }

  pageKeys(page: number, rows: number, pos0: number): number {
    const lo = this.firstKey(pos0), end = pos0 + rows;
    if (this.ring) return end - lo;
    const base = page * this.pageTokens;
    return Math.max(0, Math.min(end, base + this.pageTokens) - Math.max(lo, base));
  }

  splits(n: number, rows: number): number {
    return n === 0 ? 0 : Math.min(Math.ceil(n / this.splitKeys), Math.max(1, Math.floor(SPLIT_ROWS / rows)));
  }

  /** Splits of every page the block reads, pages 0..last (full attention reads from position 0). */
  launches(rows: number, pos0: number): number[] {
    const pages = this.ring ? 1 : Math.floor((pos0 + rows - 1) / this.pageTokens) + 1;
    return Array.from({ length: pages }, (_, i) => this.splits(this.pageKeys(i, rows, pos0), rows));
  }
}

/** Bytes of the split partials for the largest total split count any block can have (0: every block has one split). */
export function attentionPartialsBytes(spec: AttentionSpec, kv: { ring: number; pageTokens: number; pageSlots: readonly number[] }): number {
  const plan = new Plan(spec.window ?? 0, kv.ring, kv.pageTokens, spec.splitKeys ?? SPLIT_KEYS);
  let slots = 0;
  for (let rows = 1; rows <= spec.maxRows; rows++) {
    const maxKeys = kv.ring ? [Math.min(kv.ring, spec.window! + rows - 1)] : kv.pageSlots;
    const total = maxKeys.reduce((s, n) => s + plan.splits(n, rows), 0);
    if (total > 1) slots = Math.max(slots, rows * total);
  }
  return slots * spec.heads * (spec.D / spec.heads + 2) * 4;
}

export class AttentionOp {
  private readonly attend: Kernel;
  /** The GPU prefill shape (a tile of query rows per workgroup), for blocks of more than one row; null on the CPU variant. */
  private readonly attendTile: Kernel | null;
  private readonly tileRows: number;
  /** The CPU-emulator prefill shape (RB rows per invocation), for blocks of more than one row; null on the GPU variant. */
  private readonly attendRows: Kernel | null;
  private readonly rowBlock: number;
  private readonly attendOne: Kernel | null;
  private readonly combine: Kernel;
  private readonly attendGroups: GPUBindGroup[];
  private readonly combineGroup: GPUBindGroup;
  private readonly plan: Plan;
  private readonly da: number;
  /** Invocations per (row, head, split): 1 (CPU-emulator shape) or a workgroup (GPU shape). */
  private readonly perTask: number;

  constructor(
    ctx: GpuContext,
    readonly label: string,
    readonly spec: AttentionSpec,
    /** qkv: rows of q | k | v, `qkvStride` floats apart (default 3D: LaCT's rows also carry its gates). */
    io: { qkv: GPUBuffer; out: GPUBuffer; qkvStride?: number },
    readonly kv: KvCache,
    block: BlockParams,
  ) {
    checkAttentionSpec(label, spec);
    const ks = kv.spec;
    if (ks.D !== spec.D || ks.heads !== spec.heads || ks.window !== spec.window || ks.maxRows < spec.maxRows) {
      throw new RangeError(`${label}: the KV cache was made for another shape`);
    }
    const { D, heads, maxRows } = spec;
    const qkvStride = io.qkvStride ?? 3 * D;
    if (!Number.isInteger(qkvStride) || qkvStride < 3 * D) throw new RangeError(`${label}: qkv row stride ${qkvStride} is less than 3D = ${3 * D}`);
    const da = (this.da = D / heads);
    const splitKeys = spec.splitKeys ?? SPLIT_KEYS;
    this.plan = new Plan(spec.window ?? 0, kv.ring, kv.pageTokens, splitKeys);

    const partials = ctx.allocator.create(`${label} partials`, 'scratch', attentionPartialsBytes(spec, { ring: kv.ring, pageTokens: kv.pageTokens, pageSlots: kv.pages.map((pg) => pg.k.size / (D * 4)) }), GPUBufferUsage.STORAGE);

    const defines = { DA: da };
    const gpu = ctx.kernelVariant === 'gpu';
    this.perTask = gpu ? WORKGROUP : 1;
    this.attend = ctx.kernel({ shader: 'attention.wgsl', source, entry: 'attend', bindings: ATTEND_BINDINGS, defines: { ...defines, GPU_SHAPES: gpu } });
    const tile = gpu ? attentionTile(da, ctx.limits.maxComputeWorkgroupStorageSize) : null;
    this.tileRows = tile?.bq ?? 1;
    this.attendTile = tile ? ctx.kernel({ shader: 'attention.wgsl', source, entry: 'attendTile', bindings: ATTEND_BINDINGS, defines: { ...defines, GPU_SHAPES: true, TILE: true, BQ: tile.bq, BKV: tile.bkv } }) : null;
    this.rowBlock = spec.rowBlock ?? CPU_ROW_BLOCK;
    if (!Number.isInteger(this.rowBlock) || this.rowBlock < 1) throw new RangeError(`${label}: rowBlock ${this.rowBlock} must be a positive integer`);
    // rowBlock 1 is the per-row shape itself.
    const cpuRows = (rb: number) => ctx.kernel({ shader: 'attention.wgsl', source, entry: 'attendRows', bindings: ATTEND_BINDINGS, defines: { ...defines, GPU_SHAPES: false, ROW_BLOCK: true, RB: rb } });
    this.attendRows = gpu || this.rowBlock === 1 ? null : cpuRows(this.rowBlock);
    // A decode row on the CPU shape walks its keys in the same aligned tiles as a prefill row (RB 1), so a
    // row's numbers do not depend on whether it came in a block or alone.
    this.attendOne = gpu || this.rowBlock === 1 ? null : cpuRows(1);
    this.combine = ctx.kernel({ shader: 'attention.wgsl', source, entry: 'combine', bindings: ['uniform', 'uniform', 'read', 'rw'], defines });
    const params = kv.pages.map((_, page) =>
      ctx.uniform(`${label} params page ${page}`, [
        ['u32', D], ['u32', heads], ['u32', spec.window ?? 0], ['u32', kv.ring],
        ['u32', page], ['u32', kv.pageTokens], ['u32', splitKeys], ['u32', SPLIT_ROWS],
        ['f32', 1 / Math.sqrt(da)], ['u32', qkvStride], ['u32', 0], ['u32', 0],
      ]),
    );
    this.attendGroups = kv.pages.map((pg, page) => ctx.bind(this.attend, [params[page], block.buffer, io.qkv, pg.k, pg.v, io.out, partials]));
    this.combineGroup = ctx.bind(this.combine, [params[0], block.buffer, partials, io.out]);
  }

  private check(rows: number, pos0: number): void {
    if (!Number.isInteger(rows) || rows < 1 || rows > this.spec.maxRows) throw new RangeError(`${this.label}: ${rows} rows (maxRows ${this.spec.maxRows})`);
    if (!Number.isInteger(pos0) || pos0 < 0) throw new RangeError(`${this.label}: position ${pos0}`);
    if (pos0 + rows > this.kv.capacity) throw new RangeError(`${this.label}: positions up to ${pos0 + rows} exceed the KV cache's capacity of ${this.kv.capacity}`);
  }

  /**
   * Records the block: k, v into the cache and attention → out. Blocks must arrive in position order
   * without gaps (the cache holds only what earlier blocks wrote); rows/pos0 are what block.write() got.
   */
  encode(pass: GPUComputePassEncoder, rows: number, pos0: number): void {
    this.check(rows, pos0);
    const launches = this.plan.launches(rows, pos0);
    // Every attend shape shares one bind group layout, so one bind group serves any of the pipelines.
    const tiled = this.attendTile !== null && rows > 1;
    const blocked = this.attendRows !== null && rows > 1;
    launches.forEach((splits, page) => {
      const [x, y] = tiled
        ? grid(splits * Math.ceil(rows / this.tileRows) * this.spec.heads)
        : blocked
          ? grid(Math.ceil((splits * Math.ceil(rows / this.rowBlock) * this.spec.heads) / WORKGROUP))
          : grid(Math.ceil((splits * rows * this.spec.heads * this.perTask) / WORKGROUP));
      const one = !tiled && !blocked && this.attendOne !== null;
      dispatch(pass, tiled ? this.attendTile! : blocked ? this.attendRows! : one ? this.attendOne! : this.attend, this.attendGroups[page], x, y);
    });
    if (launches.reduce((a, b) => a + b, 0) > 1) {
      const [x, y] = grid(Math.ceil((rows * this.spec.D) / WORKGROUP));
      dispatch(pass, this.combine, this.combineGroup, x, y);
    }
  }

  /** Dispatches encode() records: one per page read (the ring is one), plus a combine when split. */
  dispatches(rows: number, pos0: number): number {
    this.check(rows, pos0);
    const launches = this.plan.launches(rows, pos0);
    return launches.length + (launches.reduce((a, b) => a + b, 0) > 1 ? 1 : 0);
  }
}
