#!/usr/bin/env node
// Runs a benchmark from bench/ (TypeScript importing WGSL with `?raw`) through Vite's SSR loader, in Node,
// on Dawn: `npm run bench` (the whole suite), `npm run bench -- decode [--quick]`, `npm run bench -- kernels`. Results print as Markdown
// tables to paste into BENCHMARKS.md, with the adapter and the command line.
import { ensureNodeModules, root } from './ensure-deps.mjs';

ensureNodeModules();
// `npm run bench` alone, or with only flags, runs the whole suite (bench/suite.ts).
const argv = process.argv.slice(2);
const [name, ...rest] = argv.length === 0 || argv[0].startsWith('--') ? ['suite', ...argv] : argv;
const { createServer } = await import('vite');
const server = await createServer({ root, configFile: false, logLevel: 'error', server: { middlewareMode: true, hmr: false }, appType: 'custom' });
try {
  const mod = await server.ssrLoadModule(`/bench/${name}.ts`);
  await mod.main(rest);
} finally {
  await server.close();
}
process.exit(0);
