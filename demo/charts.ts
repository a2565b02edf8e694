/**
 * Live line charts over token position (uPlot). Points arrive as fast as the engine makes them; the chart
 * redraws at most once per animation frame, with whatever arrived since the last one.
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface SeriesSpec {
  readonly label: string;
  readonly color: string;
  readonly dash?: number[];
  /** Draw a dot at every point. */
  readonly dots?: boolean;
  /** Draw the line through the points (default true). */
  readonly line?: boolean;
}

export interface ChartSpec {
  readonly yLabel: string;
  readonly height?: number;
  /** Formats y values on the axis and in the legend. */
  readonly format?: (v: number) => string;
  /**
   * Scale y to the bulk of the points: the top is 1.5x the 95th percentile when a few points lie far
   * above it (a shader compiled on first use, a busy machine), so one slow step does not flatten the rest.
   */
  readonly robust?: boolean;
  /** The y axis from this value instead of 0 (losses sit far above 0). */
  readonly fromMin?: boolean;
}

/** A vertical line at x with a label (a model's window edge). */
export interface Marker {
  readonly x: number;
  readonly label: string;
  readonly color: string;
}

/** The y range for `ys`: from 0 to the largest, or to 1.5x the 95th percentile when outliers lie above. */
export function robustTop(ys: readonly number[]): number {
  if (ys.length === 0) return 1;
  const sorted = [...ys].sort((a, b) => a - b);
  const max = sorted[sorted.length - 1];
  const p95 = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.95))];
  return Math.max(max <= 1.5 * p95 ? max : 1.5 * p95, Number.EPSILON) * 1.05;
}

/** The median of the last `size` values pushed: a trend line that spikes do not drag along. */
export class RollingMedian {
  private readonly values: number[] = [];

  constructor(readonly size: number) {}

  push(v: number): number {
    this.values.push(v);
    if (this.values.length > this.size) this.values.shift();
    const s = [...this.values].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  }
}

export class LiveChart {
  private plot: uPlot | null = null;
  private series: SeriesSpec[] = [];
  /** position -> one y (or null) per series: runs that read the same input share their positions. */
  private readonly rows = new Map<number, (number | null)[]>();
  private points = 0;
  private yTop = 1;
  private frame = 0;
  private readonly resize: ResizeObserver;
  private markers: Marker[] = [];

  constructor(private readonly el: HTMLElement, private readonly spec: ChartSpec) {
    this.resize = new ResizeObserver(() => this.plot?.setSize(this.size()));
    this.resize.observe(el);
    this.publish();
  }

  private size(): { width: number; height: number } {
    return { width: Math.max(240, this.el.clientWidth), height: this.spec.height ?? 240 };
  }

  /** Starts over with these series (one per run and quantity); returns their indices. */
  reset(series: readonly SeriesSpec[]): void {
    this.series = [...series];
    this.rows.clear();
    this.points = 0;
    this.plot?.destroy();
    const fmt = this.spec.format ?? ((v: number) => String(v));
    this.plot = new uPlot(
      {
        ...this.size(),
        scales: {
          // From position 0, so that a window edge before the first point still shows.
          x: { time: false, range: (_u, _min, max): uPlot.Range.MinMax => [0, Math.max(1, max)] },
          y: this.spec.robust ? { range: (): uPlot.Range.MinMax => [0, this.yTop] }
            : this.spec.fromMin ? { range: (_u, min, max): uPlot.Range.MinMax => (min < max ? [Math.max(0, min - 0.05 * (max - min)), max + 0.05 * (max - min)] : [0, Math.max(1, max * 1.05)]) }
            : { range: (_u, _min, max): uPlot.Range.MinMax => [0, max > 0 ? max * 1.05 : 1] },
        },
        axes: [
          { label: 'position (tokens in memory)' },
          { label: this.spec.yLabel, size: 64, values: (_u, ticks) => ticks.map((t) => fmt(t)) },
        ],
        series: [
          { label: 'position' },
          ...this.series.map((s) => ({
            label: s.label,
            stroke: s.color,
            dash: s.dash,
            width: 2,
            spanGaps: true,
            ...(s.line === false ? { paths: () => null } : {}),
            points: { show: s.dots ?? false, size: 5, fill: s.color },
            value: (_u: uPlot, v: number | null) => (v === null || v === undefined ? '–' : fmt(v)),
          })),
        ],
        legend: { live: true },
        cursor: { drag: { x: false, y: false } },
        hooks: { draw: [(u: uPlot) => this.drawMarkers(u)] },
      },
      [[], ...this.series.map(() => [])],
      this.el,
    );
    this.publish();
  }

  /** Adds y at `position` to series `index` and schedules a redraw. */
  add(index: number, position: number, y: number): void {
    if (!Number.isFinite(y) || index < 0 || index >= this.series.length) return;
    let row = this.rows.get(position);
    if (!row) {
      row = this.series.map(() => null);
      this.rows.set(position, row);
    }
    if (row[index] === null) this.points++;
    row[index] = y;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.draw());
  }

  /** Replaces every point of series `index` with `points` ([position, y]): for a series whose points move. */
  replace(index: number, points: readonly (readonly [number, number])[]): void {
    if (index < 0 || index >= this.series.length) return;
    for (const [x, row] of this.rows) {
      if (row[index] === null) continue;
      row[index] = null;
      this.points--;
      // An empty row would still stretch the x axis to its position.
      if (row.every((v) => v === null)) this.rows.delete(x);
    }
    for (const [x, y] of points) this.add(index, x, y);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.draw());
  }

  /** Vertical lines (window edges), redrawn with the chart. */
  setMarkers(markers: readonly Marker[]): void {
    this.markers = [...markers];
    this.el.dataset.markers = this.markers.map((m) => `${m.label}@${m.x}`).join(';');
    this.plot?.redraw();
  }

  private drawMarkers(u: uPlot): void {
    const c = u.ctx;
    for (const m of this.markers) {
      const x = u.valToPos(m.x, 'x', true);
      if (!Number.isFinite(x) || x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      c.save();
      c.strokeStyle = m.color;
      c.setLineDash([4, 4]);
      c.lineWidth = 1;
      c.beginPath();
      c.moveTo(x, u.bbox.top);
      c.lineTo(x, u.bbox.top + u.bbox.height);
      c.stroke();
      c.fillStyle = m.color;
      c.font = `${11 * devicePixelRatio}px sans-serif`;
      // uPlot leaves its axis labels' alignment on the context: set ours, and keep the label inside the plot.
      const pad = 4 * devicePixelRatio;
      const fits = x + pad + c.measureText(m.label).width <= u.bbox.left + u.bbox.width;
      c.textAlign = fits ? 'left' : 'right';
      c.textBaseline = 'alphabetic';
      c.fillText(m.label, fits ? x + pad : x - pad, u.bbox.top + 12 * devicePixelRatio);
      c.restore();
    }
  }

  get pointCount(): number {
    return this.points;
  }

  /** [position, y per series] rows, sorted by position: what the chart holds, for inspection. */
  snapshot(): { labels: string[]; rows: [number, ...(number | null)[]][] } {
    const xs = [...this.rows.keys()].sort((a, b) => a - b);
    return { labels: this.series.map((s) => s.label), rows: xs.map((x) => [x, ...this.rows.get(x)!]) };
  }

  private draw(): void {
    this.frame = 0;
    if (!this.plot) return;
    const xs = [...this.rows.keys()].sort((a, b) => a - b);
    const data: (number | null)[][] = [xs];
    for (let i = 0; i < this.series.length; i++) data.push(xs.map((x) => this.rows.get(x)![i]));
    if (this.spec.robust) this.yTop = robustTop(data.slice(1).flat().filter((v): v is number => v !== null));
    this.plot.setData(data as uPlot.AlignedData);
    this.publish();
  }

  /** What the chart holds, as attributes (read by the e2e test and handy in devtools). */
  private publish(): void {
    this.el.dataset.points = String(this.points);
    this.el.dataset.series = String(this.series.length);
  }
}
