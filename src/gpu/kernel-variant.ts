/**
 * Which shapes of the kernels a device gets. CPU emulators (Mesa's llvmpipe/lavapipe, SwiftShader, WARP)
 * run one invocation at a time per thread, where workgroup memory and barriers cost more than they save:
 * they get register tiles and no shared memory ('cpu'). Every other adapter is a real GPU and gets
 * workgroup-shared tiles, coalesced vector loads and subgroup reductions ('gpu'). Tests and benchmarks
 * force either one (an engine option; in Node also the TTT_KERNELS environment variable, read by the
 * Node helpers, never by shipped code).
 */

export type KernelVariant = 'cpu' | 'gpu';
/** What a caller may ask for: a variant, or 'auto' (from the adapter). */
export type KernelChoice = KernelVariant | 'auto';

/** The adapter's self-description (GPUAdapterInfo's fields; any may be empty). */
export interface AdapterIdentity {
  readonly vendor?: string;
  readonly architecture?: string;
  readonly device?: string;
  readonly description?: string;
  readonly isFallbackAdapter?: boolean;
}

export class KernelChoiceError extends Error {
  constructor(value: string, source: string) {
    super(`${source}: '${value}' is not a kernel variant (use 'auto', 'cpu' or 'gpu')`);
    this.name = 'KernelChoiceError';
  }
}

const EMULATORS = /llvmpipe|lavapipe|swiftshader|subzero|microsoft basic render|\bwarp\b/i;

/** Whether the adapter is a CPU emulating a GPU. */
export function isCpuEmulator(info: AdapterIdentity | undefined): boolean {
  if (!info) return false;
  if (info.isFallbackAdapter) return true;
  return EMULATORS.test([info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' '));
}

/** Whether the adapter is SwiftShader (Chromium's WebGPU where there is no GPU). */
export function isSwiftShader(info: AdapterIdentity | undefined): boolean {
  if (!info) return false;
  return /swiftshader/i.test([info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' '));
}

/**
 * The variant for an adapter. Without any adapter information (a browser that does not expose it) the
 * adapter is taken for a real GPU: that is what nearly every user has, and the GPU shapes are correct on
 * an emulator too, only slower.
 */
export function chooseKernelVariant(info: AdapterIdentity | undefined, choice: KernelChoice = 'auto'): KernelVariant {
  if (choice === 'cpu' || choice === 'gpu') return choice;
  return isCpuEmulator(info) ? 'cpu' : 'gpu';
}

/** Parses a choice given as text (an environment variable, a query parameter); `source` names it in the error. */
export function parseKernelChoice(value: string | undefined, source: string): KernelChoice {
  if (value === undefined || value === '') return 'auto';
  const v = value.trim().toLowerCase();
  if (v === 'auto' || v === 'cpu' || v === 'gpu') return v;
  throw new KernelChoiceError(value, source);
}
