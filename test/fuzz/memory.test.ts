// Fuzz: damaged saved memories fed to Engine.loadMemory on a real engine (issue: fuzz tests in the suite).
// The cases run in a child process (test/fuzz/memory-cases.ts, through fuzzInChild), so that a blob that
// blocks the engine's thread is named rather than hanging the suite. Every case ends in MemoryCorruptError
// or MemoryMismatchError with the engine's state unchanged, or in a correct load; afterwards each engine
// holds its state and generates what a fresh one does.
import { describe, it } from 'vitest';
import { assertNoFailures, assertOutcomes, fuzzInChild, fuzzPlan } from './harness.ts';

describe('fuzz: damaged memory blobs are refused by name and leave the engine as it was', () => {
  it('flips, truncations, blobs with a valid checksum around damaged header fields and section tables, non-Uint8Array inputs', async () => {
    const plan = fuzzPlan({ seed: 13, cases: 220, budgetMs: 35_000 });
    const report = await fuzzInChild('memory blobs', '/test/fuzz/memory-cases.ts', plan);
    assertNoFailures(report);
    assertOutcomes(report, ['MemoryCorruptError', 'MemoryMismatchError', 'loaded']);
  }, 300_000);
});
