/**
 * Asks an adapter for a device with what the model needs and no more: limits are
 * min(adapter's limit, model's need), never a fixed large number, so the same code runs on a phone
 * that reports 128 MiB bindings and on a workstation GPU.
 */
export interface DeviceNeeds {
  /** The largest single buffer the engine will create, in bytes (after splitting oversized tensors). */
  readonly largestBuffer: number;
  /** Storage buffers a kernel binds at most (the engine keeps to 8 unless the adapter allows more). */
  readonly storageBuffersPerStage?: number;
  /** Use `shader-f16` when the adapter has it (default true). */
  readonly f16?: boolean;
  /** Use `subgroups` when the adapter has it (default true). */
  readonly subgroups?: boolean;
}

/** What a user without WebGPU can do; ends every WebGpuUnavailableError about a missing or refused adapter. */
export const HOW_TO_GET_WEBGPU =
  'Use a browser with WebGPU: Chrome or Edge 113+ on Windows, macOS or ChromeOS, Chrome 121+ on Android, ' +
  'Safari 26+; on Linux start Chrome/Chromium with --enable-unsafe-webgpu (and --enable-features=Vulkan). ' +
  'Firefox has WebGPU on Windows from version 141. Check chrome://gpu for blocklisted drivers.';

export class WebGpuUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebGpuUnavailableError';
  }
}

export async function requestEngineDevice(adapter: GPUAdapter, needs: DeviceNeeds): Promise<GPUDevice> {
  const features: GPUFeatureName[] = [];
  if ((needs.f16 ?? true) && adapter.features.has('shader-f16')) features.push('shader-f16');
  if ((needs.subgroups ?? true) && adapter.features.has('subgroups')) features.push('subgroups' as GPUFeatureName);
  if (adapter.features.has('timestamp-query')) features.push('timestamp-query');
  const lim = adapter.limits;
  const binding = Math.min(lim.maxStorageBufferBindingSize, Math.max(needs.largestBuffer, 128 << 20));
  const requiredLimits: Record<string, number> = {
    maxStorageBufferBindingSize: binding,
    maxBufferSize: Math.min(lim.maxBufferSize, Math.max(binding, 256 << 20)),
    maxStorageBuffersPerShaderStage: Math.min(lim.maxStorageBuffersPerShaderStage, Math.max(8, needs.storageBuffersPerStage ?? 8)),
    maxComputeWorkgroupStorageSize: lim.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: lim.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: lim.maxComputeWorkgroupSizeX,
  };
  try {
    return await adapter.requestDevice({ requiredFeatures: features, requiredLimits, label: 'ttt-web engine' });
  } catch (e) {
    throw new WebGpuUnavailableError(`the adapter refused a device with ${JSON.stringify(requiredLimits)}: ${(e as Error).message}`);
  }
}
