import { defineConfig } from 'vite';

/**
 * The library build (`npm run build:lib`, scripts/build-lib.mjs): ESM for the package's two entry points.
 * Every dependency is bundled (no bare imports are left), so the output runs from a plain
 * <script type="module"> as well as through a consumer's bundler; the engine worker is inlined (see
 * src/api/worker-client.ts) and the WGSL sources are string constants (`?raw`).
 */
export default defineConfig({
  publicDir: false,
  build: {
    outDir: 'dist/lib',
    emptyOutDir: true,
    target: 'es2022',
    minify: true,
    sourcemap: false,
    copyPublicDir: false,
    lib: {
      entry: { index: 'src/api/index.ts', widget: 'src/widget/index.ts' },
      formats: ['es'],
    },
    rolldownOptions: {
      output: { chunkFileNames: 'chunks/[name]-[hash].js' },
    },
  },
  worker: { format: 'es' },
});
