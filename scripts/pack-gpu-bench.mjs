#!/usr/bin/env node
// Packs what a machine with a GPU (x86-64 Linux, no Node, no network) needs to run the benchmark suite:
//
//   node scripts/pack-gpu-bench.mjs [--out .gpu-pack]
//     -> .gpu-pack/ttt-web-gpu-bench.tar.xz, holding ttt-web-gpu-bench/:
//        node                     this machine's Node binary, debug symbols stripped
//        app/suite.mjs            bench/gpu-main.ts bundled by Vite (engine, shaders, bench models, suite)
//        app/node_modules/webgpu  Dawn's Node bindings (linux-x64 dawn.node only)
//        app/node_modules/onnxruntime-web  its WebGPU build and wasm only (asyncify, which Node loads, and jsep)
//        app/fixtures/            the ONNX graphs of the full-attention bench model
//        debs/                    Debian's Vulkan loader (libvulkan1), used only where the machine has none
//        run.sh                   unpacks the loader if needed, finds NVIDIA's ICD file, runs the suite
//
// There:  tar -xJf ttt-web-gpu-bench.tar.xz -C /tmp && /tmp/ttt-web-gpu-bench/run.sh --out $OUT/suite-gpu.json
// (flags are the suite's: bench/suite-core.ts). The benchmark models are generated in code from a seed, so
// no weights travel. The Vulkan loader comes from Debian's archive (`apt-get download`); where that is
// unreachable the pack is made without it and run.sh says so if the GPU machine has no loader either.
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { ensureNodeModules, root } from './ensure-deps.mjs';

ensureNodeModules();
const args = process.argv.slice(2);
const outIdx = args.indexOf('--out');
const outDir = join(root, outIdx >= 0 ? args[outIdx + 1] : '.gpu-pack');
const name = 'ttt-web-gpu-bench';
const stage = join(outDir, name);
const app = join(stage, 'app');

function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { stdio: 'inherit', ...opts });
  return r.status === 0;
}

if (process.arch !== 'x64' || process.platform !== 'linux') {
  throw new Error(`the GPU machines are x86-64 Linux; this Node is ${process.platform}-${process.arch}, whose binary would not run there`);
}
rmSync(stage, { recursive: true, force: true });
mkdirSync(app, { recursive: true });

// 1. The benchmark, bundled: everything but the two packages with native or wasm binaries.
const { build } = await import('vite');
await build({
  root,
  configFile: false,
  logLevel: 'warn',
  publicDir: false, // the bundled models stay home: the bench models are made in code
  ssr: { noExternal: true, external: ['webgpu', 'onnxruntime-web'] },
  build: {
    ssr: 'bench/gpu-main.ts',
    outDir: app,
    emptyOutDir: false,
    target: 'node20',
    minify: false,
    rollupOptions: {
      external: ['webgpu', 'onnxruntime-web', 'onnxruntime-web/webgpu', /^node:/],
      output: { format: 'es', entryFileNames: 'suite.mjs', codeSplitting: false },
    },
  },
});

// 2. The packages, trimmed to what Node on linux-x64 loads.
const nm = join(root, 'node_modules');
const webgpu = join(app, 'node_modules', 'webgpu');
mkdirSync(join(webgpu, 'dist', 'linux-x64'), { recursive: true });
for (const f of ['package.json', 'index.js', 'LICENSE.md']) copyFileSync(join(nm, 'webgpu', f), join(webgpu, f));
copyFileSync(join(nm, 'webgpu', 'dist', 'linux-x64', 'dawn.node'), join(webgpu, 'dist', 'linux-x64', 'dawn.node'));
const ort = join(app, 'node_modules', 'onnxruntime-web');
mkdirSync(join(ort, 'dist'), { recursive: true });
copyFileSync(join(nm, 'onnxruntime-web', 'package.json'), join(ort, 'package.json'));
for (const f of readdirSync(join(nm, 'onnxruntime-web', 'dist'))) {
  if (/^ort\.webgpu(\.bundle)?\.min\.mjs$/.test(f) || /^ort-wasm-simd-threaded\.(jsep|asyncify)\.(mjs|wasm)$/.test(f)) copyFileSync(join(nm, 'onnxruntime-web', 'dist', f), join(ort, 'dist', f));
}
cpSync(join(root, 'test', 'fixtures', 'ort-full-attention'), join(app, 'fixtures'), { recursive: true });

// 3. Node itself, without its debug symbols (99 MB -> about 90).
const node = join(stage, 'node');
if (!run('strip', ['--strip-debug', '-o', node, process.execPath])) copyFileSync(process.execPath, node);
chmodSync(node, 0o755);

// 4. The Vulkan loader from Debian, for a machine without one.
const debs = join(stage, 'debs');
mkdirSync(debs, { recursive: true });
if (!run('apt-get', ['download', 'libvulkan1'], { cwd: debs })) {
  console.warn('apt-get download libvulkan1 failed: the pack has no Vulkan loader; run.sh needs the GPU machine to have one');
}

writeFileSync(join(stage, 'run.sh'), `#!/bin/sh
# Runs the ttt-web benchmark suite on this machine's GPU (flags: bench/suite-core.ts; --out FILE.json).
set -e
here=$(cd "$(dirname "$0")" && pwd)
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1 '; then
  if ls "$here"/debs/*.deb >/dev/null 2>&1; then
    mkdir -p "$here/vk"
    for f in "$here"/debs/*.deb; do dpkg-deb -x "$f" "$here/vk"; done
    export LD_LIBRARY_PATH="$here/vk/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "run.sh: using the carried Vulkan loader"
  else
    echo "run.sh: this machine has no Vulkan loader (libvulkan.so.1) and the pack carries none" >&2
    exit 3
  fi
fi
# NVIDIA's driver files where this workplace's GPU image keeps them, when the loader's usual places lack them.
if [ -z "$VK_DRIVER_FILES" ] && [ -z "$VK_ICD_FILENAMES" ] && ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
  for f in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/nvidia/nvidia_icd.json; do
    if [ -f "$f" ]; then export VK_DRIVER_FILES="$f"; echo "run.sh: VK_DRIVER_FILES=$f"; break; fi
  done
fi
export TTT_WEBGPU_BACKEND="\${TTT_WEBGPU_BACKEND:-system}"
export TTT_BENCH_FIXTURES="$here/app/fixtures"
cd "$here/app"
exec "$here/node" suite.mjs --no-plot "$@"
`);
chmodSync(join(stage, 'run.sh'), 0o755);

// 5. One file to carry.
const tarball = join(outDir, `${name}.tar.xz`);
rmSync(tarball, { force: true });
if (!run('tar', ['-cJf', tarball, '-C', outDir, name], { env: { ...process.env, XZ_OPT: '-6 -T0' } })) throw new Error('tar -cJf failed (is xz-utils installed?)');
const mib = (b) => (b / 2 ** 20).toFixed(1);
let staged = 0;
const walk = (d) => { for (const f of readdirSync(d, { withFileTypes: true })) { const p = join(d, f.name); if (f.isDirectory()) walk(p); else staged += statSync(p).size; } };
walk(stage);
console.log(`packed ${stage} (${mib(staged)} MiB) into ${tarball} (${mib(statSync(tarball).size)} MiB)`);
console.log(`on the GPU machine: tar -xJf ${name}.tar.xz -C /tmp && /tmp/${name}/run.sh --out $OUT/suite-gpu.json`);
