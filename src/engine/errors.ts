/** Errors the engine raises at run time; each leaves the engine usable unless it says otherwise. */
export class EngineError extends Error {
  override name = 'EngineError';
  constructor(message: string) {
    super(message);
  }
}

/** Full attention's KV cache is sized at creation; feeding past it is refused before any work is queued. */
export class ContextOverflowError extends EngineError {
  override name = 'ContextOverflowError';
  constructor(readonly position: number, readonly requested: number, readonly capacity: number) {
    super(`context overflow: ${requested} more tokens at position ${position} exceed the full-attention cache of ${capacity} positions (create the engine with a larger maxContext)`);
  }
}

/** A token id outside the model's vocabulary. */
export class InvalidTokenError extends EngineError {
  override name = 'InvalidTokenError';
  constructor(readonly token: unknown, readonly index: number, readonly vocabSize: number) {
    super(`token ${String(token)} at index ${index} is not an integer in [0, ${vocabSize})`);
  }
}

/** The engine was destroyed (or its device lost); create a new one. */
export class EngineDestroyedError extends EngineError {
  override name = 'EngineDestroyedError';
  constructor(why: string) {
    super(`the engine is no longer usable: ${why}`);
  }
}

/** The device ran out of memory creating the engine; everything it had allocated is released. */
export class OutOfGpuMemoryError extends EngineError {
  override name = 'OutOfGpuMemoryError';
  constructor(what: string, detail: string) {
    super(`out of GPU memory while ${what}: ${detail}`);
  }
}

/** WebGPU rejected a setup call (a limit or a shader the adapter cannot take); nothing is left allocated. */
export class GpuValidationError extends EngineError {
  override name = 'GpuValidationError';
  constructor(what: string, detail: string) {
    super(`WebGPU rejected ${what}: ${detail}`);
  }
}

/**
 * A buffer the config (or an engine option) implies is larger than the device allows; raised when the
 * engine is planned, before anything is allocated.
 */
export class DeviceLimitError extends EngineError {
  override name = 'DeviceLimitError';
  constructor(
    /** The config.json key or engine option that sizes the buffer. */
    readonly key: string,
    readonly buffer: string,
    readonly bytes: number,
    readonly limitName: string,
    readonly limit: number,
    /** The largest value of `key` with which every buffer fits, or null when there is none or it cannot be said. */
    readonly largestFitting: number | null,
  ) {
    super(
      `${key} is too large for this device: the ${buffer} buffer would take ${bytes} bytes, over its ${limitName} of ${limit}` +
        (largestFitting === null ? '' : `; the largest ${key} that fits is ${largestFitting}`),
    );
  }
}

/** A feed was aborted; the engine holds exactly the first `processed` tokens of it (at `position`). */
export class EngineAbortedError extends EngineError {
  override name = 'EngineAbortedError';
  constructor(readonly processed: number, readonly position: number, reason?: unknown) {
    super(`aborted after ${processed} tokens of this call (the engine is at position ${position})${reason instanceof Error ? `: ${reason.message}` : ''}`);
  }
}

/** A saved memory blob that belongs to another model, family or state layout (or is corrupt: see below). */
export class MemoryMismatchError extends EngineError {
  override name = 'MemoryMismatchError';
}

/**
 * A saved memory blob that is damaged: truncated, bytes changed (its checksum fails), or not a memory
 * blob at all. Refused before any state is touched.
 */
export class MemoryCorruptError extends MemoryMismatchError {
  override name = 'MemoryCorruptError';
}
