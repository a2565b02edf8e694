/**
 * What a model family gives the engine. The engine (engine.ts) owns everything common to every family:
 * the one work queue, cutting feeds into blocks, command buffers and submission, read-backs, timing,
 * saved memory framing and device loss. A family owns its data path (token → embedding → blocks →
 * logits → sample, in one file under src/families/) and the parts that hold its state (KV caches, fast
 * weights), which save and restore themselves. Adding a family is one file plus a line in the registry
 * (src/families/index.ts).
 */
import type { GpuContext, WeightStorage } from '../gpu/context.ts';
import type { MemorySection, RestoreWrite, SectionSource } from '../gpu/saved-state.ts';
import type { MatmulTiles } from '../gpu/ops/matmul.ts';
import type { BlockPlan } from './block-planner.ts';
import type { PlannedBuffer } from './memory-plan.ts';
import type { SamplingParams } from './sampling-params.ts';

/** What kind of memory the model keeps, as the API reports it. */
export type EngineMode = 'ttt' | 'sliding-window' | 'full-attention';

export interface EngineOptions {
  /** Weight storage: 'f16' halves memory (native f16 with `shader-f16`, packed u32 pairs without); 'f32' is exact. Default 'f16'. */
  readonly weights?: 'f32' | 'f16';
  /** Largest block of tokens per command buffer (default: the family's; LaCT: the chunk size capped at 512, 64 without fast weights). */
  readonly maxRows?: number;
  /** Models whose KV cache grows (full attention): its capacity in positions (default 4096). */
  readonly maxContext?: number;
  /** Split weights and KV pages at this many bytes (default: the device's maxStorageBufferBindingSize). */
  readonly maxBindingBytes?: number;
  /** Matmul register tiles: `wide` for blocks of 3+ rows, `narrow` for decode. */
  readonly tiles?: { readonly wide: MatmulTiles; readonly narrow: MatmulTiles };
  /** Keep every row's logits of a block readable (tests; costs maxRows·vocab floats). */
  readonly allLogits?: boolean;
  /**
   * Per-token log-probabilities (`feed(…, { logprobs: true })`), computed on the GPU: the head runs on
   * every row of a block that asks (costs maxRows·vocab floats of logits, as allLogits), and each feed's
   * last row is carried to score the next feed's first token. Default false here; the public API's
   * engines have it on.
   */
  readonly logprobs?: boolean;
  /** Families that learn by gradient steps at test time (TTT-E2E): η of the inner SGD (default: the config's; 0: never learn). */
  readonly innerLr?: number;
  /** The same: max global norm of the inner gradient (default: the config's; ≤ 0: no clip). */
  readonly innerClip?: number;
  /**
   * The same: false runs the model frozen, without its inner step (no update recorded, no buffers for
   * it): the checkpoint's dynamic weights throughout, what inner_lr 0 computes at a forward's cost (for
   * comparisons and to measure what learning costs). Saved memories load either way. Default true.
   */
  readonly learn?: boolean;
  /**
   * The same: after each inner step, score its chunk again with the new weights and log that loss too
   * (`ChunkUpdate.lossAfter`: what the step learned), at the cost of one more forward of the chunk
   * through the TTT blocks and the head. Default false.
   */
  readonly lossAfterStep?: boolean;
  /**
   * Sliding-window models without a dynamic MLP (the LaCT family's sliding-window baseline): learn while
   * reading with the top block's own MLP (TTT-E2E's inner loop; src/families/top-mlp-learning.ts).
   * true: chunks of 512, SGD rate 1, clip 1. Default off.
   */
  readonly learnWhileReading?: boolean | { readonly chunk?: number; readonly lr?: number; readonly clip?: number };
}

/** The shape an engine takes on a device, fixed at creation. */
export interface EngineLayout {
  readonly maxRows: number;
  readonly maxBindingBytes: number;
  readonly storage: WeightStorage;
  /** Positions the model can hold (Infinity: state of constant size). */
  readonly capacity: number;
  /** Blocks end at multiples of this (null: no chunks). */
  readonly chunkSize: number | null;
}

/** Which rows of a block go through the LM head. */
export type BlockHead = 'none' | 'last' | 'all';

export interface BlockWork {
  readonly plan: BlockPlan;
  readonly tokens: readonly number[];
  readonly head: BlockHead;
  /** Sample the next token after the block's last row (on the GPU). */
  readonly sampling: Required<SamplingParams> | null;
}

/** Where a family that learns by gradient steps logs each update on the GPU, for the engine's stats. */
export interface LearningLog {
  /** f32 [slots, floats]: update c (the c-th chunk, from 0) in slot c mod slots: (loss before the step, #valid targets, gradient norm, clip scale, loss after the step or NaN). */
  readonly buffer: GPUBuffer;
  readonly slots: number;
  /** f32 values per record (5). */
  readonly floats: number;
  /** Updates taken once `position` tokens have been fed. */
  updatesAfter(position: number): number;
}

/** One model's data path on one device, built by its family. */
export interface FamilyModel {
  readonly mode: EngineMode;
  readonly vocabSize: number;
  /** Logits of the head's rows: [1 or maxRows (allLogits), vocab] f32; a 'last' head writes row 0, an 'all' head row r at r·vocab. */
  readonly logits: GPUBuffer;
  /** The block's token ids (u32 [maxRows]), as encodeBlock wrote them. */
  readonly tokens: GPUBuffer;
  /** The sampled token id (u32 at offset 0) after a block with sampling. */
  readonly sampled: GPUBuffer;
  /** Whether `head: 'all'` is available (EngineOptions.allLogits). */
  readonly allLogits: boolean;
  /** Writes the block's inputs (queue writes, ordered before the submit) and records its launches. */
  encodeBlock(pass: GPUComputePassEncoder, work: BlockWork): void;
  /** Every state back to the checkpoint's (queue writes). */
  reset(): void;
  /** The state after `position` tokens as named sections. */
  save(position: number): Promise<MemorySection[]>;
  /** Checks a saved state for `position` and returns the writes that restore it; writes nothing. */
  planRestore(position: number, sections: SectionSource): RestoreWrite[];
  /** Bytes of KV cache holding live positions after `position` tokens. */
  kvBytesInUse(position: number): number;
  /** Families that learn by gradient steps: their update log (null: none). */
  readonly learningLog?: LearningLog | null;
}

/** Tensors go in one by one (a streamed file's order), then the model is built. */
export interface ModelBuilder {
  /** Tensors the config implies (for upload progress). */
  readonly tensorCount: number;
  write(name: string, shape: readonly number[], data: Float32Array): void;
  /** After every tensor: the model and its identity (for saved memory). */
  finish(): { model: FamilyModel; modelId: string };
}

/** What a layout and a plan depend on: the device's (or adapter's) limits and features. */
export interface DeviceCaps {
  readonly maxStorageBufferBindingSize: number;
  readonly maxBufferSize: number;
  readonly shaderF16: boolean;
}

export interface ModelFamily<C> {
  /** The tag in configs and saved memories. */
  readonly name: string;
  /** Block size, binding limit, weight storage and capacity for this config and options on a device. */
  layout(caps: DeviceCaps, config: C, opts: EngineOptions): EngineLayout;
  /** Every buffer the model's data path allocates (the engine adds its own), before any is. */
  plan(config: C, layout: EngineLayout, opts: EngineOptions): PlannedBuffer[];
  /**
   * The config and options with `key` (a PlannedBuffer key) set to `value`, to find the largest value
   * that fits; null for keys the family cannot vary alone (e.g. a width other sizes derive from).
   */
  resize(config: C, opts: EngineOptions, key: string, value: number): { config: C; opts: EngineOptions } | null;
  /** The largest single buffer the model needs (for the device request, before there is a device). */
  deviceNeeds(config: C, opts: EngineOptions, adapterBinding: number): { largestBuffer: number };
  /** Allocates the weights; the builder takes the tensors and builds the data path. */
  prepare(ctx: GpuContext, config: C, layout: EngineLayout, opts: EngineOptions): ModelBuilder;
}
