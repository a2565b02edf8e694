/**
 * One run's panel: its prefill progress, its readouts (position, speeds, GPU memory by category) and its
 * streamed output. Every readout keeps its raw number in `data-value` beside the formatted text.
 */
import type { TttStats } from '../src/api/index.ts';
import { MODE_LABEL, type ModelEntry } from './catalog.ts';

const MB = 1024 * 1024;
const sig3 = new Intl.NumberFormat('en-US', { maximumSignificantDigits: 3 });
const int = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

export const formatMb = (bytes: number): string => `${sig3.format(bytes / MB)} MB`;
export const formatInt = (n: number): string => int.format(n);
export const formatMs = (ms: number): string => `${ms < 10 ? ms.toFixed(2) : ms.toFixed(1)} ms`;

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < MB) return `${sig3.format(bytes / 1024)} KB`;
  return formatMb(bytes);
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '–';
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  const m = Math.floor(seconds / 60);
  return `${m} min ${Math.round(seconds - m * 60)} s`;
}

/** GPU bytes in the four categories the charts and readouts use. */
export interface MemoryBreakdown {
  readonly weights: number;
  /** KV cache bytes holding live positions (full attention reserves more up front: `kvReserved`). */
  readonly kv: number;
  /** Fast weights, their momentum and the pending chunk: the compressed long memory. */
  readonly fastWeights: number;
  /** Activations and scratch buffers. */
  readonly other: number;
  readonly kvReserved: number;
  readonly total: number;
}

export function memoryBreakdown(s: TttStats): MemoryBreakdown {
  const m = s.memory;
  return {
    weights: m.weights,
    kv: s.kvBytesInUse,
    fastWeights: m.fastWeights + m.momentum + m.pending,
    other: m.activations + m.scratch,
    kvReserved: m.kv,
    total: m.total,
  };
}

const READOUTS = [
  ['position', 'position'],
  ['loss', 'loss so far (bits/token)'],
  ['learning', 'inner steps (chunk loss before → after, bits/token)'],
  ['prefill-tps', 'prefill tokens/s'],
  ['decode-ms', 'decode ms/token (last)'],
  ['decode-ms-rolling', 'decode ms/token (mean of 32)'],
  ['mem-weights', 'GPU MB: weights'],
  ['mem-kv', 'GPU MB: KV cache in use'],
  ['mem-fast', 'GPU MB: fast weights'],
  ['mem-other', 'GPU MB: other'],
  ['mem-total', 'GPU MB: total allocated'],
  ['kv-reserved', 'KV cache reserved'],
  ['weights-storage', 'weights on the GPU'],
  ['features', 'kernels use'],
  ['timing', 'times measured by'],
  ['memory-size', 'memory to save now'],
  ['saved', 'saved memory'],
] as const;
export type ReadoutName = (typeof READOUTS)[number][0];

const SVG = 'http://www.w3.org/2000/svg';
const SPARK_W = 160, SPARK_H = 32;

/** Two polylines over the updates: the loss before each step (solid) and after it (dashed), one y scale. */
function sparkline(ups: readonly { loss: number; lossAfter: number | null }[], color: string): SVGElement[] {
  const ys = ups.flatMap((u) => (u.lossAfter === null ? [u.loss] : [u.loss, u.lossAfter]));
  if (ys.length === 0) return [];
  const lo = Math.min(...ys), hi = Math.max(...ys), span = hi - lo || 1;
  const x = (i: number) => (ups.length === 1 ? SPARK_W / 2 : (i / (ups.length - 1)) * (SPARK_W - 4) + 2);
  const y = (v: number) => SPARK_H - 2 - ((v - lo) / span) * (SPARK_H - 4);
  const line = (vals: (number | null)[], dash: boolean) => {
    const p = document.createElementNS(SVG, 'polyline');
    p.setAttribute('points', vals.map((v, i) => (v === null ? '' : `${x(i).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean).join(' '));
    p.setAttribute('fill', 'none');
    p.setAttribute('stroke', color);
    p.setAttribute('stroke-width', '1.5');
    if (dash) p.setAttribute('stroke-dasharray', '3 2');
    return p;
  };
  const out = [line(ups.map((u) => u.loss), false)];
  if (ups.some((u) => u.lossAfter !== null)) out.push(line(ups.map((u) => u.lossAfter), true));
  return out;
}

export class RunPanel {
  readonly el: HTMLElement;
  private readonly values = new Map<ReadoutName, HTMLElement>();
  private readonly bar: HTMLProgressElement;
  private readonly progressText: HTMLElement;
  private readonly out: HTMLElement;
  private readonly context: HTMLElement;
  private generated: HTMLElement | null = null;
  private readonly spark: SVGSVGElement;

  constructor(parent: HTMLElement, readonly entry: ModelEntry, readonly color: string) {
    const el = (this.el = document.createElement('article'));
    el.className = 'run';
    el.dataset.model = entry.name;
    el.dataset.mode = entry.mode;
    const h = document.createElement('h3');
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.style.background = color;
    const mode = document.createElement('small');
    mode.textContent = entry.learnWhileReading ? `${MODE_LABEL[entry.mode]}, learning while reading` : MODE_LABEL[entry.mode];
    h.append(swatch, `${entry.name} `, mode);

    const progress = document.createElement('div');
    progress.className = 'prefill';
    this.bar = document.createElement('progress');
    this.bar.max = 1;
    this.bar.value = 0;
    this.progressText = document.createElement('span');
    this.progressText.className = 'prefill-text';
    progress.append(this.bar, this.progressText);

    const dl = document.createElement('dl');
    dl.className = 'readouts';
    for (const [name, label] of READOUTS) {
      const dt = document.createElement('dt');
      dt.textContent = label;
      const dd = document.createElement('dd');
      dd.dataset.readout = name;
      dd.textContent = '–';
      this.values.set(name, dd);
      dl.append(dt, dd);
    }

    this.spark = document.createElementNS(SVG, 'svg');
    this.spark.classList.add('spark');
    this.spark.setAttribute('viewBox', `0 0 ${SPARK_W} ${SPARK_H}`);
    this.spark.setAttribute('aria-label', 'inner steps: chunk loss before (solid) and after (dashed) each step');
    this.values.get('learning')!.after(this.spark);

    const out = (this.out = document.createElement('pre'));
    out.className = 'output';
    this.context = document.createElement('span');
    this.context.className = 'context';
    out.append(this.context);

    el.append(h, progress, dl, out);
    parent.append(el);
  }

  set(name: ReadoutName, text: string, value?: number): void {
    const dd = this.values.get(name)!;
    dd.textContent = text;
    if (value === undefined) delete dd.dataset.value;
    else dd.dataset.value = String(value);
  }

  /** The readouts that come from the engine's stats. */
  showStats(s: TttStats): void {
    this.set('position', formatInt(s.position), s.position);
    if (s.prefillTokensPerSecond !== null) this.set('prefill-tps', formatInt(s.prefillTokensPerSecond), s.prefillTokensPerSecond);
    if (s.decodeMsLast !== null) this.set('decode-ms', formatMs(s.decodeMsLast), s.decodeMsLast);
    if (s.decodeMsRolling !== null) this.set('decode-ms-rolling', formatMs(s.decodeMsRolling), s.decodeMsRolling);
    const m = memoryBreakdown(s);
    this.set('mem-weights', formatMb(m.weights), m.weights / MB);
    this.set('mem-kv', formatMb(m.kv), m.kv / MB);
    this.set('mem-fast', formatMb(m.fastWeights), m.fastWeights / MB);
    this.set('mem-other', formatMb(m.other), m.other / MB);
    this.set('mem-total', formatMb(m.total), m.total / MB);
    const cap = s.info.capacity;
    this.set('kv-reserved', Number.isFinite(cap) ? `${formatMb(m.kvReserved)} for ${formatInt(cap)} positions (maxContext)` : `${formatMb(m.kvReserved)}: the window, at any length`, m.kvReserved / MB);
    this.set('weights-storage', s.info.weights);
    const f16 = s.info.weights === 'f16' ? 'native f16' : s.info.weights === 'f16-packed' ? 'f16 unpacked in the shader (no shader-f16)' : 'f32 only';
    this.set('features', `${f16}; subgroups: ${s.info.subgroups ? 'yes' : 'no'}; kernels: ${s.info.kernels === 'cpu' ? 'CPU-emulator shapes' : 'GPU shapes'}; GPU timestamps: ${s.timingSource === 'timestamp-query' ? 'yes' : 'no'}`);
    this.set('timing', s.timingSource === 'timestamp-query' ? 'wall clock, + GPU timestamps' : 'wall clock (no GPU timestamps)');
    this.showLearning(s);
    const constant = !Number.isFinite(s.info.capacity);
    this.set('memory-size', `${formatBytes(s.savedMemoryBytes)}${constant ? ': the same at any length' : ': grows with every token'}`, s.savedMemoryBytes);
  }

  /**
   * A model that learns by gradient steps while it reads: how many steps, the last chunk's loss before and
   * after its step, and a sparkline of the recent ones (solid: before, dashed: after).
   */
  private showLearning(s: TttStats): void {
    const l = s.learning;
    if (!l) {
      // LaCT learns too, but its inner loss scores fast-weight reconstructions, not the next token: nothing comparable to show.
      this.set('learning', s.info.mode === 'ttt' ? 'fast weights: one gradient step per chunk (no next-token loss to show)' : 'none: this model does not learn while reading');
      this.spark.replaceChildren();
      return;
    }
    const bits = (nats: number) => nats / Math.LN2;
    const last = l.recent[l.recent.length - 1];
    if (!last) {
      this.set('learning', 'no chunk complete yet', 0);
      return;
    }
    const after = last.lossAfter === null ? '' : ` → ${bits(last.lossAfter).toFixed(2)}`;
    this.set('learning', `${formatInt(l.updates)} steps; chunk ${formatInt(last.chunk)}: ${bits(last.loss).toFixed(2)}${after}`, l.updates);
    this.spark.replaceChildren(...sparkline(l.recent.slice(-64), this.color));
  }

  progress(done: number, total: number, text: string): void {
    this.bar.max = Math.max(1, total);
    this.bar.value = Math.min(done, total);
    this.bar.dataset.done = String(done);
    this.bar.dataset.total = String(total);
    this.progressText.textContent = text;
  }

  /** The end of what the model read, dimmed, so that the generated text reads as its continuation. */
  setContext(text: string): void {
    this.context.textContent = text;
  }

  /** Starts the output of one generation: its prompt (if any), then a span the tokens stream into. */
  beginGeneration(prompt: string): void {
    if (prompt) {
      const p = document.createElement('span');
      p.className = 'prompt';
      p.textContent = prompt;
      this.out.append(p);
    }
    this.generated = document.createElement('span');
    this.generated.className = 'generated';
    this.out.append(this.generated);
  }

  appendGenerated(text: string): void {
    if (!text) return;
    if (!this.generated) this.beginGeneration('');
    this.generated!.append(text);
    this.out.scrollTop = this.out.scrollHeight;
  }

  remove(): void {
    this.el.remove();
  }
}
