// Fuzz: damaged model folders through createEngine on one device (issue: fuzz tests in the suite). The
// safetensors, config.json and tokenizer.json cases of the loader fuzz, and config values that size the
// engine, run in a child process (test/fuzz/engine-cases.ts, through fuzzInChild): each ends in the error
// class the loader gives for the same folder, or in an engine that generates (or DeviceLimitError /
// OutOfGpuMemoryError); afterwards a good engine on the same device generates what a fresh one does.
import { describe, it } from 'vitest';
import { assertNoFailures, assertOutcomes, fuzzInChild, fuzzPlan } from './harness.ts';

describe('fuzz: damaged model folders through createEngine end in named errors and leave the device usable', () => {
  it('safetensors, config.json and tokenizer.json damage, and configs that size the engine, on one device', async () => {
    const plan = fuzzPlan({ seed: 17, cases: 150, caseMs: 20_000, budgetMs: 40_000 });
    const report = await fuzzInChild('createEngine', '/test/fuzz/engine-cases.ts', plan);
    assertNoFailures(report);
    assertOutcomes(report, ['loaded', 'DeviceLimitError'], 5);
  }, 300_000);
});
