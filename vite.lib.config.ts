import { defineConfig, type Plugin } from 'vite';

/** `import('node:fs/promises')`, as the minifier leaves NodeDirectorySource's (src/model/source.ts, stream.ts). */
const NODE_IMPORT = /import\(\s*(?:\/\*(?:(?!\*\/)[^])*\*\/\s*)*(["'`])node:[\w/]+\1\s*\)/g;

const NODE_REJECTION = 'Promise.reject(new Error("ttt-web: reading a model folder from disk needs Node.js; in a browser, pass a URL prefix, File[] or a directory handle"))';

/**
 * Node-only code paths (reading a model folder from disk) become a rejection in the library: webpack and
 * esbuild refuse to bundle a `node:` specifier for the browser, even one that is never reached there.
 */
function noNodeImports(): Plugin {
  return {
    name: 'ttt-web:no-node-imports',
    // After minification, which folds the specifier constant into the import() call.
    generateBundle(_options, bundle) {
      for (const chunk of Object.values(bundle)) {
        if (chunk.type === 'chunk') chunk.code = chunk.code.replace(NODE_IMPORT, NODE_REJECTION);
      }
    },
  };
}

/**
 * The library build (`npm run build:lib`, scripts/build-lib.mjs): ESM for the package's two entry points.
 * Every dependency is bundled (no bare imports are left), so the output runs from a plain
 * <script type="module"> as well as through a consumer's bundler; the engine worker is inlined (see
 * src/api/worker-client.ts) and the WGSL sources are string constants (`?raw`).
 */
export default defineConfig({
  publicDir: false,
  plugins: [noNodeImports()],
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
  worker: { format: 'es', plugins: () => [noNodeImports()] },
});
