/**
 * The public API's types: what `createEngine` takes and what a `TttEngine` offers. Everything here is
 * plain data (structured-cloneable), so the same shapes cross the worker boundary unchanged.
 */
import type { EngineMode, EngineStats } from '../engine/engine.ts';
import type { WeightStorage } from '../gpu/context.ts';
import type { MemoryReport } from '../gpu/allocator.ts';
import type { ModelSource } from '../model/source.ts';

export type { EngineMode, EngineStats } from '../engine/engine.ts';
export type { MemoryReport } from '../gpu/allocator.ts';

/**
 * A model: a URL prefix (`config.json` and `model.safetensors` under it; relative to the page), the files
 * a user picked or dropped, or a directory handle from `showDirectoryPicker()`.
 */
export type ModelInput = string | readonly File[] | FileSystemDirectoryHandle;

/**
 * How far loading has come. `loaded`/`total` are bytes or tensors where known, else null. Stage 'cache'
 * says that Cache Storage could not be used or written (no secure context, a full quota) and that the
 * model loads from the network without it; loading goes on.
 */
export interface LoadProgress {
  /** `plan`: the config and the weights' header are read and checked against the device; nothing is downloaded yet. */
  readonly stage: 'webgpu' | 'config' | 'plan' | 'cache' | 'weights' | 'engine' | 'ready';
  readonly loaded: number | null;
  readonly total: number | null;
  readonly message: string;
  /** Stage `plan` only: the GPU bytes the engine will allocate, by category and in total, before it allocates any. */
  readonly memoryPlan?: MemoryReport;
}

export interface CreateEngineOptions {
  readonly model: ModelInput;
  /** Weight storage: 'f16' (default) halves GPU memory; 'f32' is exact. */
  readonly weights?: 'f16' | 'f32';
  /** Full-attention models only: positions the KV cache holds (default 4096). */
  readonly maxContext?: number;
  /** Keep a URL model's files in Cache Storage and read them from there next time (default true). */
  readonly cache?: boolean;
  /** Run the engine in a Web Worker (default: true where `Worker` exists in a page, false elsewhere). */
  readonly worker?: boolean;
  readonly onProgress?: (p: LoadProgress) => void;
  /** Decode tokens between two `onStats` pushes during generation (default 8). */
  readonly statsEvery?: number;
  /**
   * Sliding-window models: learn while reading, with the top block's MLP taking TTT-E2E's inner step
   * every chunk (true: chunks of 512, SGD rate 1, clip 1). A model that cannot (one with fast weights, or
   * full attention) fails to load with a RangeError saying why. Default off.
   */
  readonly learnWhileReading?: boolean | { readonly chunk?: number; readonly lr?: number; readonly clip?: number };
  /** Models that learn by gradient steps (TTT-E2E): false runs them frozen, without their inner step. Default true. */
  readonly learn?: boolean;
  /**
   * TTT-E2E models: after each inner step, score its chunk again with the new weights, so that
   * `stats().learning.recent[i].lossAfter` says what the step learned (one more forward of the chunk
   * through the TTT blocks and the head per step). Default false.
   */
  readonly lossAfterStep?: boolean;
  /**
   * Keep what `prefill(…, { logprobs: true })` needs: the head's logits for every row of a block
   * (maxRows × vocab floats) and one carried row. Default true; false saves that memory for large
   * vocabularies.
   */
  readonly logprobs?: boolean;
  /**
   * Kernel shapes: 'auto' (default) gives CPU emulators (lavapipe, SwiftShader, WARP) register-tiled
   * kernels without workgroup memory and every real GPU workgroup-tiled ones; 'cpu' or 'gpu' forces one
   * (benchmarks, tests, a misrecognised adapter). `info.kernels` says which a model got.
   */
  readonly kernels?: 'auto' | 'cpu' | 'gpu';
}

/**
 * In-process only (Node, tests, or a page that already owns a device): where the GPU and the model come
 * from. These cannot cross into a worker.
 */
export interface InProcessOptions {
  /** Any model source (e.g. `NodeDirectorySource`), instead of `model`. */
  readonly source?: ModelSource;
  /** The WebGPU entry point (default `navigator.gpu`); Node passes the `webgpu` package's. */
  readonly gpu?: GPU;
  /** An adapter to make the engine's device from. */
  readonly adapter?: GPUAdapter;
  /** A device to run on; the engine does not destroy it on dispose. */
  readonly device?: GPUDevice;
}

export interface PrefillProgress {
  /** Tokens of this call processed so far (a prepended BOS counts). */
  readonly processed: number;
  readonly total: number;
  /** The engine's position after them. */
  readonly position: number;
}

export interface PrefillOptions {
  /** Stops the prefill within one block; it then rejects with EngineAbortedError. */
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: PrefillProgress) => void;
  /**
   * Resolve with the natural-log probability of each token of this call given everything before it,
   * computed on the GPU (4 bytes a token read back, never whole logits rows). Needs an engine created
   * with `logprobs` (the default). Default false.
   */
  readonly logprobs?: boolean;
}

export interface PrefillResult {
  /** Tokens of this call now in the engine's memory (a prepended BOS counts). */
  readonly processed: number;
  readonly position: number;
  /**
   * With `logprobs: true`: [processed] ln P(token | everything before it), a prepended BOS included. NaN
   * for the token at position 0, which nothing precedes (and for the first token after loading a memory
   * saved by an engine without logprobs). Bits per token: −logprob / ln 2.
   */
  readonly logprobs?: Float32Array;
}

export interface GenerateOptions {
  /** Tokens to sample at most (default 256). */
  readonly maxTokens?: number;
  /** 0 = greedy (default 0.8). */
  readonly temperature?: number;
  /** Keep the k most likely tokens; 0 = off (default). */
  readonly topK?: number;
  /** Nucleus mass in (0, 1]; 1 = off (default 0.95). */
  readonly topP?: number;
  /** u32 seed; the same seed from the same state gives the same tokens. Default: random. */
  readonly seed?: number;
  /** The stream ends before any of these strings; their text is never emitted. */
  readonly stop?: readonly string[];
  /** Keep generating past the model's EOS token (default false: EOS ends the stream). */
  readonly ignoreEos?: boolean;
  readonly signal?: AbortSignal;
}

/** One generated token and the text it adds to the output ('' while text is held back, see docs/api.md). */
export interface GeneratedToken {
  readonly id: number;
  readonly text: string;
}

export interface GenerateResult {
  /** Why the stream ended: maxTokens reached, the model's EOS, or a stop string. */
  readonly reason: 'length' | 'eos' | 'stop';
  /** Prompt tokens fed (a prepended BOS counts). */
  readonly promptTokens: number;
  /** Tokens sampled, including the EOS or the token that completed a stop string. */
  readonly generatedTokens: number;
  readonly position: number;
  /** The whole output text (the concatenation of every yielded `text`). */
  readonly text: string;
}

/** `generate`'s return: iterate it for tokens; `result` settles when the stream ends. */
export interface GenerateStream extends AsyncIterable<GeneratedToken> {
  readonly result: Promise<GenerateResult>;
}

export interface TttInfo {
  readonly mode: EngineMode;
  readonly weights: WeightStorage;
  readonly subgroups: boolean;
  /** The kernel shapes in use: 'cpu' (for CPU emulators) or 'gpu' (see CreateEngineOptions.kernels). */
  readonly kernels: 'cpu' | 'gpu';
  /** The WebGPU adapter, in words. */
  readonly adapter: string;
  readonly modelId: string;
  readonly vocabSize: number;
  readonly tokenizer: 'byte' | 'huggingface';
  readonly bosId: number | null;
  readonly eosId: number | null;
  /** Positions the engine can hold (Infinity for TTT and sliding-window models). */
  readonly capacity: number;
  /** Positions the model attends exactly (its sliding window); null for full attention. */
  readonly window: number | null;
  /** Whether the engine runs in a Web Worker. */
  readonly worker: boolean;
  /** Whether `prefill(…, { logprobs: true })` is available (CreateEngineOptions.logprobs). */
  readonly logprobs: boolean;
}

/** The engine's stats, plus the requests waiting behind the running one. */
export interface TttStats extends EngineStats {
  /** Requests waiting behind the running one. */
  readonly queued: number;
  /** The size of the blob saveMemory() would return now (constant in context length but for full attention's). */
  readonly savedMemoryBytes: number;
  /**
   * JS heap bytes in use, where the runtime exposes it (Chromium's performance.memory, Node), else null:
   * `engine` in the thread the engine runs in (the worker), `page` in the caller's thread.
   */
  readonly jsHeap: { readonly engine: number | null; readonly page: number | null };
}

export interface TttEngine {
  /** Feeds text (encoded with the model's tokenizer; BOS first at position 0) or token ids. */
  prefill(input: string | readonly number[], opts?: PrefillOptions): Promise<PrefillResult>;
  /** Feeds the prompt, then samples; queued at once, in call order with every other request. */
  generate(prompt: string | readonly number[], opts?: GenerateOptions): GenerateStream;
  stats(): Promise<TttStats>;
  /** Pushed after every request and every `statsEvery` decode tokens; returns an unsubscribe function. */
  onStats(listener: (s: TttStats) => void): () => void;
  saveMemory(): Promise<{ blob: Uint8Array; bytes: number }>;
  loadMemory(blob: Uint8Array): Promise<void>;
  /** Forgets everything fed (position 0, fast weights back to the model's). */
  reset(): Promise<void>;
  /** Text → ids with the model's tokenizer (no special tokens). */
  encode(text: string): Promise<number[]>;
  /** Ids → text (special tokens skipped). */
  decode(ids: readonly number[]): Promise<string>;
  /** Aborts running and queued requests and frees the GPU memory; later calls reject with EngineDestroyedError. */
  dispose(): Promise<void>;
  readonly info: TttInfo;
}
