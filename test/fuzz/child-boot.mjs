// Starts a fuzz target that needs a GPU (test/fuzz/*-cases.ts) in a child process, through Vite's SSR
// loader as the benches run (the shaders are imported with `?raw`). The parent (fuzzInChild in harness.ts)
// watches it: a case that blocks this process is named, the process killed and restarted after that case.
import { fileURLToPath } from 'node:url';
import { createServer } from 'vite';

const root = fileURLToPath(new URL('../../', import.meta.url));
const server = await createServer({ root, configFile: false, logLevel: 'error', server: { middlewareMode: true, hmr: false }, appType: 'custom' });
let code = 0;
try {
  const mod = await server.ssrLoadModule(process.env.TTT_FUZZ_MODULE);
  await mod.main();
} catch (e) {
  console.error(e);
  code = 1;
} finally {
  await server.close().catch(() => {});
}
process.exit(code);
