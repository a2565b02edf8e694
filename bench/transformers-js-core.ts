/**
 * What the transformers.js comparison (bench/transformers-js.ts, page bench/browser/transformers-js.ts)
 * measures and how it is reported; no Node or DOM API, so both sides load it.
 */
import { runHeader } from './suite-core.ts';
export const TRANSFORMERS_JS_MODEL_NAME = 'bench-llama';

export interface TjsRow {
  readonly contender: 'full-attention' | 'transformers.js';
  readonly context: number;
  /** Prompt in, first new token out. */
  readonly prefillSeconds: number;
  readonly prefillTokensPerSecond: number;
  readonly decodeMsMedian: number;
  readonly decodeMsMin: number;
  readonly decodeSteps: number;
  /** Live buffers on the contender's device(s) at its last token, counted by wrapping createBuffer/destroy. */
  readonly liveGpuBytes: number;
  /** Our engine's allocation report (a check on liveGpuBytes); null for transformers.js. */
  readonly allocatorBytes: number | null;
  /** Pipelines created from the first new token to the last. */
  readonly decodePipelines: number;
  /** The greedy tokens generated. */
  readonly tokens: readonly number[];
}

export interface TjsResult {
  readonly date: string;
  readonly device: string;
  readonly environment: string;
  readonly command: string;
  readonly contexts: readonly number[];
  readonly steps: number;
  readonly rows: readonly TjsRow[];
  readonly seconds: number;
}

const BOS = 256;
const EOS = 257;

/** BOS, then deterministic byte-valued tokens (the suite's stream). */
export function tokenStream(n: number): number[] {
  let s = 0x9e3779b9;
  return [BOS, ...Array.from({ length: n - 1 }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 24))];
}

/**
 * Tokens the two agree on from the start, out of those compared: transformers.js runs with
 * min_new_tokens (no stop at EOS), so the comparison ends at our first EOS, where its EOS logit was masked.
 */
export function greedyAgreement(ours: readonly number[], theirs: readonly number[]): { same: number; compared: number } {
  const eos = ours.indexOf(EOS);
  const compared = Math.min(eos < 0 ? ours.length : eos, theirs.length);
  let same = 0;
  while (same < compared && ours[same] === theirs[same]) same++;
  return { same, compared };
}

export function tjsMarkdown(r: TjsResult): string {
  const mib = (b: number) => (b / 2 ** 20).toFixed(2);
  const lines = [
    ...runHeader(r),
    `decode steps per point: ${r.steps}; run time ${(r.seconds / 60).toFixed(1)} min`,
    '',
    '| contender | context | prefill s | prefill tok/s | decode ms/token (median) | (min) | live GPU MiB | allocator MiB | pipelines in decode | greedy tokens equal |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  for (const x of r.rows) {
    const mine = r.rows.find((y) => y.contender === 'full-attention' && y.context === x.context);
    const other = r.rows.find((y) => y.contender === 'transformers.js' && y.context === x.context);
    const agree = mine && other ? greedyAgreement(mine.tokens, other.tokens) : null;
    const equal = x.contender === 'transformers.js' && agree ? `${agree.same} of ${agree.compared}` : '';
    lines.push(`| ${x.contender === 'full-attention' ? 'ttt-web full attention' : 'transformers.js'} | ${x.context} | ${x.prefillSeconds.toFixed(2)} | ${x.prefillTokensPerSecond.toFixed(0)} | ${x.decodeMsMedian.toFixed(1)} | ${x.decodeMsMin.toFixed(1)} | ${mib(x.liveGpuBytes)} | ${x.allocatorBytes === null ? '' : mib(x.allocatorBytes)} | ${x.decodePipelines} | ${equal} |`);
  }
  lines.push('', '| context | ours vs transformers.js, prefill | decode |', '| ---: | ---: | ---: |');
  for (const c of r.contexts) {
    const mine = r.rows.find((y) => y.contender === 'full-attention' && y.context === c);
    const other = r.rows.find((y) => y.contender === 'transformers.js' && y.context === c);
    if (mine && other) lines.push(`| ${c} | ${(other.prefillSeconds / mine.prefillSeconds).toFixed(2)}x | ${(other.decodeMsMedian / mine.decodeMsMedian).toFixed(2)}x |`);
  }
  return lines.join('\n');
}
