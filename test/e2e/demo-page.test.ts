/**
 * The demo page as built for visitors (`vite build`, then `vite preview`) in headless Chromium on
 * SwiftShader: it reads a few hundred tokens of a bundled document with the TTT model and, in Compare, the
 * full-attention model, generates greedily, and shows text, charts and readouts; Cancel stops a read and
 * the page goes on working; a saved memory comes back after a reload; and every failure has its own state.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseExportCsv } from '../../demo/export.ts';
import { LossCurve } from '../../demo/loss-curve.ts';
import { fullAttentionContext, prefillPlan, probeInterval } from '../../demo/plan.ts';
import { createEngine, type TttEngine } from '../../src/api/index.ts';
import { NodeDirectorySource } from '../../src/model/source.ts';
import { openNodeAdapter } from '../../src/node/webgpu.ts';
import { CHROMIUM, launchChromium } from '../helpers/browser.ts';
import { buildAndPreviewDemo } from '../helpers/preview-demo.ts';

const TOKENS = 300;
const DECODE = 32;
const BOS = 256;
const DOC = 'kjv-pentateuch';

interface Readouts {
  [name: string]: { text: string; value: number | null };
}

async function readouts(page: Page, model: string): Promise<Readouts> {
  return page.$$eval(`.run[data-model="${model}"] [data-readout]`, (dds) =>
    Object.fromEntries(dds.map((d) => {
      const el = d as HTMLElement;
      return [el.dataset.readout, { text: el.textContent ?? '', value: el.dataset.value === undefined ? null : Number(el.dataset.value) }];
    })),
  );
}

/** Compare with nothing: the selected model alone. */
async function uncheckCompare(page: Page): Promise<void> {
  for (const box of await page.$$('input[name="compare"]:checked')) await box.uncheck();
}

async function waitIdle(page: Page, timeout = 180_000): Promise<void> {
  await page.waitForFunction(() => document.body.dataset.phase === 'idle', undefined, { timeout });
}

async function statusOf(page: Page): Promise<{ state: string; title: string; message: string; hint: string }> {
  return page.$eval('#status', (el) => ({
    state: (el as HTMLElement).dataset.state ?? '',
    title: el.querySelector('.status-title')?.textContent ?? '',
    message: el.querySelector('.status-message')?.textContent ?? '',
    hint: el.querySelector('.status-hint')?.textContent ?? '',
  }));
}

/**
 * The page's run replayed in Node through the same public API, in process: the same token ids, the same
 * prefill calls (demo/plan.ts: the page feeds a token alone every few tokens to time decode), then the
 * same greedy generation. The page runs with `?weights=f32` and so does Node: with f32 weights both sides
 * compute in f32 from the same numbers, where the default f16 is unpacked in the shader on SwiftShader
 * (Chromium) but read as native f16 on lavapipe (Node), and a close greedy choice could then go either
 * way. Node uses its default adapter (lavapipe, ten times faster here than Node's SwiftShader); measured
 * when this test was written, the texts agreed on lavapipe and SwiftShader with f32 and f16 alike.
 */
interface NodeLoss {
  readonly smooth: [number, number][];
  readonly buckets: [number, number][];
  readonly mean: number | null;
}

async function nodeRun(model: string, ids: number[], afterSave: number): Promise<{ text: string; afterSave: string; loss: NodeLoss }> {
  const { adapter } = await openNodeAdapter();
  const engine: TttEngine = await createEngine({
    model,
    source: new NodeDirectorySource(resolve('public/models', model)),
    adapter,
    weights: 'f32',
    maxContext: fullAttentionContext(ids.length, DECODE), // as the page sizes it
    worker: false,
  });
  try {
    // The page asks for each call's log-probabilities and plots them (demo/loss-curve.ts): so does Node.
    const curve = new LossCurve();
    const smooth: [number, number][] = [];
    for (const s of prefillPlan(ids.length, probeInterval(ids.length))) {
      const r = await engine.prefill(ids.slice(s.start, s.end), { logprobs: true });
      for (const p of curve.push(s.start, r.logprobs!)) smooth.push([p.position, p.bits]);
    }
    const loss = { smooth, buckets: curve.buckets().map((b): [number, number] => [b.position, b.bits]), mean: curve.meanBits };
    let text = '';
    for await (const t of engine.generate('', { maxTokens: DECODE, temperature: 0, topP: 0.95 })) text += t.text;
    // What "Remember", then "Generate more" after a reload continues with: the saved memory, then '\n'.
    await engine.saveMemory();
    let more = '';
    for await (const t of engine.generate('\n', { maxTokens: afterSave, temperature: 0, topP: 0.95 })) more += t.text;
    return { text, afterSave: more, loss };
  } finally {
    await engine.dispose();
  }
}

describe('demo page, built and served by vite preview, in headless Chromium (SwiftShader)', () => {
  let server: Awaited<ReturnType<typeof buildAndPreviewDemo>>;
  let browser: Browser;
  beforeAll(async () => {
    server = await buildAndPreviewDemo();
    browser = await launchChromium();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('reads a bundled document with TTT and full attention, generates the text Node generates, plots, remembers across a reload; Cancel leaves it usable', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
    const t0 = Date.now();
    await page.goto(`${server.url}?weights=f32`);
    await waitIdle(page, 90_000);
    const loadMs = Date.now() - t0;
    expect((await statusOf(page)).state).toBe('ready');
    // The page opens on the index's default (the trained family); this test runs the tiny random ones.
    await page.selectOption('#model', '0');
    await waitIdle(page, 90_000);

    // The adapter and its features, and the selected model's config.json, key by key.
    expect(await page.getAttribute('#gpu-status', 'data-state')).toBe('ok');
    expect(await page.textContent('#gpu-status')).toMatch(/shader-f16: (yes|no), subgroups: (yes|no), timestamp-query: (yes|no)/);
    const index = JSON.parse(readFileSync('public/models/index.json', 'utf8')) as { name: string; path: string; mode: string }[];
    const config = JSON.parse(readFileSync(`public/${index[0].path}config.json`, 'utf8')) as Record<string, unknown>;
    const rows = await page.$$eval('#config-table tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent ?? '')));
    expect(Object.fromEntries(rows)).toEqual(Object.fromEntries(Object.entries(config).map(([k, v]) => [k, JSON.stringify(v)])));
    expect(await page.$$eval('#model option', (os) => os.length)).toBe(index.length);

    // The document (decompressed in the page), cut to TOKENS tokens; compare with full attention; greedy.
    const docs = JSON.parse(readFileSync('public/docs/index.json', 'utf8')) as { id: string; file: string }[];
    await page.selectOption('#doc', String(docs.findIndex((d) => d.id === DOC)));
    await page.check('input[name="length"][value="n"]');
    await page.fill('#tokens', String(TOKENS));
    await page.fill('#max-tokens', String(DECODE));
    await page.fill('#temperature', '0');
    const ttt = index.find((m) => m.mode === 'ttt')!.name;
    const full = index.find((m) => m.mode === 'full-attention')!.name;
    // Compare offers every other model of the family; the usual partner (full attention) is ticked.
    const family = index.filter((m) => (m as { family?: string }).family === (index[0] as { family?: string }).family).map((m) => m.name);
    expect(family.length).toBeGreaterThanOrEqual(3);
    expect(await page.$$eval('input[name="compare"]', (bs) => bs.map((b) => (b as HTMLInputElement).value))).toEqual(family.slice(1));
    expect(await page.$$eval('input[name="compare"]:checked', (bs) => bs.map((b) => (b as HTMLInputElement).value))).toEqual([full]);
    const t1 = Date.now();
    await page.click('#start');
    await waitIdle(page);
    const runMs = Date.now() - t1;
    expect(await statusOf(page)).toMatchObject({ state: 'done' });

    expect(await page.$$eval('.run', (rs) => rs.map((r) => (r as HTMLElement).dataset.model))).toEqual([ttt, full]);

    // The same text as the engine in Node, for the same input and calls.
    const text = gunzipSync(readFileSync(`public/docs/${docs.find((d) => d.id === DOC)!.file}`)).toString('utf8');
    const ids = [BOS, ...Buffer.from(text, 'utf8').subarray(0, TOKENS)];
    const t2 = Date.now();
    const expected = { [ttt]: await nodeRun(ttt, ids, 8), [full]: await nodeRun(full, ids, 8) };
    const nodeMs = Date.now() - t2;
    for (const model of [ttt, full]) {
      const shown = await page.$eval(`.run[data-model="${model}"] .generated`, (el) => el.textContent ?? '');
      expect(shown, `${model}'s generated text`).toBe(expected[model].text);
      expect(expected[model].text.length).toBeGreaterThan(0);
    }

    // Readouts are numbers: the position counts BOS, the input and every generated token.
    for (const model of [ttt, full]) {
      const r = await readouts(page, model);
      expect(r.position.value).toBe(ids.length + DECODE);
      for (const name of ['prefill-tps', 'decode-ms', 'decode-ms-rolling', 'mem-weights', 'mem-kv', 'mem-fast', 'mem-other', 'mem-total', 'kv-reserved']) {
        expect(Number.isFinite(r[name].value), `${model} ${name} = ${r[name].text}`).toBe(true);
        expect(r[name].value!).toBeGreaterThanOrEqual(0);
      }
      expect(r['prefill-tps'].value!).toBeGreaterThan(0);
      expect(r['decode-ms'].value!).toBeGreaterThan(0);
      expect(r['mem-weights'].value!).toBeGreaterThan(0);
      expect(r['weights-storage'].text).toBe('f32');
      expect(r['loss'].value!).toBeGreaterThan(0);
      expect(r['memory-size'].value!).toBeGreaterThan(0);
      expect(await page.getAttribute(`.run[data-model="${model}"] progress`, 'data-done')).toBe(String(ids.length));
    }
    const rt = await readouts(page, ttt), rf = await readouts(page, full);
    expect(rt['mem-fast'].value!).toBeGreaterThan(0);
    expect(rf['mem-fast'].value).toBe(0);
    // TTT's KV holds its window; full attention's every position so far.
    expect(rt['mem-kv'].value!).toBeLessThan(rf['mem-kv'].value!);
    expect(rf['mem-kv'].value! * 1024 * 1024).toBe((ids.length + DECODE - 1) * 2 * 64 * 4 * 2);

    // Both charts hold points for both runs: probes while reading and every decode step.
    const probes = prefillPlan(ids.length, probeInterval(ids.length)).filter((s) => s.probe).length;
    const latency = Number(await page.getAttribute('#chart-latency', 'data-points'));
    const memory = Number(await page.getAttribute('#chart-memory', 'data-points'));
    expect(await page.getAttribute('#chart-latency', 'data-series')).toBe('4'); // each step, and the median line
    expect(await page.getAttribute('#chart-memory', 'data-series')).toBe('8');
    expect(latency).toBeGreaterThanOrEqual(4 * (probes + DECODE - 1));
    expect(memory).toBeGreaterThanOrEqual(8 * (probes + DECODE - 1));
    expect(await page.$$eval('#charts canvas', (cs) => cs.length)).toBeGreaterThanOrEqual(2);

    // Loss by position: for each model the smoothed line and the bucket means the engine gives in Node
    // for the same input and calls (f32 weights on both sides: SwiftShader and lavapipe differ by f32
    // rounding, about 1e-5 bits here; the bound is 1e-3 bits), the window edge marked, the readout.
    type Snap = { labels: string[]; rows: [number, ...(number | null)[]][] };
    const loss = await page.evaluate(() => (globalThis as unknown as { tttDemo: { loss: () => Snap } }).tttDemo.loss());
    expect(await page.getAttribute('#chart-loss', 'data-series')).toBe('4');
    const seriesOf = (i: number) => loss.rows.filter((r) => r[i + 1] !== null).map((r) => [r[0], r[i + 1] as number]);
    for (const [i, model] of [ttt, full].entries()) {
      expect(loss.labels[2 * i]).toMatch(new RegExp(`^${model}: mean of the last`));
      for (const [k, want] of [[0, expected[model].loss.smooth], [1, expected[model].loss.buckets]] as const) {
        const got = seriesOf(2 * i + k);
        expect(got.map((p) => p[0]), `${model} loss series ${k} positions`).toEqual(want.map((p) => p[0]));
        expect(want.length).toBeGreaterThan(0);
        got.forEach((p, j) => expect(Math.abs(p[1] - want[j][1]), `${model} loss series ${k} at ${p[0]}`).toBeLessThan(1e-3));
      }
      const r = await readouts(page, model);
      expect(Math.abs(r.loss.value! - expected[model].loss.mean!)).toBeLessThan(1e-3);
    }
    const tttWindow = (JSON.parse(readFileSync(`public/models/${ttt}/config.json`, 'utf8')) as { window_size: number }).window_size;
    expect(await page.getAttribute('#chart-loss', 'data-markers')).toBe(`window (${tttWindow})@${tttWindow}`);

    // The export holds exactly what the charts hold, as JSON and as CSV.
    const exported = await page.evaluate(() => {
      const d = (globalThis as unknown as { tttDemo: { exportJson: () => string; exportCsv: () => string; latency: () => Snap; memory: () => Snap } }).tttDemo;
      return { json: d.exportJson(), csv: d.exportCsv(), latency: d.latency(), memory: d.memory() };
    });
    const json = JSON.parse(exported.json) as { models: { name: string }[]; charts: Record<string, Snap> };
    expect(json.models.map((m) => m.name)).toEqual([ttt, full]);
    expect(json.charts).toEqual({ loss, latency: exported.latency, memory: exported.memory });
    const points = parseExportCsv(exported.csv);
    const want = Object.entries(json.charts).flatMap(([chart, s]) => s.rows.flatMap(([x, ...ys]) => ys.flatMap((y, i) => (y === null ? [] : [{ chart, series: s.labels[i], position: x, value: y }]))));
    expect(points).toEqual(want);
    expect(await page.isEnabled('#export-json')).toBe(true);

    mkdirSync('test-results', { recursive: true });
    await page.screenshot({ path: 'test-results/demo.png', fullPage: true });

    // Remember, reload, restore: the memories come back at the same position, and generation continues
    // as it would have in the engine that saved them.
    await page.click('#remember');
    await waitIdle(page);
    expect(await statusOf(page)).toMatchObject({ state: 'done', title: 'Remembered' });
    const saved = await readouts(page, ttt);
    expect(saved.saved.value!).toBeGreaterThan(0);
    // The readout said how large the memory would be before it was saved.
    for (const model of [ttt, full]) {
      const r = await readouts(page, model);
      expect(r.saved.value, model).toBe(r['memory-size'].value);
    }
    expect(saved.saved.text).toMatch(/the same size at any length/);
    expect((await readouts(page, full)).saved.text).toMatch(/grows with the document/);
    await page.reload();
    await waitIdle(page, 90_000);
    expect(await page.$$eval('#saved-list li[data-doc-key]', (lis) => lis.length)).toBe(1);
    await page.click('#saved-list button.restore');
    await waitIdle(page);
    expect(await statusOf(page)).toMatchObject({ state: 'done', title: 'Restored' });
    for (const model of [ttt, full]) expect((await readouts(page, model)).position.value).toBe(ids.length + DECODE);
    await page.fill('#max-tokens', '8');
    await page.fill('#temperature', '0');
    await page.click('#generate');
    await waitIdle(page);
    for (const model of [ttt, full]) {
      const more = await page.$eval(`.run[data-model="${model}"] .generated`, (el) => el.textContent ?? '');
      expect(more, `${model} after restore`).toBe(expected[model].afterSave);
    }
    await page.click('#saved-list button.forget');
    await waitIdle(page);
    expect(await page.$$eval('#saved-list li[data-doc-key]', (lis) => lis.length)).toBe(0);

    // Cancel: a long read (TTT alone) stops part-way, the model keeps what it read, and the page works on.
    await uncheckCompare(page);
    await page.fill('#tokens', '6000');
    await page.fill('#max-tokens', '4');
    await page.click('#start');
    await page.waitForFunction(() => {
      const bar = document.querySelector('.run progress');
      return bar?.getAttribute('data-total') === '6001' && Number(bar.getAttribute('data-done')) >= 64;
    }, undefined, { timeout: 60_000 });
    expect(await page.isEnabled('#cancel')).toBe(true);
    await page.click('#cancel');
    await waitIdle(page, 30_000);
    const cancelled = await statusOf(page);
    expect(cancelled.state).toBe('cancelled');
    const done = Number(await page.getAttribute('.run progress', 'data-done'));
    expect(done).toBeGreaterThanOrEqual(64);
    expect(done).toBeLessThan(6001);
    expect((await readouts(page, ttt)).position.value).toBe(done);
    await page.waitForTimeout(500);
    expect(Number(await page.getAttribute('.run progress', 'data-done'))).toBe(done);
    for (const id of ['#start', '#generate']) expect(await page.isEnabled(id), id).toBe(true);
    await page.click('#generate');
    await waitIdle(page);
    expect((await statusOf(page)).state).toBe('done');
    // The next unread token of the document, then 4 generated ones.
    expect((await readouts(page, ttt)).position.value).toBe(done + 1 + 4);

    // Compare with every model of the family at once (three here), and Cancel stops all of them.
    for (const name of family.slice(1)) await page.check(`input[name="compare"][value="${name}"]`);
    await page.fill('#tokens', '3000');
    await page.click('#start');
    await page.waitForFunction((n) => {
      const bars = [...document.querySelectorAll('.run progress')];
      return bars.length === n && bars.every((b) => Number(b.getAttribute('data-done')) >= 32);
    }, family.length, { timeout: 120_000 });
    expect(await page.$$eval('.run', (rs) => rs.map((r) => (r as HTMLElement).dataset.model))).toEqual(family);
    expect(await page.getAttribute('#chart-loss', 'data-series')).toBe(String(2 * family.length));
    await page.click('#cancel');
    await waitIdle(page, 60_000);
    expect((await statusOf(page)).state).toBe('cancelled');
    for (const name of family) {
      const held = Number(await page.getAttribute(`.run[data-model="${name}"] progress`, 'data-done'));
      expect(held, name).toBeLessThan(3001);
      expect((await readouts(page, name)).position.value, name).toBe(held);
    }
    await page.waitForTimeout(500);
    for (const name of family) expect((await readouts(page, name)).position.value).toBe(Number(await page.getAttribute(`.run[data-model="${name}"] progress`, 'data-done')));
    await uncheckCompare(page);

    process.stderr.write(`[demo-page] load ${loadMs} ms, read ${TOKENS} tokens with 2 models + ${DECODE} greedy tokens each ${runMs} ms, ` +
      `Node replay ${nodeMs} ms; cancelled at ${done}/6001; ${latency} latency and ${memory} memory points\n`);
    expect(errors).toEqual([]);
    await context.close();
  }, 400_000);

  it('opens on the trained family with a length sized to the adapter; its default run (Start, nothing changed) finishes here, on SwiftShader', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const t0 = Date.now();
    await page.goto(server.url);
    await waitIdle(page, 120_000);
    const index = JSON.parse(readFileSync('public/models/index.json', 'utf8')) as { name: string; family: string; default?: boolean }[];
    const def = index.find((m) => m.default)!;
    expect(def).toBeDefined();
    expect(await page.$eval('#model', (s) => (s as HTMLSelectElement).selectedOptions[0].textContent ?? '')).toMatch(new RegExp(`^${def.name} `));
    const tokens = Number(await page.inputValue('#tokens'));
    expect(await page.textContent('#length-note')).toMatch(/^Sized to this GPU: [\d,]+ tokens\/s measured/);
    expect(tokens % 256).toBe(0);
    expect(tokens).toBeGreaterThanOrEqual(256);
    expect(tokens).toBeLessThanOrEqual(8192);
    await page.click('#start');
    await waitIdle(page, 300_000);
    expect((await statusOf(page)).state).toBe('done');
    const ran = await page.$$eval('.run', (rs) => rs.map((r) => (r as HTMLElement).dataset.model));
    expect(ran.length).toBeGreaterThanOrEqual(2);
    expect(ran.every((m) => index.find((e) => e.name === m)!.family === def.family)).toBe(true);
    for (const m of ran) expect(await page.getAttribute(`.run[data-model="${m}"] progress`, 'data-done')).toBe(String(tokens + 1));
    expect(Number(await page.getAttribute('#chart-loss', 'data-points'))).toBeGreaterThan(0);
    process.stderr.write(`[demo-page] default run: ${ran.join(' + ')}, ${tokens} tokens, ${Math.round((Date.now() - t0) / 1000)} s from page load to done\n`);
    expect(errors).toEqual([]);
    await page.close();
  }, 420_000);

  it('without WebGPU it says so and what to do, and offers no button that cannot work', async () => {
    const args = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
    const plain = await chromium.launch({ executablePath: CHROMIUM, headless: true, args });
    try {
      const page = await plain.newPage();
      await page.goto(server.url);
      await page.waitForSelector('#status[data-state="no-webgpu"]', { timeout: 30_000 });
      const s = await statusOf(page);
      expect(s.title).toMatch(/WebGPU is not available/);
      expect(s.hint).toMatch(/Chrome or Edge/);
      expect(s.hint).toMatch(/--enable-unsafe-webgpu/);
      expect(await page.getAttribute('#gpu-status', 'data-state')).toBe('error');
      for (const id of ['#start', '#generate', '#remember', '#cancel', '#stop']) expect(await page.isDisabled(id), id).toBe(true);
    } finally {
      await plain.close();
    }
  });

  it('a model that cannot be loaded shows the error and what to try; another model loads and reads pasted text and a file', async () => {
    const page = await browser.newPage();
    const index = JSON.parse(readFileSync('public/models/index.json', 'utf8')) as unknown[];
    const broken = { name: 'broken-model', path: 'models/does-not-exist/', mode: 'ttt', family: 'broken', description: 'missing files' };
    // The broken model is the one the page opens on.
    const others = (index as Record<string, unknown>[]).map(({ default: _, ...e }) => e);
    await page.route('**/models/index.json', (route) => route.fulfill({ json: [{ ...broken, default: true }, ...others] }));
    await page.goto(server.url);
    await waitIdle(page, 90_000);
    const s = await statusOf(page);
    expect(s.state).toBe('error');
    expect(s.message).toMatch(/ModelFetchError/);
    expect(s.message).toMatch(/does-not-exist\/config\.json/);
    expect(s.hint.length).toBeGreaterThan(10);
    expect(await page.isEnabled('#start')).toBe(true);
    await page.selectOption('#model', '1');
    await waitIdle(page, 90_000);
    expect((await statusOf(page)).state).toBe('ready');

    // The other inputs: an empty text box says what to do; pasted text repeated to a length; a file whole.
    await uncheckCompare(page);
    await page.fill('#max-tokens', '2');
    await page.check('input[name="source"][value="paste"]');
    await page.click('#start');
    await waitIdle(page);
    expect(await statusOf(page)).toMatchObject({ state: 'error', message: expect.stringMatching(/InputError: the text box is empty/), hint: expect.stringMatching(/paste some text/) });
    await page.fill('#paste', 'To be, or not to be. ');
    await page.fill('#tokens', '50');
    await page.click('#start');
    await waitIdle(page);
    expect((await statusOf(page)).state).toBe('done');
    expect(await page.getAttribute('.run progress', 'data-total')).toBe('51'); // BOS + 50
    await page.setInputFiles('#file', { name: 'note.txt', mimeType: 'text/plain', buffer: Buffer.from('Line one.\nLine two.\n') });
    await page.check('input[name="length"][value="whole"]');
    await page.click('#start');
    await waitIdle(page);
    expect((await statusOf(page)).state).toBe('done');
    expect(await page.getAttribute('.run progress', 'data-total')).toBe('21'); // BOS + 20 bytes

    // A TTT-E2E model: its panel shows each inner step's chunk loss before and after the step.
    const names = await page.$$eval('#model option', (os) => os.map((o) => o.textContent ?? ''));
    await page.selectOption('#model', String(names.findIndex((n) => n.startsWith('tiny-random-e2e '))));
    await waitIdle(page, 90_000);
    await page.check('input[name="length"][value="n"]');
    await page.fill('#tokens', '100');
    await page.check('input[name="source"][value="paste"]');
    await page.click('#start');
    await waitIdle(page);
    expect((await statusOf(page)).state).toBe('done');
    const e2e = await readouts(page, 'tiny-random-e2e');
    // 101 positions (BOS + 100) and 2 generated: chunks of 16 complete and learn 6 times.
    expect(e2e.learning.value).toBe(6);
    expect(e2e.learning.text).toMatch(/^6 steps; chunk 5: \d+\.\d\d → \d+\.\d\d$/);
    expect(await page.$$eval('.run[data-model="tiny-random-e2e"] svg.spark polyline', (ps) => ps.length)).toBe(2);
    await page.close();
  });
});
