import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectedTensors, parseConfig, type WeightMap } from '../../src/model/config.ts';
import {
  ConfigError,
  FileTruncatedError,
  MissingTensorError,
  ModelFetchError,
  ModelFormatError,
  NonFiniteWeightError,
  ShapeMismatchError,
  TokenizerError,
  UnexpectedTensorError,
  UnsupportedDtypeError,
} from '../../src/model/errors.ts';
import { loadModel, type LoadOptions, type LoadedModel } from '../../src/model/load.ts';
import { writeSafetensors, type TensorToWrite } from '../../src/model/safetensors-writer.ts';
import { MemorySource, NodeDirectorySource, UrlSource, type ModelSource } from '../../src/model/source.ts';
import { ALL_OFF, ALL_ON, SWA_ONLY, TINY_BASE, randomModel } from '../helpers/random-model.ts';
import { expectClose } from '../helpers/close.ts';
import { modelTensors, serveDir, tinyBpeTokenizerJson, writeModelDir, type ModelDir, type StaticServer } from './model-files.ts';
import { rejection } from '../helpers/rejection.ts';

/** Loads a model folder written from these pieces through the Node-directory source. */
async function loadFromDir(
  rawConfig: Record<string, unknown> | string,
  tensors: ReadonlyMap<string, TensorToWrite> | Uint8Array,
  extra: Record<string, string | Uint8Array> = {},
  options?: LoadOptions,
): Promise<LoadedModel> {
  const m = await writeModelDir(rawConfig, tensors, extra);
  try {
    return await loadModel(new NodeDirectorySource(m.dir), options);
  } finally {
    await m.cleanup();
  }
}


function expectWeightsEqual(weights: WeightMap, rawConfig: Record<string, unknown>, seed = 1): void {
  const { config, weights: want } = randomModel(rawConfig, seed);
  expect([...weights.keys()].sort()).toEqual([...expectedTensors(config).keys()].sort());
  for (const [name, t] of want) {
    const got = weights.get(name)!;
    expect(got.shape).toEqual(t.shape);
    expect(got.data).toEqual(t.data);
  }
}

describe('loadModel: a valid model folder', () => {
  let model: ModelDir;
  let server: StaticServer;
  beforeAll(async () => {
    model = await writeModelDir(ALL_ON, modelTensors(ALL_ON), {}, { format: 'pt', producer: 'test' });
    server = await serveDir(model.dir);
  });
  afterAll(async () => {
    await server?.close();
    await model?.cleanup();
  });

  it('loads through the Node-directory source', async () => {
    const m = await loadModel(new NodeDirectorySource(model.dir));
    expect(m.config).toEqual(parseConfig(ALL_ON, `${model.dir}/config.json`));
    expectWeightsEqual(m.weights, ALL_ON);
    expect(m.metadata).toEqual({ format: 'pt', producer: 'test' });
    expect(m.tokenizer.kind).toBe('byte');
    expect(m.tokenizer.decode(m.tokenizer.encode('ok ✓'))).toBe('ok ✓');
  });

  it('loads through the URL-prefix source (HTTP server on 127.0.0.1)', async () => {
    const m = await loadModel(new UrlSource(server.url));
    expectWeightsEqual(m.weights, ALL_ON);
    expect(m.metadata.producer).toBe('test');
    expect(server.log).toContain('GET /config.json');
    expect(server.log).toContain('GET /model.safetensors');
    // A prefix without the trailing slash means the same folder.
    const again = await loadModel(new UrlSource(server.url.replace(/\/$/, '')));
    expect(again.weights.size).toBe(m.weights.size);
  });

  it('loads through the in-memory source (uploaded File objects)', async () => {
    const files = [
      new File([JSON.stringify(ALL_ON)], 'config.json'),
      new File([writeSafetensors(modelTensors(ALL_ON))], 'model.safetensors'),
    ];
    const m = await loadModel(new MemorySource(files));
    expectWeightsEqual(m.weights, ALL_ON);
  });

  it('loads every option combination the reference tests use', async () => {
    for (const cfg of [ALL_OFF, SWA_ONLY, TINY_BASE]) {
      const m = await loadModel(new MemorySource({ 'config.json': JSON.stringify(cfg), 'model.safetensors': writeSafetensors(modelTensors(cfg)) }));
      expectWeightsEqual(m.weights, cfg);
    }
  });

  it('converts F16 and BF16 weights to f32', async () => {
    const dtypeOf = (name: string) => (name.includes('mlp') ? 'BF16' : name.includes('attn.') ? 'F16' : 'F32') as 'F16' | 'BF16' | 'F32';
    const m = await loadFromDir(TINY_BASE, modelTensors(TINY_BASE, dtypeOf));
    const { weights: want } = randomModel(TINY_BASE);
    for (const [name, t] of want) {
      const got = m.weights.get(name)!.data;
      const rel = dtypeOf(name) === 'BF16' ? 2 ** -8 : dtypeOf(name) === 'F16' ? 2 ** -11 : 0;
      // Round to nearest: within half an ulp, 2^-8 (BF16) or 2^-11 (F16) of |w|, and half f16's subnormal
      // spacing (2^-25) near zero; F32 is exact.
      if (rel === 0) expect(got).toEqual(t.data);
      else expectClose(got, t.data, { atol: 2 ** -25, rtol: rel, label: name });
    }
  });

  it('loads a Hugging Face tokenizer.json model', async () => {
    const cfg = { ...TINY_BASE, tokenizer: 'tokenizer.json', vocab_size: 300, bos_token_id: 265, eos_token_id: 266 };
    const m = await loadFromDir(cfg, modelTensors(cfg), { 'tokenizer.json': JSON.stringify(tinyBpeTokenizerJson()) });
    expect(m.tokenizer.kind).toBe('huggingface');
    expect(m.tokenizer.encode('hello world')).toEqual([259, 264]);
    expect(m.tokenizer.eosId).toBe(266);
  });
});

describe('loadModel: every failure is a named error that says where', () => {
  const tensors = () => modelTensors(ALL_ON);

  it('MissingTensorError says which option requires the tensor, and in which layer', async () => {
    const t = tensors();
    t.delete('model.layers.1.attn.momentum_proj.0.weight');
    const e = await rejection(loadFromDir(ALL_ON, t));
    expect(e).toBeInstanceOf(MissingTensorError);
    expect((e as MissingTensorError).tensor).toBe('model.layers.1.attn.momentum_proj.0.weight');
    expect(e.message).toContain('"model.layers.1.attn.momentum_proj.0.weight"');
    expect(e.message).toContain('use_momentum=true');
    expect(e.message).toContain('layer 1 of num_hidden_layers=2');
    expect(e.message).toContain('model.safetensors');

    const u = tensors();
    u.delete('lm_head.weight');
    const e2 = await rejection(loadFromDir(ALL_ON, u));
    expect(e2).toBeInstanceOf(MissingTensorError);
    expect(e2.message).toMatch(/"lm_head\.weight" \(required by tie_word_embeddings=false/);
  });

  it('MissingTensorError for a renamed tensor also points at the stray name', async () => {
    const t = tensors();
    const q = t.get('model.layers.0.attn.qkv.weight')!;
    t.delete('model.layers.0.attn.qkv.weight');
    t.set('model.layers.0.attn.qkv_proj.weight', q);
    const e = await rejection(loadFromDir(ALL_ON, t));
    expect(e).toBeInstanceOf(MissingTensorError);
    expect(e.message).toContain('"model.layers.0.attn.qkv.weight"');
    expect(e.message).toContain('"model.layers.0.attn.qkv_proj.weight"');
  });

  it('UnexpectedTensorError names the tensor and the config key that rules it out', async () => {
    const t = modelTensors(ALL_OFF);
    t.set('model.layers.0.attn.qkv.bias', { dtype: 'F32', shape: [192], data: new Float32Array(192) });
    const e = await rejection(loadFromDir(ALL_OFF, t));
    expect(e).toBeInstanceOf(UnexpectedTensorError);
    expect(e.message).toContain('"model.layers.0.attn.qkv.bias"');
    expect(e.message).toContain('qkv_bias=false');

    const u = tensors();
    u.set('model.layers.2.attn_norm.weight', { dtype: 'F32', shape: [64], data: new Float32Array(64) });
    const e2 = await rejection(loadFromDir(ALL_ON, u));
    expect(e2).toBeInstanceOf(UnexpectedTensorError);
    expect(e2.message).toContain('layer 2, but num_hidden_layers=2');

    // The branch's own q|k|v projection in a model whose config shares attention's.
    const w = tensors();
    w.set('model.layers.1.attn.fw_qkv.weight', { dtype: 'F32', shape: [192, 64], data: new Float32Array(192 * 64) });
    const e3 = await rejection(loadFromDir(ALL_ON, w));
    expect(e3).toBeInstanceOf(UnexpectedTensorError);
    expect(e3.message).toContain('"model.layers.1.attn.fw_qkv.weight"');
    expect(e3.message).toContain('fw_own_qkv=false');
  });

  it('MissingTensorError: a config with fw_own_qkv needs the branch\'s own projection in every layer', async () => {
    const e = await rejection(loadFromDir({ ...ALL_ON, fw_own_qkv: true }, tensors()));
    expect(e).toBeInstanceOf(MissingTensorError);
    expect(e.message).toContain('"model.layers.0.attn.fw_qkv.weight"');
    expect(e.message).toContain('fw_own_qkv=true');
  });

  it('ShapeMismatchError names the tensor and both shapes', async () => {
    const t = tensors();
    t.set('model.layers.0.mlp.up_proj.weight', { dtype: 'F32', shape: [64, 96], data: new Float32Array(64 * 96) });
    const e = await rejection(loadFromDir(ALL_ON, t));
    expect(e).toBeInstanceOf(ShapeMismatchError);
    expect(e.message).toContain('"model.layers.0.mlp.up_proj.weight" has shape [64, 96] but the config implies [96, 64]');
  });

  it('UnsupportedDtypeError for an integer weight names tensor and dtype', async () => {
    const t = tensors();
    t.set('model.norm.weight', { dtype: 'I32', shape: [64], data: new Int32Array(64).fill(1) });
    const e = await rejection(loadFromDir(ALL_ON, t));
    expect(e).toBeInstanceOf(UnsupportedDtypeError);
    expect(e.message).toContain('tensor "model.norm.weight" has dtype I32');
  });

  it('NonFiniteWeightError names the tensor and the index; checkFinite: false skips the scan', async () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const t = tensors();
      const w = t.get('model.layers.1.attn.w1')!;
      const data = Float32Array.from(w.data as Float32Array);
      data[37] = bad;
      t.set('model.layers.1.attn.w1', { ...w, data });
      const e = await rejection(loadFromDir(ALL_ON, t));
      expect(e).toBeInstanceOf(NonFiniteWeightError);
      expect((e as NonFiniteWeightError).index).toBe(37);
      expect(e.message).toContain(`tensor "model.layers.1.attn.w1" holds ${bad} at flat index 37`);
    }
    const t = tensors();
    const w = t.get('model.norm.weight')!;
    t.set('model.norm.weight', { ...w, data: new Float32Array(64).fill(NaN) });
    const m = await loadFromDir(ALL_ON, t, {}, { checkFinite: false });
    expect(Number.isNaN(m.weights.get('model.norm.weight')!.data[0])).toBe(true);
  });

  it('a truncated model.safetensors is a FileTruncatedError naming the file', async () => {
    const bytes = writeSafetensors(tensors());
    const e = await rejection(loadFromDir(ALL_ON, bytes.subarray(0, bytes.byteLength - 100)));
    expect(e).toBeInstanceOf(FileTruncatedError);
    expect(e.message).toMatch(/model\.safetensors: tensor "[^"]+" occupies/);
  });

  it('ConfigError: bad JSON, indivisible heads, negative sizes, unsupported options, wrong types', async () => {
    const cases: [Record<string, unknown> | string, string, RegExp][] = [
      ['{"vocab_size": 258,', '(root)', /config\.json is not valid JSON/],
      [{ ...TINY_BASE, num_attn_heads: 3 }, 'num_attn_heads', /3 does not divide hidden_size 64/],
      [{ ...TINY_BASE, hidden_size: -64 }, 'hidden_size', /must be at least 1, got -64/],
      [{ ...TINY_BASE, lr_parameterization: 'linear' }, 'lr_parameterization', /"linear" is not supported/],
      [{ ...TINY_BASE, ttt_nope: true }, 'ttt_nope', /true is not supported/],
      [{ ...TINY_BASE, no_v_silu: true }, 'no_v_silu', /true is not supported/],
      [{ ...TINY_BASE, num_hidden_layers: '2' }, 'num_hidden_layers', /must be an integer, got "2"/],
      [{ ...TINY_BASE, use_momentum: 'yes' }, 'use_momentum', /must be true or false/],
      [{ ...TINY_BASE, fw_own_qkv: 1 }, 'fw_own_qkv', /must be true or false/],
      [{ ...TINY_BASE, use_fast_weights: false, fw_own_qkv: true }, 'fw_own_qkv', /needs the fast-weight branch/],
      [{ ...TINY_BASE, eos_token_id: 999 }, 'eos_token_id', /\[0, 258\)/],
      [[1, 2, 3] as unknown as Record<string, unknown>, '(root)', /must hold a JSON object/],
    ];
    for (const [cfg, key, re] of cases) {
      const e = await rejection(loadFromDir(cfg, tensors()));
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).key).toBe(key);
      expect(e.message).toContain(`config "${key}"`);
      expect(e.message).toContain('config.json');
      expect(e.message).toMatch(re);
    }
  });

  it('missing tokenizer.json (config without "tokenizer": "byte") is a TokenizerError naming the file', async () => {
    const cfg = { ...TINY_BASE, tokenizer: 'tokenizer.json' };
    const e = await rejection(loadFromDir(cfg, modelTensors(cfg)));
    expect(e).toBeInstanceOf(TokenizerError);
    expect(e.message).toContain('tokenizer.json');
    expect(e.message).toContain('is required');
  });

  it('missing files are ModelFetchErrors naming the file', async () => {
    let e = await rejection(loadModel(new MemorySource({ 'model.safetensors': new Uint8Array(8) }, 'dropped files')));
    expect(e).toBeInstanceOf(ModelFetchError);
    expect(e.message).toContain('"config.json" not found');
    expect(e.message).toContain('dropped files');
    e = await rejection(loadModel(new MemorySource({ 'config.json': JSON.stringify(TINY_BASE) })));
    expect(e).toBeInstanceOf(ModelFetchError);
    expect(e.message).toContain('"model.safetensors" not found');
    e = await rejection(loadModel(new NodeDirectorySource('/nonexistent/ttt-web-model')));
    expect(e).toBeInstanceOf(ModelFetchError);
    expect(e.message).toContain('/nonexistent/ttt-web-model/config.json');
  });

  it('every loader error is a ModelFormatError', async () => {
    const t = tensors();
    t.delete('model.norm.weight');
    expect(await rejection(loadFromDir(ALL_ON, t))).toBeInstanceOf(ModelFormatError);
  });
});

describe('model sources', () => {
  let model: ModelDir;
  let server: StaticServer;
  let src: ModelSource;
  beforeAll(async () => {
    model = await writeModelDir(TINY_BASE, modelTensors(TINY_BASE), { 'notes.txt': 'héllo' });
    server = await serveDir(model.dir);
    src = new UrlSource(server.url);
  });
  afterAll(async () => {
    await server?.close();
    await model?.cleanup();
  });

  it('URL source: a non-OK status is a ModelFetchError with the URL and the status', async () => {
    const e = await rejection(src.readBytes('tokenizer.json'));
    expect(e).toBeInstanceOf(ModelFetchError);
    expect(e.message).toContain(`${server.url}tokenizer.json`);
    expect(e.message).toContain('HTTP 404');
    expect(await src.exists('tokenizer.json')).toBe(false);
    expect(await src.exists('config.json')).toBe(true);
    expect(await src.readText('notes.txt')).toBe('héllo');
  });

  it('URL source: an unreachable server is a ModelFetchError with the URL', async () => {
    const closed = await serveDir(model.dir);
    const url = closed.url;
    await closed.close();
    const e = await rejection(new UrlSource(url).readText('config.json'));
    expect(e).toBeInstanceOf(ModelFetchError);
    expect(e.message).toContain(`${url}config.json`);
  });

  it('URL source: an HTML fallback page (SPA dev servers) counts as a missing file', async () => {
    const html = new UrlSource('http://models.test/m/', {
      fetch: async () => new Response('<!doctype html><title>app</title>', { status: 200, headers: { 'content-type': 'text/html' } }),
    });
    expect(await html.exists('tokenizer.json')).toBe(false);
    const e = await rejection(html.readBytes('model.safetensors'));
    expect(e).toBeInstanceOf(ModelFetchError);
    expect(e.message).toContain('http://models.test/m/model.safetensors');
    expect(e.message).toContain('HTML page');
  });

  it('sources refuse names that would leave the model folder', async () => {
    for (const s of [src, new NodeDirectorySource(model.dir)]) {
      expect(await rejection(s.readBytes('../secret'))).toBeInstanceOf(ModelFetchError);
      expect(await rejection(s.readBytes('/etc/passwd'))).toBeInstanceOf(ModelFetchError);
    }
  });

  it('Node-directory and in-memory sources agree on exists/readText/readBytes', async () => {
    const dir = new NodeDirectorySource(model.dir);
    const mem = new MemorySource(new Map<string, Blob | Uint8Array | string>([
      ['notes.txt', new Blob(['héllo'])],
      ['config.json', JSON.stringify(TINY_BASE)],
    ]));
    for (const s of [dir, mem]) {
      expect(await s.exists('notes.txt')).toBe(true);
      expect(await s.exists('nope.txt')).toBe(false);
      expect(await s.readText('notes.txt')).toBe('héllo');
      expect(new TextDecoder().decode(await s.readBytes('notes.txt'))).toBe('héllo');
      const e = await rejection(s.readBytes('nope.txt'));
      expect(e).toBeInstanceOf(ModelFetchError);
      expect(e.message).toContain('nope.txt');
    }
  });
});
