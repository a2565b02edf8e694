// The worker's error registry against what the package exports: every error class a caller can
// `instanceof` (and every one the loader and engine can throw in the worker) must cross as itself.
import { describe, expect, it } from 'vitest';
import * as api from '../../src/api/index.ts';
import { fromWireError, toWireError, WIRE_ERROR_CLASSES } from '../../src/api/wire-errors.ts';
import * as engineErrors from '../../src/engine/errors.ts';
import * as device from '../../src/gpu/device.ts';
import * as modelErrors from '../../src/model/errors.ts';

type AnyClass = new (...args: never[]) => Error;

const isErrorClass = (v: unknown): v is AnyClass => typeof v === 'function' && (v === Error || v.prototype instanceof Error);

/** [export name, class] of every Error subclass a module exports. */
const errorExports = (mod: Record<string, unknown>): [string, AnyClass][] =>
  Object.entries(mod).filter((e): e is [string, AnyClass] => isErrorClass(e[1]));

/** Constructor arguments that give each class's fields a value; a class not listed gets a message. */
const SAMPLE_ARGS: Record<string, unknown[]> = {
  ContextOverflowError: [10, 5, 12],
  InvalidTokenError: [999, 2, 258],
  EngineDestroyedError: ['dispose() was called'],
  OutOfGpuMemoryError: ['creating the engine', 'a 1 GiB buffer'],
  GpuValidationError: ['a pipeline', 'the shader did not compile'],
  EngineAbortedError: [3, 9, new Error('user')],
  UnsupportedDtypeError: ['w', 'F64', ['F32', 'F16'], 'model.safetensors'],
  MissingTensorError: ['w', 'the config needs it', 'model.safetensors'],
  UnexpectedTensorError: ['w', 'model.safetensors', 'the config has qkv_bias=false'],
  ShapeMismatchError: ['w', [1, 2], [3], 'model.safetensors'],
  ConfigError: ['hidden_size', 'must be positive', 'config.json'],
  NonFiniteWeightError: ['w', 7, NaN, 'model.safetensors'],
};

function sample(name: string, cls: AnyClass): Error {
  return new (cls as new (...args: unknown[]) => Error)(...(SAMPLE_ARGS[name] ?? ['something went wrong', 'model.safetensors']));
}

/** Own fields but `name` and `stack` (which the wire form carries separately). */
const fields = (e: Error) => Object.fromEntries(Object.entries(e).filter(([k]) => k !== 'name' && k !== 'stack'));

const publicErrors = errorExports(api);
const thrownInWorker = [...errorExports(engineErrors), ...errorExports(modelErrors), ...errorExports(device)];

describe('the wire registry of error classes', () => {
  it('holds every error class src/api/index.ts exports, under its export name', () => {
    const missing = publicErrors.filter(([name, cls]) => WIRE_ERROR_CLASSES.get(name) !== cls).map(([n]) => n);
    expect(missing, 'exported from src/api/index.ts but not in the wire registry (wire-errors.ts)').toEqual([]);
    // The public error classes (docs/api.md, Errors): a change here is a change of the package's API.
    expect(publicErrors.map(([n]) => n).sort()).toEqual([
      'ConfigError', 'ContextOverflowError', 'DeviceLimitError', 'EngineAbortedError', 'EngineDestroyedError', 'EngineError', 'GpuValidationError',
      'InvalidTokenError', 'MemoryCorruptError', 'MemoryMismatchError', 'ModelFetchError', 'ModelFormatError', 'OutOfGpuMemoryError', 'TokenizerError',
      'WebGpuUnavailableError', 'WorkerCrashedError',
    ]);
  });

  it('holds every error class the engine, the loader and the device code export (they throw in the worker)', () => {
    const missing = thrownInWorker.filter(([name, cls]) => WIRE_ERROR_CLASSES.get(name) !== cls).map(([n]) => n);
    expect(missing, 'error classes missing from the wire registry (wire-errors.ts / error-classes.ts)').toEqual([]);
  });

  it('names each class once, by the name its instances carry, and holds nothing but error classes', () => {
    const classes = [...WIRE_ERROR_CLASSES.values()];
    expect(new Set(classes).size).toBe(classes.length);
    for (const [name, cls] of WIRE_ERROR_CLASSES) {
      expect(isErrorClass(cls), name).toBe(true);
      expect(sample(name, cls as AnyClass).name, `the class registered as ${name}`).toBe(name);
    }
  });

  it.each([...new Map([...publicErrors, ...thrownInWorker])])('%s round-trips with its class, name, message and fields', (name, cls) => {
    const e = sample(name, cls);
    const back = fromWireError(structuredClone(toWireError(e)));
    expect(back).toBeInstanceOf(cls);
    expect(back).toBeInstanceOf(Error);
    expect(Object.getPrototypeOf(back)).toBe(cls.prototype);
    expect(back.name).toBe(name);
    expect(back.message).toBe(e.message);
    expect(back.stack).toBe(e.stack);
    expect(fields(back)).toEqual(fields(e));
    // A minified bundle renames classes, and so `name`: the wire form goes by the registry's name.
    const mangled = sample(name, cls);
    mangled.name = 'q';
    const again = fromWireError(structuredClone(toWireError(mangled)));
    expect(again).toBeInstanceOf(cls);
    expect(again.name).toBe(name);
  });
});
