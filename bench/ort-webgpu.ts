/**
 * onnxruntime-web's WebGPU execution provider in Node, on a Dawn device we open (src/node/webgpu.ts), and
 * a KV-cache decoder over the graphs train/export_onnx.py writes (plain or fused). Used by the
 * ORT-vs-engine correctness test (test/engine/ort-full-attention.test.ts) and the benchmark suite (bench/suite-core.ts).
 *
 * What ORT 1.30 needs in Node (each found by running it; see also shared notes):
 * - `navigator.gpu` must exist (initEp checks it before anything else) and `env.webgpu.adapter` set, or it
 *   asks `navigator.gpu` for an adapter of its own; the device goes in the EP options
 *   (`{ name: 'webgpu', device }`), checked with `instanceof GPUDevice` (Dawn's globals provide it).
 * - Dawn's `GPUQueue.writeBuffer` rejects views over a SharedArrayBuffer, and ORT's wasm memory is always
 *   shared: such writes get a copy.
 * - The event loop must stay alive while ORT waits on Dawn. ORT compiles its pipelines with
 *   `createComputePipelineAsync`; if nothing else keeps Node's loop alive, the loop goes idle and Node's
 *   `DrainTasks` blocks until V8's background jobs finish, which, right after ORT's 26 MB wasm module is
 *   instantiated, means TurboFan tiering up the module for minutes on this machine: the first
 *   `session.run` took 90-210 s instead of 1.5 s. A 1 s no-op interval while ORT work is in flight fixes it.
 */
import type { InferenceSession, Tensor } from 'onnxruntime-web';

export type Ort = typeof import('onnxruntime-web');

let shimsInstalled = false;
let ortPromise: Promise<Ort> | null = null;

function installShims(adapter: GPUAdapter): void {
  if (shimsInstalled) return;
  shimsInstalled = true;
  const gpuStub = { requestAdapter: async () => adapter, getPreferredCanvasFormat: () => 'bgra8unorm' };
  const nav = (globalThis as { navigator?: object }).navigator;
  if (nav === undefined) Object.defineProperty(globalThis, 'navigator', { value: { gpu: gpuStub }, configurable: true, writable: true });
  else if (!('gpu' in nav)) Object.defineProperty(nav, 'gpu', { value: gpuStub, configurable: true });
  // Browsers take shared views (and a page that is not cross-origin isolated has no SharedArrayBuffer).
  if (typeof SharedArrayBuffer === 'undefined' || !(globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node) return;

  const proto = GPUQueue.prototype;
  const original = proto.writeBuffer;
  proto.writeBuffer = function writeBuffer(this: GPUQueue, buffer: GPUBuffer, bufferOffset: number, data: GPUAllowSharedBufferSource, dataOffset?: number, size?: number): undefined {
    if (data instanceof SharedArrayBuffer) return original.call(this, buffer, bufferOffset, new Uint8Array(data).slice(), dataOffset, size);
    if (ArrayBuffer.isView(data) && data.buffer instanceof SharedArrayBuffer) {
      // Offsets and size count elements of a typed array, bytes of anything else: keep the element type.
      const bpe = 'BYTES_PER_ELEMENT' in data ? (data as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT : 1;
      const copy = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
      return original.call(this, buffer, bufferOffset, copy, dataOffset === undefined ? undefined : dataOffset * bpe, size === undefined ? undefined : size * bpe);
    }
    return original.call(this, buffer, bufferOffset, data, dataOffset, size);
  } as GPUQueue['writeBuffer'];
}

/**
 * onnxruntime-web's WebGPU build, set up for Node. ORT initialises its WebGPU backend once per process,
 * with the adapter of the first call; sessions then run on whatever device they are given
 * (`OrtKvDecoder.create`), so later calls only need the shims already in place.
 */
export function loadOrtWebGpu(gpu: { readonly adapter: GPUAdapter }, opts: { wasmPaths?: string } = {}): Promise<Ort> {
  installShims(gpu.adapter);
  ortPromise ??= import('onnxruntime-web/webgpu').then((ort) => {
    // In a page served by Vite the wasm files are not beside the (pre-bundled) module: say where they are.
    if (opts.wasmPaths) ort.env.wasm.wasmPaths = opts.wasmPaths;
    // One wasm thread: ORT's threads would be web workers competing for the 2 cores the GPU emulation uses.
    ort.env.wasm.numThreads = 1;
    ort.env.webgpu.adapter = gpu.adapter;
    ort.env.logLevel = 'error';
    return ort;
  });
  return ortPromise;
}

let awake = 0;
let keepAlive: ReturnType<typeof setInterval> | null = null;

/** Runs `work` with Node's event loop held awake (see the header: ORT's async pipelines otherwise stall). */
export async function withLoopAwake<T>(work: () => Promise<T>): Promise<T> {
  if (awake++ === 0) keepAlive = setInterval(() => {}, 1000);
  try {
    return await work();
  } finally {
    if (--awake === 0 && keepAlive) {
      clearInterval(keepAlive);
      keepAlive = null;
    }
  }
}

/**
 * What one contender holds and makes on its own device, counted the same way for every runtime by wrapping
 * the device's factory methods: bytes of live GPU buffers (created and not yet destroyed; a runtime's
 * buffer cache counts, since it is memory the runtime holds), their peak, and pipelines created (a runtime
 * that compiles during decode shows it here).
 */
export class GpuDeviceCounter {
  live = 0;
  peak = 0;
  created = 0;
  pipelines = 0;

  constructor(device: GPUDevice) {
    const create = device.createBuffer.bind(device);
    // Own properties on this device only: other devices are not counted or slowed.
    Object.defineProperty(device, 'createBuffer', {
      configurable: true,
      value: (desc: GPUBufferDescriptor): GPUBuffer => {
        const buf = create(desc);
        const size = buf.size;
        this.live += size;
        this.created += 1;
        this.peak = Math.max(this.peak, this.live);
        const destroy = buf.destroy.bind(buf);
        let gone = false;
        Object.defineProperty(buf, 'destroy', {
          configurable: true,
          value: (): undefined => {
            if (!gone) this.live -= size;
            gone = true;
            return destroy();
          },
        });
        return buf;
      },
    });
    const compute = device.createComputePipeline.bind(device);
    const computeAsync = device.createComputePipelineAsync.bind(device);
    Object.defineProperty(device, 'createComputePipeline', {
      configurable: true,
      value: (desc: GPUComputePipelineDescriptor): GPUComputePipeline => {
        this.pipelines += 1;
        return compute(desc);
      },
    });
    Object.defineProperty(device, 'createComputePipelineAsync', {
      configurable: true,
      value: (desc: GPUComputePipelineDescriptor): Promise<GPUComputePipeline> => {
        this.pipelines += 1;
        return computeAsync(desc);
      },
    });
  }
}

export interface OrtDecoderShape {
  readonly layers: number;
  readonly heads: number;
  readonly headDim: number;
  readonly vocab: number;
}

export interface OrtDecoderOptions {
  /** The graph from train/export_onnx.py. */
  readonly onnx: Uint8Array;
  /** The model.safetensors its external initializers point into (absent for an `--embed` export). */
  readonly safetensors?: Uint8Array;
  readonly shape: OrtDecoderShape;
}

/** A session on `device` whose logits come back to the CPU (a caller samples from them) and whose presents stay GPU buffers. */
async function decoderSession(ort: Ort, device: GPUDevice, opts: OrtDecoderOptions, presentNames: readonly string[]): Promise<InferenceSession> {
  const presents: Record<string, 'gpu-buffer' | 'cpu'> = { logits: 'cpu' };
  for (const n of presentNames) presents[n] = 'gpu-buffer';
  // onnxruntime-common's EP option type names `device` as unknown GPUDevice; Dawn's is the real thing.
  const webgpu = { name: 'webgpu', device } as InferenceSession.WebGpuExecutionProviderOption;
  return withLoopAwake(() =>
    ort.InferenceSession.create(opts.onnx, {
      executionProviders: [webgpu],
      preferredOutputLocation: presents,
      externalData: opts.safetensors ? [{ path: 'model.safetensors', data: opts.safetensors }] : undefined,
      logSeverityLevel: 3,
    }),
  );
}

/**
 * Prefill, then decode, through one ONNX session: present K/V stay GPU buffers ('gpu-buffer' outputs)
 * fed back as the next run's past, so the cache never leaves the GPU between steps.
 */
export class OrtKvDecoder {
  private past: Tensor[];
  private position = 0;
  /** A cache kept by checkpoint(): feed must not dispose it when it stops being the current past. */
  private kept: { past: Tensor[]; position: number } | null = null;

  private constructor(
    private readonly ort: Ort,
    readonly session: InferenceSession,
    readonly shape: OrtDecoderShape,
  ) {
    this.past = this.emptyPast();
  }

  static async create(ort: Ort, device: GPUDevice, opts: OrtDecoderOptions): Promise<OrtKvDecoder> {
    const names = Array.from({ length: opts.shape.layers }, (_, i) => [`present_key_${i}`, `present_value_${i}`]).flat();
    return new OrtKvDecoder(ort, await decoderSession(ort, device, opts, names), opts.shape);
  }

  get pos(): number {
    return this.position;
  }

  /** Bytes of the K/V cache held now: 2 · layers · heads · positions · headDim · 4 (f32). */
  kvBytes(): number {
    const s = this.shape;
    return 2 * s.layers * s.heads * this.position * s.headDim * 4;
  }

  /** Feeds tokens at the next positions; returns their logits, [T, V]. */
  async feed(tokens: readonly number[]): Promise<Float32Array> {
    const T = tokens.length;
    const ort = this.ort;
    const feeds: Record<string, Tensor> = { input_ids: new ort.Tensor('int64', BigInt64Array.from(tokens, (t) => BigInt(t)), [1, T]) };
    // The plain graph takes positions; the fused one (GroupQueryAttention) derives them from the cache length.
    if (this.session.inputNames.includes('position_ids')) {
      feeds.position_ids = new ort.Tensor('int64', BigInt64Array.from({ length: T }, (_, i) => BigInt(this.position + i)), [1, T]);
    }
    for (let i = 0; i < this.shape.layers; i++) {
      feeds[`past_key_${i}`] = this.past[2 * i];
      feeds[`past_value_${i}`] = this.past[2 * i + 1];
    }
    const out = await withLoopAwake(() => this.session.run(feeds));
    // The old cache is an input of the run just finished; the presents are new buffers that replace it.
    this.dropPast();
    this.past = [];
    for (let i = 0; i < this.shape.layers; i++) this.past.push(out[`present_key_${i}`], out[`present_value_${i}`]);
    this.position += T;
    return out.logits.data as Float32Array;
  }

  /** Keeps the cache as it is now, so that rewind() can come back to it after more feeds. */
  checkpoint(): void {
    this.forget();
    this.kept = { past: this.past, position: this.position };
  }

  /** Back to the checkpoint: its cache becomes the past again (the benchmark decodes, then rewinds). */
  rewind(): void {
    if (!this.kept) throw new Error('rewind() without checkpoint()');
    this.dropPast();
    this.past = this.kept.past;
    this.position = this.kept.position;
    this.kept = null;
  }

  /** Drops the cache (back to position 0). */
  reset(): void {
    for (const t of new Set([...this.past, ...(this.kept?.past ?? [])])) if (t.location === 'gpu-buffer') t.dispose();
    this.kept = null;
    this.past = this.emptyPast();
    this.position = 0;
  }

  /** Frees the current past unless the checkpoint holds it. */
  private dropPast(): void {
    if (this.kept && this.kept.past === this.past) return;
    for (const t of this.past) if (t.location === 'gpu-buffer') t.dispose();
  }

  /** Frees the checkpoint's cache unless it is the current past. */
  private forget(): void {
    if (this.kept && this.kept.past !== this.past) for (const t of this.kept.past) if (t.location === 'gpu-buffer') t.dispose();
    this.kept = null;
  }

  async release(): Promise<void> {
    this.reset();
    await this.session.release();
  }

  private emptyPast(): Tensor[] {
    const s = this.shape;
    return Array.from({ length: 2 * s.layers }, () => new this.ort.Tensor('float32', new Float32Array(0), [1, s.heads, 0, s.headDim]));
  }
}

export interface OrtSharedDecoderOptions extends OrtDecoderOptions {
  /** Rows of the fixed K/V buffers: the longest context this decoder can hold. */
  readonly capacity: number;
}

/**
 * The best-prepared way to decode with onnxruntime-web (what onnxruntime-genai does): the `shared` graph of
 * train/export_onnx.py (onnxruntime-genai / transformers.js input and output names, GroupQueryAttention,
 * last-row logits) over K/V buffers of fixed capacity that we allocate once on ORT's device and bind both
 * as each layer's past input and as its present output, so GroupQueryAttention writes the new rows in place
 * (`past_present_share_buffer`) and no step allocates or copies the cache. The valid length is the
 * attention mask's (ones, P+T long). Logits of the last row come back to the CPU.
 */
export class OrtSharedKvDecoder {
  private position = 0;
  private kept: number | null = null;

  private constructor(
    private readonly ort: Ort,
    readonly session: InferenceSession,
    readonly shape: OrtDecoderShape,
    readonly capacity: number,
    private readonly buffers: GPUBuffer[],
    private readonly cache: Tensor[],
  ) {}

  static async create(ort: Ort, device: GPUDevice, opts: OrtSharedDecoderOptions): Promise<OrtSharedKvDecoder> {
    const s = opts.shape;
    const names = Array.from({ length: s.layers }, (_, i) => [`present.${i}.key`, `present.${i}.value`]).flat();
    const session = await decoderSession(ort, device, opts, names);
    for (const name of ['input_ids', 'attention_mask', 'past_key_values.0.key']) {
      if (!session.inputNames.includes(name)) throw new Error(`the shared-buffer decoder needs the 'shared' graph of train/export_onnx.py (no input ${name})`);
    }
    const dims = [1, s.heads, opts.capacity, s.headDim];
    const bytes = s.heads * opts.capacity * s.headDim * 4;
    const buffers: GPUBuffer[] = [];
    const cache: Tensor[] = [];
    for (let i = 0; i < 2 * s.layers; i++) {
      const buffer = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
      buffers.push(buffer);
      cache.push(ort.Tensor.fromGpuBuffer(buffer, { dataType: 'float32', dims }));
    }
    return new OrtSharedKvDecoder(ort, session, s, opts.capacity, buffers, cache);
  }

  get pos(): number {
    return this.position;
  }

  /** Bytes of the K/V buffers: allocated once for `capacity` positions, whatever the context. */
  kvBytes(): number {
    return this.buffers.reduce((n, b) => n + b.size, 0);
  }

  /** Feeds tokens at the next positions; returns the last one's logits, [V]. */
  async feed(tokens: readonly number[]): Promise<Float32Array> {
    const T = tokens.length;
    if (this.position + T > this.capacity) throw new Error(`context ${this.position + T} is past the decoder's capacity of ${this.capacity}`);
    const ort = this.ort;
    const total = this.position + T;
    const feeds: Record<string, Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(tokens, (t) => BigInt(t)), [1, T]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(total).fill(1n), [1, total]),
    };
    const fetches: Record<string, Tensor | null> = { logits: null };
    for (let i = 0; i < this.shape.layers; i++) {
      feeds[`past_key_values.${i}.key`] = this.cache[2 * i];
      feeds[`past_key_values.${i}.value`] = this.cache[2 * i + 1];
      fetches[`present.${i}.key`] = this.cache[2 * i];
      fetches[`present.${i}.value`] = this.cache[2 * i + 1];
    }
    const out = await withLoopAwake(() => this.session.run(feeds, fetches));
    this.position = total;
    return out.logits.data as Float32Array;
  }

  /** Remembers the position: rows written after it are rewritten before any later step reads them. */
  checkpoint(): void {
    this.kept = this.position;
  }

  rewind(): void {
    if (this.kept === null) throw new Error('rewind() without checkpoint()');
    this.position = this.kept;
    this.kept = null;
  }

  reset(): void {
    this.position = 0;
    this.kept = null;
  }

  async release(): Promise<void> {
    await this.session.release();
    for (const b of this.buffers) b.destroy();
  }
}
