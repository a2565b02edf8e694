/**
 * The npm package as a consumer gets it: build the library, `npm pack` it, install the tarball into a
 * fresh copy of examples/widget in a temporary folder, build that app with Vite, serve it, and drive
 * `<ttt-chat>` in Debian's Chromium (SwiftShader); the same tarball's files also load from a plain
 * <script type="module"> with no bundler. A consumer TypeScript file compiles against the published types.
 *
 * Offline by construction: `npm install --offline` with an empty, private npm cache. The packages a
 * consumer would download from the registry (Vite, TypeScript, and @webgpu/types, the package's one
 * dependency) are linked from this repository's node_modules instead, as `file:` dependencies.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../helpers/browser.ts';
import { serveStatic, type StaticServer } from '../helpers/static-server.ts';

const ROOT = resolve('.');
const MB = 1024 * 1024;

interface PackInfo {
  filename: string;
  size: number;
  unpackedSize: number;
  files: { path: string; size: number }[];
}

interface SeenEvent {
  type: string;
  detail: Record<string, unknown>;
}

function run(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, npm_config_update_notifier: 'false' } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) exited with ${r.status ?? r.signal}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

function timed<T>(times: Record<string, number>, name: string, f: () => T): T {
  const t0 = performance.now();
  const v = f();
  times[name] = performance.now() - t0;
  return v;
}

/** Records every <ttt-chat> event from the page's first script on (capture phase: `error` does not bubble). */
function recordChatEvents(): void {
  const w = window as unknown as { __chatEvents: SeenEvent[] };
  w.__chatEvents = [];
  for (const type of ['progress', 'ready', 'token', 'stats', 'done', 'error']) {
    window.addEventListener(
      type,
      (e) => {
        if (!(e instanceof CustomEvent) || (e.target as Element | null)?.localName !== 'ttt-chat') return;
        const d = e.detail as Record<string, unknown> & { error?: Error };
        const detail = type === 'error' ? { name: d.error?.name, message: d.error?.message, unsupported: d.unsupported } : JSON.parse(JSON.stringify(d));
        w.__chatEvents.push({ type, detail });
      },
      true,
    );
  }
}

async function events(page: Page): Promise<SeenEvent[]> {
  return page.evaluate(() => (window as unknown as { __chatEvents: SeenEvent[] }).__chatEvents);
}

async function waitForEvent(page: Page, type: string, after = 0, timeout = 90_000): Promise<void> {
  await page.waitForFunction(
    ([t, n]) => (window as unknown as { __chatEvents: SeenEvent[] }).__chatEvents.slice(n as number).some((e) => e.type === t),
    [type, after] as const,
    { timeout },
  );
}

async function waitForState(page: Page, states: string[], timeout = 90_000): Promise<string> {
  await page.waitForFunction((s) => s.includes(document.querySelector('ttt-chat')?.getAttribute('state') ?? ''), states, { timeout });
  return (await page.locator('ttt-chat').getAttribute('state')) ?? '';
}

async function readout(page: Page): Promise<Record<string, string>> {
  return page.evaluate(() => {
    const spans = document.querySelector('ttt-chat')!.shadowRoot!.querySelectorAll<HTMLElement>('[part="readout"] [data-stat]');
    return Object.fromEntries([...spans].map((s) => [s.dataset.stat!, s.textContent ?? '']));
  });
}

function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    // Named by the response listener below, with its URL.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(`console: ${m.text()}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`);
  });
  return errors;
}

/** Loads the page, types a prompt and presses Generate; returns the events, transcript and readout. */
async function generateThroughUi(page: Page, url: string, maxTokens: number) {
  await page.goto(url);
  const state = await waitForState(page, ['ready', 'error', 'unsupported']);
  const status = await page.locator('ttt-chat [part="status"]').textContent();
  expect(state, `widget did not load: ${status}`).toBe('ready');
  await page.evaluate((n) => document.querySelector('ttt-chat')!.setAttribute('max-tokens', String(n)), maxTokens);
  const before = (await events(page)).length;
  const t0 = performance.now();
  await page.locator('ttt-chat [part="prompt"]').fill('Once upon a time');
  await page.locator('ttt-chat [part~="generate"]').click();
  await waitForEvent(page, 'done', before);
  const ms = performance.now() - t0;
  // The engine pushes stats after every request, on its own channel: they may arrive before or after
  // `done`. Wait for the push that counts the generation's last token.
  await page.waitForFunction(
    (n) => {
      const seen = (window as unknown as { __chatEvents: SeenEvent[] }).__chatEvents.slice(n);
      const done = seen.find((e) => e.type === 'done');
      return done !== undefined && seen.some((e) => e.type === 'stats' && e.detail.position === done.detail.position);
    },
    before,
    { timeout: 30_000 },
  );
  const all = await events(page);
  const output = await page.evaluate(() => document.querySelector('ttt-chat')!.output);
  return { all, mine: all.slice(before), output, readout: await readout(page), ms };
}

describe('the npm package: packed tarball → fresh Vite app → <ttt-chat> in headless Chromium', () => {
  const times: Record<string, number> = {};
  let work: string;
  let app: string;
  let pack: PackInfo;
  let server: StaticServer;
  let browser: Browser;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'ttt-web-package-'));
    timed(times, 'build-lib', () => run(process.execPath, ['scripts/build-lib.mjs'], ROOT));
    // Scripts off: build-lib just ran (prepack would run it again and mix its output into the JSON).
    pack = timed(times, 'pack', () => JSON.parse(run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], ROOT)) as PackInfo[])[0];

    app = join(work, 'app');
    const example = join(ROOT, 'examples', 'widget');
    cpSync(example, app, { recursive: true, filter: (src) => !/^(node_modules|dist|public|package-lock\.json)(\/|$)/.test(relative(example, src)) });
    for (const model of ['tiny-random-lact', 'tiny-random-swa']) {
      cpSync(join(ROOT, 'public', 'models', model), join(app, 'public', 'models', model), { recursive: true });
    }
    const pkg = JSON.parse(readFileSync(join(app, 'package.json'), 'utf8'));
    const local = (name: string) => `file:${join(ROOT, 'node_modules', name)}`;
    pkg.dependencies = { ...pkg.dependencies, 'ttt-web': `file:${join(work, pack.filename)}`, '@webgpu/types': local('@webgpu/types') };
    pkg.devDependencies = { vite: local('vite'), typescript: local('typescript'), esbuild: local('esbuild') };
    writeFileSync(join(app, 'package.json'), JSON.stringify(pkg, null, 2));
    timed(times, 'install', () =>
      run('npm', ['install', '--offline', '--cache', join(work, 'npm-cache'), '--install-links=false', '--no-audit', '--no-fund', '--loglevel=error'], app),
    );
    timed(times, 'vite build', () => run(process.execPath, [join(app, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', '--logLevel', 'warn'], app));
    // A second bundler, with no configuration either: esbuild (webpack, like it, refuses node: imports
    // and needs the worker inlined; it is not available offline here).
    timed(times, 'esbuild', () =>
      run(join(app, 'node_modules', '.bin', 'esbuild'), ['src/main.ts', '--bundle', '--format=esm', '--splitting', '--outdir=esbuild-out', '--log-level=warning'], app),
    );
    writeFileSync(
      join(app, 'esbuild-out', 'index.html'),
      readFileSync(join(app, 'index.html'), 'utf8').replace('/src/main.ts', './main.js').replace('model="models/', 'model="../public/models/'),
    );

    server = await serveStatic({ '/': join(app, 'dist'), '/app/': app });
    browser = await launchChromium();
  }, 300_000);

  afterAll(async () => {
    process.stderr.write(`[widget-package] ${Object.entries(times).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`).join(', ')}\n`);
    await browser?.close();
    await server?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('packs under 1 MB: the library, its types and docs, no models', () => {
    const paths = pack.files.map((f) => f.path);
    process.stderr.write(`[widget-package] ${pack.filename}: ${(pack.size / 1024).toFixed(0)} KB packed, ${(pack.unpackedSize / 1024).toFixed(0)} KB unpacked, ${paths.length} files\n`);
    expect(pack.size).toBeLessThan(1 * MB);
    expect(paths).toEqual(expect.arrayContaining(['package.json', 'dist/lib/index.js', 'dist/lib/widget.js', 'dist/lib/types/api/index.d.ts', 'dist/lib/types/widget/index.d.ts', 'docs/widget.md']));
    expect(paths.filter((p) => !/^(dist\/lib\/|docs\/|package\.json$|README\.md$|LICENSE)/.test(p))).toEqual([]);
    expect(paths.some((p) => p.endsWith('.safetensors') || p.includes('models/'))).toBe(false);
    const installed = JSON.parse(readFileSync(join(app, 'node_modules', 'ttt-web', 'package.json'), 'utf8'));
    expect(Object.keys(installed.dependencies ?? {})).toEqual(['@webgpu/types']);
  });

  it('a consumer TypeScript file compiles against the published types (bundler and nodenext resolution)', () => {
    const dir = join(app, 'types-check');
    mkdirSync(dir, { recursive: true });
    cpSync(join(ROOT, 'test', 'types', 'consumer.ts'), join(dir, 'consumer.ts'));
    const tsc = join(app, 'node_modules', 'typescript', 'bin', 'tsc');
    for (const resolution of ['bundler', 'nodenext']) {
      const tsconfig = {
        compilerOptions: {
          target: 'ES2022',
          module: resolution === 'bundler' ? 'ESNext' : 'NodeNext',
          moduleResolution: resolution,
          lib: ['ES2022', 'DOM', 'DOM.Iterable'],
          types: [],
          strict: true,
          skipLibCheck: false,
          noEmit: true,
        },
        // The example app's own code is a consumer too.
        files: ['consumer.ts', '../src/main.ts'],
      };
      writeFileSync(join(dir, `tsconfig.${resolution}.json`), JSON.stringify(tsconfig));
      const r = spawnSync(process.execPath, [tsc, '-p', `tsconfig.${resolution}.json`], { cwd: dir, encoding: 'utf8' });
      expect(`${resolution}: ${r.stdout}${r.stderr}`).toBe(`${resolution}: `);
      expect(r.status).toBe(0);
    }
  });

  it('in the Vite-built app: loads, reports a bad attribute, generates through the UI; events fire and the readout shows numbers', async () => {
    const page = await browser.newPage();
    await page.addInitScript(recordChatEvents);
    const errors = watchErrors(page);
    try {
      await page.goto(server.url);
      expect(await waitForState(page, ['ready', 'error', 'unsupported'])).toBe('ready');

      // A bad attribute is an `error` event naming it; the engine stays usable.
      await page.evaluate(() => document.querySelector('ttt-chat')!.setAttribute('max-tokens', 'lots'));
      const n = (await events(page)).length;
      await page.locator('ttt-chat [part="prompt"]').fill('x');
      await page.locator('ttt-chat [part~="generate"]').click();
      await waitForEvent(page, 'error', n);
      const bad = (await events(page)).slice(n).find((e) => e.type === 'error')!;
      expect(bad.detail).toMatchObject({ name: 'TttChatAttributeError', unsupported: false });
      expect(bad.detail.message).toContain('max-tokens="lots"');
      expect(await page.locator('ttt-chat').getAttribute('state')).toBe('ready');

      const r = await generateThroughUi(page, server.url, 12);
      const types = (t: string) => r.all.filter((e) => e.type === t);
      const tokens = r.mine.filter((e) => e.type === 'token');
      const done = r.mine.find((e) => e.type === 'done')!.detail as { reason: string; text: string; generatedTokens: number; position: number };
      process.stderr.write(`[widget-package] Vite app: 12 tokens through the UI in ${r.ms.toFixed(0)} ms (${done.reason}); readout ${JSON.stringify(r.readout)}\n`);

      expect(types('progress').length).toBeGreaterThan(0);
      expect(types('ready')).toHaveLength(1);
      expect(types('ready')[0].detail).toMatchObject({ mode: 'ttt', worker: true, vocabSize: 258 });
      expect(['length', 'eos']).toContain(done.reason);
      expect(done.generatedTokens).toBeGreaterThan(0);
      // EOS ends the stream without being yielded as a token.
      expect(tokens.length).toBe(done.generatedTokens - (done.reason === 'eos' ? 1 : 0));
      expect(tokens.map((e) => e.detail.text).join('')).toBe(done.text);
      expect(r.output).toBe(`Once upon a time${done.text}`);
      expect(r.mine.filter((e) => e.type === 'error')).toEqual([]);
      const stats = r.mine.filter((e) => e.type === 'stats' && e.detail.position === done.position).at(-1)!.detail as { memory: { total: number } };
      expect(stats.memory.total).toBeGreaterThan(0);

      expect(r.readout.latency).toMatch(/^\d+(\.\d+)? ms\/token$/);
      expect(r.readout.speed).toMatch(/^\d+(\.\d+)? tok\/s$/);
      expect(r.readout.memory).toMatch(/^\d+(\.\d+)? (KB|MB) GPU$/);
      expect(r.readout.position).toBe(`${done.position} tokens`);
      expect(r.readout.loss).toBe(''); // show-loss is off

      // show-loss: the prompt is scored (its bits per token in the readout and the done event), and the
      // text is the same as without it for the same seed from the same memory.
      const chat = page.locator('ttt-chat');
      const run = async (showLoss: boolean) => {
        await page.evaluate((on) => {
          const el = document.querySelector('ttt-chat')! as HTMLElement & { reset(): Promise<void> };
          el.toggleAttribute('show-loss', on);
          el.setAttribute('seed', '7');
          return el.reset();
        }, showLoss);
        const before = (await events(page)).length;
        await page.locator('ttt-chat [part="prompt"]').fill('Once upon a time');
        await page.locator('ttt-chat [part~="generate"]').click();
        await waitForEvent(page, 'done', before);
        return (await events(page)).slice(before).find((e) => e.type === 'done')!.detail as { text: string; promptBits: number | null };
      };
      const plain = await run(false), scored = await run(true);
      expect(plain.promptBits).toBeNull();
      expect(scored.text).toBe(plain.text);
      expect(scored.promptBits!).toBeGreaterThan(0);
      expect((await readout(page)).loss).toBe(`prompt: ${scored.promptBits!.toFixed(2)} bits/token`);
      expect(await chat.getAttribute('state')).toBe('ready');
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('from a plain <script type="module"> with no bundler: generates, Stop ends a generation, Reset empties the memory, a new model attribute reloads', async () => {
    const page = await browser.newPage();
    await page.addInitScript(recordChatEvents);
    const errors = watchErrors(page);
    try {
      const r = await generateThroughUi(page, new URL('app/no-bundler.html', server.url).href, 6);
      expect(r.mine.filter((e) => e.type === 'token').length).toBeGreaterThan(0);
      expect(r.readout.latency).toMatch(/^\d+(\.\d+)? ms\/token$/);

      // Stop after the first token of a long generation.
      await page.evaluate(() => document.querySelector('ttt-chat')!.setAttribute('max-tokens', '100000'));
      const n = (await events(page)).length;
      await page.locator('ttt-chat [part~="generate"]').click();
      await waitForEvent(page, 'token', n);
      await page.locator('ttt-chat [part~="stop"]').click();
      await waitForEvent(page, 'done', n);
      const done = (await events(page)).slice(n).find((e) => e.type === 'done')!.detail;
      expect(done).toMatchObject({ reason: 'abort' });
      expect(done.generatedTokens as number).toBeLessThan(1000);

      const m = (await events(page)).length;
      await page.locator('ttt-chat [part~="reset"]').click();
      await waitForEvent(page, 'stats', m);
      expect(await page.evaluate(() => document.querySelector('ttt-chat')!.output)).toBe('');
      await expect.poll(() => readout(page).then((o) => o.position)).toBe('0 tokens');

      // A new model attribute lets the old engine (and its worker) go and loads the new one.
      const k = (await events(page)).length;
      await page.evaluate(() => (document.querySelector('ttt-chat')!.model = 'public/models/tiny-random-swa/'));
      await waitForEvent(page, 'ready', k);
      expect((await events(page)).slice(k).find((e) => e.type === 'ready')!.detail).toMatchObject({ mode: 'sliding-window' });
      await expect.poll(() => page.workers().length).toBe(1);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('bundled by esbuild instead of Vite: generates through the UI', async () => {
    const page = await browser.newPage();
    await page.addInitScript(recordChatEvents);
    const errors = watchErrors(page);
    try {
      const r = await generateThroughUi(page, new URL('app/esbuild-out/index.html', server.url).href, 6);
      expect(r.mine.filter((e) => e.type === 'token').length).toBeGreaterThan(0);
      expect(r.readout.memory).toMatch(/^\d+(\.\d+)? (KB|MB) GPU$/);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('a model that cannot be loaded: an error event with the loader\'s named error; the widget stays usable', async () => {
    const page = await browser.newPage();
    await page.addInitScript(recordChatEvents);
    const errors = watchErrors(page);
    try {
      await page.goto(`${server.url}?model=models/missing/`);
      expect(await waitForState(page, ['ready', 'error', 'unsupported'])).toBe('error');
      const err = (await events(page)).filter((e) => e.type === 'error');
      expect(err).toHaveLength(1);
      expect(err[0].detail).toMatchObject({ name: 'ModelFetchError', unsupported: false });
      expect(await page.locator('ttt-chat [part="status"]').textContent()).toContain('ModelFetchError');
      expect(await page.locator('ttt-chat [part~="generate"]').isDisabled()).toBe(false);
      // Pointing it at a model that exists loads that one.
      await page.evaluate(() => (document.querySelector('ttt-chat')!.model = 'models/tiny-random-lact/'));
      expect(await waitForState(page, ['ready'])).toBe('ready');
      expect(errors.filter((e) => !/^404 .*\/models\/missing\//.test(e))).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('without WebGPU: says so in the widget, fires error { unsupported }, starts no worker', async () => {
    const page = await browser.newPage();
    await page.addInitScript(() => {
      delete (Navigator.prototype as { gpu?: unknown }).gpu;
    });
    await page.addInitScript(recordChatEvents);
    const errors = watchErrors(page);
    try {
      await page.goto(server.url);
      expect(await waitForState(page, ['ready', 'error', 'unsupported'])).toBe('unsupported');
      const status = (await page.locator('ttt-chat [part="status"]').textContent()) ?? '';
      expect(status).toMatch(/needs WebGPU/);
      expect(status).toMatch(/enable-unsafe-webgpu/);
      const err = (await events(page)).filter((e) => e.type === 'error');
      expect(err).toHaveLength(1);
      expect(err[0].detail).toMatchObject({ name: 'WebGpuUnavailableError', unsupported: true });
      expect(await page.locator('ttt-chat [part~="generate"]').isDisabled()).toBe(true);
      expect(page.workers()).toHaveLength(0);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });
});
