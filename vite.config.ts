import { defineConfig } from 'vite';

// The demo app lives in demo/; bundled models and data are served from public/ (e.g. /models/<name>/).
export default defineConfig({
  root: 'demo',
  publicDir: '../public',
  server: { host: '127.0.0.1', port: 5173, fs: { allow: ['..'] } },
  preview: { host: '127.0.0.1', port: 4173 },
  build: { outDir: '../dist/demo', emptyOutDir: true, target: 'es2022' },
});
