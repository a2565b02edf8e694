import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import * as Comlink from 'comlink';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TttEngineClient } from '../../src/api/client.ts';
import { EngineHost } from '../../src/api/host.ts';
import {
  createEngine,
  EngineAbortedError,
  InvalidTokenError,
  MemoryMismatchError,
  WebGpuUnavailableError,
  type GenerateOptions,
  type GeneratedToken,
  type TttEngine,
  type TttInfo,
  type TttStats,
} from '../../src/api/index.ts';
import { StopText } from '../../src/api/stop-text.ts';
import { fromWireError, installErrorTransfer, toWireError } from '../../src/api/wire-errors.ts';
import type { FeedOptions, Engine } from '../../src/engine/engine.ts';
import { ConfigError, ShapeMismatchError } from '../../src/model/errors.ts';
import { NodeDirectorySource } from '../../src/model/source.ts';
import { ByteTokenizer } from '../../src/model/tokenizer.ts';
import { openNodeAdapter } from '../../src/node/webgpu.ts';
import { openTestGpu } from '../helpers/gpu.ts';

const fixture = (name: string) => new NodeDirectorySource(fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url)));
const BOS = 256, EOS = 257;

async function collect(stream: AsyncIterable<GeneratedToken>): Promise<GeneratedToken[]> {
  const out: GeneratedToken[] = [];
  for await (const t of stream) out.push(t);
  return out;
}

const bytes = (s: string) => Array.from(new TextEncoder().encode(s));

/**
 * An engine that "samples" a scripted sequence of ids: the host's text handling (UTF-8 streaming, stop
 * strings, EOS, held-back tokens) checked without a GPU.
 */
function scriptedHost(script: number[]): { client: TttEngineClient; fed: number[] } {
  const fed: number[] = [];
  let next = 0;
  const fake = {
    config: { vocabSize: 258 },
    info: { capacity: Infinity },
    modelId: 'scripted',
    get position() {
      return fed.length;
    },
    async feed(tokens: readonly number[], opts: FeedOptions = {}) {
      if (opts.signal?.aborted) throw new EngineAbortedError(0, fed.length);
      fed.push(...tokens);
      return { token: opts.sample ? script[next++] : null, logits: null };
    },
    async step(token: number, _s: unknown, opts: { signal?: AbortSignal } = {}) {
      return (await this.feed([token], { sample: { temperature: 0 }, signal: opts.signal })).token!;
    },
    stats: () => ({ position: fed.length }),
    savedMemoryBytes: () => 0,
    reset: () => void (fed.length = 0),
    destroy: () => undefined,
  };
  const tokenizer = new ByteTokenizer({ vocabSize: 258, bosId: BOS, eosId: EOS });
  const info = { tokenizer: 'byte', bosId: BOS, eosId: EOS } as unknown as TttInfo;
  const host = new EngineHost(fake as unknown as Engine, tokenizer, info);
  return { client: new TttEngineClient(host, info), fed };
}

describe('generated text (scripted engine, no GPU)', () => {
  const run = async (script: number[], opts: GenerateOptions, prompt: string | number[] = [65]) => {
    const { client, fed } = scriptedHost(script);
    const stream = client.generate(prompt, { temperature: 0, ...opts });
    const tokens = await collect(stream);
    return { tokens, result: await stream.result, fed, client };
  };

  it('streams UTF-8: a character split over tokens is emitted whole, with the token that completes it', async () => {
    const { tokens, result } = await run(bytes('Hé日!'), { maxTokens: 7 });
    expect(tokens.map((t) => t.text)).toEqual(['H', '', 'é', '', '', '日', '!']);
    expect(tokens.map((t) => t.id)).toEqual(bytes('Hé日!'));
    expect(result).toMatchObject({ reason: 'length', generatedTokens: 7, text: 'Hé日!' });
  });

  it('maxTokens ending mid-character flushes U+FFFD rather than dropping the bytes', async () => {
    const { tokens } = await run([0x48, 0xc3], { maxTokens: 2 });
    expect(tokens.map((t) => t.text)).toEqual(['H', '\uFFFD']);
  });

  it('a stop string ends the stream and is never emitted, even split over tokens', async () => {
    const { tokens, result, fed } = await run(bytes('ab\n\ncd'), { maxTokens: 20, stop: ['\n\n'] });
    expect(tokens.map((t) => t.text).join('')).toBe('ab');
    expect(tokens.map((t) => t.text)).toEqual(['a', 'b', '']); // the first "\n" is held back, then dropped
    expect(result).toMatchObject({ reason: 'stop', generatedTokens: 4, text: 'ab' });
    // Every sampled token is part of the history (the last one is held, to be fed by the next call).
    expect(fed).toEqual([65, ...bytes('ab\n')]);
  });

  it('held-back text that turns out not to be a stop string is released; text before a stop inside one token is kept', async () => {
    const a = await run(bytes('xXYbXYZq'), { maxTokens: 20, stop: ['XYZ'] });
    expect(a.tokens.map((t) => t.text)).toEqual(['x', '', '', 'XYb', '', '']); // then Z completes the stop: not yielded
    expect(a.result.text).toBe('xXYb');
    const b = await run(bytes('A\n'), { maxTokens: 2, stop: ['\n\n'] });
    expect(b.tokens.map((t) => t.text)).toEqual(['A', '\n']); // the stream ended: nothing is held back
    const c = await run([...bytes('ab'), 0xe6, 0x97, 0xa5, ...bytes('END')], { maxTokens: 20, stop: ['日E', 'zz'] });
    expect(c.result.text).toBe('ab');
  });

  it('EOS ends the stream without being yielded; ignoreEos goes past it', async () => {
    const a = await run([65, EOS, 66], { maxTokens: 5 });
    expect(a.tokens).toEqual([{ id: 65, text: 'A' }]);
    expect(a.result).toMatchObject({ reason: 'eos', generatedTokens: 2 });
    const b = await run([65, EOS, 66], { maxTokens: 3, ignoreEos: true });
    expect(b.tokens.map((t) => t.id)).toEqual([65, EOS, 66]);
    expect(b.result.text).toBe('AB');
  });

  it('string prompts get BOS at position 0 only; the last token of each call is fed by the next', async () => {
    const { client, fed } = scriptedHost(bytes('xyz'));
    expect(await client.prefill('Hi')).toEqual({ processed: 3, position: 3 });
    expect(fed).toEqual([BOS, 72]);
    expect(await client.prefill('!')).toEqual({ processed: 1, position: 4 });
    expect(fed).toEqual([BOS, 72, 105]);
    const r = await collect(client.generate('', { maxTokens: 2, temperature: 0 }));
    expect(r.map((t) => t.text).join('')).toBe('xy');
    expect(fed).toEqual([BOS, ...bytes('Hi!x')]);
    expect((await client.stats()).position).toBe(6);
    await client.reset();
    expect(await client.prefill([1, 2])).toEqual({ processed: 2, position: 2 }); // ids: no BOS
  });

  it('rejects bad requests before queueing them', async () => {
    const { client } = scriptedHost([]);
    await expect(client.prefill([1, 258])).rejects.toBeInstanceOf(InvalidTokenError);
    await expect(client.prefill([0.5])).rejects.toMatchObject({ name: 'InvalidTokenError', index: 0, vocabSize: 258 });
    await expect(collect(client.generate('a', { stop: [''] }))).rejects.toBeInstanceOf(RangeError);
    await expect(collect(client.generate('a', { topP: 0 }))).rejects.toBeInstanceOf(RangeError);
    await expect(collect(client.generate('a', { maxTokens: -1 }))).rejects.toBeInstanceOf(RangeError);
    await expect(collect(client.generate([]))).rejects.toThrow(/needs a prompt/);
  });
});

describe('StopText', () => {
  it('holds back exactly the longest suffix that could begin a stop string', () => {
    const s = new StopText(['abc', 'bd']);
    expect(s.push('xxab')).toEqual({ text: 'xx', stopped: false });
    expect(s.push('d')).toEqual({ text: 'xxab'.slice(2, 3), stopped: true }); // "a" then "bd"
    const t = new StopText(['abc']);
    expect(t.push('ab')).toEqual({ text: '', stopped: false });
    expect(t.push('x')).toEqual({ text: 'abx', stopped: false });
    expect(t.flush()).toBe('');
  });
});

describe('errors keep their class and fields', () => {
  it('round-trips through the wire form', () => {
    const e = fromWireError(structuredClone(toWireError(new EngineAbortedError(12, 40, new Error('user')))));
    expect(e).toBeInstanceOf(EngineAbortedError);
    expect(e).toBeInstanceOf(Error);
    expect(e).toMatchObject({ name: 'EngineAbortedError', processed: 12, position: 40 });
    expect(e.message).toBe('aborted after 12 tokens of this call (the engine is at position 40): user');
    const s = fromWireError(structuredClone(toWireError(new ShapeMismatchError('w', [1, 2], [3], 'file'))));
    expect(s).toBeInstanceOf(ShapeMismatchError);
    expect(s).toMatchObject({ tensor: 'w', expected: [1, 2], actual: [3], source: 'file' });
    const unknown = new Error('odd');
    unknown.name = 'SomethingElse';
    expect(fromWireError(toWireError(unknown))).toMatchObject({ name: 'SomethingElse', message: 'odd' });
    // A minified bundle renames classes (and so `name`); the wire form goes by the class, not the name.
    const mangled = new InvalidTokenError(5, 0, 4);
    mangled.name = 'L';
    const back = fromWireError(structuredClone(toWireError(mangled)));
    expect(back).toBeInstanceOf(InvalidTokenError);
    expect(back).toMatchObject({ name: 'InvalidTokenError', token: 5, vocabSize: 4 });
  });

  it('cross a comlink channel as the same classes', async () => {
    installErrorTransfer();
    const { port1, port2 } = new MessageChannel();
    Comlink.expose({
      abort: () => { throw new EngineAbortedError(3, 9); },
      config: async () => { throw new ConfigError('hidden_size', 'must be positive', 'config.json'); },
      gpu: () => { throw new WebGpuUnavailableError('no adapter'); },
      range: () => { throw new RangeError('r'); },
    }, port1);
    const remote = Comlink.wrap<{ abort(): void; config(): void; gpu(): void; range(): void }>(port2);
    try {
      await expect(remote.abort()).rejects.toSatisfy((e: unknown) => e instanceof EngineAbortedError && e.processed === 3 && e.position === 9);
      await expect(remote.config()).rejects.toSatisfy((e: unknown) => e instanceof ConfigError && e.key === 'hidden_size' && e.source === 'config.json');
      await expect(remote.gpu()).rejects.toSatisfy((e: unknown) => e instanceof WebGpuUnavailableError && e.message === 'no adapter');
      await expect(remote.range()).rejects.toBeInstanceOf(RangeError);
    } finally {
      port1.close();
      port2.close();
    }
  });
});

describe('generate on the GPU (in process, tiny-all-on on Dawn)', () => {
  let device: GPUDevice;
  let engine: TttEngine;
  const pushed: TttStats[] = [];
  beforeAll(async () => {
    device = (await openTestGpu()).gpu.device;
    engine = await createEngine({ model: 'tiny-all-on', source: fixture('tiny-all-on'), device, weights: 'f32', statsEvery: 4 });
    engine.onStats((s) => pushed.push(s));
  });
  afterAll(async () => {
    await engine?.dispose();
    device?.destroy();
  });

  it('yields {id, text}; the streamed text equals decoding all the ids at once', async () => {
    await engine.reset();
    const stream = engine.generate('Once upon a time', { maxTokens: 48, temperature: 1.5, seed: 3, ignoreEos: true });
    const tokens = await collect(stream);
    const result = await stream.result;
    expect(tokens).toHaveLength(48);
    for (const t of tokens) {
      expect(Number.isInteger(t.id) && t.id >= 0 && t.id < 258).toBe(true);
      expect(typeof t.text).toBe('string');
    }
    const text = tokens.map((t) => t.text).join('');
    expect(text).toBe(await engine.decode(tokens.map((t) => t.id)));
    expect(result).toMatchObject({ reason: 'length', promptTokens: 17, generatedTokens: 48, position: 17 + 48, text });
    // A random byte model at T=1.5 produces multi-byte sequences, so this exercised the held-back path.
    expect(tokens.some((t) => t.id >= 0x80)).toBe(true);
  });

  it('maxTokens, positions and BOS', async () => {
    await engine.reset();
    expect(await engine.prefill('abc')).toEqual({ processed: 4, position: 4 });
    const tokens = await collect(engine.generate([100, 101], { maxTokens: 5, temperature: 0, ignoreEos: true }));
    expect(tokens).toHaveLength(5);
    expect((await engine.stats()).position).toBe(4 + 2 + 5);
    // Continue with no prompt: the last generated token is fed first.
    const more = engine.generate('', { maxTokens: 3, temperature: 0, ignoreEos: true });
    expect(await collect(more)).toHaveLength(3);
    expect((await more.result).position).toBe(14);
  });

  it('a stop string ends the stream before it, and the text is the greedy text cut there', async () => {
    await engine.reset();
    const full = await collect(engine.generate('The ', { maxTokens: 40, temperature: 0, ignoreEos: true }));
    const text = full.map((t) => t.text).join('');
    // Pick a stop string from the middle of the greedy output (clear of replacement characters).
    let at = 8;
    while (at < text.length - 3 && /\uFFFD/.test(text.slice(at, at + 2))) at++;
    const stop = text.slice(at, at + 2);
    const cut = text.indexOf(stop);
    await engine.reset();
    const stream = engine.generate('The ', { maxTokens: 40, temperature: 0, ignoreEos: true, stop: [stop] });
    const got = (await collect(stream)).map((t) => t.text).join('');
    expect(got).toBe(text.slice(0, cut));
    expect(got.includes(stop)).toBe(false);
    expect((await stream.result).reason).toBe('stop');
  });

  it('the same seed from the same state gives the same tokens; another seed differs', async () => {
    const sample = async (seed: number) => {
      await engine.reset();
      return (await collect(engine.generate('seed test', { maxTokens: 24, temperature: 1, seed, ignoreEos: true }))).map((t) => t.id);
    };
    const a = await sample(7);
    expect(await sample(7)).toEqual(a);
    expect(await sample(8)).not.toEqual(a);
  });

  it('stats are sane after prefill and generate, and are pushed after requests and every N tokens', async () => {
    await engine.reset();
    pushed.length = 0;
    const text = Array.from((await readFile(fileURLToPath(import.meta.url))).subarray(0, 200));
    await engine.prefill(text);
    const s1 = await engine.stats();
    expect(s1.position).toBe(200);
    expect(s1.prefillTokensPerSecond).toBeGreaterThan(0);
    expect(s1.memory.total).toBeGreaterThan(0);
    expect(s1.memory.fastWeights).toBeGreaterThan(0);
    expect(s1.queued).toBe(0);
    expect(s1.info.mode).toBe('ttt');
    await collect(engine.generate(' ', { maxTokens: 12, temperature: 0, ignoreEos: true }));
    const s2 = await engine.stats();
    expect(s2.position).toBe(200 + 1 + 12);
    expect(s2.decodeMsLast).toBeGreaterThan(0);
    expect(s2.decodeMsRolling).toBeGreaterThan(0);
    expect(s2.jsHeap.engine).toBeGreaterThan(0); // Node exposes its heap; in process page = engine thread
    expect(s2.jsHeap.page).toBeGreaterThan(0);
    expect(s2.timingSource).toBe(s2.gpuMsLast === null ? 'submitted-work-done' : 'timestamp-query');
    expect(s2.timing.length).toBeGreaterThan(0);
    expect(s2.dispatchesLastBlock).toBeGreaterThan(10);
    expect(s2.memory.total).toBe(s1.memory.total); // constant state
    // prefill → 1 push; generate → pushes at tokens 4 and 8, then one at the end.
    expect(pushed.length).toBe(4);
    expect(pushed.at(-1)!.position).toBe(s2.position);
  });

  it('invalid ids → InvalidTokenError; saveMemory after text A, loadMemory into a fresh engine → the same greedy tokens; a foreign blob → MemoryMismatchError', async () => {
    await expect(engine.prefill([258])).rejects.toBeInstanceOf(InvalidTokenError);
    await expect(collect(engine.generate([1, -1]))).rejects.toMatchObject({ name: 'InvalidTokenError', index: 1 });

    // Text A spans several fast-weight chunks (16) and more than the window (24), and ends mid-chunk, so
    // the blob carries updated fast weights, momentum, a full KV ring and a pending chunk.
    await engine.reset();
    const textA = 'Remember this: the answer is 42, and the question was long forgotten by everyone.';
    await engine.prefill(textA);
    const position = (await engine.stats()).position;
    expect(position).toBe(textA.length + 1);
    expect(position % 16).not.toBe(0);
    const { blob, bytes } = await engine.saveMemory();
    expect(bytes).toBe(blob.byteLength);
    const want = (await collect(engine.generate(' The', { maxTokens: 24, temperature: 0, ignoreEos: true }))).map((t) => t.id);

    const fresh = await createEngine({ model: 'tiny-all-on', source: fixture('tiny-all-on'), device, weights: 'f32' });
    await fresh.loadMemory(blob);
    expect((await fresh.stats()).position).toBe(position);
    expect((await collect(fresh.generate(' The', { maxTokens: 24, temperature: 0, ignoreEos: true }))).map((t) => t.id)).toEqual(want);
    await fresh.dispose();
    // And the original engine, reset and restored, agrees too.
    await engine.reset();
    await engine.loadMemory(blob);
    expect((await collect(engine.generate(' The', { maxTokens: 24, temperature: 0, ignoreEos: true }))).map((t) => t.id)).toEqual(want);

    const other = await createEngine({ model: 'tiny-all-off', source: fixture('tiny-all-off'), device, weights: 'f32' });
    await expect(other.loadMemory(blob)).rejects.toBeInstanceOf(MemoryMismatchError);
    expect(other.info.modelId).not.toBe(engine.info.modelId);
    await other.dispose();
  });

  it('opens its own device from an adapter and reports it; no adapter → WebGpuUnavailableError saying what to do', async () => {
    const { adapter } = await openNodeAdapter();
    const stages: string[] = [];
    const own = await createEngine({ model: 'tiny-all-on', source: fixture('tiny-all-on'), adapter, onProgress: (p) => stages.push(p.stage) });
    // In order, each at least once: WebGPU before anything is read, the weights' header, the memory plan
    // (before any tensor), the weights streamed, then ready.
    expect([...new Set(stages)]).toEqual(['webgpu', 'config', 'weights', 'plan', 'engine', 'ready']);
    expect(stages.lastIndexOf('weights')).toBeGreaterThan(stages.indexOf('plan'));
    expect(own.info).toMatchObject({ mode: 'ttt', vocabSize: 258, tokenizer: 'byte', bosId: BOS, eosId: EOS, worker: false, capacity: Infinity });
    expect(own.info.adapter.length).toBeGreaterThan(0);
    expect(['f16', 'f16-packed']).toContain(own.info.weights);
    expect((await collect(own.generate('hi', { maxTokens: 3, temperature: 0, ignoreEos: true })))).toHaveLength(3);
    await own.dispose();

    const nullGpu = { requestAdapter: async () => null } as unknown as GPU;
    await expect(createEngine({ model: 'x', source: fixture('tiny-all-on'), gpu: nullGpu })).rejects.toSatisfy(
      (e: unknown) => e instanceof WebGpuUnavailableError && /no adapter/.test(e.message) && /driver/.test(e.message),
    );
    if (!(globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu) {
      await expect(createEngine({ model: 'x', source: fixture('tiny-all-on'), worker: false })).rejects.toSatisfy(
        (e: unknown) => e instanceof WebGpuUnavailableError && /navigator\.gpu is missing/.test(e.message) && /--enable-unsafe-webgpu/.test(e.message),
      );
    }
  });
});

describe('the API with a TTT-E2E model (tiny-e2e-s1: learns by backpropagation while it reads)', () => {
  let device: GPUDevice;
  beforeAll(async () => {
    device = (await openTestGpu()).gpu.device;
  });
  afterAll(() => device?.destroy());

  it('prefill, generate, stats with each update\'s chunk loss, memory save/restore and reset, like every family', async () => {
    const engine = await createEngine({ model: 'tiny-e2e-s1', source: fixture('tiny-e2e-s1'), device, weights: 'f32' });
    expect(engine.info).toMatchObject({ mode: 'ttt', vocabSize: 256, tokenizer: 'byte', bosId: 1, eosId: 2, capacity: Infinity, window: 24, logprobs: true });
    // BOS and EOS are the control bytes 1 and 2 (the official byte models' convention): text holding them is refused.
    await expect(engine.prefill('a\u0001b')).rejects.toThrow(/reserves for BOS/);
    // 100 bytes: 101 positions with BOS, whether or not the host holds the last one back for generate(), is 6 updates.
    const text = 'Test-time training keeps learning while it reads: every chunk of sixteen bytes is one SGD step. ....'.slice(0, 100);
    expect(text.length).toBe(100);
    await engine.prefill(text);
    const s = await engine.stats();
    expect(s.position).toBe(1 + text.length); // BOS first
    expect(s.learning!.updates).toBe(6);
    expect(s.learning!.recent.length).toBe(s.learning!.updates);
    for (const u of s.learning!.recent) expect(Number.isFinite(u.loss) && u.loss > 0 && u.gradNorm > 0).toBe(true);
    expect(s.memory.innerStep).toBeGreaterThan(0);
    const { blob } = await engine.saveMemory();
    const want = (await collect(engine.generate(' It', { maxTokens: 20, temperature: 0, ignoreEos: true }))).map((t) => t.id);
    expect(want.length).toBe(20);
    const fresh = await createEngine({ model: 'tiny-e2e-s1', source: fixture('tiny-e2e-s1'), device, weights: 'f32' });
    await fresh.loadMemory(blob);
    expect((await collect(fresh.generate(' It', { maxTokens: 20, temperature: 0, ignoreEos: true }))).map((t) => t.id)).toEqual(want);
    await fresh.reset();
    expect((await fresh.stats()).learning!.updates).toBe(0);
    await fresh.dispose();
    await engine.dispose();
  });
});
