// Fuzz: damaged safetensors files (issue: fuzz tests in the suite). Headers (bytes, the length field,
// truncation, the JSON's dtypes, shapes, offsets, tensors, __metadata__, numbers and nesting) and tensor
// data (NaN/Inf, other flipped bytes, truncation, extra bytes), each through both loaders in a worker
// thread: every case ends in a ModelFormatError subclass (the same one from both loaders) within the
// time limit, or loads a model the CPU reference runs. Seeds are fixed; see harness.ts to replay a case.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoFailures, assertOutcomes, checkLoad, fuzz, fuzzPlan, LoaderWorker } from './harness.ts';
import { base, dataCase, headerCase, withWeights, type StCase } from './safetensors-cases.ts';

describe('fuzz: damaged safetensors files end in named errors', () => {
  const worker = new LoaderWorker();
  let baseDigest = '';
  beforeAll(async () => {
    const r = await worker.load(base.files, 30_000);
    expect(checkLoad(r, { mustLoad: true })).toBe('loaded');
    baseDigest = (r as { load: { digest: string } }).load.digest;
  });
  afterAll(() => worker.close());

  const headers = fuzzPlan({ seed: 7, cases: 180 });
  const data = fuzzPlan({ seed: 11, cases: 60 });
  const check = async (c: StCase): Promise<string> =>
    checkLoad(await worker.load(withWeights(c.weights), headers.caseMs), { ...c, ...(c.same ? { digest: baseDigest } : {}) });

  it('headers: flipped bytes, length fields that lie, truncation, JSON mutations (dtypes, shapes, offsets, tensors, __metadata__, numbers, nesting)', async () => {
    const report = await fuzz('safetensors headers', headers, headerCase, check);
    assertNoFailures(report);
    assertOutcomes(report, ['HeaderMalformedError', 'FileTruncatedError', 'UnsupportedDtypeError', 'loaded']);
  });

  it('tensor data: NaN/Inf in F32, F16 and BF16, other flipped bytes (which must load), truncation, extra bytes', async () => {
    const report = await fuzz('safetensors data', data, dataCase, check);
    assertNoFailures(report);
    assertOutcomes(report, ['NonFiniteWeightError', 'loaded']);
  });
});
