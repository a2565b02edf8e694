/**
 * The engine's handle on one GPUDevice: the allocator, the features in use, and a cache of compute
 * pipelines keyed by (shader, entry point, defines), made once and reused for the device's lifetime.
 */
import { GpuAllocator } from './allocator.ts';
import { chooseKernelVariant, type AdapterIdentity, type KernelChoice, type KernelVariant } from './kernel-variant.ts';
import { SHADER_INCLUDES } from './shader-includes.ts';
import { preprocessWgsl, type Defines } from './wgsl.ts';

/** How a kernel sees a binding: uniform params, read-only storage, or read-write storage. */
export type BindingKind = 'uniform' | 'read' | 'rw';

export interface KernelSpec {
  /** Shader file name, for labels and errors (e.g. "matmul.wgsl"). */
  readonly shader: string;
  readonly source: string;
  readonly entry: string;
  readonly bindings: readonly BindingKind[];
  readonly defines?: Defines;
}

export interface Kernel {
  readonly label: string;
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
  readonly spec: KernelSpec;
}

/** Which weight storage a kernel reads: f32, native f16 (`shader-f16`), or f16 packed two per u32. */
export type WeightStorage = 'f32' | 'f16' | 'f16-packed';

export interface GpuFeatures {
  readonly shaderF16: boolean;
  readonly subgroups: boolean;
  readonly timestampQuery: boolean;
}

/** A binding: a whole buffer, or a byte range of one. */
export type Resource = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

export interface GpuContextOptions {
  /** Kernel shapes: 'auto' (default) picks from the adapter's info (src/gpu/kernel-variant.ts). */
  readonly kernels?: KernelChoice;
  /** The adapter's info, where the device does not carry it (`GPUDevice.adapterInfo` is newer than some browsers). */
  readonly adapterInfo?: AdapterIdentity;
}

export class GpuContext {
  readonly allocator: GpuAllocator;
  readonly features: GpuFeatures;
  /** Which kernel shapes this context's ops build: CPU-emulator ('cpu') or real-GPU ('gpu'). */
  readonly kernelVariant: KernelVariant;
  private readonly kernels: Map<string, Kernel>;
  private readonly layouts: Map<string, GPUBindGroupLayout>;

  constructor(readonly device: GPUDevice, opts: GpuContextOptions = {}, shared?: GpuContext) {
    this.allocator = new GpuAllocator(device);
    // Pipelines belong to the device and are shared; buffers belong to whoever made this context.
    this.kernels = shared ? shared.kernels : new Map();
    this.layouts = shared ? shared.layouts : new Map();
    const info = opts.adapterInfo ?? (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
    this.kernelVariant = shared ? shared.kernelVariant : chooseKernelVariant(info, opts.kernels);
    this.features = {
      shaderF16: device.features.has('shader-f16'),
      subgroups: device.features.has('subgroups'),
      timestampQuery: device.features.has('timestamp-query'),
    };
  }

  /** A context on the same device with its own allocator (its own memory report) and the shared pipeline cache. */
  fork(): GpuContext {
    return new GpuContext(this.device, {}, this);
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  /** The compute pipeline for a spec, compiled on first use. */
  kernel(spec: KernelSpec): Kernel {
    const defines = spec.defines ?? {};
    const key = `${spec.shader}|${spec.entry}|${JSON.stringify(Object.entries(defines).sort())}`;
    const cached = this.kernels.get(key);
    if (cached) return cached;
    const code = preprocessWgsl(spec.source, defines, spec.shader, SHADER_INCLUDES);
    const layout = this.layout(spec.bindings);
    const label = `${spec.shader}:${spec.entry}`;
    const module = this.device.createShaderModule({ label, code });
    const pipeline = this.device.createComputePipeline({
      label,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: spec.entry },
    });
    const k: Kernel = { label, pipeline, layout, spec };
    this.kernels.set(key, k);
    return k;
  }

  private layout(bindings: readonly BindingKind[]): GPUBindGroupLayout {
    const key = bindings.join(',');
    let l = this.layouts.get(key);
    if (!l) {
      l = this.device.createBindGroupLayout({
        entries: bindings.map((kind, binding) => ({
          binding,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: kind === 'uniform' ? 'uniform' : kind === 'read' ? 'read-only-storage' : 'storage' },
        })),
      });
      this.layouts.set(key, l);
    }
    return l;
  }

  bind(kernel: Kernel, resources: readonly Resource[]): GPUBindGroup {
    if (resources.length !== kernel.spec.bindings.length) {
      throw new Error(`${kernel.label}: ${resources.length} resources for ${kernel.spec.bindings.length} bindings`);
    }
    return this.device.createBindGroup({
      label: kernel.label,
      layout: kernel.layout,
      entries: resources.map((r, binding) => ({ binding, resource: 'buffer' in r ? r : { buffer: r } })),
    });
  }

  /** A small uniform buffer holding 4-byte scalar fields in order (see `packParams`). */
  uniform(label: string, fields: readonly Param[]): GPUBuffer {
    const data = packParams(fields);
    const buf = this.allocator.create(label, 'scratch', Math.max(16, data.byteLength), GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    this.device.queue.writeBuffer(buf, 0, data);
    return buf;
  }
}

/** A uniform field: [type, value]. Uniform structs here hold only 4-byte scalars, so no padding rules apply. */
export type Param = readonly ['u32' | 'i32' | 'f32', number];

function packParams(fields: readonly Param[]): ArrayBuffer {
  const n = Math.max(4, Math.ceil(fields.length / 4) * 4);
  const buf = new ArrayBuffer(n * 4);
  const view = new DataView(buf);
  fields.forEach(([type, v], i) => {
    if (type === 'f32') view.setFloat32(4 * i, v, true);
    else if (type === 'i32') view.setInt32(4 * i, v, true);
    else {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`u32 param ${i} = ${v}`);
      view.setUint32(4 * i, v, true);
    }
  });
  return buf;
}

/**
 * Workgroup counts for `groups` workgroups in a 1-D launch, folded into 2-D when they exceed the
 * per-dimension limit. Kernels rebuild the linear id as `wid.x + wid.y * nwg.x`.
 */
export function grid(groups: number, maxPerDim = 65535): [number, number] {
  if (groups <= maxPerDim) return [Math.max(1, groups), 1];
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y];
}

/** Records one dispatch into a compute pass. */
export function dispatch(pass: GPUComputePassEncoder, kernel: Kernel, group: GPUBindGroup, x: number, y = 1, z = 1): void {
  pass.setPipeline(kernel.pipeline);
  pass.setBindGroup(0, group);
  pass.dispatchWorkgroups(x, y, z);
}
