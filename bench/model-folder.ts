/**
 * A benchmark model as a model folder (config.json + model.safetensors, F32, official tensor names): the
 * format public/models/* use and src/model/load.ts reads, so the PyTorch twin (train/lact/export.py
 * `load_model`) and train/export_onnx.py read the very weights our engine benchmarks.
 *
 *     npm run bench -- model-folder --mode full-attention --out /tmp/bench-full-attention
 *
 * The bytes are deterministic (seeded weights, a writer with a fixed layout), so a folder written today
 * and one written in a test later are the same file; `sha256` lets a consumer check that.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BENCH_CONFIGS, benchModelFiles, type BenchMode, type ModelFolderFiles } from './models.ts';

export { benchModelFiles, type ModelFolderFiles };

export async function writeBenchModelFolder(mode: BenchMode, dir: string): Promise<ModelFolderFiles> {
  const files = benchModelFiles(mode);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), files.config);
  await writeFile(join(dir, 'model.safetensors'), files.safetensors);
  return files;
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function isBenchMode(s: string): s is BenchMode {
  return Object.hasOwn(BENCH_CONFIGS, s);
}

/** CLI: `npm run bench -- model-folder [--mode full-attention] --out DIR`. */
export async function main(args: string[]): Promise<void> {
  const mode = flag(args, '--mode') ?? 'full-attention';
  const out = flag(args, '--out');
  if (!isBenchMode(mode)) throw new Error(`--mode must be one of ${Object.keys(BENCH_CONFIGS).join(', ')}; got ${mode}`);
  if (!out) throw new Error('--out DIR is required');
  const files = await writeBenchModelFolder(mode, out);
  console.log(`wrote ${out}/config.json and model.safetensors (${files.safetensors.byteLength} bytes, sha256 ${sha256(files.safetensors)})`);
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}
