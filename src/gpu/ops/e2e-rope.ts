/**
 * TTT-E2E interleaved RoPE and its backward (shaders/e2e-rope.wgsl) over rows of `segments` vectors of
 * [H, hd] at positions pos0 + row (the Block uniform). The backward of a rotation is the rotation by minus
 * the angle, so one kernel serves both (`inverse`).
 *
 * FLOPs per call (rows from the Block uniform): 6 per pair per head per segment, i.e.
 * 3 · rows · segments · H · hd, plus the angle once per (row, pair): ~40 integer/float ops ·
 * rows · hd/2 (independent of H and segments).
 */
import source from '../../../shaders/e2e-rope.wgsl?raw';
import type { BlockParams } from '../block.ts';
import { dispatch, grid, type GpuContext, type Kernel } from '../context.ts';
import { ropeTurnTable } from './rope-turn-table.ts';

export interface E2ERopeSpec {
  readonly heads: number;
  readonly headDim: number;
  readonly theta: number;
  /** Vectors of H·hd per row (e.g. 2: q and k side by side), `segStride` floats apart (default H·hd). */
  readonly segments?: number;
  readonly segStride?: number;
  /** Floats between rows of the input, and where its first vector starts (default H·hd·segments, 0). */
  readonly inStride?: number;
  readonly inOff?: number;
  /** The same for the output (out of place only; default: as the input). */
  readonly outStride?: number;
  readonly outOff?: number;
  /** Turn by minus the angle: the backward dx = R^T dy. */
  readonly inverse?: boolean;
}

export class E2ERopeOp {
  private readonly kernel: Kernel;
  private readonly group: GPUBindGroup;

  /** `x` and `y` may be the same buffer (in place: then the output strides must equal the input's). */
  constructor(ctx: GpuContext, label: string, readonly spec: E2ERopeSpec, io: { x: GPUBuffer; y: GPUBuffer }, block: BlockParams) {
    const { heads, headDim } = spec;
    if (!Number.isInteger(headDim) || headDim < 2 || headDim % 2 !== 0) throw new RangeError(`${label}: head dim ${headDim} must be even`);
    if (!Number.isInteger(heads) || heads < 1) throw new RangeError(`${label}: ${heads} heads`);
    if (!(spec.theta > 0)) throw new RangeError(`${label}: theta ${spec.theta}`);
    const width = heads * headDim, segments = spec.segments ?? 1;
    const segStride = spec.segStride ?? width;
    const inStride = spec.inStride ?? segments * segStride, inOff = spec.inOff ?? 0;
    const outStride = spec.outStride ?? inStride, outOff = spec.outOff ?? inOff;
    const inPlace = io.x === io.y;
    if (inPlace && (outStride !== inStride || outOff !== inOff)) throw new RangeError(`${label}: in place needs the output laid out as the input`);
    this.kernel = ctx.kernel({
      shader: 'e2e-rope.wgsl', source, entry: 'main',
      bindings: inPlace ? ['uniform', 'uniform', 'read', 'rw'] : ['uniform', 'uniform', 'read', 'rw', 'rw'],
      defines: { HD: headDim, IN_PLACE: inPlace, INVERSE: spec.inverse ?? false },
    });
    const params = ctx.uniform(`${label} params`, [
      ['u32', heads], ['u32', segments], ['u32', inStride], ['u32', inOff],
      ['u32', outStride], ['u32', outOff], ['u32', segStride], ['u32', 0],
    ]);
    const table = ctx.allocator.upload(`${label} turns`, 'weights', ropeTurnTable(headDim, spec.theta));
    this.group = ctx.bind(this.kernel, inPlace ? [params, block.buffer, table, io.x] : [params, block.buffer, table, io.x, io.y]);
  }

  /** Records the launch for `rows` rows (what block.write() got). */
  encode(pass: GPUComputePassEncoder, rows: number): void {
    const [x, y] = grid(Math.ceil((rows * this.spec.headDim) / 2 / 64));
    dispatch(pass, this.kernel, this.group, x, y);
  }

  /** FLOPs of one call (the rotations; the angle's ~40 ops per (row, pair) not counted). */
  flops(rows: number): number {
    return 3 * rows * (this.spec.segments ?? 1) * this.spec.heads * this.spec.headDim;
  }
}
