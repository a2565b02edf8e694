/**
 * The createEngine fuzz target, run in a child process by test/fuzz/engine.test.ts (see fuzzInChild).
 *
 * Damaged model folders (the safetensors, config.json and tokenizer.json cases of the loader fuzz, and
 * config values that keep the weights valid but size the engine: window, chunk, rope, eps, ids) fed to
 * `createEngine` on one device. Each ends in the error class the loader gives for the same folder, or,
 * where the loader loads it, in an engine that generates (or DeviceLimitError / OutOfGpuMemoryError for
 * a config too large for the device). After all of them a good engine on the same device generates
 * exactly what one on a fresh device does, and what one on this device did before the cases.
 */
import { createEngine, type TttEngine } from '../../src/api/index.ts';
import { loadModel } from '../../src/model/load.ts';
import { MemorySource, NodeDirectorySource } from '../../src/model/source.ts';
import { openNodeAdapter } from '../../src/node/webgpu.ts';
import { serveCases } from './child-runner.ts';
import * as cfg from './config-cases.ts';
import { CaseFailure, describeError, projectErrorName, show, type Files, type Rand } from './harness.ts';
import * as st from './safetensors-cases.ts';
import * as tok from './tokenizer-cases.ts';

interface EngineCase {
  what: string;
  files: Files;
  weights: 'f32' | 'f16';
}

interface State {
  readonly device: GPUDevice;
  /** A good engine's greedy tokens on this device before any case. */
  readonly before: number[];
}

const FIXTURE = new URL('../fixtures/tiny-all-on/', import.meta.url).pathname;
const PROMPT = 'after the fuzz';
/** Errors an engine may end in for a folder the loader loads: a config too large for this device. */
const ENGINE_ONLY = ['DeviceLimitError', 'OutOfGpuMemoryError'];

async function greedy(e: TttEngine, prompt: string, n: number): Promise<number[]> {
  const ids: number[] = [];
  for await (const t of e.generate(prompt, { maxTokens: n, temperature: 0, ignoreEos: true })) ids.push(t.id);
  return ids;
}

async function newDevice(): Promise<GPUDevice> {
  const { adapter } = await openNodeAdapter();
  return adapter.requestDevice();
}

const source = (files: Files): MemorySource => new MemorySource(new Map(Object.entries(files)), 'fuzz');

/** Config values that keep every tensor as it is but change what the engine allocates and computes. */
function sizingCase(r: Rand): { what: string; files: Files } {
  const k = r.int(cfg.bases.length);
  const base = cfg.bases[k];
  const c: Record<string, unknown> = { ...base.config };
  const pools: Record<string, unknown[]> = {
    window_size: [1, 2, 7, 17, 100, 4096, 65536, 2 ** 20, 2 ** 24, null],
    lact_chunk_size: [1, 2, 3, 5, 17, 64, 4096, 2 ** 20, 2 ** 24],
    rope_theta: [1e-300, 1, 1e300],
    norm_eps: [1e-300, 1, 1e300],
    use_muon: [true, false],
    qkv_silu: [true, false],
    bos_token_id: [0, 255, 257, null],
    eos_token_id: [0, 256, null],
  };
  const changes: string[] = [];
  for (let n = r.range(1, 2); n > 0; n--) {
    const key = r.pick(Object.keys(pools));
    c[key] = r.pick(pools[key]);
    changes.push(`${key} = ${show(c[key])}`);
  }
  return { what: `${base.name}: ${changes.join(', ')}`, files: { 'config.json': JSON.stringify(c), 'model.safetensors': base.weights } };
}

function make(r: Rand): EngineCase {
  const weights = r.chance(0.5) ? 'f32' : 'f16';
  const kind = r.weighted<string>([[3, 'header'], [2, 'data'], [2, 'config'], [4, 'sizing'], [2, 'tokenizer']]);
  if (kind === 'header' || kind === 'data') {
    const c = kind === 'header' ? st.headerCase(r) : st.dataCase(r);
    return { what: `safetensors ${c.what}`, files: st.withWeights(c.weights), weights };
  }
  if (kind === 'config') {
    const c = cfg.configCase(r);
    return { what: `config.json ${c.what}`, files: cfg.files(c), weights };
  }
  if (kind === 'tokenizer') {
    const c = tok.tokenizerCase(r);
    return { what: c.what, files: tok.files(c), weights };
  }
  const c = sizingCase(r);
  return { what: `config.json ${c.what}`, files: c.files, weights };
}

async function check(c: EngineCase, s: State): Promise<string> {
  // The loader's verdict on the same folder (in this process: a loader that blocks is named by the parent).
  let loaderError: string | null = null;
  try {
    await loadModel(source(c.files));
  } catch (e) {
    loaderError = projectErrorName(e) ?? `raw ${describeError(e)}`;
  }
  let engine: TttEngine;
  try {
    engine = await createEngine({ model: 'fuzz', source: source(c.files), device: s.device, weights: c.weights });
  } catch (e) {
    const name = projectErrorName(e);
    if (name === null) throw new CaseFailure(`createEngine (${c.weights}) threw ${describeError(e)} (not one of the project's error classes)`);
    if (loaderError !== null && name !== loaderError) throw new CaseFailure(`createEngine (${c.weights}) threw ${describeError(e)}; the loader threw ${loaderError}`);
    if (loaderError === null && !ENGINE_ONLY.includes(name)) throw new CaseFailure(`createEngine (${c.weights}) threw ${describeError(e)}, but the loader loads this model`);
    return name;
  }
  try {
    if (loaderError !== null) throw new CaseFailure(`createEngine (${c.weights}) made an engine, but the loader threw ${loaderError}`);
    let ids: number[];
    try {
      ids = await greedy(engine, 'hi', 3);
    } catch (e) {
      throw new CaseFailure(`createEngine (${c.weights}) made an engine; generating with it threw ${describeError(e)}`);
    }
    const vocab = engine.info.vocabSize;
    if (ids.length !== 3 || ids.some((id) => !(Number.isInteger(id) && id >= 0 && id < vocab))) throw new CaseFailure(`the engine generated ${show(ids)} (vocabulary ${vocab})`);
    return 'loaded';
  } finally {
    await engine.dispose();
  }
}

async function setup(): Promise<State> {
  const device = await newDevice();
  const e = await createEngine({ model: 'tiny', source: new NodeDirectorySource(FIXTURE), device, weights: 'f32' });
  const before = await greedy(e, PROMPT, 12);
  await e.dispose();
  return { device, before };
}

async function final(s: State): Promise<string[]> {
  const failures: string[] = [];
  const good = await createEngine({ model: 'tiny', source: new NodeDirectorySource(FIXTURE), device: s.device, weights: 'f32' });
  const got = await greedy(good, PROMPT, 12);
  await good.dispose();
  const device = await newDevice();
  const fresh = await createEngine({ model: 'tiny', source: new NodeDirectorySource(FIXTURE), device, weights: 'f32' });
  const want = await greedy(fresh, PROMPT, 12);
  await fresh.dispose();
  device.destroy();
  if (show(got, 200) !== show(want, 200)) failures.push(`after every case a good engine on the same device generates ${show(got, 200)}; one on a fresh device ${show(want, 200)}`);
  if (show(got, 200) !== show(s.before, 200)) failures.push(`after every case a good engine on the same device generates ${show(got, 200)}; before them it generated ${show(s.before, 200)}`);
  s.device.destroy();
  return failures;
}

export async function main(): Promise<void> {
  await serveCases<State, EngineCase>({ setup, make, check, final });
}
