#!/usr/bin/env node
// The library build behind the npm package (`npm run build:lib`; `npm pack` runs it first):
//   1. Vite in library mode (vite.lib.config.ts): ESM entry points dist/lib/index.js and dist/lib/widget.js,
//      every dependency, the engine worker and the WGSL sources bundled in;
//   2. tsc (tsconfig.lib.json): .d.ts files under dist/lib/types, with relative specifiers rewritten from
//      .ts to .js (resolvable under every moduleResolution) and files the entry points' types never reach
//      left out;
//   3. checks that what consumers load cannot fail on its own: no bare imports left in the JavaScript, the
//      custom element registered by widget.js itself (the package's only side effect).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { root } from './ensure-deps.mjs';

const out = join(root, 'dist', 'lib');
const typesDir = join(out, 'types');
const ENTRY_TYPES = ['api/index.d.ts', 'widget/index.d.ts'];

function fail(message) {
  console.error(`build-lib: ${message}`);
  process.exit(1);
}

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

const t0 = performance.now();
const { build } = await import('vite');
await build({ configFile: join(root, 'vite.lib.config.ts'), root, logLevel: 'warn' });

const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.lib.json')], { cwd: root, encoding: 'utf8' });
if (tsc.status !== 0) fail(`tsc -p tsconfig.lib.json failed:\n${tsc.stdout}${tsc.stderr}`);

// .ts → .js in relative specifiers: `from './x.ts'` and `import("./x.ts")`.
const SPECIFIER = /(from\s+|import\()(['"])(\.{1,2}\/[^'"]+)\.ts\2/g;
for (const file of walk(typesDir)) {
  const text = readFileSync(file, 'utf8');
  const fixed = text.replace(SPECIFIER, (_, lead, q, path) => `${lead}${q}${path}.js${q}`);
  if (fixed !== text) writeFileSync(file, fixed);
}

// Keep only the declarations the entry points reach.
const reached = new Set();
const queue = ENTRY_TYPES.map((f) => join(typesDir, f));
while (queue.length) {
  const file = queue.pop();
  if (reached.has(file)) continue;
  if (!existsSync(file)) fail(`${relative(root, file)} is referenced by the published types but was not emitted`);
  reached.add(file);
  for (const m of readFileSync(file, 'utf8').matchAll(/(?:from\s+|import\()['"](\.{1,2}\/[^'"]+)\.js['"]/g)) {
    queue.push(resolve(dirname(file), `${m[1]}.d.ts`));
  }
}
for (const file of walk(typesDir)) if (!reached.has(file)) rmSync(file);
for (const entry of ENTRY_TYPES) {
  // The public types name WebGPU's (GPUDevice in the in-process options): the package depends on them.
  const file = join(typesDir, entry);
  writeFileSync(file, `/// <reference types="@webgpu/types" />\n${readFileSync(file, 'utf8')}`);
}

const js = walk(out).filter((f) => f.endsWith('.js'));
for (const file of js) {
  const text = readFileSync(file, 'utf8');
  const bare = [
    ...text.matchAll(/(?:^|[\s;}])(?:import|export)\s*(?:[\w*{}\s,$]+from\s*)?['"]([^'"./][^'"]*)['"]|import\(\s*(?:\/\*(?:(?!\*\/)[^])*\*\/\s*)*['"`]([^'"`./][^'"`]*)['"`]\s*\)/gm),
  ].map((m) => m[1] ?? m[2]);
  if (bare.length) {
    fail(`${relative(root, file)} imports ${bare.join(', ')}: a plain <script type="module"> could not load it, nor webpack or esbuild bundle it for a browser (bundle it, or stub it in vite.lib.config.ts)`);
  }
}
if (!readFileSync(join(out, 'widget.js'), 'utf8').includes('customElements')) {
  fail('dist/lib/widget.js does not register <ttt-chat> itself: package.json sideEffects would let bundlers drop the registration');
}

const size = (files) => files.reduce((n, f) => n + statSync(f).size, 0);
const kb = (n) => `${(n / 1024).toFixed(0)} KB`;
console.log(
  `build-lib: dist/lib in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${js.length} JS files (${kb(size(js))}), ` +
    `${reached.size} .d.ts files (${kb(size([...reached]))})`,
);
