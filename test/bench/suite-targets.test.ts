/**
 * The benchmark suite's target checks and flags (bench/suite-core.ts): they decide what BENCHMARKS.md says
 * was met, so a wrong ratio or a flipped comparison would misreport every run. Pure functions: no GPU.
 */
import { describe, expect, it } from 'vitest';
import { checkTargets, parseSuiteArgs, type SuiteRow } from '../../bench/suite-core.ts';

function row(contender: string, context: number, prefillSeconds: number, decodeMedian: number, gpuBytes: number): SuiteRow {
  return {
    contender,
    runtime: contender.startsWith('ort') ? 'onnxruntime-web' : 'ttt-web',
    mixer: contender.startsWith('ort') ? 'full-attention' : (contender as SuiteRow['mixer']),
    context,
    prefillSeconds,
    prefillTokensPerSecond: context / prefillSeconds,
    decodeMs: { min: decodeMedian, median: decodeMedian, mean: decodeMedian, steps: 32 },
    gpuBytes,
    gpuBytesPeak: gpuBytes,
    allocatorBytes: contender.startsWith('ort') ? null : gpuBytes,
    sizedForContextBytes: null,
    decodePipelines: 0,
    pipelinesSoFar: 0,
    kvBytesInUse: 0,
  };
}

const met = (targets: ReturnType<typeof checkTargets>, start: string) => targets.find((t) => t.target.startsWith(start))?.met;

describe('benchmark suite targets', () => {
  it('reads the ratios at the longest context and every length, in the right direction', () => {
    const rows = [
      row('ttt', 1024, 1, 4.0, 1000), row('ttt', 4096, 4, 4.2, 1000), row('ttt', 16384, 16, 4.4, 1000),
      row('full-attention', 1024, 1, 5, 2000), row('full-attention', 4096, 8, 12, 5000), row('full-attention', 16384, 48, 30, 17000),
      row('ort-fused', 1024, 2, 10, 9000), row('ort-fused', 4096, 9, 20, 9000), row('ort-fused', 16384, 40, 60, 9000),
    ];
    const t = checkTargets(rows);
    expect(t.find((x) => x.target.startsWith('TTT prefill'))!.measured).toBe('3.00x'); // 48 / 16
    expect(met(t, 'TTT prefill')).toBe(true);
    expect(t.find((x) => x.target.startsWith('TTT decode vs'))!.measured).toBe('6.82x'); // 30 / 4.4
    expect(met(t, 'TTT decode vs')).toBe(true);
    expect(met(t, 'TTT decode ms/token flat')).toBe(true); // worst 10%
    expect(met(t, 'TTT GPU bytes constant')).toBe(true);
    expect(met(t, 'full-attention GPU bytes grow linearly')).toBe(true); // 1000 + 1 byte/token·(N - 1024)
    // Ours is faster at 1K and 4K but slower at 16K (48 s against 40): not met.
    expect(met(t, 'our full attention prefill faster than onnxruntime-web (fused)')).toBe(false);
    expect(met(t, 'our full attention decode faster than onnxruntime-web (fused)')).toBe(true);
  });

  it('reports misses: decode drifting 20%, bytes that grow, slow TTT', () => {
    const rows = [
      row('ttt', 1024, 1, 4.0, 1000), row('ttt', 8192, 9, 4.8, 1100),
      row('full-attention', 1024, 1, 5, 2000), row('full-attention', 4096, 2, 9, 3000), row('full-attention', 8192, 9, 20, 9000),
    ];
    const t = checkTargets(rows);
    expect(met(t, 'TTT prefill')).toBe(false);
    expect(met(t, 'TTT decode vs')).toBe(false);
    expect(met(t, 'TTT decode ms/token flat')).toBe(false);
    expect(met(t, 'TTT GPU bytes constant')).toBe(false);
    expect(met(t, 'full-attention GPU bytes grow linearly')).toBe(false); // 3000 at 4K is far off the line
  });

  it('checks our full attention against the shared-buffer graph too, and the linear growth on an engine made for each N', () => {
    const sized = (r: SuiteRow, bytes: number): SuiteRow => ({ ...r, sizedForContextBytes: bytes });
    const rows = [
      sized(row('full-attention', 1024, 1, 5, 50000), 2000), sized(row('full-attention', 4096, 8, 12, 50000), 5072),
      sized(row('full-attention', 16384, 48, 30, 50000), 17360),
      row('ort-shared', 1024, 0.5, 10, 60000), row('ort-shared', 4096, 9, 20, 60000), row('ort-shared', 16384, 50, 60, 60000),
    ];
    const t = checkTargets(rows);
    // Live bytes of the engine made for the longest context are flat; the engines made for N grow by 1 byte a token.
    expect(met(t, 'full-attention GPU bytes grow linearly')).toBe(true);
    expect(met(t, 'our full attention prefill faster than onnxruntime-web (shared)')).toBe(false); // 1 s against 0.5 at 1K
    expect(t.find((x) => x.target.startsWith('our full attention prefill faster than onnxruntime-web (shared)'))!.measured).toBe('0.50x / 1.13x / 1.04x');
    expect(met(t, 'our full attention decode faster than onnxruntime-web (shared)')).toBe(true);
  });

  it('checks its flags', () => {
    expect(parseSuiteArgs([]).contexts).toEqual([1024, 2048, 4096, 8192, 16384, 32768]);
    expect(parseSuiteArgs([]).ort).toEqual(['shared', 'fused']);
    expect(parseSuiteArgs(['--ort', 'shared,fused,plain']).ort).toEqual(['shared', 'fused', 'plain']);
    expect(parseSuiteArgs(['--ort', 'none']).ort).toEqual([]);
    expect(() => parseSuiteArgs(['--steps', '8'])).toThrow(/at least 32/);
    expect(() => parseSuiteArgs(['--contexts', '1024,abc'])).toThrow(/--contexts/);
    expect(() => parseSuiteArgs(['--ort', 'turbo'])).toThrow(/--ort/);
    expect(() => parseSuiteArgs(['--modes', 'mamba'])).toThrow(/--modes/);
    expect(() => parseSuiteArgs(['--weights', 'int8'])).toThrow(/--weights/);
    expect(parseSuiteArgs([]).variant).toBe('auto');
    expect(parseSuiteArgs(['--kernels', 'gpu']).variant).toBe('gpu');
    expect(parseSuiteArgs(['--kernels', 'cpu']).variant).toBe('cpu');
    expect(() => parseSuiteArgs(['--kernels', 'tpu'])).toThrow(/--kernels: 'tpu' is not a kernel variant/);
    expect(() => parseSuiteArgs(['--no-kernels'])).toThrow(/--no-kernel-bench/);
  });
});
