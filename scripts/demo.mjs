#!/usr/bin/env node
// The demo command (README Quick start): installs npm packages if missing, then serves the demo page
// with Vite on http://127.0.0.1:5173 (or --port N). Stop it with Ctrl-C.
import { ensureNodeModules, root } from './ensure-deps.mjs';

ensureNodeModules();
const portArg = process.argv.indexOf('--port');
const port = portArg > 0 ? Number(process.argv[portArg + 1]) : 5173;
const { createServer } = await import('vite');
const server = await createServer({ root: `${root}/demo`, configFile: `${root}/vite.config.ts`, server: { port, strictPort: false } });
await server.listen();
const url = server.resolvedUrls?.local[0] ?? `http://127.0.0.1:${port}/`;
console.log(`ttt-web demo: ${url}`);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close().then(() => process.exit(0)));
