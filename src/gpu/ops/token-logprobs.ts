/**
 * Per-token log-probabilities on the GPU (shaders/token-logprobs.wgsl), for perplexity without reading
 * back logits: `encode` writes the log-probability of each of a block's tokens (4 bytes each), `keep`
 * carries the block's last row of logits to the next block, whose first token it scores. The engine
 * owns one for a model's logits buffer; the CPU twin is src/reference/token-logprobs.ts.
 */
import source from '../../../shaders/token-logprobs.wgsl?raw';
import { dispatch, type GpuContext, type Kernel } from '../context.ts';

export class TokenLogprobsOp {
  /** f32 [maxRows]: the log-probabilities of the last block's tokens (natural log; NaN with no distribution before). */
  readonly out: GPUBuffer;
  /** f32 [V]: the logits of the distribution of the next token to be fed. */
  readonly carry: GPUBuffer;
  private readonly score: Kernel;
  private readonly copy: Kernel;
  private readonly group: GPUBindGroup;
  private readonly params: GPUBuffer;
  private readonly data = new Uint32Array(4);

  constructor(private readonly ctx: GpuContext, label: string, logits: GPUBuffer, tokens: GPUBuffer, readonly V: number, readonly maxRows: number) {
    if (!Number.isInteger(V) || V < 1) throw new RangeError(`${label}: vocabulary size ${V} must be a positive integer`);
    if (!Number.isInteger(maxRows) || maxRows < 1) throw new RangeError(`${label}: maxRows ${maxRows} must be a positive integer`);
    if (logits.size < 4 * maxRows * V) throw new RangeError(`${label}: logits buffer of ${logits.size} bytes holds fewer than ${maxRows} rows of ${V}`);
    if (tokens.size < 4 * maxRows) throw new RangeError(`${label}: tokens buffer of ${tokens.size} bytes holds fewer than ${maxRows} ids`);
    const bindings = ['uniform', 'read', 'read', 'rw', 'rw'] as const;
    this.score = ctx.kernel({ shader: 'token-logprobs.wgsl', source, entry: 'logprobs', bindings: [...bindings] });
    this.copy = ctx.kernel({ shader: 'token-logprobs.wgsl', source, entry: 'keep', bindings: [...bindings] });
    this.params = ctx.allocator.create(`${label} params`, 'scratch', 16, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    this.carry = ctx.allocator.create(`${label} carried row`, 'activations', 4 * V, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST);
    this.out = ctx.allocator.create(`${label} out`, 'activations', 4 * maxRows, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    this.group = ctx.bind(this.score, [this.params, logits, tokens, this.carry, this.out]);
  }

  /** Bytes this op allocates, for memory plans (its 16-byte uniform aside, as every op's). */
  static bytes(V: number, maxRows: number): { carry: number; out: number } {
    return { carry: 4 * V, out: 4 * maxRows };
  }

  /**
   * Records, for a block of `rows` tokens whose logits the head has just written: with `score`, the
   * log-probability of each token (row 0 from the carry, NaN unless `carryValid`); then, with `keep`
   * (default true), the copy of logits row `keepRow` into the carry. `score` alone with one row scores
   * a token against the carry without feeding it. One encode per submit: the params go by queue.writeBuffer.
   */
  encode(pass: GPUComputePassEncoder, rows: number, opts: { score: boolean; keep?: boolean; carryValid: boolean; keepRow: number }): void {
    if (!Number.isInteger(rows) || rows < 1 || rows > this.maxRows) throw new RangeError(`token logprobs: ${rows} rows, this op holds 1..${this.maxRows}`);
    if (!Number.isInteger(opts.keepRow) || opts.keepRow < 0 || opts.keepRow >= this.maxRows) throw new RangeError(`token logprobs: keep row ${opts.keepRow} outside 0..${this.maxRows - 1}`);
    this.data.set([this.V, rows, opts.carryValid ? 1 : 0, opts.keepRow]);
    this.ctx.device.queue.writeBuffer(this.params, 0, this.data);
    if (opts.score) dispatch(pass, this.score, this.group, Math.ceil(rows / 64));
    if (opts.keep ?? true) dispatch(pass, this.copy, this.group, Math.ceil(this.V / 64));
  }
}
