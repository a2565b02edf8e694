/**
 * TTT-E2E sliding-window attention of a block of query rows (shaders/e2e-attention.wgsl): the forward,
 * which also writes the per-(row, head) log-sum-exp the backward needs, and the flash-style backward
 * (dq for the block's rows; dk, dv for the block's own keys), recomputing the scores from q, k and the
 * saved lse; no [rows, W + rows] matrix is ever in memory.
 *
 * Rows are positions pos0 .. pos0 + rows - 1 (the Block uniform). Query t sees keys t - W < j <= t:
 * those of the block from its own k, v rows, earlier ones from a KV ring (position j in slot j mod ring,
 * [ring, H·hd]: KvCache's layout, see `kvRingOf`). The ring is read, never written: storing the block's
 * K/V into it is the caller's business (after these launches, or anywhere when ring >= W - 1 + rows).
 * Earlier chunks' K/V are constants of the inner step, so the backward gives them no gradient.
 *
 * Stats, [maxRows, H, 2] f32: (lse, unused) per (row, head), lse from the forward, read by the backward,
 * which forms D = rowsum(dO ⊙ o) itself. One buffer shared by the two ops (`e2eAttentionStatsBytes`).
 *
 * FLOPs per call, n_r = min(W, pos0 + r + 1) keys seen by row r, m_r = min(W, r + 1) of them the block's:
 *   forward   Σ_r n_r · H · 4·hd        (score 2hd, weighted sum 2hd; plus one exp per (row, head, key))
 *   backward  Σ_r (6·n_r + 8·m_r) · H · hd + 2 · rows · H · hd
 *             (dq: score, dP, dq 6hd per key seen; dk/dv: score, dP, dv, dk 8hd per own key seen; D)
 */
import source from '../../../shaders/e2e-attention.wgsl?raw';
import type { BlockParams } from '../block.ts';
import { dispatch, type GpuContext, type Kernel, type Param } from '../context.ts';
import type { KvCache } from './kv-cache.ts';
import { ropeTurnTable } from './rope-turn-table.ts';

export interface E2EAttentionSpec {
  readonly heads: number;
  readonly headDim: number;
  /** W: keys seen per query, its own included. */
  readonly window: number;
  /** The largest block (rows) ever recorded (sizes the stats). */
  readonly maxRows: number;
  /** Rows (the forward, the backward's dq role) or keys (its dk/dv role) per workgroup, one invocation each (default 64). */
  readonly groupRows?: number;
  /** Keys (or query rows) per workgroup-memory tile: default as many as maxComputeWorkgroupStorageSize holds (2·hd + 2 floats each), at most 64. */
  readonly tileRows?: number;
}

/** Rows of a [rows, stride] buffer, a head's columns [offset + h·hd, offset + (h+1)·hd). */
export interface RowView {
  readonly buffer: GPUBuffer;
  readonly stride: number;
  readonly offset?: number;
}

/** Earlier positions' keys and values: position j in slot j mod ring of [ring, H·hd] buffers. */
export interface KvRing {
  readonly k: GPUBuffer;
  readonly v: GPUBuffer;
  readonly ring: number;
}

/** The ring of a sliding-window KvCache (W + maxRows - 1 slots). */
export function kvRingOf(kv: KvCache): KvRing {
  if (kv.ring === 0) throw new RangeError('kvRingOf: a paged (full-attention) cache has no ring');
  return { k: kv.pages[0].k, v: kv.pages[0].v, ring: kv.ring };
}

export function e2eAttentionStatsBytes(spec: E2EAttentionSpec): number {
  return spec.maxRows * spec.heads * 2 * 4;
}

const WORKGROUP = 64;

interface Shape { readonly R: number; readonly T: number }

function shapeOf(ctx: GpuContext, label: string, spec: E2EAttentionSpec, ring: KvRing): Shape {
  const posInt = (v: number) => Number.isInteger(v) && v >= 1;
  if (!posInt(spec.heads) || !posInt(spec.headDim)) throw new RangeError(`${label}: ${spec.heads} heads of ${spec.headDim}`);
  if (!posInt(spec.window)) throw new RangeError(`${label}: window ${spec.window}`);
  if (!posInt(spec.maxRows)) throw new RangeError(`${label}: maxRows ${spec.maxRows}`);
  if (!posInt(ring.ring) || ring.ring < spec.window - 1) throw new RangeError(`${label}: a ring of ${ring.ring} slots cannot hold the W - 1 = ${spec.window - 1} positions before a block`);
  const R = spec.groupRows ?? WORKGROUP;
  if (!posInt(R) || R > ctx.limits.maxComputeInvocationsPerWorkgroup || R > ctx.limits.maxComputeWorkgroupSizeX) throw new RangeError(`${label}: ${R} rows per workgroup`);
  const fit = Math.floor(ctx.limits.maxComputeWorkgroupStorageSize / (4 * (2 * spec.headDim + 2)));
  const T = spec.tileRows ?? Math.min(64, fit);
  if (!posInt(T) || T > fit) throw new RangeError(`${label}: tiles of ${T} rows of ${spec.headDim} (at most ${fit} fit in workgroup memory)`);
  return { R, T };
}

function params(ctx: GpuContext, label: string, spec: E2EAttentionSpec, ring: KvRing, views: Record<'q' | 'k' | 'v' | 'o' | 'g' | 'dq' | 'dk' | 'dv', RowView | undefined>, norm?: QkNormBackward, out?: QkNormForward['out']): GPUBuffer {
  const sv = (view: RowView | undefined): Param[] => [['u32', view?.stride ?? 0], ['u32', view?.offset ?? 0]];
  return ctx.uniform(`${label} params`, [
    ['u32', spec.heads], ['u32', spec.window], ['u32', ring.ring], ['u32', spec.heads * spec.headDim],
    ...sv(views.q), ...sv(views.k), ...sv(views.v), ...sv(views.o), ...sv(views.g), ...sv(views.dq), ...sv(views.dk), ...sv(views.dv),
    ['f32', 1 / Math.sqrt(spec.headDim)], ['u32', 0], ['u32', 0], ['u32', 0],
    ['u32', norm?.q.stride ?? 0], ['u32', norm?.q.offset ?? 0], ['u32', norm?.k.offset ?? 0], ['f32', norm?.eps ?? 0],
    ['u32', out?.q.stride ?? 0], ['u32', out?.q.offset ?? 0], ['u32', out?.k.offset ?? 0], ['u32', out?.v.offset ?? 0],
  ]);
}

/**
 * The forward with the per-head q/k RMSNorm and RoPE on load (E2EQkNormOp's forward with ropeTheta, the
 * same formula): q, k and v are then as the projection wrote them, and the normed, roped q, k and the
 * v of the block's rows are stored to `out` for the backward.
 */
export interface QkNormForward {
  /** q_norm's hd gains, then k_norm's. */
  readonly gain: GPUBuffer;
  readonly eps: number;
  readonly ropeTheta: number;
  /** Views of one buffer with one stride, none overlapping q, k, v. */
  readonly out: { readonly q: RowView; readonly k: RowView; readonly v: RowView };
}

/** The RoPE turn table as a uniform buffer (pairs packed two per vec4), so a launch keeps to 8 storage bindings. */
function turnsUniform(ctx: GpuContext, label: string, headDim: number, theta: number): GPUBuffer {
  const table = ropeTurnTable(headDim, theta);
  const padded = new Uint32Array(4 * Math.ceil(headDim / 4));
  padded.set(table);
  const turns = ctx.allocator.create(`${label} rope turns`, 'weights', padded.byteLength, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
  ctx.device.queue.writeBuffer(turns, 0, padded);
  return turns;
}

/**
 * The per-head q/k RMSNorm and RoPE that made q and k (E2EQkNormOp with ropeTheta), whose backward the
 * attention backward then runs as it stores dq and dk: they become the gradients of the pre-norm q, k.
 */
export interface QkNormBackward {
  /** q and k before the norm: views of one buffer with one row stride. */
  readonly q: RowView;
  readonly k: RowView;
  /** q_norm's hd gains, then k_norm's. */
  readonly gain: GPUBuffer;
  readonly eps: number;
  readonly ropeTheta: number;
}

function check(label: string, spec: E2EAttentionSpec, rows: number, pos0: number): void {
  if (!Number.isInteger(rows) || rows < 1 || rows > spec.maxRows) throw new RangeError(`${label}: ${rows} rows (maxRows ${spec.maxRows})`);
  if (!Number.isInteger(pos0) || pos0 < 0 || pos0 + rows > 2 ** 32 - spec.window) throw new RangeError(`${label}: position ${pos0}`);
}

function keysSeen(spec: E2EAttentionSpec, rows: number, pos0: number): { all: number; own: number } {
  let all = 0, own = 0;
  for (let r = 0; r < rows; r++) {
    all += Math.min(spec.window, pos0 + r + 1);
    own += Math.min(spec.window, r + 1);
  }
  return { all, own };
}

/** The forward: o and the lse half of stats. */
export class E2EAttentionOp {
  private readonly kernel: Kernel;
  private readonly group: GPUBindGroup;
  private readonly shape: Shape;

  constructor(
    ctx: GpuContext, readonly label: string, readonly spec: E2EAttentionSpec,
    io: { q: RowView; k: RowView; v: RowView; ring: KvRing; o: RowView; stats: GPUBuffer; norm?: QkNormForward }, block: BlockParams,
  ) {
    this.shape = shapeOf(ctx, label, spec, io.ring);
    const norm = io.norm;
    const p = params(ctx, label, spec, io.ring, { q: io.q, k: io.k, v: io.v, o: io.o, g: undefined, dq: undefined, dk: undefined, dv: undefined }, norm && { q: io.q, k: io.k, eps: norm.eps, gain: norm.gain, ropeTheta: norm.ropeTheta }, norm?.out);
    const defines = { HD: spec.headDim, R: this.shape.R, T: this.shape.T, NORM_FWD: !!norm };
    if (norm) {
      if (io.k.buffer !== io.q.buffer || io.v.buffer !== io.q.buffer) throw new RangeError(`${label}: with the q/k norm on load, q, k and v must be views of one buffer`);
      const { out } = norm;
      if (out.k.buffer !== out.q.buffer || out.v.buffer !== out.q.buffer || out.k.stride !== out.q.stride || out.v.stride !== out.q.stride) throw new RangeError(`${label}: the normed q, k, v must be views of one buffer with one stride`);
      if (out.q.buffer === io.q.buffer) throw new RangeError(`${label}: the normed q, k, v must not overwrite the projection's`);
      if (spec.headDim % 2 !== 0 || !(norm.ropeTheta > 0)) throw new RangeError(`${label}: RoPE needs an even head dim and theta > 0`);
      this.kernel = ctx.kernel({ shader: 'e2e-attention.wgsl', source, entry: 'forward', bindings: ['uniform', 'uniform', 'read', 'read', 'read', 'rw', 'rw', 'rw', 'read', 'uniform'], defines });
      this.group = ctx.bind(this.kernel, [p, block.buffer, io.q.buffer, io.ring.k, io.ring.v, io.o.buffer, io.stats, out.q.buffer, norm.gain, turnsUniform(ctx, label, spec.headDim, norm.ropeTheta)]);
    } else {
      this.kernel = ctx.kernel({ shader: 'e2e-attention.wgsl', source, entry: 'forward', bindings: ['uniform', 'uniform', 'read', 'read', 'read', 'read', 'read', 'rw', 'rw'], defines });
      this.group = ctx.bind(this.kernel, [p, block.buffer, io.q.buffer, io.k.buffer, io.v.buffer, io.ring.k, io.ring.v, io.o.buffer, io.stats]);
    }
  }

  /** Records the block (rows, pos0: what block.write() got). */
  encode(pass: GPUComputePassEncoder, rows: number, pos0: number): void {
    check(this.label, this.spec, rows, pos0);
    dispatch(pass, this.kernel, this.group, Math.ceil(rows / this.shape.R), this.spec.heads);
  }

  flops(rows: number, pos0: number): number {
    return keysSeen(this.spec, rows, pos0).all * this.spec.heads * 4 * this.spec.headDim;
  }
}

/**
 * The backward of the block the forward just ran (same rows, pos0, q, k, v, ring), given its o and
 * stats: dq (every key seen), dk and dv (the block's own keys) in ONE launch, each D = rowsum(dO ⊙ o)
 * formed where it is read. q, k and v must be views of one buffer, o and dO of one, dq and dk of one (dv
 * may share it: e.g. dqkv [rows, 3D] for the backward of a fused qkv projection), so the launch binds at
 * most 7 storage buffers; dq, dk, dv are overwritten and must not overlap q, k, v, o or dO. stats is
 * only read.
 */
export class E2EAttentionBackwardOp {
  private readonly kernel: Kernel;
  private readonly group: GPUBindGroup;
  private readonly shape: Shape;

  constructor(
    ctx: GpuContext, readonly label: string, readonly spec: E2EAttentionSpec,
    io: { q: RowView; k: RowView; v: RowView; ring: KvRing; o: RowView; dO: RowView; stats: GPUBuffer; dq: RowView; dk: RowView; dv: RowView; norm?: QkNormBackward },
    block: BlockParams,
  ) {
    this.shape = shapeOf(ctx, label, spec, io.ring);
    if (io.k.buffer !== io.q.buffer || io.v.buffer !== io.q.buffer) throw new RangeError(`${label}: q, k and v must be views of one buffer`);
    if (io.dO.buffer !== io.o.buffer) throw new RangeError(`${label}: o and dO must be views of one buffer`);
    if (io.dk.buffer !== io.dq.buffer) throw new RangeError(`${label}: dq and dk must be views of one buffer`);
    const shared = io.dv.buffer === io.dq.buffer;
    const norm = io.norm;
    if (norm) {
      // Two more storage bindings: only with dv beside dq and dk do they fit in 8.
      if (!shared) throw new RangeError(`${label}: with the q/k norm's backward, dq, dk and dv must be views of one buffer`);
      if (norm.k.buffer !== norm.q.buffer || norm.k.stride !== norm.q.stride) throw new RangeError(`${label}: the pre-norm q and k must be views of one buffer with one stride`);
      if (spec.headDim % 2 !== 0 || !(norm.ropeTheta > 0)) throw new RangeError(`${label}: RoPE needs an even head dim and theta > 0`);
    }
    const defines = { HD: spec.headDim, R: this.shape.R, T: this.shape.T, BACKWARD: true, SHARED_DKV: shared, NORM_BACK: !!norm };
    const p = params(ctx, label, spec, io.ring, { q: io.q, k: io.k, v: io.v, o: io.o, g: io.dO, dq: io.dq, dk: io.dk, dv: io.dv }, norm);
    const extra: GPUBuffer[] = [];
    if (norm) extra.push(norm.q.buffer, norm.gain, turnsUniform(ctx, label, spec.headDim, norm.ropeTheta));
    this.kernel = ctx.kernel({
      shader: 'e2e-attention.wgsl', source, entry: 'backward', defines,
      bindings: ['uniform', 'uniform', 'read', 'read', 'read', 'read', 'read', 'rw', ...(shared ? [] : ['rw'] as const), ...(norm ? ['read', 'read', 'uniform'] as const : [])],
    });
    this.group = ctx.bind(this.kernel, [p, block.buffer, io.q.buffer, io.ring.k, io.ring.v, io.o.buffer, io.stats, io.dq.buffer, ...(shared ? [] : [io.dv.buffer]), ...extra]);
  }

  encode(pass: GPUComputePassEncoder, rows: number, pos0: number): void {
    check(this.label, this.spec, rows, pos0);
    // The dq workgroups, then as many dk/dv ones.
    dispatch(pass, this.kernel, this.group, 2 * Math.ceil(rows / this.shape.R), this.spec.heads);
  }

  flops(rows: number, pos0: number): number {
    const { all, own } = keysSeen(this.spec, rows, pos0);
    return (6 * all + 8 * own + 2 * rows) * this.spec.heads * this.spec.headDim;
  }
}
