/**
 * Reading the safetensors format: https://huggingface.co/docs/safetensors (the Rust crate is the
 * reference for what counts as valid).
 *
 * Layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: { string: string } }`,
 * then the data section. Offsets are relative to the start of the data section (byte 8 + N), and the
 * tensors must tile it exactly: no holes, no overlaps, no trailing bytes.
 *
 * The API is split so that a loader can work in steps and never hold more than it needs:
 *   1. `readHeaderLength(first8, fileSize)` → N (so a ranged reader knows how much header to fetch);
 *   2. `parseHeader(headerBytes, fileSize)` → every tensor's dtype, shape and byte range, all validated;
 *   3. `tensorToFloat32(info, bytes)` converts one tensor's bytes, wherever they came from.
 * `SafetensorsFile` does all three over a file already in memory, with zero-copy byte views per tensor.
 */
import { FileTruncatedError, HeaderMalformedError, HeaderTooLargeError, MissingTensorError, UnsupportedDtypeError } from './errors.ts';

/** Every dtype the format defines with a whole number of bytes per element, and that size. */
export const DTYPE_BYTES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  F8_E8M0: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
} as const;

export type SafetensorsDtype = keyof typeof DTYPE_BYTES;

/** The dtypes a tensor can be converted to f32 from: what model weights may be stored in. */
export const FLOAT_DTYPES = ['F32', 'F16', 'BF16'] as const;
export type FloatDtype = (typeof FLOAT_DTYPES)[number];

/** Default cap on the header length field: real headers are kilobytes; this stops a corrupt length
 * field from making us allocate (or fetch) gigabytes before noticing. */
const DEFAULT_MAX_HEADER_BYTES = 100 * 1024 * 1024;

function isSafetensorsDtype(s: string): s is SafetensorsDtype {
  return Object.prototype.hasOwnProperty.call(DTYPE_BYTES, s);
}

export function isFloatDtype(s: string): s is FloatDtype {
  return (FLOAT_DTYPES as readonly string[]).includes(s);
}

/** One tensor's entry in the header, validated. */
export interface SafetensorsTensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** Number of elements: the product of `shape` (1 for a scalar). */
  readonly numel: number;
  /** [begin, end) relative to the start of the data section, as written in the header. */
  readonly dataOffsets: readonly [number, number];
  readonly byteLength: number;
  /** Absolute offset of the first byte in the file: 8 + N + begin. */
  readonly fileOffset: number;
}

export interface SafetensorsHeader {
  /** N: the JSON header's length in bytes. */
  readonly headerByteLength: number;
  /** 8 + N: where the data section begins in the file. */
  readonly dataStart: number;
  /** Total bytes of tensor data (the end of the last tensor). */
  readonly dataByteLength: number;
  /** Tensors in the order the header lists them. */
  readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>;
  /** The free-form `__metadata__` strings (empty when absent). */
  readonly metadata: Readonly<Record<string, string>>;
}

export interface HeaderOptions {
  /** Names the file in error messages (a path or URL). */
  source?: string;
  /** Largest accepted header length N in bytes; default `DEFAULT_MAX_HEADER_BYTES` (100 MiB). */
  maxHeaderBytes?: number;
}

/**
 * Reads and checks the header length N from the first 8 bytes. `fileSize` is the whole file's size
 * (null when unknown, e.g. a response without Content-Length: the size checks are then skipped).
 */
export function readHeaderLength(first8: Uint8Array, fileSize: number | null, options: HeaderOptions = {}): number {
  const { source } = options;
  const max = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  const size = fileSize ?? first8.byteLength;
  if (size < 8 || first8.byteLength < 8) {
    throw new FileTruncatedError(
      `file is ${Math.min(size, first8.byteLength)} bytes long, shorter than the 8-byte header length field`,
      source,
    );
  }
  const view = new DataView(first8.buffer, first8.byteOffset, 8);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(max)) {
    throw new HeaderTooLargeError(
      `header length field says ${n} bytes, more than the ${max}-byte limit (corrupt file, or not a safetensors file?)`,
      source,
    );
  }
  const headerLength = Number(n);
  if (fileSize !== null && 8 + headerLength > fileSize) {
    throw new FileTruncatedError(
      `header length field says ${headerLength} bytes of header, but the file is only ${fileSize} bytes (needs at least ${8 + headerLength})`,
      source,
    );
  }
  return headerLength;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array (${truncate(json(v))})`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${truncate(json(v))}`;
}

/** JSON.stringify for a message, which never throws: arrays nested deeper than its recursion can go (JSON.parse reads them) are described instead. */
function json(v: unknown): string | undefined {
  try {
    return JSON.stringify(v);
  } catch {
    return 'nested too deeply to show';
  }
}

function truncate(s: string | undefined, max = 80): string {
  if (s === undefined) return 'undefined';
  return s.length > max ? s.slice(0, max) + '…' : s;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Parses and validates the N bytes of JSON header. `fileSize` (the whole file's size, or null when
 * unknown) is used to check that every tensor lies inside the file.
 *
 * Throws HeaderMalformedError for bad UTF-8, bad JSON, wrong structure, a byte range that disagrees
 * with the shape and dtype, overlaps, holes or trailing bytes; UnsupportedDtypeError for a dtype string
 * the format does not define; FileTruncatedError for a tensor that ends past the end of the file.
 */
export function parseHeader(headerBytes: Uint8Array, fileSize: number | null, options: HeaderOptions = {}): SafetensorsHeader {
  const { source } = options;
  const headerByteLength = headerBytes.byteLength;
  const dataStart = 8 + headerByteLength;

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    throw new HeaderMalformedError(`header (bytes 8..${dataStart}) is not valid UTF-8`, source);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new HeaderMalformedError(`header (bytes 8..${dataStart}) is not valid JSON: ${(e as Error).message}`, source);
  }
  if (!isObject(json)) {
    throw new HeaderMalformedError(`header must be a JSON object mapping tensor names to entries, got ${describe(json)}`, source);
  }

  let metadata: Record<string, string> = {};
  const tensors = new Map<string, SafetensorsTensorInfo>();
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(entry, source);
      continue;
    }
    tensors.set(name, parseEntry(name, entry, dataStart, source));
  }

  // The tensors must tile the data section: sort by range and walk it.
  const sorted = [...tensors.values()].sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let end = 0;
  let previous: SafetensorsTensorInfo | null = null;
  for (const t of sorted) {
    const [b, e] = t.dataOffsets;
    if (b < end && previous) {
      throw new HeaderMalformedError(
        `tensor "${t.name}" (data bytes [${b}, ${e})) overlaps tensor "${previous.name}" (data bytes [${previous.dataOffsets[0]}, ${previous.dataOffsets[1]}))`,
        source,
      );
    }
    if (b > end) {
      throw new HeaderMalformedError(
        `hole in the data section: bytes [${end}, ${b}) before tensor "${t.name}" belong to no tensor` +
          (previous ? ` (previous tensor "${previous.name}" ends at ${end})` : ' (the first tensor must start at 0)'),
        source,
      );
    }
    end = e;
    previous = t;
  }
  const dataByteLength = end;

  if (fileSize !== null) {
    const available = fileSize - dataStart;
    if (dataByteLength > available) {
      const cut = sorted.find((t) => t.dataOffsets[1] > available)!;
      throw new FileTruncatedError(
        `tensor "${cut.name}" occupies data bytes [${cut.dataOffsets[0]}, ${cut.dataOffsets[1]}) ` +
          `(file bytes [${cut.fileOffset}, ${cut.fileOffset + cut.byteLength})), but the file ends at byte ${fileSize}`,
        source,
      );
    }
    if (dataByteLength < available) {
      throw new HeaderMalformedError(
        `${available - dataByteLength} bytes after the last tensor (file bytes [${dataStart + dataByteLength}, ${fileSize})) are not described by the header`,
        source,
      );
    }
  }

  return { headerByteLength, dataStart, dataByteLength, tensors, metadata };
}

function parseMetadata(entry: unknown, source: string | undefined): Record<string, string> {
  if (entry === null) return {};
  if (!isObject(entry)) {
    throw new HeaderMalformedError(`"__metadata__" must be an object of strings, got ${describe(entry)}`, source);
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(entry)) {
    if (typeof v !== 'string') {
      throw new HeaderMalformedError(`"__metadata__" value "${k}" must be a string, got ${describe(v)}`, source);
    }
    out[k] = v;
  }
  return out;
}

function parseEntry(name: string, entry: unknown, dataStart: number, source: string | undefined): SafetensorsTensorInfo {
  const where = `tensor "${name}"`;
  if (!isObject(entry)) {
    throw new HeaderMalformedError(`${where}: entry must be an object with dtype, shape and data_offsets, got ${describe(entry)}`, source);
  }
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== 'string') {
    throw new HeaderMalformedError(`${where}: "dtype" must be a string, got ${describe(dtype)}`, source);
  }
  if (!isSafetensorsDtype(dtype)) {
    throw new UnsupportedDtypeError(name, dtype, FLOAT_DTYPES, source);
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    throw new HeaderMalformedError(`${where}: "shape" must be an array of non-negative integers, got ${describe(shape)}`, source);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
    throw new HeaderMalformedError(`${where}: "data_offsets" must be two non-negative integers [begin, end], got ${describe(offsets)}`, source);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) {
    throw new HeaderMalformedError(`${where}: "data_offsets" [${begin}, ${end}] has begin > end`, source);
  }
  let numel = 1;
  for (const d of shape as number[]) {
    numel *= d;
    if (!Number.isSafeInteger(numel)) {
      throw new HeaderMalformedError(`${where}: shape [${shape.join(', ')}] has too many elements`, source);
    }
  }
  const expectedBytes = numel * DTYPE_BYTES[dtype];
  if (!Number.isSafeInteger(expectedBytes) || expectedBytes !== end - begin) {
    throw new HeaderMalformedError(
      `${where}: shape [${shape.join(', ')}] of ${dtype} needs ${expectedBytes} bytes, but data_offsets [${begin}, ${end}] span ${end - begin}`,
      source,
    );
  }
  return {
    name,
    dtype,
    shape: [...(shape as number[])],
    numel,
    dataOffsets: [begin, end],
    byteLength: end - begin,
    fileOffset: dataStart + begin,
  };
}

/**
 * Parses the header of a file whose first `8 + N` bytes are in `prefix` (the whole file is fine).
 * `fileSize` defaults to `prefix.byteLength`, i.e. `prefix` is the whole file.
 */
export function parseSafetensorsHeader(prefix: Uint8Array, fileSize: number | null = prefix.byteLength, options: HeaderOptions = {}): SafetensorsHeader {
  const n = readHeaderLength(prefix, fileSize, options);
  if (prefix.byteLength < 8 + n) {
    if (fileSize === prefix.byteLength) {
      throw new FileTruncatedError(`header length field says ${n} bytes, but only ${prefix.byteLength - 8} follow it`, options.source);
    }
    throw new RangeError(`parseSafetensorsHeader: prefix holds ${prefix.byteLength} bytes, but the header needs ${8 + n}; read more first`);
  }
  return parseHeader(prefix.subarray(8, 8 + n), fileSize, options);
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

let f16Table: Float32Array | null = null;

/** f16 bits → f32 value, exact (every f16 is representable in f32), including subnormals, ±inf, NaN. */
export function f16BitsToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

function f16Lookup(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToFloat32(h);
  }
  return f16Table;
}

/** A typed view of `bytes` when it is aligned (and the host is little-endian), else a copy. */
function alignedCopyIfNeeded(bytes: Uint8Array, align: number): Uint8Array {
  if (bytes.byteOffset % align === 0) return bytes;
  return bytes.slice();
}

/**
 * Converts one tensor's raw bytes (exactly `info.byteLength` of them) to f32.
 *
 * F32 returns a view that shares memory with `bytes` when the data is 4-byte aligned (no copy of
 * the biggest weights), otherwise a copy. F16 and BF16 always return a new array.
 * Any other dtype throws UnsupportedDtypeError naming the tensor.
 */
export function tensorToFloat32(info: SafetensorsTensorInfo, bytes: Uint8Array, source?: string): Float32Array {
  if (!isFloatDtype(info.dtype)) throw new UnsupportedDtypeError(info.name, info.dtype, FLOAT_DTYPES, source);
  if (bytes.byteLength !== info.byteLength) {
    throw new FileTruncatedError(
      `tensor "${info.name}" needs ${info.byteLength} bytes (file bytes [${info.fileOffset}, ${info.fileOffset + info.byteLength})), got ${bytes.byteLength}`,
      source,
    );
  }
  const n = info.numel;
  if (!LITTLE_ENDIAN) return convertWithDataView(info.dtype, bytes, n);
  switch (info.dtype) {
    case 'F32': {
      const b = alignedCopyIfNeeded(bytes, 4);
      return new Float32Array(b.buffer, b.byteOffset, n);
    }
    case 'F16': {
      const b = alignedCopyIfNeeded(bytes, 2);
      const h = new Uint16Array(b.buffer, b.byteOffset, n);
      const table = f16Lookup();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = table[h[i]];
      return out;
    }
    case 'BF16': {
      const b = alignedCopyIfNeeded(bytes, 2);
      const h = new Uint16Array(b.buffer, b.byteOffset, n);
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      // bf16 is the high half of an f32: shifting the bits back is exact, NaN payloads included.
      for (let i = 0; i < n; i++) bits[i] = h[i] << 16;
      return out;
    }
  }
}

/** Big-endian hosts (none in practice today): read element by element. */
function convertWithDataView(dtype: FloatDtype, bytes: Uint8Array, n: number): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    if (dtype === 'F32') out[i] = view.getFloat32(4 * i, true);
    else if (dtype === 'F16') out[i] = f16BitsToFloat32(view.getUint16(2 * i, true));
    else {
      const scratch = new DataView(new ArrayBuffer(4));
      scratch.setUint32(0, view.getUint16(2 * i, true) << 16);
      out[i] = scratch.getFloat32(0);
    }
  }
  return out;
}

/** A safetensors file held in memory: validated header plus per-tensor access. */
export class SafetensorsFile {
  readonly header: SafetensorsHeader;
  /** The whole file. */
  readonly bytes: Uint8Array;
  readonly source: string | undefined;

  private constructor(bytes: Uint8Array, header: SafetensorsHeader, source: string | undefined) {
    this.bytes = bytes;
    this.header = header;
    this.source = source;
  }

  /** Parses and validates the header of a whole file (the data is not touched until asked for). */
  static parse(data: ArrayBuffer | Uint8Array, options: HeaderOptions = {}): SafetensorsFile {
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
    const header = parseSafetensorsHeader(bytes, bytes.byteLength, options);
    return new SafetensorsFile(bytes, header, options.source);
  }

  get metadata(): Readonly<Record<string, string>> {
    return this.header.metadata;
  }

  /** Tensor names in header order. */
  names(): string[] {
    return [...this.header.tensors.keys()];
  }

  has(name: string): boolean {
    return this.header.tensors.has(name);
  }

  /** The tensor's header entry; MissingTensorError if the file has no such tensor. */
  info(name: string): SafetensorsTensorInfo {
    const t = this.header.tensors.get(name);
    if (!t) throw new MissingTensorError(name, 'not in this safetensors file', this.source);
    return t;
  }

  /** The tensor's raw little-endian bytes: a view into the file, no copy (e.g. for a GPU upload). */
  rawBytes(name: string): Uint8Array {
    const t = this.info(name);
    return this.bytes.subarray(t.fileOffset, t.fileOffset + t.byteLength);
  }

  /** The tensor as f32 (see `tensorToFloat32`: an F32 tensor may share memory with the file). */
  float32(name: string): Float32Array {
    return tensorToFloat32(this.info(name), this.rawBytes(name), this.source);
  }
}
