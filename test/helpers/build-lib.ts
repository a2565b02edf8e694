/**
 * The library's JavaScript as the package ships it (vite.lib.config.ts: minified, every dependency and
 * the engine worker inlined), built into a folder of the caller's (a temporary one), so a test does not
 * race another test or a developer over dist/lib. Types are not built (scripts/build-lib.mjs does that).
 */
import { resolve } from 'node:path';

export async function buildLibraryTo(outDir: string): Promise<void> {
  const root = resolve('.');
  const { build } = await import('vite');
  await build({ configFile: resolve(root, 'vite.lib.config.ts'), root, logLevel: 'warn', build: { outDir, emptyOutDir: true } });
}
