/**
 * The error classes of the public API, listed once. `index.ts` re-exports this module whole, and
 * `wire-errors.ts` builds its registry from this module's namespace, so a class added here is both
 * exported by the package and rebuilt as itself when it crosses the worker boundary.
 *
 * The export names are the stable names on the wire: a minified build renames classes (and so their
 * constructor `name`), never the names a module exports. Export only error classes from here: anything
 * else would become public and break the registry's type (see wire-errors.ts).
 */
import { EngineDestroyedError as Destroyed } from '../engine/errors.ts';

export {
  ContextOverflowError,
  DeviceLimitError,
  EngineAbortedError,
  EngineDestroyedError,
  EngineError,
  GpuValidationError,
  InvalidTokenError,
  MemoryCorruptError,
  MemoryMismatchError,
  OutOfGpuMemoryError,
} from '../engine/errors.ts';
export { WebGpuUnavailableError } from '../gpu/device.ts';
export {
  ConfigError,
  ModelFetchError,
  ModelFormatError,
  TokenizerError,
} from '../model/errors.ts';

/**
 * The engine's Web Worker died: it was terminated (by anything but `dispose()`), or an uncaught error, an
 * unhandled rejection or a message that could not be read happened in it. Every call pending on the page
 * and every later call of that engine rejects with it; `createEngine` makes a new, working one. A
 * subclass of EngineDestroyedError, so code that handles a destroyed engine handles this too.
 */
export class WorkerCrashedError extends Destroyed {
  override name = 'WorkerCrashedError';
  constructor(why: string) {
    super(`the engine's Web Worker died (${why}); create a new engine with createEngine()`);
  }
}
