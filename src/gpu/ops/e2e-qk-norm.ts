/**
 * TTT-E2E per-head q/k RMSNorm (one gain [hd] per segment, shared by the heads) and its backward
 * (shaders/e2e-qk-norm.wgsl). Rows come from the Block uniform; each row holds `segments` vectors of
 * [H, hd] (segment s normalised with gain[s·hd, (s+1)·hd)).
 *
 * FLOPs per call, N = rows · segments · H vectors of hd:
 *   forward   4 · N · hd   (square-accumulate 2, two products 2)
 *   backward  dx: 9 · N · hd (sum of squares 2, dot of 3 factors 3, dx 4); dgain: 3 · N · hd
 *             (+ the tree, hd · segments · 63 adds): 12 · N · hd in all.
 * The inner training step does not need dgain (the q/k norm gains are frozen at test time): build the
 * backward without a `dgain` buffer and it records only the dx launch.
 */
import source from '../../../shaders/e2e-qk-norm.wgsl?raw';
import type { BlockParams } from '../block.ts';
import { dispatch, grid, type BindingKind, type GpuContext, type Kernel } from '../context.ts';
import { ropeTurnTable } from './rope-turn-table.ts';

export interface E2EQkNormSpec {
  readonly heads: number;
  readonly headDim: number;
  readonly eps: number;
  /** The largest block (rows) the op is recorded for (sizes the backward's r scratch). */
  readonly maxRows: number;
  /** Vectors of H·hd per row (e.g. 2: q and k), `segStride` floats apart (default 1, H·hd). */
  readonly segments?: number;
  readonly segStride?: number;
  /** Floats between rows of x and where its first vector starts (default segments·segStride, 0). */
  readonly xStride?: number;
  readonly xOff?: number;
  /** The same for y (forward) or dy (backward); default as x. */
  readonly yStride?: number;
  readonly yOff?: number;
  /** The same for dx (backward); default as x. */
  readonly dxStride?: number;
  readonly dxOff?: number;
  /**
   * Forward only: the interleaved RoPE (e2e-rope.wgsl, the same angles) applied as y is stored, at
   * positions pos0 + row: y = RoPE(x r g) in one launch.
   */
  readonly ropeTheta?: number;
}

const WORKGROUP = 64;

function layout(label: string, spec: E2EQkNormSpec) {
  const { heads, headDim } = spec;
  if (!Number.isInteger(headDim) || headDim < 1) throw new RangeError(`${label}: head dim ${headDim}`);
  if (!Number.isInteger(heads) || heads < 1) throw new RangeError(`${label}: ${heads} heads`);
  if (!Number.isInteger(spec.maxRows) || spec.maxRows < 1) throw new RangeError(`${label}: maxRows ${spec.maxRows}`);
  const segments = spec.segments ?? 1, segStride = spec.segStride ?? heads * headDim;
  const xStride = spec.xStride ?? segments * segStride, xOff = spec.xOff ?? 0;
  const yStride = spec.yStride ?? xStride, yOff = spec.yOff ?? xOff;
  const dxStride = spec.dxStride ?? xStride, dxOff = spec.dxOff ?? xOff;
  return { segments, segStride, xStride, xOff, yStride, yOff, dxStride, dxOff };
}

function params(ctx: GpuContext, label: string, spec: E2EQkNormSpec): GPUBuffer {
  const l = layout(label, spec);
  return ctx.uniform(`${label} params`, [
    ['u32', spec.heads], ['u32', l.segments], ['u32', l.segStride], ['f32', spec.eps],
    ['u32', l.xStride], ['u32', l.xOff], ['u32', l.yStride], ['u32', l.yOff],
    ['u32', l.dxStride], ['u32', l.dxOff], ['u32', 0], ['u32', 0],
  ]);
}

function checkRows(label: string, spec: E2EQkNormSpec, rows: number): void {
  if (!Number.isInteger(rows) || rows < 1 || rows > spec.maxRows) throw new RangeError(`${label}: ${rows} rows (maxRows ${spec.maxRows})`);
}

/** y = x · r · g per head; `x` and `y` may be the same buffer (in place: y laid out as x). */
export class E2EQkNormOp {
  private readonly kernel: Kernel;
  private readonly group: GPUBindGroup;

  constructor(ctx: GpuContext, readonly label: string, readonly spec: E2EQkNormSpec, io: { gain: GPUBuffer; x: GPUBuffer; y: GPUBuffer }, block: BlockParams) {
    const l = layout(label, spec);
    const inPlace = io.x === io.y;
    if (inPlace && (l.yStride !== l.xStride || l.yOff !== l.xOff)) throw new RangeError(`${label}: in place needs y laid out as x`);
    const rope = spec.ropeTheta !== undefined;
    if (rope && (spec.headDim % 2 !== 0 || !(spec.ropeTheta! > 0))) throw new RangeError(`${label}: RoPE needs an even head dim and theta > 0`);
    this.kernel = ctx.kernel({
      shader: 'e2e-qk-norm.wgsl', source, entry: 'forward',
      bindings: [...(inPlace ? ['uniform', 'uniform', 'read', 'rw'] : ['uniform', 'uniform', 'read', 'rw', 'rw']) as BindingKind[], ...(rope ? ['read' as const] : [])],
      defines: { HD: spec.headDim, IN_PLACE: inPlace, ROPE: rope },
    });
    const p = params(ctx, label, spec);
    const turns = rope ? [ctx.allocator.upload(`${label} turns`, 'weights', ropeTurnTable(spec.headDim, spec.ropeTheta!))] : [];
    this.group = ctx.bind(this.kernel, [...(inPlace ? [p, block.buffer, io.gain, io.x] : [p, block.buffer, io.gain, io.x, io.y]), ...turns]);
  }

  encode(pass: GPUComputePassEncoder, rows: number): void {
    checkRows(this.label, this.spec, rows);
    const [x, y] = grid(Math.ceil((rows * (this.spec.segments ?? 1) * this.spec.heads) / WORKGROUP));
    dispatch(pass, this.kernel, this.group, x, y);
  }

  /** 4 per element, 3 more with the RoPE (as E2ERopeOp counts it). */
  flops(rows: number): number {
    return (this.spec.ropeTheta === undefined ? 4 : 7) * rows * (this.spec.segments ?? 1) * this.spec.heads * this.spec.headDim;
  }
}

/**
 * dx (and, given a `dgain` buffer of segments·hd floats, dgain summed over the rows and heads, overwritten)
 * from x and dy. dx must not alias x or dy (the dgain launch reads both after dx is written). TTT-E2E's
 * inner step runs the same formulas inside its attention's loads and stores (e2e-attention.wgsl NORM_FWD,
 * NORM_BACK; tested equal to these ops bit for bit); these are the launches of their own.
 */
export class E2EQkNormBackwardOp {
  private readonly dxKernel: Kernel;
  private readonly dgainKernel: Kernel | null;
  private readonly dxGroup: GPUBindGroup;
  private readonly dgainGroup: GPUBindGroup | null;

  constructor(
    ctx: GpuContext, readonly label: string, readonly spec: E2EQkNormSpec,
    io: { gain: GPUBuffer; x: GPUBuffer; dy: GPUBuffer; dx: GPUBuffer; dgain?: GPUBuffer }, block: BlockParams,
  ) {
    layout(label, spec);
    if (io.dx === io.x || io.dx === io.dy) throw new RangeError(`${label}: dx must be a buffer of its own`);
    const segments = spec.segments ?? 1;
    // With ropeTheta, dy is the gradient of the roped output (the forward with ropeTheta), turned back as it is read.
    const rope = spec.ropeTheta !== undefined;
    if (rope && (spec.headDim % 2 !== 0 || !(spec.ropeTheta! > 0))) throw new RangeError(`${label}: RoPE needs an even head dim and theta > 0`);
    if (rope && io.dgain) throw new RangeError(`${label}: the gain gradient is not computed through the RoPE (run E2ERopeOp's inverse first)`);
    const defines = { HD: spec.headDim, IN_PLACE: false };
    const p = params(ctx, label, spec);
    const rstd = ctx.allocator.create(`${label} rstd`, 'scratch', spec.maxRows * segments * spec.heads * 4, GPUBufferUsage.STORAGE);
    this.dxKernel = ctx.kernel({
      shader: 'e2e-qk-norm.wgsl', source, entry: 'backwardDx',
      bindings: ['uniform', 'uniform', 'read', 'read', 'read', 'rw', 'rw', ...(rope ? ['read'] as const : [])], defines: { ...defines, ROPE_BACK: rope },
    });
    const turns = rope ? [ctx.allocator.upload(`${label} turns`, 'weights', ropeTurnTable(spec.headDim, spec.ropeTheta!))] : [];
    this.dxGroup = ctx.bind(this.dxKernel, [p, block.buffer, io.gain, io.x, io.dy, io.dx, rstd, ...turns]);
    if (io.dgain) {
      this.dgainKernel = ctx.kernel({ shader: 'e2e-qk-norm.wgsl', source, entry: 'backwardDgain', bindings: ['uniform', 'uniform', 'read', 'read', 'read', 'rw'], defines });
      this.dgainGroup = ctx.bind(this.dgainKernel, [p, block.buffer, io.x, io.dy, rstd, io.dgain]);
    } else {
      this.dgainKernel = this.dgainGroup = null;
    }
  }

  encode(pass: GPUComputePassEncoder, rows: number): void {
    checkRows(this.label, this.spec, rows);
    const segments = this.spec.segments ?? 1;
    const [x, y] = grid(Math.ceil((rows * segments * this.spec.heads) / WORKGROUP));
    dispatch(pass, this.dxKernel, this.dxGroup, x, y);
    if (this.dgainKernel && this.dgainGroup) dispatch(pass, this.dgainKernel, this.dgainGroup, this.spec.headDim, segments);
  }

  flops(rows: number): number {
    const n = rows * (this.spec.segments ?? 1) * this.spec.heads * this.spec.headDim;
    return (this.dgainKernel ? 12 : 9) * n + (this.spec.ropeTheta === undefined ? 0 : 3 * n);
  }
}
