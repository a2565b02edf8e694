// Fuzz: damaged config.json files (issue: fuzz tests in the suite). Every key the LaCT format reads set to
// random values and types (negative, zero, huge, float, string, null, arrays, objects, deep nesting) or
// removed, random extra keys, JSON that is not an object, text that is not JSON; over four fixtures (TTT
// all on, all off, sliding window, full attention). Each case, through both loaders in a worker thread,
// ends in a ModelFormatError subclass within the time limit, or loads a model the CPU reference runs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoFailures, assertOutcomes, checkLoad, fuzz, fuzzPlan, LoaderWorker } from './harness.ts';
import { bases, configCase, files, sweepCase, SWEEP_CASES } from './config-cases.ts';

describe('fuzz: damaged config.json files end in named errors', () => {
  const worker = new LoaderWorker();
  const digests: string[] = [];
  beforeAll(async () => {
    for (const b of bases) {
      const r = await worker.load({ 'config.json': JSON.stringify(b.config), 'model.safetensors': b.weights }, 30_000);
      expect(checkLoad(r, { mustLoad: true }), b.name).toBe('loaded');
      digests.push((r as { load: { digest: string } }).load.digest);
    }
  });
  afterAll(() => worker.close());

  it('every key, one at a time, removed or set to each edge value (negative, zero, huge, float, string, null, bool, array, object, deep nesting)', async () => {
    const plan = { ...fuzzPlan({ seed: 0, cases: 0 }), seed: 0, cases: SWEEP_CASES }; // a sweep: case i alone says what it is
    const report = await fuzz('config.json key sweep', plan, sweepCase, async (c) => checkLoad(await worker.load(files(c), plan.caseMs), c));
    assertNoFailures(report);
    assertOutcomes(report, ['ConfigError', 'loaded']);
  });

  it('random values and types for every key, removed keys, extra keys, non-object JSON, invalid JSON', async () => {
    const plan = fuzzPlan({ seed: 3, cases: 200 });
    const report = await fuzz('config.json', plan, configCase, async (c) =>
      checkLoad(await worker.load(files(c), plan.caseMs), { ...c, ...(c.same ? { digest: digests[c.fixture] } : {}) }),
    );
    assertNoFailures(report);
    assertOutcomes(report, ['ConfigError', 'loaded']);
  });
});
