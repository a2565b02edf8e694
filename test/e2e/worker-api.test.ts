import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, launchChromium } from '../helpers/browser.ts';
import { startDemo, type DemoServer } from '../helpers/serve-demo.ts';

/** launchChromium's flags (test/helpers/browser.ts), for a launch that leaves one out. */
const CHROMIUM_ARGS = ['--enable-unsafe-webgpu', '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

interface ErrorSeen {
  name: string;
  message: string;
  instance: boolean;
  fields: Record<string, unknown>;
}

interface Check {
  done: boolean;
  error: string | null;
  loadMs: number;
  generateMs: number;
  totalMs: number;
  stages: string[];
  info: { mode: string; weights: string; worker: boolean; adapter: string; modelId: string; vocabSize: number; tokenizer: string };
  prefill: { processed: number; position: number };
  generated: { ids: number[]; text: string };
  decoded: string;
  afterGenerate: { position: number; decodeMsLast: number | null; prefillTokensPerSecond: number | null; memory: { total: number } };
  abort: ErrorSeen | string;
  abortProgress: number[];
  longLength: number;
  positionBeforeAbort: number;
  positionAfterAbort: number;
  afterAbort: { ids: number[]; position: number };
  invalid: ErrorSeen | string;
  mismatch: ErrorSeen | string;
  memory: { bytes: number; same: boolean };
  otherInputs: { fromUrl: number[]; fromFiles: number[]; fromDir: number[] };
  stats: { position: number; queued: number; memory: { total: number }; jsHeap: { engine: number | null; page: number | null }; timingSource: string; gpuMsLast: number | null };
  pushedStats: number;
  afterDispose: ErrorSeen | string;
  badModel: ErrorSeen | string;
  noWebGpu?: ErrorSeen | string;
  e2ePrefill: { processed: number; position: number };
  e2e: { info: { mode: string; worker: boolean; vocabSize: number; bosId: number | null; eosId: number | null }; learning: { updates: number; recent: { chunk: number; loss: number; gradNorm: number; clipScale: number }[] }; innerStep: number };
  e2eRestored: { want: number[]; got: number[] };
  e2eFrozen: { learning: null | object; innerStep: number };
}

async function runCheck(browser: Browser, url: string): Promise<{ check: Check; errors: string[] }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  await page.goto(url);
  await page.waitForFunction(() => {
    const c = (window as unknown as { __apiCheck?: { done: boolean; error: string | null } }).__apiCheck;
    return c && (c.done || c.error !== null);
  }, undefined, { timeout: 90_000 });
  const check = (await page.evaluate(() => (window as unknown as { __apiCheck: unknown }).__apiCheck)) as Check;
  await page.close();
  return { check, errors };
}

describe('public API through the Web Worker in headless Chromium (SwiftShader)', () => {
  let server: DemoServer;
  let browser: Browser;
  beforeAll(async () => {
    server = await startDemo();
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('loads the bundled model in a worker, prefills, generates, aborts a long prefill part-way and carries on', async () => {
    const { check: c, errors } = await runCheck(browser, new URL('api-check.html', server.url).href);
    expect(c.error).toBeNull();
    process.stderr.write(`[worker-api] load ${c.loadMs.toFixed(0)} ms, 20 greedy tokens ${c.generateMs.toFixed(0)} ms, whole check ${c.totalMs.toFixed(0)} ms; ` +
      `abort at ${(c.abort as ErrorSeen).fields?.processed}/${c.longLength}; adapter ${c.info.adapter}, ${c.info.weights}\n`);

    // SwiftShader is a CPU emulator: the engine picks the CPU-emulator kernel shapes from the adapter's info.
    expect(c.info).toMatchObject({ mode: 'ttt', worker: true, vocabSize: 258, tokenizer: 'byte', kernels: 'cpu' });
    expect(['f16', 'f16-packed']).toContain(c.info.weights); // packed on SwiftShader (no shader-f16)
    expect(c.info.modelId.length).toBeGreaterThan(0);
    expect(c.stages[0]).toBe('webgpu');
    expect(c.stages.at(-1)).toBe('ready');

    // "Once upon a time" is 16 bytes; BOS goes first at position 0.
    expect(c.prefill).toEqual({ processed: 17, position: 17 });
    expect(c.generated.ids).toHaveLength(20);
    expect(c.generated.text).toBe(c.decoded);
    expect(c.afterGenerate.position).toBe(17 + 6 + 20);
    expect(c.afterGenerate.decodeMsLast).toBeGreaterThan(0);
    expect(c.afterGenerate.prefillTokensPerSecond).toBeGreaterThan(0);

    // The abort arrived as the same class with its fields, stopped within one block, and the position
    // equals what was processed.
    const abort = c.abort as ErrorSeen;
    expect(abort).toMatchObject({ name: 'EngineAbortedError', instance: true });
    const processed = abort.fields.processed as number;
    expect(processed).toBeGreaterThanOrEqual(64);
    expect(processed).toBeLessThan(c.longLength);
    expect(processed - c.abortProgress.find((p) => p >= 64)!).toBeLessThanOrEqual(2 * 16);
    expect(abort.fields.position).toBe(c.positionBeforeAbort + processed);
    expect(c.positionAfterAbort).toBe(c.positionBeforeAbort + processed);
    expect(c.afterAbort.ids).toHaveLength(5);
    expect(c.afterAbort.position).toBe(c.positionAfterAbort + 1 + 5);

    expect(c.invalid).toMatchObject({ name: 'InvalidTokenError', instance: true, fields: { token: 999, index: 0, vocabSize: 258 } });
    // A blob of zeros is damage (no ttt-web magic): MemoryCorruptError, which is a MemoryMismatchError.
    expect(c.mismatch).toMatchObject({ name: 'MemoryCorruptError', instance: true });
    expect(c.memory.bytes).toBeGreaterThan(0);
    expect(c.memory.same).toBe(true);
    expect(c.stats.queued).toBe(0);
    expect(c.stats.memory.total).toBeGreaterThan(0);
    // Chromium exposes performance.memory on the page; the worker's heap is reported or null, never made up.
    process.stderr.write(`[worker-api] js heap: worker ${c.stats.jsHeap.engine}, page ${c.stats.jsHeap.page}; timing ${c.stats.timingSource}, gpu ms ${c.stats.gpuMsLast}\n`);
    expect(c.stats.jsHeap.page).toBeGreaterThan(0);
    expect(c.stats.jsHeap.engine === null || c.stats.jsHeap.engine > 0).toBe(true);

    // TTT-E2E in the worker: 101 positions (BOS first) hold 6 updates whatever the host holds back, each logged.
    expect(c.e2e.info).toMatchObject({ mode: 'ttt', worker: true, vocabSize: 256, bosId: 1, eosId: 2 });
    expect(c.e2e.learning.updates).toBe(6);
    expect(c.e2e.learning.recent.map((u) => u.chunk)).toEqual([0, 1, 2, 3, 4, 5]);
    for (const u of c.e2e.learning.recent) {
      expect(u.loss).toBeGreaterThan(0);
      expect(u.gradNorm).toBeGreaterThan(0);
      expect(u.clipScale).toBeGreaterThan(0);
      expect(u.clipScale).toBeLessThanOrEqual(1);
    }
    expect(c.e2e.innerStep).toBeGreaterThan(0);
    expect(c.e2eRestored.got).toEqual(c.e2eRestored.want);
    expect(c.e2eFrozen).toEqual({ learning: null, innerStep: 0 });
    expect(c.stats.timingSource).toBe(c.stats.gpuMsLast === null ? 'submitted-work-done' : 'timestamp-query');
    expect(c.pushedStats).toBeGreaterThanOrEqual(6);
    expect(c.afterDispose).toMatchObject({ name: 'EngineDestroyedError', instance: true });
    expect(c.otherInputs.fromUrl).toHaveLength(8);
    expect(c.otherInputs.fromFiles).toEqual(c.otherInputs.fromUrl);
    expect(c.otherInputs.fromDir).toEqual(c.otherInputs.fromUrl);
    expect(c.badModel).toMatchObject({ name: 'ModelFetchError', instance: true });
    expect((c.badModel as ErrorSeen).message).toMatch(/does-not-exist\/config\.json/);
    expect(errors).toEqual([]);
  });

  it('without WebGPU, createEngine rejects with WebGpuUnavailableError saying what to do', async () => {
    // The same Chromium without --enable-unsafe-webgpu: on Linux it then offers no WebGPU adapter.
    const plain = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS.filter((a) => a !== '--enable-unsafe-webgpu') });
    try {
      const { check: c, errors } = await runCheck(plain, new URL('api-check.html?check=no-webgpu', server.url).href);
      expect(c.error).toBeNull();
      expect(c.noWebGpu).toMatchObject({ name: 'WebGpuUnavailableError', instance: true });
      expect((c.noWebGpu as ErrorSeen).message).toMatch(/enable-unsafe-webgpu/);
      expect(errors).toEqual([]);
    } finally {
      await plain.close();
    }
  });
});
