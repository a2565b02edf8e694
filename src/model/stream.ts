/**
 * Loading a model as a stream of tensors, so that weights go from the network (or the disk, or the
 * cache) to the GPU one tensor at a time and the whole file is never held in JS memory: the engine
 * uploads each tensor as it arrives and drops it. Large models otherwise fail where the file has to
 * fit in one ArrayBuffer (or in wasm32 memory), at 2-4 GB.
 *
 * The safetensors layout makes this possible: the header (names, dtypes, shapes, byte ranges) comes
 * first, so the whole check against the config is done before any tensor data is read, and the data
 * section is a plain concatenation of tensors, read front to back.
 *
 * Validation is the same as `loadModel`'s, with the same named errors and messages; only the errors that
 * can first be seen mid-stream differ (a source that does not know its size up front, and then ends
 * early or runs long).
 */
import { parseModelConfig, type ModelConfig } from './model-config.ts';
import { ConfigError, FileTruncatedError, HeaderMalformedError, ModelFetchError } from './errors.ts';
import { CONFIG_FILE, WEIGHTS_FILE } from './load.ts';
import { parseHeader, readHeaderLength, tensorToFloat32, type SafetensorsTensorInfo } from './safetensors.ts';
import { MemorySource, NodeDirectorySource, UrlSource, type ModelSource } from './source.ts';
import { loadTokenizer, type Tokenizer } from './tokenizer.ts';
import { assertFinite, checkTensorSet } from './validate.ts';

export interface LoadProgress {
  phase: 'config' | 'weights' | 'done';
  /** Bytes of `file` received so far (the header included). */
  bytesLoaded: number;
  /** `file`'s size: from the source up front when it says (Content-Length, file size), else from the
   * safetensors header, which is known before any tensor data arrives. */
  bytesTotal: number | null;
  /** Tensors handed to the consumer and released by it (for the engine: uploaded). */
  tensorsLoaded: number;
  tensorsTotal: number | null;
  /** Whether `file` comes from the Cache Storage rather than the network. */
  fromCache: boolean;
  file: string;
}

export interface StreamedTensor {
  name: string;
  shape: number[];
  dtype: 'F32' | 'F16' | 'BF16';
  /** Converted to f32. Transient: it may share memory with the download buffers (which a cache writer
   * may be reading too), so a consumer must copy or upload it before asking for the next tensor, and
   * must neither keep it nor transfer its buffer. */
  data: Float32Array;
}

export interface ModelStream {
  config: ModelConfig;
  /** config.json as parsed JSON. */
  rawConfig: Record<string, unknown>;
  tokenizer: Tokenizer;
  /** The safetensors `__metadata__` strings. */
  metadata: Record<string, string>;
  /** Total weight bytes (the safetensors data section), known from the header before the data arrives. */
  weightBytes: number;
  /**
   * The tensors in file order, each checked like `loadModel` checks it. Can be iterated once. Leaving
   * the loop early cancels the download. Errors: FileTruncatedError (the data ends early, naming the
   * tensor), ModelFetchError (the connection fails), NonFiniteWeightError, HeaderMalformedError (bytes
   * after the last tensor), or the abort reason.
   */
  tensors: AsyncIterable<StreamedTensor>;
  /** Stops the download (for a stream that is dropped without being read to the end). */
  cancel(reason?: unknown): Promise<void>;
}

/** A file opened for streaming. */
export interface OpenedStream {
  stream: ReadableStream<Uint8Array>;
  /** The file's size in bytes, when the source knows it before reading. */
  size: number | null;
  fromCache: boolean;
  /**
   * The consumer found the bytes unusable (truncated, malformed, or a model that failed to load): a
   * source that caches must not keep them, so the next load fetches them again.
   */
  discard?(reason: unknown): void;
}

/** A model source that can hand out a file as a byte stream, rather than whole. */
export interface ByteStreamSource extends ModelSource {
  /** Same errors as `readBytes` (ModelFetchError naming the file); `signal` stops the transfer. */
  openStream(file: string, options?: { signal?: AbortSignal }): Promise<OpenedStream>;
}

export interface OpenModelStreamOptions {
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
  /** Scan every weight for NaN/Inf (default true). */
  checkFinite?: boolean;
  /** Largest safetensors header accepted, in bytes (default 100 MiB). */
  maxHeaderBytes?: number;
}

/** Read size of the adapters over disk files and in-memory files (network chunks are the network's). */
const DEFAULT_CHUNK_BYTES = 1 << 20;

function isByteStreamSource(source: ModelSource): source is ByteStreamSource {
  return typeof (source as Partial<ByteStreamSource>).openStream === 'function';
}

/** Only plain relative names: the same rule the sources apply in `readBytes`. */
export function checkPlainFileName(file: string, source: string): void {
  const segments = file.split('/');
  if (file === '' || file.includes('\\') || segments.some((s) => s === '' || s === '.' || s === '..')) {
    throw new ModelFetchError(`"${file}" is not a plain relative file name`, source);
  }
}

function abortReason(signal: AbortSignal | undefined): unknown {
  return signal?.reason ?? new DOMException('The operation was aborted.', 'AbortError');
}

/** The size a response announces for its body as delivered to script, or null. A compressed response's
 * Content-Length counts the compressed bytes, not the ones the body stream yields. */
export function announcedSize(res: Response): number | null {
  const encoding = (res.headers.get('content-encoding') ?? '').trim().toLowerCase();
  if (encoding !== '' && encoding !== 'identity') return null;
  const len = res.headers.get('content-length');
  if (len === null || !/^\d+$/.test(len.trim())) return null;
  const n = Number(len.trim());
  return Number.isSafeInteger(n) ? n : null;
}

/**
 * GET one model file, with exactly `UrlSource.readBytes`'s errors for a failed request, a non-OK status
 * and a dev server's HTML fallback page; an abort rejects with the abort reason.
 */
export async function fetchModelFile(
  fetchFn: typeof fetch,
  url: string,
  file: string,
  init: RequestInit | undefined,
  signal: AbortSignal | undefined,
): Promise<Response> {
  let res: Response;
  try {
    res = await fetchFn(url, { ...init, method: 'GET', ...(signal ? { signal } : {}) });
  } catch (e) {
    if (signal?.aborted) throw abortReason(signal);
    throw new ModelFetchError(`could not fetch "${file}": ${(e as Error).message}`, url);
  }
  if (!res.ok) {
    await res.body?.cancel().catch(() => {});
    const what = res.status === 404 ? 'not found' : 'could not be fetched';
    throw new ModelFetchError(`"${file}" ${what}: HTTP ${res.status} ${res.statusText}`.trimEnd(), url);
  }
  if (!file.endsWith('.html') && (res.headers.get('content-type') ?? '').startsWith('text/html')) {
    await res.body?.cancel().catch(() => {});
    throw new ModelFetchError(`"${file}" not found: the server answered with an HTML page (a dev server's fallback for a missing file?)`, url);
  }
  return res;
}

function emptyStream(): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({ start: (c) => c.close() });
}

/** Bytes already in memory, as a stream of views (no copies). */
function bytesStream(bytes: Uint8Array, chunkBytes: number): ReadableStream<Uint8Array> {
  let pos = 0;
  return new ReadableStream<Uint8Array>(
    {
      pull(c) {
        if (pos >= bytes.byteLength) {
          c.close();
          return;
        }
        const end = Math.min(bytes.byteLength, pos + chunkBytes);
        c.enqueue(bytes.subarray(pos, end));
        pos = end;
      },
    },
    { highWaterMark: 0 },
  );
}

/** A Blob (a picked File is backed by the disk) read slice by slice, so it never enters memory whole. */
function blobStream(blob: Blob, chunkBytes: number, file: string, where: string): ReadableStream<Uint8Array> {
  let pos = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        if (pos >= blob.size) {
          c.close();
          return;
        }
        const end = Math.min(blob.size, pos + chunkBytes);
        let part: ArrayBuffer;
        try {
          part = await blob.slice(pos, end).arrayBuffer();
        } catch (e) {
          throw new ModelFetchError(`could not read "${file}": ${(e as Error).message}`, where);
        }
        pos = end;
        c.enqueue(new Uint8Array(part));
      },
    },
    { highWaterMark: 0 },
  );
}

type NodeFs = typeof import('node:fs/promises');

async function openNodeFile(source: NodeDirectorySource, file: string, chunkBytes: number): Promise<OpenedStream> {
  checkPlainFileName(file, source.name);
  // Through a specifier the bundler does not follow, as NodeDirectorySource does, so browser bundles build.
  const specifier = 'node:fs/promises';
  const fs = (await import(/* @vite-ignore */ specifier)) as NodeFs;
  const path = source.locate(file);
  let fh: Awaited<ReturnType<NodeFs['open']>>;
  let size: number;
  try {
    fh = await fs.open(path, 'r');
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new ModelFetchError(`"${file}" not found in ${source.name}`, path);
    throw new ModelFetchError(`could not read "${file}": ${(e as Error).message}`, path);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error('not a regular file');
    size = st.size;
  } catch (e) {
    await fh.close().catch(() => {});
    throw new ModelFetchError(`could not read "${file}": ${(e as Error).message}`, path);
  }
  let pos = 0;
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await fh.close().catch(() => {});
  };
  const stream = new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        // A fresh buffer per chunk (the consumer may still hold views into the previous one), no larger
        // than what is left, so a small file does not pin a whole chunk.
        const want = Math.min(chunkBytes, Math.max(size - pos, 4096));
        const buf = new Uint8Array(want);
        let n: number;
        try {
          n = (await fh.read(buf, 0, want, pos)).bytesRead;
        } catch (e) {
          await close();
          throw new ModelFetchError(`could not read "${file}": ${(e as Error).message}`, path);
        }
        if (n === 0) {
          await close();
          c.close();
          return;
        }
        pos += n;
        c.enqueue(n === want ? buf : buf.subarray(0, n));
      },
      cancel: close,
    },
    { highWaterMark: 0 },
  );
  return { stream, size, fromCache: false };
}

/** A private field of an existing source (TypeScript-private, so present at run time); see the adapters. */
function field<T>(obj: object, key: string, guard: (v: unknown) => v is T): T | undefined {
  const v = (obj as Record<string, unknown>)[key];
  return guard(v) ? v : undefined;
}

/**
 * Gives any ModelSource an `openStream`:
 *   - UrlSource: the fetch body as it arrives, the size from Content-Length;
 *   - NodeDirectorySource: the file read `chunkBytes` at a time from an open handle;
 *   - MemorySource: a File/Blob read slice by slice; bytes already in memory as views;
 *   - any other source: `readBytes`, then served in views (it was whole in memory already).
 * A source that already streams is returned as is.
 */
export function toByteStreamSource(source: ModelSource, options: { chunkBytes?: number } = {}): ByteStreamSource {
  if (isByteStreamSource(source)) return source;
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  if (!(Number.isSafeInteger(chunkBytes) && chunkBytes > 0)) throw new RangeError(`chunkBytes must be a positive integer, got ${chunkBytes}`);

  let open: (file: string, signal: AbortSignal | undefined) => Promise<OpenedStream>;
  if (source instanceof UrlSource) {
    // UrlSource keeps its fetch function and request options private; reuse them (a custom fetch may add
    // credentials), falling back to the global fetch.
    const fetchFn = field(source, 'fetchFn', (v): v is typeof fetch => typeof v === 'function') ?? ((input, init) => fetch(input, init));
    const init = field(source, 'init', (v): v is RequestInit => typeof v === 'object' && v !== null);
    open = async (file, signal) => {
      checkPlainFileName(file, source.name);
      const res = await fetchModelFile(fetchFn, source.locate(file), file, init, signal);
      return { stream: res.body ?? emptyStream(), size: announcedSize(res), fromCache: false };
    };
  } else if (source instanceof NodeDirectorySource) {
    open = (file) => openNodeFile(source, file, chunkBytes);
  } else if (source instanceof MemorySource) {
    // MemorySource keeps its files private; reading a File through readBytes would load it whole.
    const files = field(source, 'files', (v): v is Map<string, unknown> => v instanceof Map);
    open = async (file) => {
      const f = files?.get(file);
      if (f instanceof Blob) return { stream: blobStream(f, chunkBytes, file, source.name), size: f.size, fromCache: false };
      const bytes = await source.readBytes(file);
      return { stream: bytesStream(bytes, chunkBytes), size: bytes.byteLength, fromCache: false };
    };
  } else {
    open = async (file) => {
      const bytes = await source.readBytes(file);
      return { stream: bytesStream(bytes, chunkBytes), size: bytes.byteLength, fromCache: false };
    };
  }
  return {
    name: source.name,
    locate: (file) => source.locate(file),
    exists: (file) => source.exists(file),
    readBytes: (file) => source.readBytes(file),
    readText: (file) => source.readText(file),
    openStream: (file, opts) => open(file, opts?.signal),
  };
}

/** What the stream held at most, for tests and diagnostics. */
export interface StreamBufferStats {
  /** Most raw bytes held at once: the current network/disk chunk plus the tensor being assembled. */
  peakBufferedBytes: number;
  /** The largest chunk the source delivered. */
  largestChunkBytes: number;
  /** The largest tensor in the file, in stored bytes. */
  largestTensorBytes: number;
}

const statsOf = new WeakMap<ModelStream, StreamBufferStats>();

/** The buffer high-water marks of a stream (live: read them after the tensors are consumed). */
export function streamBufferStats(stream: ModelStream): StreamBufferStats {
  const s = statsOf.get(stream);
  if (!s) throw new TypeError('not a stream from openModelStream');
  return s;
}

/**
 * Reads exact byte counts from a chunked stream, holding only the current chunk and the one buffer being
 * assembled. A request that lies inside the current chunk is answered with a view (no copy).
 */
class ByteReader {
  /** Bytes received from the source. */
  received = 0;
  /** Bytes handed out. */
  consumed = 0;
  /** The current chunk (kept, and counted, until the next one is needed: views into it may be alive). */
  private chunk: Uint8Array | null = null;
  private chunkPos = 0;
  /** Bytes of the buffer being assembled or handed out, until `release`. */
  private assembled = 0;

  constructor(
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    private readonly stop: AbortSignal,
    private readonly stats: StreamBufferStats,
    private readonly onChunk: (received: number) => void,
    private readonly readError: (e: unknown, received: number) => Error,
  ) {}

  private held(): number {
    return (this.chunk?.byteLength ?? 0) + this.assembled;
  }

  /** The next non-empty chunk, or false at the end of the stream. */
  private async nextChunk(): Promise<boolean> {
    this.chunk = null;
    this.chunkPos = 0;
    for (;;) {
      this.stop.throwIfAborted();
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await this.reader.read();
      } catch (e) {
        // Cancelling the reader on abort makes the read fail or end: report the abort, not a symptom of it.
        this.stop.throwIfAborted();
        throw this.readError(e, this.received);
      }
      this.stop.throwIfAborted();
      if (r.done) return false;
      const v = r.value;
      if (!(v instanceof Uint8Array)) throw this.readError(new TypeError('the stream yielded something other than bytes'), this.received);
      if (v.byteLength === 0) continue;
      this.chunk = v;
      this.received += v.byteLength;
      this.stats.largestChunkBytes = Math.max(this.stats.largestChunkBytes, v.byteLength);
      this.stats.peakBufferedBytes = Math.max(this.stats.peakBufferedBytes, this.held());
      this.onChunk(this.received);
      return true;
    }
  }

  /** Exactly `n` bytes, or how many there were when the stream ended first. */
  async take(n: number): Promise<{ bytes: Uint8Array } | { short: number; partial: Uint8Array }> {
    // Stop at once on abort, even when the bytes are already here.
    this.stop.throwIfAborted();
    if (n === 0) return { bytes: new Uint8Array(0) };
    if (this.chunk === null || this.chunkPos === this.chunk.byteLength) {
      if (!(await this.nextChunk())) return { short: 0, partial: new Uint8Array(0) };
    }
    const first = this.chunk!;
    if (first.byteLength - this.chunkPos >= n) {
      const bytes = first.subarray(this.chunkPos, this.chunkPos + n);
      this.chunkPos += n;
      this.consumed += n;
      return { bytes };
    }
    const out = new Uint8Array(n);
    this.assembled = n;
    let filled = 0;
    let chunk: Uint8Array | null = first;
    while (filled < n) {
      if (chunk === null) {
        if (!(await this.nextChunk())) {
          this.consumed += filled;
          return { short: filled, partial: out.subarray(0, filled) };
        }
        chunk = this.chunk!;
      }
      const m = Math.min(n - filled, chunk.byteLength - this.chunkPos);
      out.set(chunk.subarray(this.chunkPos, this.chunkPos + m), filled);
      filled += m;
      this.chunkPos += m;
      this.stats.peakBufferedBytes = Math.max(this.stats.peakBufferedBytes, this.held());
      if (this.chunkPos === chunk.byteLength) chunk = null;
    }
    this.consumed += n;
    return { bytes: out };
  }

  /** The consumer is done with the last bytes handed out. */
  release(): void {
    this.assembled = 0;
  }

  /** Counts what is left in the stream (nothing, for a well-formed file). */
  async drain(): Promise<number> {
    let extra = this.chunk ? this.chunk.byteLength - this.chunkPos : 0;
    while (await this.nextChunk()) extra += this.chunk!.byteLength;
    this.chunk = null;
    return extra;
  }

  cancel(reason: unknown): void {
    this.reader.cancel(reason).catch(() => {});
  }
}

async function readAll(reader: ByteReader): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const r = await reader.take(1 << 16);
    if ('bytes' in r) {
      parts.push(r.bytes.slice());
      total += r.bytes.byteLength;
      reader.release();
      continue;
    }
    parts.push(r.partial.slice());
    total += r.short;
    break;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

const utf8 = new TextDecoder('utf-8');

/**
 * Opens a model for streaming: reads and checks config.json, the tokenizer and the safetensors header
 * (every error `loadModel` would raise for them is raised here, before any tensor data is read), then
 * returns the tensors as an async iterable that reads the data section as it goes.
 */
export async function openModelStream(source: ModelSource | ByteStreamSource, opts: OpenModelStreamOptions = {}): Promise<ModelStream> {
  const src = toByteStreamSource(source);
  const checkFinite = opts.checkFinite ?? true;
  const onProgress = opts.onProgress;

  // One signal for the user's abort and for `cancel()`; it also cancels the open readers.
  const stopper = new AbortController();
  const stop = stopper.signal;
  const onUserAbort = (): void => stopper.abort(abortReason(opts.signal));
  if (opts.signal?.aborted) throw abortReason(opts.signal);
  opts.signal?.addEventListener('abort', onUserAbort, { once: true });
  const readers: ByteReader[] = [];
  const opened: OpenedStream[] = [];
  stop.addEventListener('abort', () => readers.forEach((r) => r.cancel(stop.reason)), { once: true });
  const stats: StreamBufferStats = { peakBufferedBytes: 0, largestChunkBytes: 0, largestTensorBytes: 0 };

  let settled = false;
  /** Ends the load: `error` undefined for success; `discard` when the files proved unusable. */
  const finish = (error: unknown, discard: boolean): void => {
    if (settled) return;
    settled = true;
    opts.signal?.removeEventListener('abort', onUserAbort);
    if (error === undefined) return;
    if (!stop.aborted) stopper.abort(error);
    // A failed load must not leave its files cached: the next try fetches them again. An abort is not
    // a verdict on the files (a complete config.json stays).
    if (discard) for (const o of opened) o.discard?.(error);
  };
  /** The error to report for `e`: the abort reason when the load was stopped (the read then fails or ends
   * as a symptom), and whether `e` says the files are bad. */
  const failure = (e: unknown): [unknown, boolean] => (stop.aborted ? [stop.reason, false] : [e, true]);

  const progress: LoadProgress = {
    phase: 'config',
    bytesLoaded: 0,
    bytesTotal: null,
    tensorsLoaded: 0,
    tensorsTotal: null,
    fromCache: false,
    file: CONFIG_FILE,
  };
  const emit = (): void => onProgress?.({ ...progress });
  const onChunk = (received: number): void => {
    progress.bytesLoaded = received;
    emit();
  };
  /** The tensor being read, for messages about a download that fails mid-stream. */
  let currentTensor: string | null = null;

  const openFile = async (file: string): Promise<{ o: OpenedStream; reader: ByteReader }> => {
    const o = await src.openStream(file, { signal: stop });
    opened.push(o);
    const where = src.locate(file);
    const reader = new ByteReader(o.stream.getReader(), stop, stats, onChunk, (e, received) => {
      if (e instanceof ModelFetchError) return e;
      const at = currentTensor === null ? '' : ` after ${received} bytes, in tensor "${currentTensor}"`;
      return new ModelFetchError(`download of "${file}" failed${at}: ${(e as Error)?.message ?? String(e)}`, where);
    });
    readers.push(reader);
    if (stop.aborted) reader.cancel(stop.reason);
    return { o, reader };
  };

  let weights: ByteReader;
  let ordered: SafetensorsTensorInfo[];
  let result: Omit<ModelStream, 'tensors' | 'cancel'>;
  const weightsWhere = src.locate(WEIGHTS_FILE);
  try {
    // config.json, as `readConfig` reads it, but through the stream so a cache hit shows in the progress.
    const configWhere = src.locate(CONFIG_FILE);
    emit();
    const cfg = await openFile(CONFIG_FILE);
    Object.assign(progress, { fromCache: cfg.o.fromCache, bytesTotal: cfg.o.size });
    const text = utf8.decode(await readAll(cfg.reader));
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new ConfigError('(root)', `${CONFIG_FILE} is not valid JSON: ${(e as Error).message}`, configWhere);
    }
    const config = parseModelConfig(raw, configWhere);
    const tokenizer = await loadTokenizer(src, config);
    stop.throwIfAborted();

    Object.assign(progress, { phase: 'weights', file: WEIGHTS_FILE, bytesLoaded: 0, bytesTotal: null, fromCache: false });
    const w = await openFile(WEIGHTS_FILE);
    weights = w.reader;
    const size = w.o.size;
    Object.assign(progress, { bytesTotal: size, fromCache: w.o.fromCache });
    emit();

    const headerOpts = { source: weightsWhere, maxHeaderBytes: opts.maxHeaderBytes };
    const first8 = await weights.take(8);
    const lengthBytes = 'bytes' in first8 ? first8.bytes : first8.partial;
    // With the real size (or the bytes that exist, when the stream ended early), so the messages match the loader's.
    const n = readHeaderLength(lengthBytes, 'bytes' in first8 ? size : (size ?? first8.short), headerOpts);
    const headerRead = await weights.take(n);
    if (!('bytes' in headerRead)) {
      const fileSize = 8 + headerRead.short;
      throw new FileTruncatedError(
        `header length field says ${n} bytes of header, but the file is only ${fileSize} bytes (needs at least ${8 + n})`,
        weightsWhere,
      );
    }
    const header = parseHeader(headerRead.bytes, size, headerOpts);
    weights.release();
    checkTensorSet(config, header.tensors, weightsWhere);

    ordered = [...header.tensors.values()].sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0]);
    stats.largestTensorBytes = ordered.reduce((m, t) => Math.max(m, t.byteLength), 0);
    progress.bytesTotal = size ?? header.dataStart + header.dataByteLength;
    progress.tensorsTotal = ordered.length;
    emit();
    result = {
      config,
      rawConfig: raw as Record<string, unknown>,
      tokenizer,
      metadata: { ...header.metadata },
      weightBytes: header.dataByteLength,
    };
  } catch (e) {
    const [error, discard] = failure(e);
    finish(error, discard);
    throw error;
  }

  const reader = weights;
  const tensorInfos = ordered;
  async function* read(): AsyncGenerator<StreamedTensor> {
    let done = false;
    try {
      for (const info of tensorInfos) {
        currentTensor = info.name;
        const r = await reader.take(info.byteLength);
        if (!('bytes' in r)) {
          throw new FileTruncatedError(
            `tensor "${info.name}" occupies data bytes [${info.dataOffsets[0]}, ${info.dataOffsets[1]}) ` +
              `(file bytes [${info.fileOffset}, ${info.fileOffset + info.byteLength})), but the file ends at byte ${reader.consumed}`,
            weightsWhere,
          );
        }
        const data = tensorToFloat32(info, r.bytes, weightsWhere);
        if (checkFinite) assertFinite(info.name, data, weightsWhere);
        yield { name: info.name, shape: [...info.shape], dtype: info.dtype as StreamedTensor['dtype'], data };
        reader.release();
        progress.tensorsLoaded++;
        emit();
      }
      currentTensor = null;
      const dataEnd = reader.consumed;
      const extra = await reader.drain();
      if (extra > 0) {
        throw new HeaderMalformedError(
          `${extra} bytes after the last tensor (file bytes [${dataEnd}, ${dataEnd + extra})) are not described by the header`,
          weightsWhere,
        );
      }
      done = true;
      progress.phase = 'done';
      emit();
      finish(undefined, false);
    } catch (e) {
      const [error, discard] = failure(e);
      finish(error, discard);
      throw error;
    } finally {
      // Reached without `done` when the consumer leaves the loop early: that stops the download.
      if (!done) finish(new DOMException('The model stream was closed before its end', 'AbortError'), false);
    }
  }

  let started = false;
  const stream: ModelStream = {
    ...result,
    tensors: {
      [Symbol.asyncIterator](): AsyncIterator<StreamedTensor> {
        if (started) throw new TypeError('the tensors of a model stream can be read once');
        started = true;
        return read();
      },
    },
    async cancel(reason?: unknown): Promise<void> {
      if (settled) return;
      const r = reason ?? new DOMException('The model stream was cancelled', 'AbortError');
      stopper.abort(r);
      finish(r, false);
    },
  };
  statsOf.set(stream, stats);
  return stream;
}
