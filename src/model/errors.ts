/**
 * Every way a model can fail to load has its own error class, so callers can branch on `instanceof`
 * and users read a message that says what is wrong and where (file, tensor, byte offset, config key).
 */
export class ModelFormatError extends Error {
  override name = 'ModelFormatError';
  /** The file or URL the problem was found in, when known. */
  readonly source: string | undefined;
  constructor(message: string, source?: string) {
    super(source ? `${source}: ${message}` : message);
    this.source = source;
  }
}

/** The file ends before the header or a tensor's data says it should. */
export class FileTruncatedError extends ModelFormatError {
  override name = 'FileTruncatedError';
}

/** The safetensors header is not valid JSON, not the expected structure, or has bad offsets. */
export class HeaderMalformedError extends ModelFormatError {
  override name = 'HeaderMalformedError';
}

/** The header length field is larger than any sane header (guards against allocating gigabytes). */
export class HeaderTooLargeError extends ModelFormatError {
  override name = 'HeaderTooLargeError';
}

/** A tensor is stored in a dtype the engine does not read. */
export class UnsupportedDtypeError extends ModelFormatError {
  override name = 'UnsupportedDtypeError';
  readonly tensor: string;
  readonly dtype: string;
  constructor(tensor: string, dtype: string, supported: readonly string[], source?: string) {
    super(`tensor "${tensor}" has dtype ${dtype}; supported dtypes are ${supported.join(', ')}`, source);
    this.tensor = tensor;
    this.dtype = dtype;
  }
}

/** The config requires a tensor the file does not contain. */
export class MissingTensorError extends ModelFormatError {
  override name = 'MissingTensorError';
  readonly tensor: string;
  constructor(tensor: string, why: string, source?: string) {
    super(`missing tensor "${tensor}" (${why})`, source);
    this.tensor = tensor;
  }
}

/** The file contains a tensor that the config does not call for (a sign of a config/weights mismatch). */
export class UnexpectedTensorError extends ModelFormatError {
  override name = 'UnexpectedTensorError';
  readonly tensor: string;
  /** `hint`, when given, says which config key makes the tensor unnecessary (e.g. "the config has qkv_bias=false"). */
  constructor(tensor: string, source?: string, hint?: string) {
    super(`unexpected tensor "${tensor}": the config does not use it${hint ? ` (${hint})` : ''} (wrong config.json for these weights?)`, source);
    this.tensor = tensor;
  }
}

/** A tensor's shape disagrees with what the config implies. */
export class ShapeMismatchError extends ModelFormatError {
  override name = 'ShapeMismatchError';
  readonly tensor: string;
  readonly expected: readonly number[];
  readonly actual: readonly number[];
  constructor(tensor: string, expected: readonly number[], actual: readonly number[], source?: string) {
    super(`tensor "${tensor}" has shape [${actual.join(', ')}] but the config implies [${expected.join(', ')}]`, source);
    this.tensor = tensor;
    this.expected = expected;
    this.actual = actual;
  }
}

/** A config.json value is missing, of the wrong type, out of range, or inconsistent with another. */
export class ConfigError extends ModelFormatError {
  override name = 'ConfigError';
  readonly key: string;
  constructor(key: string, message: string, source?: string) {
    super(`config "${key}": ${message}`, source);
    this.key = key;
  }
}

/** A tensor holds NaN or Inf. */
export class NonFiniteWeightError extends ModelFormatError {
  override name = 'NonFiniteWeightError';
  readonly tensor: string;
  readonly index: number;
  constructor(tensor: string, index: number, value: number, source?: string) {
    super(`tensor "${tensor}" holds ${value} at flat index ${index}`, source);
    this.tensor = tensor;
    this.index = index;
  }
}

/** The tokenizer is missing or cannot be read. */
export class TokenizerError extends ModelFormatError {
  override name = 'TokenizerError';
}

/** A model file could not be fetched or read at all. */
export class ModelFetchError extends ModelFormatError {
  override name = 'ModelFetchError';
}
