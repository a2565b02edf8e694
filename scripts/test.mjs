#!/usr/bin/env node
// The one test command (README Quick start, and .ci/run): installs what is missing, runs every Vitest
// suite (Node + Dawn, and Playwright driving Debian's Chromium), then prints the closing line
// `N passed, N failed` that CI reads. Extra arguments go to Vitest (e.g. a file filter). Before that line
// it lists the test variants that did not run for want of an adapter feature (test/helpers/gpu.ts
// hasFeature writes them to test-results/uncovered.txt), so a smaller adapter cannot pass silently.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ensureNodeModules, ensureSystemPackages, readJson, root } from './ensure-deps.mjs';

ensureNodeModules();
ensureSystemPackages();

const resultsDir = join(root, 'test-results');
mkdirSync(resultsDir, { recursive: true });
const jsonFile = join(resultsDir, 'vitest.json');
const uncoveredFile = join(resultsDir, 'uncovered.txt');
rmSync(uncoveredFile, { force: true });

const vitest = join(root, 'node_modules', 'vitest', 'vitest.mjs');
const r = spawnSync(
  process.execPath,
  [vitest, 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${jsonFile}`, ...process.argv.slice(2)],
  { cwd: root, stdio: 'inherit', env: { ...process.env, FORCE_COLOR: process.env.CI ? '0' : process.env.FORCE_COLOR } },
);

let passed = 0;
let failed = 0;
if (existsSync(jsonFile)) {
  const report = readJson(jsonFile);
  passed = report.numPassedTests ?? 0;
  failed = (report.numFailedTests ?? 0) + (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  // A suite that failed to load has no tests counted; count it as a failure so it cannot go unseen.
  for (const suite of report.testResults ?? []) {
    if (suite.status === 'failed' && (suite.assertionResults ?? []).length === 0) failed += 1;
  }
}
if (existsSync(uncoveredFile)) {
  const lines = [...new Set(readFileSync(uncoveredFile, 'utf8').split('\n').filter((l) => l.trim()))];
  if (lines.length) {
    console.log(`\nNot covered on this adapter (${lines.length} test variant${lines.length === 1 ? '' : 's'} skipped for want of a feature):`);
    for (const l of lines) console.log(`  - ${l}`);
  }
}
if (r.status !== 0 && failed === 0) failed = 1;
if (passed === 0 && failed === 0) failed = 1; // ran no test: a failure, never a silent pass
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || r.status !== 0 ? 1 : 0);
