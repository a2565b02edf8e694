/**
 * The TTT-E2E inner update on the GPU (see shaders/e2e-clip-sgd.wgsl; CPU twin clipAndStep in
 * src/reference/e2e/update.ts): the global gradient norm over a list of tensors in two stages (per-tensor
 * partial sums of squares, then one workgroup over all of them), and the clipped SGD step in place,
 * reading the norm's factor from `stats` on the GPU.
 *
 * `stats` (f32 [4]) = [Σ g², ||g||, clip scale c, η·c] after the norm; the engine may read it back for
 * its stats, the step never needs it on the CPU. Launches: ONE for a single tensor of at most
 * `fusedMax` elements (the models' inner steps: every block's θ packed in one buffer), norm, step and
 * the log's record together; otherwise one `partials` per tensor, one `norm`, one `step` per tensor
 * and one record (tensors packed in one buffer make one each: pass one {n, off} covering them).
 */
import source from '../../../shaders/e2e-clip-sgd.wgsl?raw';
import type { BlockParams } from '../block.ts';
import { dispatch, grid, type GpuContext, type Kernel } from '../context.ts';

export interface StepTensor {
  /** The weights updated in place. */
  readonly theta: GPUBuffer;
  readonly thetaOff?: number;
  /** Their gradient (a different buffer from theta). */
  readonly grad: GPUBuffer;
  readonly gradOff?: number;
  /** Elements. */
  readonly n: number;
}

export interface ClipSgdSpec {
  /** η. */
  readonly lr: number;
  /** max_norm; ≤ 0: no clip. */
  readonly maxNorm: number;
  /** Most workgroups per tensor in the partial sums (each sums a grid stride); default 1024. */
  readonly maxGroups?: number;
  /** The most elements the one-launch path takes (a single tensor only); default FUSED_MAX, 0: never. */
  readonly fusedMax?: number;
  /** Logs each update for the engine's stats (see `record` below): in the same launch when fused. */
  readonly record?: StepRecord;
}

/**
 * Chunk c (its block uniform's pos0 / chunk) writes (loss, #valid, ||g||, clip scale, NaN) to slot
 * c mod `slots` of `log` (f32 [slots, 5]), from the cross entropy's loss buffer and the op's stats.
 */
export interface StepRecord {
  readonly loss: GPUBuffer;
  readonly log: GPUBuffer;
  readonly slots: number;
  readonly chunk: number;
  readonly block: BlockParams;
}

/**
 * The most elements the one-workgroup path takes. It moves 12 bytes an element (g twice, θ once each
 * way); one workgroup streams perhaps 30 GB/s on a discrete GPU, so 512K elements cost ~0.2 ms, which
 * is where the three stages' launches (microseconds each) and parallelism start to win. On CPU
 * emulators one workgroup is one core: 512K elements are about a millisecond there. The models here
 * have 0.1-0.3M.
 */
export const FUSED_MAX = 1 << 19;

const WG = 64;
/** Elements each partial-sum lane takes before a tensor gets another workgroup. */
const PER_LANE = 16;

export class ClipSgdOp {
  readonly stats: GPUBuffer;
  /** Slots of the partial sums (Σ over tensors of their workgroup counts). */
  readonly slots: number;
  /** Workgroups of each tensor's partial sums. */
  readonly groups: readonly number[];
  /** Whether encode records the one-launch path. */
  readonly fused: boolean;
  private readonly fusedLaunch?: { kernel: Kernel; group: GPUBindGroup; params: GPUBuffer };
  private readonly recordLaunch?: (pass: GPUComputePassEncoder) => void;
  private readonly partialsKernel: Kernel;
  private readonly normKernel: Kernel;
  private readonly stepKernel: Kernel;
  private readonly parts: { group: GPUBindGroup; groups: number }[];
  private readonly steps: { group: GPUBindGroup; n: number }[];
  private readonly normGroup: GPUBindGroup;
  private readonly normParams: GPUBuffer;

  constructor(private readonly ctx: GpuContext, readonly label: string, readonly tensors: readonly StepTensor[], spec: ClipSgdSpec, stats?: GPUBuffer) {
    if (tensors.length === 0) throw new Error(`${label}: no tensors`);
    for (const t of tensors) if (t.theta === t.grad) throw new Error(`${label}: theta and grad must be different buffers`);
    const maxGroups = spec.maxGroups ?? 1024;
    const kernel = (entry: string, define: string, bindings: ('uniform' | 'read' | 'rw')[]) =>
      ctx.kernel({ shader: 'e2e-clip-sgd.wgsl', source, entry, bindings, defines: { [define]: true } });
    this.partialsKernel = kernel('partials_tensor', 'PARTIALS', ['uniform', 'read', 'rw']);
    this.normKernel = kernel('norm', 'NORM', ['uniform', 'read', 'rw']);
    this.stepKernel = kernel('step', 'STEP', ['uniform', 'read', 'read', 'rw']);
    const counts = tensors.map((t) => Math.max(1, Math.min(maxGroups, Math.ceil(t.n / (WG * PER_LANE)))));
    this.groups = counts;
    this.slots = counts.reduce((s, c) => s + c, 0);
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
    const partials = ctx.allocator.create(`${label} partials`, 'scratch', 4 * this.slots, usage);
    this.stats = stats ?? ctx.allocator.create(`${label} stats`, 'scratch', 16, usage);
    let slot = 0;
    this.parts = tensors.map((t, i) => {
      const u = ctx.uniform(`${label} partials ${i}`, [['u32', t.n], ['u32', t.gradOff ?? 0], ['u32', slot], ['u32', 0]]);
      slot += counts[i];
      return { group: ctx.bind(this.partialsKernel, [u, t.grad, partials]), groups: counts[i] };
    });
    this.normParams = ctx.uniform(`${label} norm`, [['u32', this.slots], ['f32', spec.lr], ['f32', spec.maxNorm], ['u32', 0]]);
    this.normGroup = ctx.bind(this.normKernel, [this.normParams, partials, this.stats]);
    this.steps = tensors.map((t, i) => ({
      group: ctx.bind(this.stepKernel, [ctx.uniform(`${label} step ${i}`, [['u32', t.n], ['u32', t.thetaOff ?? 0], ['u32', t.gradOff ?? 0], ['u32', 0]]), this.stats, t.grad, t.theta]),
      n: t.n,
    }));
    const r = spec.record;
    this.fused = tensors.length === 1 && tensors[0].n <= (spec.fusedMax ?? FUSED_MAX);
    if (this.fused) {
      const t = tensors[0];
      const kernel = ctx.kernel({ shader: 'e2e-clip-sgd.wgsl', source, entry: 'clip_step', bindings: ['uniform', 'uniform', 'read', 'rw', 'rw', 'read', 'rw'], defines: { FUSED: true } });
      const params = ctx.uniform(`${label} fused`, [['u32', t.n], ['u32', t.thetaOff ?? 0], ['u32', t.gradOff ?? 0], ['u32', r?.chunk ?? 1], ['f32', spec.lr], ['f32', spec.maxNorm], ['u32', r?.slots ?? 0], ['u32', 0]]);
      // Without a record the log bindings are never touched; two small buffers stand in (one read, one written).
      const dummy = (name: string) => ctx.allocator.create(`${label} ${name}`, 'scratch', 16, GPUBufferUsage.STORAGE);
      const blk = r?.block.buffer ?? ctx.uniform(`${label} no block`, [['u32', 0], ['u32', 0], ['u32', 0], ['u32', 0]]);
      const group = ctx.bind(kernel, [params, blk, t.grad, t.theta, this.stats, r?.loss ?? dummy('no loss'), r?.log ?? dummy('no log')]);
      this.fusedLaunch = { kernel, group, params };
    } else if (r) {
      this.recordLaunch = this.recorder(`${label} log`, r, r.block);
    }
  }

  /** New η and max_norm for the launches recorded after this call is queued (e.g. an inner-rate ramp). */
  setHyper(lr: number, maxNorm: number): void {
    const data = new ArrayBuffer(8);
    new DataView(data).setFloat32(0, lr, true);
    new DataView(data).setFloat32(4, maxNorm, true);
    this.ctx.device.queue.writeBuffer(this.normParams, 4, data);
    if (this.fusedLaunch) this.ctx.device.queue.writeBuffer(this.fusedLaunch.params, 16, data);
  }

  /** stats ← [Σ g², ||g||, c, η·c]; θ −= η·c·g for every tensor; the record when the op has one. */
  encode(pass: GPUComputePassEncoder): void {
    if (this.fusedLaunch) {
      dispatch(pass, this.fusedLaunch.kernel, this.fusedLaunch.group, 1);
      return;
    }
    for (const p of this.parts) dispatch(pass, this.partialsKernel, p.group, p.groups);
    dispatch(pass, this.normKernel, this.normGroup, 1);
    for (const s of this.steps) {
      const [x, y] = grid(Math.ceil(s.n / WG));
      dispatch(pass, this.stepKernel, s.group, x, y);
    }
    this.recordLaunch?.(pass);
  }

  /**
   * A launch that logs an update (see StepRecord). `after`: the record's fifth value instead, `io.loss`
   * again, measured after the step (the same chunk with the new weights).
   */
  recorder(label: string, io: { loss: GPUBuffer; log: GPUBuffer; slots: number; chunk: number }, block: BlockParams, after = false): (pass: GPUComputePassEncoder) => void {
    const kernel = this.ctx.kernel({ shader: 'e2e-clip-sgd.wgsl', source, entry: after ? 'record_after' : 'record', bindings: ['uniform', 'uniform', 'read', 'read', 'rw'], defines: { RECORD: true } });
    const group = this.ctx.bind(kernel, [this.ctx.uniform(`${label} params`, [['u32', io.chunk], ['u32', io.slots], ['u32', 0], ['u32', 0]]), block.buffer, io.loss, this.stats, io.log]);
    return (pass) => dispatch(pass, kernel, group, 1);
  }

  /** 2 flops per gradient element for the norm, 2 for the step. */
  flops(): number {
    return 4 * this.tensors.reduce((s, t) => s + t.n, 0);
  }

  /** Bytes moved: g read twice, θ read and written (f32). */
  bytes(): number {
    return 16 * this.tensors.reduce((s, t) => s + t.n, 0);
  }
}
