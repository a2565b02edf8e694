/**
 * The models of one Start, side by side: each model's panel, its series on the two charts, and the two
 * things a run does: read the input (Compare interleaves the models call by call) and generate (one model
 * after the other).
 */
import { ContextOverflowError, type TttStats } from '../src/api/index.ts';
import { RollingMedian, type LiveChart, type SeriesSpec } from './charts.ts';
import { LossCurve } from './loss-curve.ts';
import { prefillPlan, probeInterval } from './plan.ts';
import { formatDuration, formatInt, memoryBreakdown, RunPanel } from './readouts.ts';
import { isAbort, type ModelSession } from './session.ts';
import type { StatusPanel } from './status.ts';

const COLORS = ['#2563eb', '#ea580c', '#16a34a', '#9333ea', '#dc2626'];
/** Runs side by side at most (Compare: the selected model and up to four more of its family). */
export const MAX_RUNS = COLORS.length;
const MB = 1024 * 1024;
/** Tokens of the input shown (dimmed) before the generated text. */
const CONTEXT_TOKENS = 240;
/** Steps the latency chart's line takes the median of: it shows the trend through the spikes. */
const MEDIAN_OF = 9;
const MEMORY_SERIES = [
  ['KV cache', undefined],
  ['fast weights', [8, 4]],
  ['weights', [2, 4]],
  ['other', [12, 4, 2, 4]],
] as const;

export interface Generation {
  readonly maxTokens: number;
  readonly temperature: number;
  /** Text fed after the input before sampling; '' continues it. */
  readonly prompt: string;
}

export interface Run {
  readonly index: number;
  readonly session: ModelSession;
  readonly panel: RunPanel;
  /** The input's token ids (empty after a restore: the document was not read here). */
  readonly ids: number[];
  /** After a cancelled read: the index of the first unread token, fed first when generating. */
  resumeAt: number | null;
  decoding: boolean;
  /** The first stats push of a generation times a multi-token feed when a prompt was given: not a decode step. */
  skipFirst: boolean;
  lastDecodePosition: number;
  /** How the last generation ended, in words. */
  ended: string;
  readonly median: RollingMedian;
  /** Milliseconds this run's prefill calls took (Compare interleaves two runs). */
  prefillMs: number;
  /** Loss by position from the read's per-token log-probabilities. */
  readonly loss: LossCurve;
  unsubscribe: () => void;
}

export class Runs {
  list: Run[] = [];

  constructor(
    private readonly parent: HTMLElement,
    private readonly latency: LiveChart,
    private readonly memory: LiveChart,
    private readonly lossChart: LiveChart,
    private readonly status: StatusPanel,
    /** Called when reading or generating starts: the page enables Cancel or Stop. */
    private readonly onPhase: (phase: 'prefill' | 'decode') => void,
  ) {}

  /**
   * Replaces the runs (panels, chart series, stats listeners) with one per session. `place`: the model's
   * place in its family, which picks its color, so a model keeps its color whichever others run beside it.
   */
  setup(sessions: readonly { session: ModelSession; ids: number[]; place?: number }[]): void {
    for (const r of this.list) {
      r.unsubscribe();
      r.panel.remove();
    }
    this.list = sessions.slice(0, MAX_RUNS).map(({ session, ids, place }, index) => {
      const run: Run = {
        index,
        session,
        panel: new RunPanel(this.parent, session.entry, COLORS[(place ?? index) % COLORS.length]),
        ids,
        resumeAt: null,
        decoding: false,
        skipFirst: false,
        lastDecodePosition: -1,
        ended: '',
        median: new RollingMedian(MEDIAN_OF),
        prefillMs: 0,
        loss: new LossCurve(),
        unsubscribe: () => undefined,
      };
      run.unsubscribe = session.engine.onStats((s) => this.onStats(run, s));
      return run;
    });
    this.latency.reset(this.list.flatMap((r): SeriesSpec[] => [
      { label: `${r.session.entry.name}: each step`, color: r.panel.color, dots: true, line: false },
      { label: `${r.session.entry.name}: median of ${MEDIAN_OF}`, color: r.panel.color },
    ]));
    this.memory.reset(this.list.flatMap((r) => MEMORY_SERIES.map(([what, dash]): SeriesSpec => ({
      label: `${r.session.entry.name}: ${what}`,
      color: r.panel.color,
      dash: dash ? [...dash] : undefined,
    }))));
    this.lossChart.reset(this.list.flatMap((r): SeriesSpec[] => [
      { label: `${r.session.entry.name}: mean of the last ${r.loss.smooth} tokens`, color: r.panel.color },
      { label: `${r.session.entry.name}: mean per position bucket`, color: r.panel.color, dots: true, dash: [2, 3] },
    ]));
    const windows = new Map<number, string[]>();
    for (const r of this.list) {
      const w = r.session.engine.info.window;
      if (w !== null) windows.set(w, [...(windows.get(w) ?? []), r.session.entry.name]);
    }
    // Which models a window belongs to only when the run's models have different windows.
    this.lossChart.setMarkers([...windows].map(([x, names]) => ({ x, label: `window (${x})${windows.size > 1 ? `: ${names.join(', ')}` : ''}`, color: '#6b7280' })));
  }

  /** A read call's log-probabilities: the smoothed line, the bucket means and the readout. */
  private plotLoss(run: Run, start: number, values: Float32Array): void {
    for (const p of run.loss.push(start, values)) this.lossChart.add(2 * run.index, p.position, p.bits);
    this.lossChart.replace(2 * run.index + 1, run.loss.buckets().map((b) => [b.position, b.bits] as const));
    const mean = run.loss.meanBits;
    if (mean !== null) run.panel.set('loss', `${mean.toFixed(3)} over ${formatInt(run.loss.scoredTokens)} tokens`, mean);
  }

  private plotLatency(run: Run, position: number, ms: number): void {
    this.latency.add(2 * run.index, position, ms);
    this.latency.add(2 * run.index + 1, position, run.median.push(ms));
  }

  /** One point per memory category at the stats' position, and the readouts. */
  show(run: Run, s: TttStats): void {
    run.panel.showStats(s);
    const m = memoryBreakdown(s);
    const base = run.index * MEMORY_SERIES.length;
    [m.kv, m.fastWeights, m.weights, m.other].forEach((bytes, i) => this.memory.add(base + i, s.position, bytes / MB));
  }

  private onStats(run: Run, s: TttStats): void {
    run.panel.showStats(s);
    if (!run.decoding || s.position <= run.lastDecodePosition) return;
    run.lastDecodePosition = s.position;
    if (run.skipFirst) {
      run.skipFirst = false;
      return;
    }
    if (s.decodeMsLast !== null) this.plotLatency(run, s.position, s.decodeMsLast);
    this.show(run, s);
  }

  /** The last tokens read, dimmed above the output, so the generated text reads as their continuation. */
  private async showContext(run: Run, end: number): Promise<void> {
    const text = await run.session.engine.decode(run.ids.slice(Math.max(0, end - CONTEXT_TOKENS), end));
    run.panel.setContext(end > CONTEXT_TOKENS ? `…${text}` : text);
  }

  /**
   * Reads every run's input, one prefill call per run in turn, with a one-token probe every few tokens
   * when `probes` (plan.ts). An abort (Cancel) leaves each model holding what it read, and rethrows.
   */
  async read(signal: AbortSignal, label: string, probes: boolean): Promise<void> {
    const runs = this.list;
    const plans = runs.map((r) => prefillPlan(r.ids.length, probes ? probeInterval(r.ids.length) : null));
    const progress = runs.map(() => 0);
    const totals = runs.reduce((a, r) => a + r.ids.length, 0);
    const showStatus = () => {
      const done = progress.reduce((a, b) => a + b, 0);
      this.status.show('reading', {
        title: `Reading ${label}…`,
        message: `${formatInt(done)} of ${formatInt(totals)} tokens${runs.length > 1 ? ` (${runs.length} models, one call each in turn)` : ''}. Cancel stops within one chunk; the models keep what they read.`,
        progress: { value: done, max: totals },
      });
    };
    let callStart = 0;
    const report = (run: Run, done: number, total: number) => {
      progress[run.index] = done;
      const rate = done / Math.max((run.prefillMs + performance.now() - callStart) / 1000, 1e-3);
      run.panel.progress(done, total, `${formatInt(done)} / ${formatInt(total)} tokens · ${formatInt(rate)} tokens/s · ${formatDuration((total - done) / rate)} left`);
      showStatus();
    };
    const steps = runs.map((r, i) =>
      r.session.prefill(r.ids, plans[i], signal, {
        onProgress: (done, total) => report(r, done, total),
        onProbe: (p) => {
          this.plotLatency(r, p.position, p.ms);
          this.show(r, p.stats);
        },
        onLogprobs: (start, values) => this.plotLoss(r, start, values),
      }),
    );
    showStatus();
    this.onPhase('prefill');
    try {
      let active = runs.map((_, i) => i);
      while (active.length) {
        const still: number[] = [];
        for (const i of active) {
          callStart = performance.now();
          const step = await steps[i].next();
          runs[i].prefillMs += performance.now() - callStart;
          if (!step.done) still.push(i);
        }
        active = still;
      }
    } catch (e) {
      await Promise.all(steps.map((g) => g.return(undefined).catch(() => undefined)));
      if (isAbort(e)) await this.cancelled();
      throw e;
    }
    for (const r of runs) {
      const seconds = r.prefillMs / 1000;
      r.panel.progress(r.ids.length, r.ids.length, `read ${formatInt(r.ids.length)} tokens in ${formatDuration(seconds)} · ${formatInt(r.ids.length / seconds)} tokens/s`);
      this.show(r, await r.session.engine.stats());
      await this.showContext(r, r.ids.length);
    }
  }

  private async cancelled(): Promise<void> {
    const held: string[] = [];
    for (const r of this.list) {
      const s = await r.session.engine.stats();
      r.resumeAt = s.position < r.ids.length ? s.position : null;
      r.panel.progress(s.position, r.ids.length, `cancelled: read ${formatInt(s.position)} of ${formatInt(r.ids.length)} tokens`);
      this.show(r, s);
      await this.showContext(r, s.position);
      held.push(`${r.session.entry.name} holds ${formatInt(s.position)}`);
    }
    this.status.show('cancelled', {
      title: 'Reading cancelled',
      message: `${held.join(', ')} of ${formatInt(this.list[0].ids.length)} tokens. Generate more continues from there; Start reads the input again.`,
    });
  }

  /** What a run feeds before sampling: a prompt, the unread rest of a cancelled read, or nothing. */
  private promptFor(run: Run, prompt: string): { input: string | number[]; shown: string } {
    if (prompt) return { input: prompt, shown: prompt };
    if (run.resumeAt !== null) return { input: [run.ids[run.resumeAt]], shown: '' };
    if (run.session.held) return { input: '', shown: '' };
    // Nothing held (after saving or restoring a memory): a line break starts the continuation.
    return { input: '\n', shown: '\n' };
  }

  /** Generates with each run in turn: two engines decoding at once would share the GPU and skew both timings. */
  async generate(signal: AbortSignal, gen: Generation): Promise<void> {
    // Full attention's cache is sized when it loads: refuse now rather than stop half-way.
    for (const run of this.list) {
      const { position } = await run.session.engine.stats();
      const more = gen.maxTokens + gen.prompt.length * 4 + 1;
      if (position + more > run.session.capacity) throw new ContextOverflowError(position, more, run.session.capacity);
    }
    this.onPhase('decode');
    for (const run of this.list) {
      const { input, shown } = this.promptFor(run, gen.prompt);
      run.panel.beginGeneration(shown);
      run.decoding = true;
      run.skipFirst = input !== '';
      run.lastDecodePosition = -1;
      const name = run.session.entry.name;
      let count = 0;
      const progress = () =>
        this.status.show('generating', { title: `Generating with ${name}…`, message: `${count} of ${gen.maxTokens} tokens. Stop ends it after the current token.`, progress: { value: count, max: gen.maxTokens } });
      progress();
      const stream = run.session.engine.generate(input, { maxTokens: gen.maxTokens, temperature: gen.temperature, topP: 0.95, signal });
      try {
        for await (const t of stream) {
          count++;
          run.panel.appendGenerated(t.text);
          progress();
        }
        const result = await stream.result;
        run.session.held = true;
        const why = { length: '', eos: ", ended at the model's end-of-text token", stop: ', ended at a stop string' }[result.reason];
        run.ended = `${result.generatedTokens} tokens${why}`;
      } catch (e) {
        if (isAbort(e)) {
          // Stopped after some tokens, the engine holds the last one, as after a finished generation.
          run.session.held ||= count > 0;
          this.status.show('stopped', { title: 'Generation stopped', message: `${name} stopped after ${count} tokens; what it generated stays in its memory. Generate more continues.` });
        }
        throw e;
      } finally {
        run.decoding = false;
        run.resumeAt = null;
      }
    }
    this.status.show('done', { title: 'Done', message: this.summary() });
  }

  private summary(): string {
    const text = (r: Run, name: string) => r.panel.el.querySelector<HTMLElement>(`[data-readout="${name}"]`)?.textContent ?? '–';
    return this.list
      .map((r) => `${r.session.entry.name}: generated ${r.ended}; ${text(r, 'decode-ms-rolling')} per token (mean of the last 32); KV cache ${text(r, 'mem-kv')}`)
      .join('; ');
  }
}
