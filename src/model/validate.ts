/**
 * Checks that a checkpoint's tensors are exactly those its config calls for, with the right shapes and
 * float dtypes, and that the values are finite. Works from the safetensors header alone (names, dtypes,
 * shapes), so a streaming loader can reject a wrong file before downloading its data.
 * Messages say why a tensor is needed (or not), in terms of config.json keys (each family's config
 * format explains its own tensors).
 */
import { configFormatOf, type ModelConfig } from './model-config.ts';
import { MissingTensorError, NonFiniteWeightError, ShapeMismatchError, UnexpectedTensorError, UnsupportedDtypeError } from './errors.ts';
import { FLOAT_DTYPES, isFloatDtype } from './safetensors.ts';

/** What the validator needs to know about a stored tensor. */
export interface StoredTensor {
  readonly dtype: string;
  readonly shape: readonly number[];
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * Throws MissingTensorError, UnsupportedDtypeError (a non-float weight), ShapeMismatchError or
 * UnexpectedTensorError, in that order of priority, for the first problem found.
 */
export function checkTensorSet(c: ModelConfig, stored: ReadonlyMap<string, StoredTensor>, source?: string): void {
  const format = configFormatOf(c);
  const expected = format.expectedTensors(c);
  const missing = [...expected.keys()].filter((n) => !stored.has(n));
  const extra = [...stored.keys()].filter((n) => !expected.has(n));
  if (missing.length > 0) {
    let why = format.tensorRequirement(c, missing[0]);
    if (missing.length > 1) why += `; ${missing.length - 1} more missing`;
    if (extra.length > 0) {
      const shown = extra.slice(0, 3).map((n) => `"${n}"`).join(', ');
      why += `; the file has ${extra.length} tensor(s) the config does not use: ${shown}${extra.length > 3 ? ', …' : ''}`;
    }
    throw new MissingTensorError(missing[0], why, source);
  }
  for (const [name, shape] of expected) {
    const t = stored.get(name)!;
    if (!isFloatDtype(t.dtype)) throw new UnsupportedDtypeError(name, t.dtype, FLOAT_DTYPES, source);
    if (!sameShape(shape, t.shape)) throw new ShapeMismatchError(name, shape, t.shape, source);
  }
  if (extra.length > 0) {
    throw new UnexpectedTensorError(extra[0], source, format.unexpectedHint(c, extra[0]) ?? undefined);
  }
}

/** Index of the first NaN or ±Inf in `data`, or -1. */
function findNonFinite(data: Float32Array): number {
  for (let i = 0; i < data.length; i++) {
    const x = data[i];
    // x - x is 0 for every finite x and NaN for NaN and ±Inf: one comparison per element.
    if (x - x !== 0) return i;
  }
  return -1;
}

/** Throws NonFiniteWeightError naming the tensor and the first bad index. */
export function assertFinite(name: string, data: Float32Array, source?: string): void {
  const i = findNonFinite(data);
  if (i >= 0) throw new NonFiniteWeightError(name, i, data[i], source);
}
