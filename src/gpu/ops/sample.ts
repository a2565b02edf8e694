/**
 * Token sampling on the GPU (shaders/sample.wgsl): one single-workgroup dispatch turns a logits row into
 * one u32 token id, so decoding reads back 4 bytes instead of V floats. Semantics are those of the CPU
 * twin, src/reference/sampling.ts.
 */
import source from '../../../shaders/sample.wgsl?raw';
import { dispatch, type GpuContext, type Kernel } from '../context.ts';
import { validateSamplingParams, validateStep, type SamplingParams } from '../../engine/sampling-params.ts';

const SAMPLE = 1;
const TOP_P = 2;

export class SampleOp {
  /** [id, hash, top-k threshold key, final threshold key] as u32; the id at offset 0 is the result. */
  readonly result: GPUBuffer;
  private readonly kernel: Kernel;
  private readonly group: GPUBindGroup;
  private readonly params: GPUBuffer;
  /** Bytes of the sampling-parameters uniform. */
  static readonly PARAMS_BYTES = 48;
  private readonly data = new ArrayBuffer(SampleOp.PARAMS_BYTES);
  private readonly logitsBytes: number;

  constructor(private readonly ctx: GpuContext, label: string, logits: GPUBuffer, readonly V: number, readonly logitsOffset = 0) {
    if (!Number.isInteger(V) || V < 1 || V > 0xffffffff) throw new RangeError(`${label}: vocabulary size ${V} must be an integer >= 1`);
    if (!Number.isInteger(logitsOffset) || logitsOffset < 0) throw new RangeError(`${label}: logits offset ${logitsOffset} must be a non-negative integer`);
    if ((logitsOffset + V) * 4 > logits.size) {
      throw new RangeError(`${label}: logits buffer of ${logits.size} bytes is smaller than offset ${logitsOffset} + ${V} floats`);
    }
    this.kernel = ctx.kernel({ shader: 'sample.wgsl', source, entry: 'main', bindings: ['uniform', 'read', 'rw'], defines: { OPAQUE_LOOPS: true } });
    this.params = ctx.allocator.create(`${label} params`, 'scratch', this.data.byteLength, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    this.result = ctx.allocator.create(`${label} result`, 'scratch', 16, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    // The whole buffer is bound and the offset goes in the uniform: storage bindings need 256-byte
    // aligned offsets, and a row of logits need not start on one.
    this.group = ctx.bind(this.kernel, [this.params, logits, this.result]);
    this.logitsBytes = logits.size;
  }

  /**
   * Records the draw for (params, step) from logits row `row` (after the constructor's offset). The params uniform is written with queue.writeBuffer, which is
   * ordered before the next submit: one encode per submit (a second would overwrite the first's params).
   */
  encode(pass: GPUComputePassEncoder, params: SamplingParams, step: number, row = 0): void {
    const { temperature, topK, topP, seed } = validateSamplingParams(params);
    validateStep(step);
    const invT = temperature === 0 ? 0 : Math.fround(1 / temperature);
    // A 1/T beyond f32 range is greedy in the limit; the reference makes the same call.
    const sample = temperature > 0 && Number.isFinite(invT);
    const view = new DataView(this.data);
    view.setUint32(0, this.V, true);
    const offset = this.logitsOffset + row * this.V;
    if (!Number.isInteger(row) || row < 0 || (offset + this.V) * 4 > this.logitsBytes) throw new RangeError(`sample: logits row ${row} is outside the buffer`);
    view.setUint32(4, offset, true);
    view.setUint32(8, (sample ? SAMPLE : 0) | (topP < 1 ? TOP_P : 0), true);
    view.setUint32(12, topK >= this.V ? 0 : topK, true);
    view.setFloat32(16, sample ? invT : 0, true);
    view.setFloat32(20, topP, true);
    view.setUint32(24, seed, true);
    view.setUint32(28, step, true);
    // Bytes 32..47: `zero` and padding, never written (see the shader's Params).
    this.ctx.device.queue.writeBuffer(this.params, 0, this.data);
    dispatch(pass, this.kernel, this.group, 1);
  }

  /** Dispatches per draw: always one workgroup, greedy or not. */
  dispatches(_params: SamplingParams): number {
    return 1;
  }
}
