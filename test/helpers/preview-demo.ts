/**
 * The demo as a visitor gets it: `vite build` into a temporary folder, served by `vite preview` on a free
 * port. About a second to build; the folder is removed on stop.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build, preview } from 'vite';
import type { DemoServer } from './serve-demo.ts';

async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => done(port));
    });
  });
}

export async function buildAndPreviewDemo(): Promise<DemoServer & { outDir: string }> {
  const root = resolve('.');
  const configFile = join(root, 'vite.config.ts');
  const outDir = mkdtempSync(join(tmpdir(), 'ttt-demo-build-'));
  try {
    await build({ configFile, root: join(root, 'demo'), logLevel: 'warn', build: { outDir, emptyOutDir: true } });
    const server = await preview({ configFile, root: join(root, 'demo'), logLevel: 'warn', build: { outDir }, preview: { port: await freePort(), strictPort: true, open: false } });
    const url = server.resolvedUrls?.local[0];
    if (!url) throw new Error('vite preview gave no local URL');
    return {
      url,
      outDir,
      stop: async () => {
        await server.close();
        rmSync(outDir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    rmSync(outDir, { recursive: true, force: true });
    throw e;
  }
}

/** `vite build` of the demo into `outDir` (public/ copied in: models, documents), for a server of the caller's. */
export async function buildDemoTo(outDir: string): Promise<void> {
  const root = resolve('.');
  await build({ configFile: join(root, 'vite.config.ts'), root: join(root, 'demo'), logLevel: 'warn', build: { outDir, emptyOutDir: true } });
}
