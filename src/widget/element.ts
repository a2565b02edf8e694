/**
 * `<ttt-chat>`: a self-contained chat box over one engine. It loads the model its `model` attribute names
 * (in a Web Worker, through createEngine), streams each generation into a transcript, and shows decode
 * latency, prompt speed, GPU memory and the context position under it. Every generation continues from
 * what the engine already holds (the model's memory is the whole transcript); Reset forgets it.
 *
 * Attributes, properties, methods, events and CSS custom properties are documented in docs/widget.md.
 */
import { createEngine, EngineAbortedError, EngineDestroyedError, WebGpuUnavailableError } from '../api/index.ts';
import type { GenerateOptions, LoadProgress, TttEngine, TttInfo, TttStats } from '../api/index.ts';
import {
  ENUM_ATTRIBUTES,
  numberToAttribute,
  OBSERVED_ATTRIBUTES,
  parseEnum,
  parseNumber,
  RELOAD_ATTRIBUTES,
  TttChatAttributeError,
  type EnumValue,
  type NumberAttribute,
} from './attributes.ts';
import { chatEvent, type TttChatDoneDetail, type TttChatEventMap } from './events.ts';
import { EMPTY_READOUT, formatReadout, meanBits, type ReadoutText } from './readout.ts';
import { fillShadowRoot } from './template.ts';

/** Where the element is: no engine yet, loading one, idle with one, generating, failed, or no WebGPU here. */
export type TttChatState = 'idle' | 'loading' | 'ready' | 'generating' | 'error' | 'unsupported';

/** generate() while a generation is running (the element runs one at a time; stop() ends it). */
export class TttChatBusyError extends Error {
  constructor() {
    super('<ttt-chat> is already generating: wait for its done event or call stop() first');
    this.name = 'TttChatBusyError';
  }
}

// Server-side rendering and Node type tests import this module where no DOM exists; the class must still
// be definable there (it is only registered where customElements exists).
const ElementBase: typeof HTMLElement = typeof HTMLElement === 'undefined' ? (class {} as unknown as typeof HTMLElement) : HTMLElement;

interface Parts {
  readonly output: HTMLElement;
  readonly progress: HTMLProgressElement;
  readonly status: HTMLElement;
  readonly form: HTMLFormElement;
  readonly prompt: HTMLTextAreaElement;
  readonly generate: HTMLButtonElement;
  readonly stop: HTMLButtonElement;
  readonly reset: HTMLButtonElement;
  readonly readout: HTMLElement;
}

function must<T extends Element>(root: ParentNode, selector: string): T {
  const el = root.querySelector<T>(selector);
  if (!el) throw new Error(`<ttt-chat> template is missing ${selector}`);
  return el;
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

export class TttChatElement extends ElementBase {
  static readonly tagName = 'ttt-chat';
  static get observedAttributes(): readonly string[] {
    return OBSERVED_ATTRIBUTES;
  }

  readonly #parts: Parts;
  #engine: TttEngine | null = null;
  #loading: Promise<TttEngine> | null = null;
  /** The engine options (model, weights, cache) the current engine or load was started with. */
  #openedWith: string | null = null;
  #autoloadQueued = false;
  /** Bumped whenever the engine is let go; a load or stats push from an older engine is ignored. */
  #epoch = 0;
  #running: AbortController | null = null;
  #state: TttChatState = 'idle';
  #stats: TttStats | null = null;
  #unsubscribe: (() => void) | null = null;
  /** Errors already reported (event + status), so a load failure seen again by generate() is not reported twice. */
  readonly #reported = new WeakSet<Error>();

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    fillShadowRoot(root);
    this.#parts = {
      output: must(root, '[part="output"]'),
      progress: must(root, '[part="progress"]'),
      status: must(root, '[part="status"]'),
      form: must(root, 'form'),
      prompt: must(root, '[part="prompt"]'),
      generate: must(root, '[part~="generate"]'),
      stop: must(root, '[part~="stop"]'),
      reset: must(root, '[part~="reset"]'),
      readout: must(root, '[part="readout"]'),
    };
    this.#writeReadout(EMPTY_READOUT);
    const p = this.#parts;
    p.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      // Failures are already reported as an error event and in the status line.
      this.generate().catch(() => undefined);
    });
    p.prompt.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        p.form.requestSubmit();
      }
    });
    p.stop.addEventListener('click', () => this.stop());
    p.reset.addEventListener('click', () => void this.reset().catch(() => undefined));
  }

  // ---- attributes as properties -------------------------------------------------------------------

  /** URL prefix of the model (config.json and model.safetensors under it), relative to the page. */
  get model(): string {
    return this.getAttribute('model') ?? '';
  }
  set model(v: string) {
    this.setAttribute('model', v);
  }

  get placeholder(): string {
    return this.getAttribute('placeholder') ?? '';
  }
  set placeholder(v: string) {
    this.setAttribute('placeholder', v);
  }

  /** Keep the model's files in Cache Storage (default true; the `no-cache` attribute turns it off). */
  get cache(): boolean {
    return !this.hasAttribute('no-cache');
  }
  set cache(v: boolean) {
    this.toggleAttribute('no-cache', !v);
  }

  /** `show-loss` (boolean attribute): the readout shows each prompt's loss in bits per token (its log-probabilities). */
  get showLoss(): boolean {
    return this.hasAttribute('show-loss');
  }
  set showLoss(v: boolean) {
    this.toggleAttribute('show-loss', v);
  }

  /** `learn-while-reading` (boolean attribute): a sliding-window model learns while it reads, with its top MLP (reloads the model). */
  get learnWhileReading(): boolean {
    return this.hasAttribute('learn-while-reading');
  }
  set learnWhileReading(v: boolean) {
    this.toggleAttribute('learn-while-reading', v);
  }

  get weights(): EnumValue<'weights'> {
    return this.#enumOrDefault('weights');
  }
  set weights(v: EnumValue<'weights'>) {
    this.setAttribute('weights', parseEnum('weights', v));
  }

  /** 'eager' (default): load when the element is on the page; 'lazy': load on the first generation or load(). */
  get loading(): EnumValue<'loading'> {
    return this.#enumOrDefault('loading');
  }
  set loading(v: EnumValue<'loading'>) {
    this.setAttribute('loading', parseEnum('loading', v));
  }

  get maxTokens(): number {
    return this.#numberOrDefault('max-tokens') as number;
  }
  set maxTokens(v: number) {
    this.#setNumber('max-tokens', v);
  }
  get temperature(): number {
    return this.#numberOrDefault('temperature') as number;
  }
  set temperature(v: number) {
    this.#setNumber('temperature', v);
  }
  get topK(): number {
    return this.#numberOrDefault('top-k') as number;
  }
  set topK(v: number) {
    this.#setNumber('top-k', v);
  }
  get topP(): number {
    return this.#numberOrDefault('top-p') as number;
  }
  set topP(v: number) {
    this.#setNumber('top-p', v);
  }
  /** A fixed seed makes every generation from the same memory repeat; null (default) draws a new one. */
  get seed(): number | null {
    return this.#numberOrDefault('seed');
  }
  set seed(v: number | null) {
    this.#setNumber('seed', v);
  }

  // ---- read-only state ----------------------------------------------------------------------------

  get state(): TttChatState {
    return this.#state;
  }
  /** The engine, once loaded (null before and after it is let go): the whole TttEngine API. */
  get engine(): TttEngine | null {
    return this.#engine;
  }
  get info(): TttInfo | null {
    return this.#engine?.info ?? null;
  }
  /** The last stats the engine pushed. */
  get stats(): TttStats | null {
    return this.#stats;
  }
  /** The transcript: every prompt and generated text since the last reset, as one string. */
  get output(): string {
    return this.#parts.output.textContent ?? '';
  }
  /** The prompt box's text. */
  get prompt(): string {
    return this.#parts.prompt.value;
  }
  set prompt(v: string) {
    this.#parts.prompt.value = v;
  }

  // ---- lifecycle ----------------------------------------------------------------------------------

  connectedCallback(): void {
    this.#parts.prompt.placeholder = this.placeholder || 'Write a prompt, press Enter';
    this.#syncControls();
    this.#autoload();
  }

  disconnectedCallback(): void {
    // A move to another place in the document disconnects and reconnects at once: keep the engine then.
    queueMicrotask(() => {
      if (!this.isConnected) this.#release();
    });
  }

  attributeChangedCallback(name: string, old: string | null, value: string | null): void {
    if (old === value) return;
    if (name === 'placeholder') this.#parts.prompt.placeholder = value || 'Write a prompt, press Enter';
    if (RELOAD_ATTRIBUTES.has(name) && this.#openedWith !== null && this.#openedWith !== this.#engineKey()) this.#release();
    if (name === 'model') this.#syncControls();
    if (RELOAD_ATTRIBUTES.has(name) || name === 'loading') this.#autoload();
  }

  // ---- methods ------------------------------------------------------------------------------------

  /** Loads the model now (what `loading="eager"` does on connect); resolves with the engine's info. */
  async load(): Promise<TttInfo> {
    return (await this.#ensureEngine()).info;
  }

  /**
   * Feeds `prompt` (default: the prompt box's text, which is then cleared) and streams the model's
   * continuation into the transcript. Resolves with the `done` event's detail; rejects (after an `error`
   * event) when loading or generating fails, and with TttChatBusyError while another generation runs.
   */
  async generate(prompt?: string): Promise<TttChatDoneDetail> {
    if (this.#running) throw new TttChatBusyError();
    const fromBox = prompt === undefined;
    const text = prompt ?? this.prompt;
    if (typeof text !== 'string') throw new TypeError(`<ttt-chat>.generate(prompt) needs a string, got ${typeof text}`);
    const ctl = new AbortController();
    this.#running = ctl;
    this.#syncControls();
    const t0 = performance.now();
    const epoch = this.#epoch;
    let reply: Text | null = null;
    let tokens = 0;
    let promptBits: number | null = null;
    let detail: TttChatDoneDetail;
    try {
      const opts = this.#generateOptions();
      const engine = await this.#ensureEngine();
      if (this.#parts.status.dataset.kind === 'error') this.#showStatus('');
      this.#setState('generating');
      if (fromBox) this.prompt = '';
      if (text) this.#append('prompt-text', text);
      reply = this.#append('reply-text', '');
      // show-loss: the prompt goes in first as a prefill that scores it; the generation then continues
      // from it (the same tokens as generating from the prompt directly: the draw depends on the position).
      let input = text;
      if (this.showLoss && text) {
        const scored = await engine.prefill(text, { logprobs: true, signal: ctl.signal });
        promptBits = meanBits(scored.logprobs!);
        this.#writeStat('loss', promptBits === null ? '' : `prompt: ${promptBits.toFixed(2)} bits/token`);
        input = '';
      }
      const stream = engine.generate(input, { ...opts, signal: ctl.signal });
      for await (const t of stream) {
        if (t.text) {
          reply.data += t.text;
          this.#scrollToEnd();
        }
        this.dispatchEvent(chatEvent('token', { id: t.id, text: t.text, index: tokens }));
        tokens++;
      }
      const r = await stream.result;
      detail = { reason: r.reason, prompt: text, text: r.text, generatedTokens: r.generatedTokens, position: r.position, ms: performance.now() - t0, promptBits };
    } catch (e) {
      // A generation cut short because the engine was let go (model changed, element removed) was
      // stopped on purpose, like stop(): whether it ends as an abort or a destroyed engine is a race.
      const released = epoch !== this.#epoch && e instanceof EngineDestroyedError;
      if (!(e instanceof EngineAbortedError) && !released) {
        this.#running = null;
        // The engine itself is gone (its worker died, its device was lost): let go of it, so the next
        // generation loads a new one instead of failing the same way forever.
        const dead = epoch === this.#epoch && e instanceof EngineDestroyedError && this.#engine !== null;
        if (dead) this.#dropDeadEngine();
        else if (this.#state === 'generating') this.#setState('ready');
        else this.#syncControls();
        this.#report(e);
        throw e;
      }
      const position = e instanceof EngineAbortedError ? e.position : 0;
      detail = { reason: 'abort', prompt: text, text: reply?.data ?? '', generatedTokens: tokens, position, ms: performance.now() - t0, promptBits };
    }
    this.#running = null;
    if (epoch === this.#epoch) this.#setState('ready');
    else this.#syncControls();
    this.dispatchEvent(chatEvent('done', detail));
    return detail;
  }

  /** Ends the running generation before its next token; what was generated stays in the memory. */
  stop(): void {
    this.#running?.abort(new Error('stopped'));
  }

  /** Stops any generation, forgets everything the engine has read (position 0) and clears the transcript. */
  async reset(): Promise<void> {
    this.stop();
    this.#parts.output.textContent = '';
    this.#writeStat('loss', '');
    const engine = this.#engine;
    if (!engine) return;
    try {
      await engine.reset();
    } catch (e) {
      this.#report(e);
      throw e;
    }
  }

  // ---- internals ----------------------------------------------------------------------------------

  /** Loads once the current task's attribute changes are all in (a parsed element gets them one by one). */
  #autoload(): void {
    if (this.#autoloadQueued) return;
    this.#autoloadQueued = true;
    queueMicrotask(() => {
      this.#autoloadQueued = false;
      if (!this.isConnected || !this.model || this.#engine || this.#loading || this.#state === 'unsupported') return;
      if (this.#enumOrDefault('loading') === 'lazy') return;
      this.#ensureEngine().catch(() => undefined);
    });
  }

  #engineKey(): string {
    return JSON.stringify([this.model, this.getAttribute('weights'), this.cache, this.learnWhileReading]);
  }

  #ensureEngine(): Promise<TttEngine> {
    if (this.#engine) return Promise.resolve(this.#engine);
    if (!this.#loading) {
      this.#openedWith = this.#engineKey();
      this.#loading = this.#open(this.#epoch);
    }
    return this.#loading;
  }

  async #open(epoch: number): Promise<TttEngine> {
    const current = () => epoch === this.#epoch;
    try {
      if (!this.model) throw new TttChatAttributeError('model', '', 'a URL prefix with config.json and model.safetensors under it');
      const weights = parseEnum('weights', this.getAttribute('weights'));
      this.#setState('loading');
      this.#showStatus('Starting…');
      const engine = await createEngine({
        model: this.model,
        weights,
        cache: this.cache,
        learnWhileReading: this.learnWhileReading || undefined,
        onProgress: (p) => {
          if (current()) this.#onProgress(p);
        },
      });
      if (!current()) {
        void engine.dispose();
        throw new EngineDestroyedError('<ttt-chat> let go of this engine while it loaded (its model changed or the element left the page)');
      }
      this.#engine = engine;
      this.#loading = null;
      this.#unsubscribe = engine.onStats((s) => {
        if (current()) this.#onStats(s);
      });
      this.#parts.progress.hidden = true;
      this.#showStatus(`Ready: ${engine.info.mode} model, ${engine.info.weights} weights on ${engine.info.adapter}`);
      this.#setState('ready');
      this.dispatchEvent(chatEvent('ready', engine.info));
      engine.stats().then(
        (s) => current() && this.#onStats(s),
        () => undefined,
      );
      return engine;
    } catch (e) {
      if (current()) {
        this.#loading = null;
        this.#openedWith = null;
        this.#parts.progress.hidden = true;
        this.#report(e);
      }
      throw e;
    }
  }

  /** Stops, disposes and forgets the engine (model changed, element removed). */
  #release(): void {
    this.#epoch++;
    this.stop();
    this.#forgetEngine();
    this.#parts.progress.hidden = true;
    this.#showStatus('');
    if (this.#state !== 'unsupported') this.#setState('idle');
  }

  /** Forgets an engine that can no longer work (reported by the caller); the next load() or generate() makes a new one. */
  #dropDeadEngine(): void {
    this.#epoch++;
    this.#forgetEngine();
    this.#setState('error');
  }

  /** Disposes the engine and clears everything that came from it. */
  #forgetEngine(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = null;
    const engine = this.#engine;
    this.#engine = null;
    this.#loading = null;
    this.#openedWith = null;
    this.#stats = null;
    if (engine) void engine.dispose().catch(() => undefined);
    this.#writeReadout(EMPTY_READOUT);
  }

  #report(e: unknown): void {
    const error = asError(e);
    if (this.#reported.has(error)) return;
    this.#reported.add(error);
    const unsupported = error instanceof WebGpuUnavailableError || error.name === 'WebGpuUnavailableError';
    if (unsupported) {
      this.#setState('unsupported');
      this.#showStatus(`This browser cannot run the model: ttt-chat needs WebGPU. ${error.message}`, 'unsupported');
    } else {
      if (!this.#engine) this.#setState('error');
      this.#showStatus(`${error.name}: ${error.message}`, 'error');
    }
    this.dispatchEvent(chatEvent('error', { error, unsupported }));
  }

  #onProgress(p: LoadProgress): void {
    const bar = this.#parts.progress;
    bar.hidden = false;
    if (p.total !== null && p.loaded !== null && p.total > 0) {
      bar.max = p.total;
      bar.value = p.loaded;
    } else {
      bar.removeAttribute('value');
    }
    this.#showStatus(p.message);
    this.dispatchEvent(chatEvent('progress', p));
  }

  #onStats(s: TttStats): void {
    this.#stats = s;
    this.#writeReadout(formatReadout(s));
    this.dispatchEvent(chatEvent('stats', s));
  }

  #writeReadout(r: ReadoutText): void {
    const ro = this.#parts.readout;
    ro.title = r.title;
    for (const key of ['latency', 'speed', 'memory', 'position', 'learning'] as const) {
      const span = ro.querySelector(`[data-stat="${key}"]`);
      if (span) span.textContent = r[key];
    }
  }

  #writeStat(key: string, text: string): void {
    const span = this.#parts.readout.querySelector(`[data-stat="${key}"]`);
    if (span) span.textContent = text;
  }

  #showStatus(text: string, kind: 'info' | 'error' | 'unsupported' = 'info'): void {
    this.#parts.status.textContent = text;
    this.#parts.status.dataset.kind = kind;
  }

  #setState(s: TttChatState): void {
    this.#state = s;
    // Reflected for styling (ttt-chat[state="generating"]) and tests; the element owns this attribute.
    if (this.isConnected) this.setAttribute('state', s);
    this.#syncControls();
  }

  #syncControls(): void {
    const p = this.#parts;
    const running = this.#running !== null;
    const unsupported = this.#state === 'unsupported';
    p.generate.disabled = running || unsupported || !this.model;
    p.stop.disabled = !running;
    p.reset.disabled = running || unsupported;
    p.prompt.disabled = unsupported;
    if (this.isConnected && this.getAttribute('state') !== this.#state) this.setAttribute('state', this.#state);
  }

  #append(part: 'prompt-text' | 'reply-text', text: string): Text {
    const span = this.ownerDocument.createElement('span');
    span.setAttribute('part', part);
    const node = this.ownerDocument.createTextNode(text);
    span.append(node);
    this.#parts.output.append(span);
    this.#scrollToEnd();
    return node;
  }

  #scrollToEnd(): void {
    const out = this.#parts.output;
    out.scrollTop = out.scrollHeight;
  }

  #generateOptions(): GenerateOptions {
    const seed = parseNumber('seed', this.getAttribute('seed'));
    return {
      maxTokens: parseNumber('max-tokens', this.getAttribute('max-tokens')) as number,
      temperature: parseNumber('temperature', this.getAttribute('temperature')) as number,
      topK: parseNumber('top-k', this.getAttribute('top-k')) as number,
      topP: parseNumber('top-p', this.getAttribute('top-p')) as number,
      ...(seed === null ? {} : { seed }),
    };
  }

  #numberOrDefault(name: NumberAttribute): number | null {
    try {
      return parseNumber(name, this.getAttribute(name));
    } catch {
      return parseNumber(name, null);
    }
  }

  #setNumber(name: NumberAttribute, v: number | null): void {
    const text = numberToAttribute(name, v);
    if (text === null) this.removeAttribute(name);
    else this.setAttribute(name, text);
  }

  #enumOrDefault<A extends keyof typeof ENUM_ATTRIBUTES>(name: A): EnumValue<A> {
    try {
      return parseEnum(name, this.getAttribute(name));
    } catch {
      return ENUM_ATTRIBUTES[name].default;
    }
  }
}

// Typed listeners for the element's own events (`error` is a CustomEvent here, not the ErrorEvent of
// HTMLElementEventMap).
export interface TttChatElement {
  addEventListener<K extends keyof TttChatEventMap>(type: K, listener: (this: TttChatElement, ev: TttChatEventMap[K]) => unknown, options?: boolean | AddEventListenerOptions): void;
  addEventListener<K extends keyof HTMLElementEventMap>(type: K, listener: (this: TttChatElement, ev: HTMLElementEventMap[K]) => unknown, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof TttChatEventMap>(type: K, listener: (this: TttChatElement, ev: TttChatEventMap[K]) => unknown, options?: boolean | EventListenerOptions): void;
  removeEventListener<K extends keyof HTMLElementEventMap>(type: K, listener: (this: TttChatElement, ev: HTMLElementEventMap[K]) => unknown, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | EventListenerOptions): void;
}
