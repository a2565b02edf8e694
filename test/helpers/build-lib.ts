/**
 * The library's JavaScript as the package ships it (vite.lib.config.ts: minified, every dependency and
 * the engine worker inlined), built into a folder of the caller's (a temporary one), so a test does not
 * race another test or a developer over dist/lib. Types are not built (scripts/build-lib.mjs does that).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { serveStatic, type StaticServer } from './static-server.ts';

export async function buildLibraryTo(outDir: string): Promise<void> {
  const root = resolve('.');
  const { build } = await import('vite');
  await build({ configFile: resolve(root, 'vite.lib.config.ts'), root, logLevel: 'warn', build: { outDir, emptyOutDir: true } });
}

/**
 * Pages that use the built library, served from a temporary folder: `pages` (file name → text) at `/`,
 * the library at `/lib/`, the bundled models at `/models/`. `close()` stops the server and removes the
 * folder.
 */
export async function serveLibraryPages(prefix: string, pages: Readonly<Record<string, string>>): Promise<{ server: StaticServer; close(): Promise<void> }> {
  const work = mkdtempSync(join(tmpdir(), prefix));
  try {
    await buildLibraryTo(join(work, 'lib'));
    for (const [name, text] of Object.entries(pages)) writeFileSync(join(work, name), text);
    const server = await serveStatic({ '/': work, '/lib/': join(work, 'lib'), '/models/': resolve('public/models') });
    return {
      server,
      async close() {
        await server.close();
        rmSync(work, { recursive: true, force: true });
      },
    };
  } catch (e) {
    rmSync(work, { recursive: true, force: true });
    throw e;
  }
}
