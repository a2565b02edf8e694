import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const page = (name: string) => fileURLToPath(new URL(`./demo/${name}`, import.meta.url));

// The demo app lives in demo/; bundled models and data are served from public/ (e.g. /models/<name>/).
// Two pages: the demo (index.html) and the API check (api-check.html).
export default defineConfig({
  root: 'demo',
  publicDir: '../public',
  server: { host: '127.0.0.1', port: 5173, fs: { allow: ['..'] } },
  preview: { host: '127.0.0.1', port: 4173 },
  build: {
    outDir: '../dist/demo',
    emptyOutDir: true,
    target: 'es2022',
    rollupOptions: { input: { main: page('index.html'), 'api-check': page('api-check.html') } },
  },
});
