/**
 * "Learns while reading" for a sliding-window model without a dynamic MLP of its own (the LaCT family's
 * sliding-window baseline): TTT-E2E's inner loop with the dynamic weights being the top block's own MLP
 * (known in older work as dynamic evaluation). Chunks of C tokens aligned to position 0; when the block
 * holding position (c + 1)C starts, chunk c learns first: its loss is the next-token cross-entropy of its
 * C positions (targets equal to BOS skipped), its gradient w.r.t. the top MLP's gate, up and down
 * matrices only, one global-norm clip over the three, SGD in place; then the block runs with the new
 * weights. Only the top MLP learns, so every key and value, and the stream entering that MLP, stay as
 * they were: the update recomputes just the MLP, the final norm and the head from the chunk's kept MLP
 * inputs. The PyTorch measurement of the same rule is train/dynamic_eval.py.
 *
 * The top MLP then runs from f32 copies of its checkpoint weights (θ, [gate | up | down]); reset()
 * restores them, saved memories carry them.
 */
import type { LactConfig } from '../model/config.ts';
import { BlockParams } from '../gpu/block.ts';
import type { GpuContext } from '../gpu/context.ts';
import { writeAligned } from '../gpu/allocator.ts';
import { readBufferBytes } from '../gpu/readback.ts';
import type { MemorySection, RestoreWrite, SectionSource } from '../gpu/saved-state.ts';
import type { WeightParts } from '../gpu/weights.ts';
import { ClipSgdOp } from '../gpu/ops/e2e-clip-sgd.ts';
import { PendingChunk } from '../gpu/ops/e2e-keep.ts';
import { HeadLossOp } from '../gpu/ops/head-loss.ts';
import { MatmulOp, type MatmulTiles } from '../gpu/ops/matmul.ts';
import { RmsNormOp } from '../gpu/ops/rmsnorm.ts';
import { SwigluBackwardOp } from '../gpu/ops/swiglu-backward.ts';
import { SwigluOp } from '../gpu/ops/swiglu.ts';
import type { EngineOptions, LearningLog } from '../engine/family.ts';
import { chunkLearningLog, LEARNING_LOG_FLOATS, LEARNING_LOG_SLOTS } from './learning-log.ts';

export interface LearnWhileReading {
  readonly chunk: number;
  readonly lr: number;
  readonly clip: number;
}

/** The defaults of the PyTorch measurement (issue 18): chunks of 512, SGD rate 1, clip 1. */
export const LEARN_WHILE_READING_DEFAULTS: LearnWhileReading = { chunk: 512, lr: 1, clip: 1 };

/** The option resolved for a config, or null when off; RangeError when the model cannot learn this way. */
export function resolveLearnWhileReading(c: LactConfig, opt: EngineOptions['learnWhileReading']): LearnWhileReading | null {
  if (opt === undefined || opt === false) return null;
  if (c.useFastWeights) throw new RangeError('learnWhileReading is for sliding-window models: this LaCT model already learns with its fast weights');
  if (c.windowSize === null) throw new RangeError('learnWhileReading is for sliding-window models: this one has full attention');
  const o = { ...LEARN_WHILE_READING_DEFAULTS, ...(opt === true ? {} : opt) };
  if (!Number.isInteger(o.chunk) || o.chunk < 1) throw new RangeError(`learnWhileReading.chunk must be a positive integer, got ${o.chunk}`);
  if (!(Number.isFinite(o.lr) && o.lr >= 0)) throw new RangeError(`learnWhileReading.lr must be a finite number >= 0, got ${o.lr}`);
  if (!Number.isFinite(o.clip)) throw new RangeError(`learnWhileReading.clip must be a finite number (<= 0: no clip), got ${o.clip}`);
  return o;
}

/** The checkpoint tensors θ_0 is made of, in θ's order. */
export function topMlpTensors(c: LactConfig): string[] {
  const p = `model.layers.${c.numLayers - 1}.mlp.`;
  return [`${p}gate_proj.weight`, `${p}up_proj.weight`, `${p}down_proj.weight`];
}

/** Buffers the learner allocates (floats), for the memory plan. */
export function topMlpLearnerBuffers(c: LactConfig, s: LearnWhileReading): { name: string; floats: number; category: 'fastWeights' | 'innerStep' | 'scratch' }[] {
  const C = s.chunk, D = c.hiddenSize, I = c.intermediateSize;
  return [
    { name: 'θ: top MLP', floats: 3 * I * D, category: 'fastWeights' },
    ...['m', 'stream', 'd stream', 'd m'].map((n) => ({ name: n, floats: C * D, category: 'innerStep' as const })),
    { name: 'gate|up', floats: C * 2 * I, category: 'innerStep' },
    { name: 'swiglu', floats: C * I, category: 'innerStep' },
    { name: 'swiglu backward dm', floats: C * I, category: 'innerStep' },
    { name: 'dθ', floats: 3 * I * D, category: 'innerStep' },
    { name: 'learning log', floats: LEARNING_LOG_FLOATS * LEARNING_LOG_SLOTS, category: 'innerStep' },
  ];
}

export class TopMlpLearner {
  readonly learningLog: LearningLog;
  readonly pending: PendingChunk;
  private readonly theta: GPUBuffer;
  private readonly chunkBlock: BlockParams;
  private readonly mlp: { gateUp: MatmulOp; swiglu: SwigluOp; down: MatmulOp };
  private readonly update: ((pass: GPUComputePassEncoder) => void)[];

  constructor(
    private readonly ctx: GpuContext, readonly config: LactConfig, readonly settings: LearnWhileReading, private readonly theta0: Float32Array,
    w: { mlpNorm: GPUBuffer; finalNorm: GPUBuffer; lmHead: WeightParts },
    io: { x: GPUBuffer; gu: GPUBuffer; s: GPUBuffer; tokens: GPUBuffer }, block: BlockParams,
    opts: { tiles: { wide: MatmulTiles; narrow: MatmulTiles }; maxBindingBytes: number },
  ) {
    const c = config, C = settings.chunk, D = c.hiddenSize, I = c.intermediateSize, eps = c.normEps;
    const { tiles } = opts;
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const bufs = new Map(topMlpLearnerBuffers(c, settings).map((b) => [b.name, ctx.allocator.create(`top MLP learning: ${b.name}`, b.category, 4 * b.floats, usage)]));
    const buf = (n: string) => bufs.get(n)!;
    this.theta = buf('θ: top MLP');
    writeAligned(ctx.device, this.theta, 0, theta0);
    this.pending = new PendingChunk(ctx, 'top MLP pending chunk', D, C, { x: io.x, tokens: io.tokens }, block);
    // normGain: the mlp_norm fused into the loads (the forward reads the stream itself, as the frozen model's gate|up does).
    const gateUp = (label: string, a: GPUBuffer, out: GPUBuffer, on: BlockParams, normGain?: GPUBuffer) =>
      new MatmulOp(ctx, label, { M: 'rows', N: 2 * I, K: D, a: { row: D, col: 1 }, b: { row: D, col: 1 }, c: { row: 2 * I, col: 1 }, aNorm: normGain ? { eps } : undefined }, { a, b: this.theta, c: out, gain: normGain }, on, tiles);
    const down = (label: string, a: GPUBuffer, out: GPUBuffer, on: BlockParams) =>
      new MatmulOp(ctx, label, { M: 'rows', N: D, K: I, a: { row: I, col: 1 }, b: { off: 2 * I * D, row: I, col: 1 }, c: { row: D, col: 1 }, beta: 1 }, { a, b: this.theta, c: out }, on, tiles);
    // The top layer's MLP in the forward: x += down_θ(silu(gate_θ a) * up_θ a), a = mlp_norm(x) (in gate|up's loads).
    this.mlp = { gateUp: gateUp('top MLP gate|up (θ)', io.x, io.gu, block, w.mlpNorm), swiglu: new SwigluOp(ctx, 'top MLP swiglu', I, { gu: io.gu, s: io.s }, block), down: down('top MLP down (θ)', io.s, io.x, block) };

    // The update, on its own chunk uniform (C rows at cC).
    const chunk = (this.chunkBlock = new BlockParams(ctx));
    const m = buf('m'), stream = buf('stream'), dStream = buf('d stream'), gu = buf('gate|up'), s = buf('swiglu'), dTheta = buf('dθ');
    const norm = new RmsNormOp(ctx, 'top MLP update: mlp_norm', { n: D, eps, inStride: D, outStride: D }, { weight: w.mlpNorm, x: this.pending.hPre, y: m }, chunk);
    const upd = { gateUp: gateUp('top MLP update: gate|up', m, gu, chunk), swiglu: new SwigluOp(ctx, 'top MLP update: swiglu', I, { gu, s }, chunk), down: down('top MLP update: down', s, stream, chunk) };
    const copy = this.pending.copier(stream, chunk);
    const head = new HeadLossOp(ctx, 'top MLP update', { rows: C, d: D, vocab: c.vocabSize, eps, bos: c.bosTokenId, targetOff: 1, maxBindingBytes: opts.maxBindingBytes }, {
      x: stream, gain: w.finalNorm, head: w.lmHead, targets: this.pending.tokens, dx: dStream,
    }, chunk, tiles);
    // out = h + mlp(h): d out / d h passes straight through, so d stream is the MLP output's gradient.
    // The update's gate|up is still in `gu` (the backward overwrites it with du|dg).
    const back = new SwigluBackwardOp(ctx, 'top MLP update: backward', { rows: C, d: D, f: I, ugFromForward: true }, {
      x: m, dy: dStream, w1: { buffer: this.theta, off: 0 }, w3: { buffer: this.theta, off: I * D }, w2: { buffer: this.theta, off: 2 * I * D },
      dx: buf('d m'), dw1: { buffer: dTheta, off: 0 }, dw3: { buffer: dTheta, off: I * D }, dw2: { buffer: dTheta, off: 2 * I * D },
      scratch: [gu, buf('swiglu backward dm')],
    }, chunk, tiles);
    const log = buf('learning log');
    const clip = new ClipSgdOp(ctx, 'top MLP update: clip + SGD', [{ theta: this.theta, grad: dTheta, n: 3 * I * D }], {
      lr: settings.lr, maxNorm: settings.clip, record: { loss: head.loss, log, slots: LEARNING_LOG_SLOTS, chunk: C, block: chunk },
    });
    this.update = [
      (pass) => norm.encode(pass, C),
      (pass) => upd.gateUp.encode(pass, C),
      (pass) => upd.swiglu.encode(pass, C),
      copy,
      (pass) => upd.down.encode(pass, C),
      (pass) => head.encode(pass),
      (pass) => back.encode(pass),
      (pass) => clip.encode(pass),
    ];
    this.learningLog = chunkLearningLog(log, C);
  }

  /** At the start of a block at pos0 (first token `first`): the update of the chunk pos0 completes, when it completes one. */
  encodeUpdate(pass: GPUComputePassEncoder, pos0: number, first: number): void {
    const C = this.settings.chunk;
    if (pos0 === 0 || pos0 % C !== 0) return;
    this.chunkBlock.write(C, pos0 - C);
    this.pending.writeLastTarget(first);
    for (const launch of this.update) launch(pass);
  }

  /** Keeps the block's rows of the stream entering the top MLP (before its norm), and its tokens. */
  encodeKeep(pass: GPUComputePassEncoder, rows: number): void {
    this.pending.encodeKeep(pass, rows);
  }

  /** The top layer's MLP with θ (after the caller's mlp_norm into `a`). */
  encodeMlp(pass: GPUComputePassEncoder, rows: number): void {
    this.mlp.gateUp.encode(pass, rows);
    this.mlp.swiglu.encode(pass, rows);
    this.mlp.down.encode(pass, rows);
  }

  reset(): void {
    writeAligned(this.ctx.device, this.theta, 0, this.theta0);
  }

  async save(position: number): Promise<MemorySection[]> {
    return [{ name: 'topMlp.theta', bytes: await readBufferBytes(this.ctx.device, this.theta) }, ...(await this.pending.save('topMlp.pending', position))];
  }

  planRestore(position: number, sections: SectionSource): RestoreWrite[] {
    return [{ buffer: this.theta, offset: 0, data: sections.need('topMlp.theta', this.theta.size) }, ...this.pending.planRestore('topMlp.pending', position, sections)];
  }
}
