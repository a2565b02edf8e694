import { mkdirSync, readFileSync } from 'node:fs';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectedTensors, parseConfig } from '../../src/model/config.ts';
import { launchChromium } from '../helpers/browser.ts';
import { startDemo, type DemoServer } from '../helpers/serve-demo.ts';

describe('demo page in headless Chromium (the README demo command)', () => {
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

  it('serves a page that loads the bundled model config and shows it, with a WebGPU adapter', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(server.url);
    await page.waitForSelector('#model-status[data-state="ok"]', { timeout: 60_000 });

    const index = JSON.parse(readFileSync('public/models/index.json', 'utf8')) as { name: string; path: string }[];
    const first = index[0];
    const config = JSON.parse(readFileSync(`public/${first.path}config.json`, 'utf8')) as Record<string, unknown>;
    expect(await page.getAttribute('#model-status', 'data-model')).toBe(first.name);
    // Every key of the bundled config.json is shown with its value.
    const rows = await page.$$eval('#config-table tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent ?? '')));
    expect(Object.fromEntries(rows)).toEqual(Object.fromEntries(Object.entries(config).map(([k, v]) => [k, JSON.stringify(v)])));

    // The weights were fetched, parsed and checked against the config: one tensor per expected name.
    const expected = expectedTensors(parseConfig(config));
    expect(await page.getAttribute('#weights-table', 'data-tensors')).toBe(String(expected.size));

    // Chromium here runs WebGPU on SwiftShader: the page finds an adapter and says so.
    await page.waitForSelector('#gpu-status:not([data-state="checking"])');
    expect(await page.getAttribute('#gpu-status', 'data-state')).toBe('ok');
    expect(await page.textContent('#gpu-status')).toMatch(/shader-f16: (yes|no)/);

    mkdirSync('test-results', { recursive: true });
    await page.screenshot({ path: 'test-results/demo-page.png', fullPage: true });
    expect(errors).toEqual([]);
  });
});
