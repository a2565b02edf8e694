import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, EngineAbortedError, EngineDestroyedError, type PrefillProgress, type TttEngine } from '../../src/api/index.ts';
import { Scheduler } from '../../src/api/scheduler.ts';
import { NodeDirectorySource } from '../../src/model/source.ts';
import { openTestGpu } from '../helpers/gpu.ts';

const fixture = (name: string) => new NodeDirectorySource(fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url)));

/** Real text: the bytes of this file. */
async function textTokens(n: number): Promise<number[]> {
  const bytes = await readFile(fileURLToPath(import.meta.url));
  return Array.from(bytes.subarray(0, n));
}

const tick = () => new Promise<void>((r) => setTimeout(r, 1));

describe('Scheduler (pure)', () => {
  const queuedAbort = (reason: unknown) => new Error(`aborted while queued: ${String(reason)}`);

  it('runs requests one at a time in submission order', async () => {
    const s = new Scheduler();
    const log: string[] = [];
    let concurrent = 0, most = 0;
    const job = (name: string, ms: number) => s.run(async () => {
      concurrent++;
      most = Math.max(most, concurrent);
      log.push(`${name}:start`);
      await new Promise((r) => setTimeout(r, ms));
      log.push(`${name}:end`);
      concurrent--;
      return name;
    }, { abortedWhileQueued: queuedAbort, label: name });
    const results = await Promise.all([job('a', 20), job('b', 1), job('c', 10), job('d', 0)]);
    expect(results).toEqual(['a', 'b', 'c', 'd']);
    expect(most).toBe(1);
    expect(log).toEqual(['a:start', 'a:end', 'b:start', 'b:end', 'c:start', 'c:end', 'd:start', 'd:end']);
  });

  it('a failing request does not stop the queue', async () => {
    const s = new Scheduler();
    const a = s.run(async () => { throw new RangeError('bad'); }, { abortedWhileQueued: queuedAbort });
    const b = s.run(async () => 'ok', { abortedWhileQueued: queuedAbort });
    await expect(a).rejects.toBeInstanceOf(RangeError);
    await expect(b).resolves.toBe('ok');
  });

  it('aborting a queued request removes it without running it; aborting the running one aborts its signal', async () => {
    const settled: (string | undefined)[] = [];
    const s = new Scheduler((label) => settled.push(label));
    let release!: () => void;
    let runningSignal: AbortSignal | null = null;
    const first = s.run((signal) => {
      runningSignal = signal;
      return new Promise<string>((resolve, reject) => {
        release = () => resolve('first');
        signal.addEventListener('abort', () => reject(new Error('stopped')));
      });
    }, { abortedWhileQueued: queuedAbort, label: 'first' });
    const c2 = new AbortController();
    let ranSecond = false;
    const second = s.run(async () => { ranSecond = true; }, { signal: c2.signal, abortedWhileQueued: queuedAbort, label: 'second' });
    const third = s.run(async () => 'third', { abortedWhileQueued: queuedAbort, label: 'third' });
    await tick();
    expect(s.running).toBe('first');
    expect(s.queued).toBe(2);
    c2.abort('user');
    await expect(second).rejects.toThrow('aborted while queued: user');
    expect(s.queued).toBe(1);
    release();
    await expect(first).resolves.toBe('first');
    await expect(third).resolves.toBe('third');
    expect(ranSecond).toBe(false);
    expect(runningSignal!.aborted).toBe(false);
    expect(settled).toEqual(['first', 'third']);

    const c4 = new AbortController();
    const fourth = s.run((signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error(`stopped: ${String(signal.reason)}`)))), { signal: c4.signal, abortedWhileQueued: queuedAbort });
    await tick();
    c4.abort('now');
    await expect(fourth).rejects.toThrow('stopped: now');
  });

  it('an already aborted signal never runs; close() rejects the queue, aborts the running request and refuses new ones', async () => {
    const s = new Scheduler();
    let ran = false;
    await expect(s.run(async () => { ran = true; }, { signal: AbortSignal.abort('early'), abortedWhileQueued: queuedAbort })).rejects.toThrow('early');
    expect(ran).toBe(false);
    const running = s.run((signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))), { abortedWhileQueued: queuedAbort });
    const queued = s.run(async () => 'never', { abortedWhileQueued: queuedAbort });
    await tick();
    const closing = s.close(() => new Error('closed'));
    await expect(queued).rejects.toThrow('closed');
    await expect(running).rejects.toThrow('closed');
    await closing;
    await expect(s.run(async () => 1, { abortedWhileQueued: queuedAbort })).rejects.toThrow('closed');
  });
});

describe('the scheduler in the in-process engine (tiny-all-on, Dawn)', () => {
  let device: GPUDevice;
  let engine: TttEngine;
  beforeAll(async () => {
    device = (await openTestGpu()).gpu.device;
    engine = await createEngine({ model: 'tiny-all-on', source: fixture('tiny-all-on'), device, weights: 'f32' });
  });
  afterAll(async () => {
    await engine?.dispose();
    device?.destroy();
  });

  it('concurrent calls run whole, in call order, never interleaved', async () => {
    await engine.reset();
    const text = await textTokens(100);
    const log: string[] = [];
    const a = engine.prefill(text, { onProgress: () => log.push('A') });
    const b = (async () => {
      const ids: number[] = [];
      for await (const t of engine.generate([65], { maxTokens: 6, temperature: 0, ignoreEos: true })) {
        log.push('B');
        ids.push(t.id);
      }
      return ids;
    })();
    const c = engine.prefill(text.slice(0, 40), { onProgress: () => log.push('C') });
    const [ra, ids, rc] = await Promise.all([a, b, c]);
    expect(ra).toEqual({ processed: 100, position: 100 });
    expect(ids).toHaveLength(6);
    expect(rc).toEqual({ processed: 40, position: 100 + 1 + 6 + 40 });
    const joined = log.join('');
    expect(joined).toMatch(/^A+B{6}C+$/);

    // The same requests one after another give the same tokens: nothing leaked between them.
    await engine.reset();
    await engine.prefill(text);
    const again: number[] = [];
    for await (const t of engine.generate([65], { maxTokens: 6, temperature: 0, ignoreEos: true })) again.push(t.id);
    expect(again).toEqual(ids);
  });

  it('a queued request can be aborted: it never runs, and the running one is unaffected', async () => {
    await engine.reset();
    const text = await textTokens(200);
    const controller = new AbortController();
    let queuedRan = false;
    const running = engine.prefill(text);
    const queued = engine.prefill([1, 2, 3], { signal: controller.signal, onProgress: () => (queuedRan = true) });
    const after = engine.prefill([4, 5]);
    controller.abort();
    const err = await queued.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineAbortedError);
    expect((err as EngineAbortedError).processed).toBe(0);
    expect(await running).toEqual({ processed: 200, position: 200 });
    expect(await after).toEqual({ processed: 2, position: 202 });
    expect(queuedRan).toBe(false);
    expect((await engine.stats()).position).toBe(202);
  });

  it('abort mid-prefill: position equals the processed tokens, the state equals feeding exactly those, and the next call works', async () => {
    await engine.reset();
    const text = await textTokens(400);
    const controller = new AbortController();
    const seen: PrefillProgress[] = [];
    const err = await engine.prefill(text, {
      signal: controller.signal,
      onProgress: (p) => {
        seen.push(p);
        if (p.processed >= 64) controller.abort(new Error('enough'));
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineAbortedError);
    const { processed, position } = err as EngineAbortedError;
    expect(processed).toBeGreaterThanOrEqual(64);
    // Stopped within one block (one 16-token chunk here) of the abort.
    expect(processed).toBeLessThanOrEqual(64 + 16 + 16);
    expect(position).toBe(processed);
    expect((err as Error).message).toMatch(/enough/);
    expect((await engine.stats()).position).toBe(processed);
    expect(seen.every((p, i) => i === 0 || p.processed > seen[i - 1].processed)).toBe(true);

    // The next call works and continues from exactly the processed tokens.
    const cont: number[] = [];
    for await (const t of engine.generate([65], { maxTokens: 8, temperature: 0, ignoreEos: true })) cont.push(t.id);
    const fresh = await createEngine({ model: 'tiny-all-on', source: fixture('tiny-all-on'), device, weights: 'f32' });
    await fresh.prefill(text.slice(0, processed));
    const want: number[] = [];
    for await (const t of fresh.generate([65], { maxTokens: 8, temperature: 0, ignoreEos: true })) want.push(t.id);
    expect(cont).toEqual(want);
    await fresh.dispose();
  });

  it('aborting a generation mid-stream keeps every yielded token in the state; breaking out of the loop stops it too', async () => {
    await engine.reset();
    await engine.prefill([256, 72, 105]);
    const controller = new AbortController();
    const got: number[] = [];
    const stream = engine.generate([32], { maxTokens: 200, temperature: 0, ignoreEos: true, signal: controller.signal });
    const err = await (async () => {
      for await (const t of stream) {
        got.push(t.id);
        if (got.length === 5) controller.abort();
      }
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineAbortedError);
    expect((err as EngineAbortedError).processed).toBe(1); // the whole prompt was fed
    // Tokens the engine produced before the abort landed are still delivered before the error; every
    // one of them is in the state: 3 prefilled + 1 prompt + the generated ones.
    expect(got.length).toBeGreaterThanOrEqual(5);
    expect(got.length).toBeLessThan(200);
    expect((await engine.stats()).position).toBe(4 + got.length);

    const before = (await engine.stats()).position;
    let n = 0;
    for await (const _ of engine.generate('', { maxTokens: 50, temperature: 0, ignoreEos: true })) {
      if (++n === 3) break;
    }
    const s = await engine.stats();
    expect(s.position).toBeGreaterThanOrEqual(before + 3);
    expect(s.position).toBeLessThan(before + 50);
    // Still usable.
    expect((await engine.prefill([1])).position).toBe(s.position + 1);
  });

  it('dispose aborts queued work and later calls reject with EngineDestroyedError', async () => {
    const e2 = await createEngine({ model: 'tiny-all-on', source: fixture('tiny-all-on'), device, weights: 'f32' });
    const text = await textTokens(300);
    const running = e2.prefill(text).catch((e: unknown) => e);
    const queued = e2.prefill(text).catch((e: unknown) => e);
    await e2.dispose();
    expect(await queued).toBeInstanceOf(EngineDestroyedError);
    const r = await running;
    // Either it finished before dispose reached it, or it was stopped and says why.
    if (r instanceof Error) expect(r).toBeInstanceOf(EngineDestroyedError);
    await expect(e2.prefill([1])).rejects.toBeInstanceOf(EngineDestroyedError);
    await expect(e2.stats()).rejects.toBeInstanceOf(EngineDestroyedError);
    const it = e2.generate('x')[Symbol.asyncIterator]();
    await expect(it.next()).rejects.toBeInstanceOf(EngineDestroyedError);
    await e2.dispose(); // idempotent
  });
});
