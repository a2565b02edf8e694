// Fuzz: damaged tokenizer files (issue: fuzz tests in the suite), for a config with "tokenizer":
// "tokenizer.json": the JSON damaged or not an object, fields removed or of the wrong type, vocabularies
// with ids that are negative, fractional, duplicated or beyond the model's vocab_size, merges and added
// tokens that make no sense, odd pre-tokenizers/decoders/normalizers, a tokenizer_config.json beside it.
// Each case, through both loaders in a worker thread, ends in a ModelFormatError subclass within the time
// limit, or loads a tokenizer that encodes, decodes and stream-decodes the probe texts without a raw error
// (and a model the CPU reference runs).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoFailures, assertOutcomes, checkLoad, fuzz, fuzzPlan, LoaderWorker } from './harness.ts';
import { base, files, PROBES, sweepCase, SWEEP_CASES, tokenizerCase } from './tokenizer-cases.ts';

describe('fuzz: damaged tokenizer.json files end in named errors', () => {
  const worker = new LoaderWorker();
  beforeAll(async () => {
    const r = await worker.load(files({ what: 'the model', tokenizer: JSON.stringify(base.tokenizer) }), 30_000, PROBES);
    expect(checkLoad(r, { mustLoad: true })).toBe('loaded');
  });
  afterAll(() => worker.close());

  it('every id edge (negative, fractional, string, null, huge up to 2^53) in the vocabulary, for a new token and in added_tokens; every field removed', async () => {
    const plan = { ...fuzzPlan({ seed: 0, cases: 0 }), seed: 0, cases: SWEEP_CASES }; // a sweep: case i alone says what it is
    const report = await fuzz('tokenizer.json id sweep', plan, sweepCase, async (c) => checkLoad(await worker.load(files(c), plan.caseMs, PROBES)));
    assertNoFailures(report);
    assertOutcomes(report, ['TokenizerError', 'loaded']);
  });

  it('damaged JSON, missing and mistyped fields, wrong vocabularies and ids, odd components, tokenizer_config.json, vocab_size', async () => {
    const plan = fuzzPlan({ seed: 5, cases: 200 });
    const report = await fuzz('tokenizer.json', plan, tokenizerCase, async (c) => checkLoad(await worker.load(files(c), plan.caseMs, PROBES)));
    assertNoFailures(report);
    assertOutcomes(report, ['TokenizerError', 'loaded']);
  });
});
