/**
 * The error classes of the public API, listed once. `index.ts` re-exports this module whole, and
 * `wire-errors.ts` builds its registry from this module's namespace, so a class added here is both
 * exported by the package and rebuilt as itself when it crosses the worker boundary.
 *
 * The export names are the stable names on the wire: a minified build renames classes (and so their
 * constructor `name`), never the names a module exports. Export only error classes from here: anything
 * else would become public and break the registry's type (see wire-errors.ts).
 */
export {
  ContextOverflowError,
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
