/**
 * Opens a WebGPU device in Node through Dawn's bindings (the `webgpu` package), for tests and benchmarks.
 *
 * On machines without a GPU there are two software Vulkan drivers: Mesa's lavapipe (faster, has
 * `shader-f16`) and SwiftShader (what headless Chromium uses; no `shader-f16`). By default we try
 * lavapipe, then SwiftShader, and never a real GPU (tests must not depend on one); on a machine with a
 * GPU, TTT_WEBGPU_BACKEND=system uses whatever the system's Vulkan loader finds (the GPU bench pack does).
 * The Vulkan loader reads VK_ICD_FILENAMES when Dawn creates its instance, so each attempt sets it and
 * makes a fresh instance.
 */
import { existsSync } from 'node:fs';
import { create, globals } from 'webgpu';

export type NodeBackend = 'lavapipe' | 'swiftshader' | 'system';

const ICD_FILES: Record<Exclude<NodeBackend, 'system'>, string> = {
  lavapipe: '/usr/share/vulkan/icd.d/lvp_icd.json',
  swiftshader: '/usr/lib/chromium/vk_swiftshader_icd.json',
};

export interface NodeGpu {
  readonly backend: NodeBackend;
  readonly adapter: GPUAdapter;
  readonly device: GPUDevice;
  /** One line naming the adapter and its features, for logs and benchmark records. */
  readonly description: string;
  readonly features: readonly string[];
}

/** Raised when no backend yields an adapter; says what to install. */
export class NoWebGpuAdapterError extends Error {
  constructor(tried: readonly string[]) {
    super(
      `no WebGPU adapter found in Node (tried: ${tried.join('; ')}). Install Debian's chromium (SwiftShader) ` +
        `or mesa-vulkan-drivers >= 25 (lavapipe), e.g. run scripts/install-system-deps.sh as root`,
    );
    this.name = 'NoWebGpuAdapterError';
  }
}

// Dawn's instance must outlive every adapter and device made from it: if the GPU object is garbage
// collected while a device is alive, Dawn crashes the process (seen as a segfault under Vitest).
const liveInstances: GPU[] = [];

let globalsInstalled = false;
function installGlobals(): void {
  if (globalsInstalled) return;
  // GPUBufferUsage, GPUMapMode, GPUShaderStage... are globals in browsers; Dawn's package exports them.
  Object.assign(globalThis, globals);
  globalsInstalled = true;
}

/** The order of backends to try: TTT_WEBGPU_BACKEND forces one (`system`: the Vulkan loader's choice, a real GPU where there is one); otherwise lavapipe, then SwiftShader. */
function backendOrder(env: NodeJS.ProcessEnv = process.env): NodeBackend[] {
  const forced = env.TTT_WEBGPU_BACKEND;
  if (forced === 'lavapipe' || forced === 'swiftshader' || forced === 'system') return [forced];
  return ['lavapipe', 'swiftshader'];
}

export interface OpenNodeGpuOptions {
  backends?: readonly NodeBackend[];
  requiredFeatures?: readonly GPUFeatureName[];
  requiredLimits?: Record<string, number>;
  /** Print the adapter line to stderr (tests do, so a CI log says which adapter ran). */
  log?: boolean;
}

export interface NodeAdapter {
  readonly backend: NodeBackend;
  readonly adapter: GPUAdapter;
  readonly description: string;
  readonly features: readonly string[];
}

/** The first backend that yields an adapter (no device yet: an adapter makes one device only). */
export async function openNodeAdapter(opts: Pick<OpenNodeGpuOptions, 'backends' | 'log'> = {}): Promise<NodeAdapter> {
  installGlobals();
  const tried: string[] = [];
  const previousIcd = process.env.VK_ICD_FILENAMES;
  for (const backend of opts.backends ?? backendOrder()) {
    if (backend === 'system') {
      if (previousIcd === undefined) delete process.env.VK_ICD_FILENAMES;
      else process.env.VK_ICD_FILENAMES = previousIcd;
    } else {
      const icd = ICD_FILES[backend];
      if (!existsSync(icd)) {
        tried.push(`${backend}: ${icd} not installed`);
        continue;
      }
      process.env.VK_ICD_FILENAMES = icd;
    }
    const gpu = create([]);
    liveInstances.push(gpu);
    const adapter = await gpu.requestAdapter();
    if (!adapter) {
      tried.push(`${backend}: no adapter`);
      continue;
    }
    const features = [...adapter.features].map(String).sort();
    const i = adapter.info;
    const description =
      `${backend}: ${i.vendor} ${i.architecture} ${i.device} (${i.description}); ` +
      `features: ${features.join(', ')}; maxStorageBufferBindingSize=${adapter.limits.maxStorageBufferBindingSize}`;
    if (opts.log) process.stderr.write(`[webgpu] ${description}\n`);
    return { backend, adapter, description, features };
  }
  throw new NoWebGpuAdapterError(tried);
}

export async function openNodeGpu(opts: OpenNodeGpuOptions = {}): Promise<NodeGpu> {
  const a = await openNodeAdapter(opts);
  const wanted = (opts.requiredFeatures ?? []).filter((f) => a.adapter.features.has(f));
  const device = await a.adapter.requestDevice({ requiredFeatures: wanted, requiredLimits: opts.requiredLimits });
  return { ...a, device };
}
