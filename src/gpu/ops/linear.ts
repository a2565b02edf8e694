/**
 * y = x W^T (+ b) (+ y) for a weight that may be split into row parts: one matmul launch per part, each
 * writing its own column range of y.
 */
import type { BlockParams } from '../block.ts';
import type { GpuContext } from '../context.ts';
import type { WeightParts } from '../weights.ts';
import { MatmulOp, type MatmulTiles } from './matmul.ts';

export interface LinearSpec {
  /** Input rows: [rows, K] with row stride `inStride` from element `inOff`. */
  readonly inStride: number;
  readonly inOff?: number;
  /** Output: row stride and first column. */
  readonly outStride: number;
  readonly outOff?: number;
  /** 1 to add into the output (a fused residual add), 0 to overwrite. */
  readonly accumulate?: boolean;
  /** Only the block's last row (the LM head after a prefill): M = 1. */
  readonly lastRow?: boolean;
  /** The input is [g | u] rows and the product reads silu(g) * u, u this many columns after g (MatmulSpec.aGlu). */
  readonly glu?: number;
  /** The RMSNorm before the projection, fused into it (MatmulSpec.aNorm): x is the un-normed stream. */
  readonly norm?: { readonly gain: GPUBuffer; readonly eps: number };
  /**
   * With norm: x is a sublayer's output s, and the stream the norm reads is from + post-norm(s) (MatmulSpec.aResid,
   * rows `stride` apart), written to `to` by the first part when `write` is set.
   */
  readonly residual?: { readonly from: GPUBuffer; readonly to: GPUBuffer; readonly gain: GPUBuffer; readonly stride: number; readonly write: boolean };
}

export class LinearOp {
  readonly parts: MatmulOp[];

  constructor(ctx: GpuContext, label: string, w: WeightParts, io: { x: GPUBuffer; y: GPUBuffer; bias?: GPUBuffer }, spec: LinearSpec, block: BlockParams, tiles?: { wide: MatmulTiles; narrow: MatmulTiles }) {
    const K = w.cols;
    this.parts = w.parts.map((part, i) => new MatmulOp(ctx, `${label}#${i}`, {
      M: spec.lastRow ? 1 : 'rows',
      N: part.rows,
      K,
      a: { off: spec.inOff ?? 0, row: spec.inStride, col: 1 },
      b: { row: K, col: 1 },
      c: { off: (spec.outOff ?? 0) + part.row0, row: spec.outStride, col: 1 },
      beta: spec.accumulate ? 1 : 0,
      biasOff: part.row0,
      lastRow: spec.lastRow,
      weight: w.storage,
      aGlu: spec.glu,
      aNorm: spec.norm ? { eps: spec.norm.eps } : undefined,
      // Every part builds the same stream; one storing it is enough.
      aResid: spec.residual ? { row: spec.residual.stride, write: spec.residual.write && i === 0 } : undefined,
    }, {
      a: io.x, b: part.buffer, c: io.y, bias: io.bias, gain: spec.norm?.gain,
      resid: spec.residual?.from, residOut: spec.residual?.to, postGain: spec.residual?.gain,
    }, block, tiles));
  }

  encode(pass: GPUComputePassEncoder, rows: number): void {
    for (const p of this.parts) p.encode(pass, rows);
  }

  flops(rows: number): number {
    return this.parts.reduce((s, p) => s + p.flops(rows), 0);
  }
}
