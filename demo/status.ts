/**
 * The page's one status line: what is happening now, or what went wrong and what the visitor can do.
 * Every state has a name (`data-state`) so that it can be styled and tested.
 */

export type PageState =
  | 'checking'
  | 'no-webgpu'
  | 'loading'
  | 'ready'
  | 'reading'
  | 'generating'
  | 'cancelled'
  | 'stopped'
  | 'done'
  | 'error';

export interface StatusView {
  readonly title: string;
  readonly message?: string;
  readonly hint?: string;
  /** A progress bar: value of max, or indeterminate with max null. */
  readonly progress?: { readonly value: number | null; readonly max: number | null };
}

export class StatusPanel {
  private readonly title: HTMLElement;
  private readonly message: HTMLElement;
  private readonly hint: HTMLElement;
  private readonly bar: HTMLProgressElement;

  constructor(private readonly el: HTMLElement) {
    this.title = el.querySelector('.status-title')!;
    this.message = el.querySelector('.status-message')!;
    this.hint = el.querySelector('.status-hint')!;
    this.bar = el.querySelector('progress')!;
  }

  get state(): PageState {
    return this.el.dataset.state as PageState;
  }

  show(state: PageState, view: StatusView): void {
    this.el.dataset.state = state;
    this.title.textContent = view.title;
    this.message.textContent = view.message ?? '';
    this.hint.textContent = view.hint ?? '';
    this.hint.hidden = !view.hint;
    const p = view.progress;
    this.bar.hidden = !p;
    if (p) {
      if (p.value === null || p.max === null || p.max <= 0) this.bar.removeAttribute('value');
      else {
        this.bar.max = p.max;
        this.bar.value = Math.min(p.value, p.max);
      }
    }
  }

  error(e: unknown, doing: string): void {
    const err = e instanceof Error ? e : new Error(String(e));
    this.show('error', { title: `Could not ${doing}`, message: `${err.name}: ${err.message}`, hint: errorHint(err) });
  }
}

/** What to try after an error, by its class name (names survive the worker boundary and minification). */
export function errorHint(e: Error): string {
  switch (e.name) {
    case 'WebGpuUnavailableError':
      return WEBGPU_HELP;
    case 'ModelFetchError':
      return 'Check your connection and reload the page. If you opened the page from disk, serve it instead (npm run demo).';
    case 'ConfigError':
    case 'TokenizerError':
    case 'HeaderMalformedError':
    case 'FileTruncatedError':
    case 'MissingTensorError':
    case 'ShapeMismatchError':
    case 'UnsupportedDtypeError':
    case 'NonFiniteWeightError':
      return 'The model files are damaged or of a kind this engine cannot read. Pick another model; clearing the site data removes a damaged cached copy.';
    case 'ContextOverflowError':
      return 'Full attention holds only the positions its cache was sized for. Press Start to read the input again with a cache sized for it, or generate fewer tokens.';
    case 'OutOfGpuMemoryError':
      return 'The GPU could not hold this. Pick a shorter input (full attention needs memory for every position), a smaller model, or close other GPU-heavy tabs.';
    case 'GpuValidationError':
      return 'The GPU refused the engine\'s work. Reload the page; if it happens again, please report it with the message above.';
    case 'EngineDestroyedError':
      return 'The GPU device was lost or the engine was closed. Reload the page.';
    case 'MemoryMismatchError':
      return 'This saved memory belongs to another version of the model. Forget it and read the document again.';
    case 'InvalidTokenError':
      return 'The input holds a token the model does not know. Pick another input.';
    case 'QuotaExceededError':
      return 'The browser\'s storage is full. Forget older saved documents, or free space for this site.';
    case 'InputError':
      return 'Pick a bundled document, paste some text or choose a text file, then press Start.';
    case 'RangeError':
    case 'TypeError':
      return 'Check the numbers in the form (length, tokens to generate, temperature).';
    default:
      return 'Reload the page and try again; if it happens again, please report it with the message above.';
  }
}

export const WEBGPU_HELP =
  'Open this page in a browser with WebGPU: a recent Chrome or Edge on Windows, macOS, ChromeOS or Android, ' +
  'Safari 26 or later, or Firefox on Windows. On Linux, Chrome needs to be started with --enable-unsafe-webgpu ' +
  '(and a working Vulkan driver). If your browser should have it, chrome://gpu (or about:support) says why it is ' +
  'off: a blocklisted or outdated GPU driver, or hardware acceleration switched off in the settings.';

export interface AdapterReport {
  readonly description: string;
  readonly features: { readonly f16: boolean; readonly subgroups: boolean; readonly timestamps: boolean };
}

/** The browser's WebGPU adapter, or why there is none (before any model is downloaded). */
export async function checkWebGpu(): Promise<{ ok: true; adapter: AdapterReport } | { ok: false; reason: string }> {
  if (typeof navigator === 'undefined' || !('gpu' in navigator) || !navigator.gpu) {
    return { ok: false, reason: 'This browser has no WebGPU (navigator.gpu is missing).' };
  }
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await navigator.gpu.requestAdapter();
  } catch (e) {
    return { ok: false, reason: `The browser refused a WebGPU adapter: ${(e as Error).message}` };
  }
  if (!adapter) return { ok: false, reason: 'WebGPU is present, but the browser offers no adapter (no usable GPU or driver, or WebGPU is blocked).' };
  const info = adapter.info;
  const has = (f: string) => adapter.features.has(f as GPUFeatureName);
  const description = [info.vendor, info.architecture, info.description || info.device].filter(Boolean).join(' ') || 'unnamed adapter';
  return { ok: true, adapter: { description, features: { f16: has('shader-f16'), subgroups: has('subgroups'), timestamps: has('timestamp-query') } } };
}
