/**
 * A model folder → a validated config, f32 weights and a tokenizer, or a named error that says what is
 * wrong and where. Order: config.json (cheap), the tokenizer (cheap), then the weights, so that a
 * wrong folder fails before a large download.
 */
import type { TensorF32, WeightMap } from './config.ts';
import { parseModelConfig, type ModelConfig } from './model-config.ts';
import { ConfigError } from './errors.ts';
import { SafetensorsFile } from './safetensors.ts';
import type { ModelSource } from './source.ts';
import { loadTokenizer, type Tokenizer } from './tokenizer.ts';
import { assertFinite, checkTensorSet } from './validate.ts';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';

export interface LoadOptions {
  /** Scan every weight for NaN/Inf (default true; one pass over the data, cheap next to the download). */
  checkFinite?: boolean;
  /** Largest safetensors header accepted, in bytes (default 100 MiB). */
  maxHeaderBytes?: number;
}

export interface LoadedModel {
  readonly config: ModelConfig;
  /** Every tensor the config's format expects, as f32 (F32 tensors may share the file's memory). */
  readonly weights: WeightMap;
  readonly tokenizer: Tokenizer;
  /** The safetensors `__metadata__` strings. */
  readonly metadata: Readonly<Record<string, string>>;
}

/** Reads and validates config.json. Bad JSON → ConfigError with key "(root)"; bad values → ConfigError naming the key. */
export async function readConfig(source: ModelSource): Promise<ModelConfig> {
  const where = source.locate(CONFIG_FILE);
  const text = await source.readText(CONFIG_FILE);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError('(root)', `${CONFIG_FILE} is not valid JSON: ${(e as Error).message}`, where);
  }
  return parseModelConfig(raw, where);
}

/**
 * Checks a parsed safetensors file against the config (names, dtypes, shapes) and converts every
 * tensor to f32, scanning for NaN/Inf unless `checkFinite` is false.
 */
function weightsFromFile(config: ModelConfig, file: SafetensorsFile, checkFinite = true): WeightMap {
  checkTensorSet(config, file.header.tensors, file.source);
  const weights = new Map<string, TensorF32>();
  for (const [name, info] of file.header.tensors) {
    const data = file.float32(name);
    if (checkFinite) assertFinite(name, data, file.source);
    weights.set(name, { shape: info.shape, data });
  }
  return weights;
}

/**
 * Loads config.json, the tokenizer and model.safetensors from `source`.
 *
 * Throws (all ModelFormatError subclasses): ModelFetchError (a file cannot be read), ConfigError,
 * TokenizerError, FileTruncatedError / HeaderMalformedError / HeaderTooLargeError /
 * UnsupportedDtypeError (the safetensors file), MissingTensorError / UnexpectedTensorError /
 * ShapeMismatchError (file vs config), NonFiniteWeightError.
 */
export async function loadModel(source: ModelSource, options: LoadOptions = {}): Promise<LoadedModel> {
  const config = await readConfig(source);
  const tokenizer = await loadTokenizer(source, config);
  const bytes = await source.readBytes(WEIGHTS_FILE);
  const file = SafetensorsFile.parse(bytes, { source: source.locate(WEIGHTS_FILE), maxHeaderBytes: options.maxHeaderBytes });
  const weights = weightsFromFile(config, file, options.checkFinite ?? true);
  return { config, weights, tokenizer, metadata: file.metadata };
}
