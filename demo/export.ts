/**
 * A run's data, for people who want to plot it themselves: the points of the three charts (loss by
 * position, decode latency, GPU memory) as JSON, or as CSV in long form (one line per point). DOM-free;
 * the page turns the text into a download.
 */

export interface ChartData {
  readonly labels: readonly string[];
  readonly rows: readonly (readonly [number, ...(number | null)[]])[];
}

export interface ExportModel {
  readonly name: string;
  readonly mode: string;
  readonly window: number | null;
  /** Mean bits per token over the positions scored. */
  readonly lossBits: number | null;
  readonly tokensRead: number;
}

export interface RunExport {
  readonly exported: string;
  readonly document: string;
  readonly adapter: string;
  readonly models: readonly ExportModel[];
  readonly charts: Readonly<Record<string, ChartData>>;
}

const UNITS: Readonly<Record<string, string>> = { loss: 'bits per token', latency: 'ms per token', memory: 'MB' };

export function exportJson(run: RunExport): string {
  return JSON.stringify({ ...run, units: UNITS }, null, 1);
}

/** chart,series,position,value: every non-empty point of every chart. */
export function exportCsv(run: RunExport): string {
  const lines = ['chart,series,position,value,unit'];
  for (const [chart, data] of Object.entries(run.charts)) {
    for (const row of data.rows) {
      const [x, ...ys] = row;
      ys.forEach((y, i) => {
        if (y !== null) lines.push(`${csvCell(chart)},${csvCell(data.labels[i])},${x},${y},${csvCell(UNITS[chart] ?? '')}`);
      });
    }
  }
  return `${lines.join('\n')}\n`;
}

function csvCell(s: string): string {
  return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** Parses exportCsv's output back into points (for tests and for a reader's own checks). */
export function parseExportCsv(text: string): { chart: string; series: string; position: number; value: number }[] {
  const out = [];
  const lines = text.trim().split('\n').slice(1);
  for (const line of lines) {
    const cells: string[] = [];
    let cur = '', quoted = false;
    for (let i = 0; i < line.length; i++) {
      const ch = line[i];
      if (quoted) {
        if (ch === '"' && line[i + 1] === '"') { cur += '"'; i++; } else if (ch === '"') quoted = false; else cur += ch;
      } else if (ch === '"') quoted = true;
      else if (ch === ',') { cells.push(cur); cur = ''; } else cur += ch;
    }
    cells.push(cur);
    out.push({ chart: cells[0], series: cells[1], position: Number(cells[2]), value: Number(cells[3]) });
  }
  return out;
}
