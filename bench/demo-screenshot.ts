/**
 * The README's screenshot of the demo: the page as built for visitors (`vite build` + `vite preview`) in
 * Debian's headless Chromium, the default model with every other model of its family ticked in Compare,
 * the page's default document read to exactly N tokens, then a few generated tokens.
 *
 *   npm run bench -- demo-screenshot [--tokens 8192] [--generate 32] [--out docs/demo.png]
 *
 * On SwiftShader (these machines) 8,192 tokens with five models take tens of minutes: the figure shows the
 * shapes (loss by position, flat TTT memory, full attention's growing cache), not a real GPU's speed.
 * Prints each run's readouts so the README can quote what the picture shows.
 */
import { buildAndPreviewDemo } from '../test/helpers/preview-demo.ts';
import { launchChromium } from '../test/helpers/browser.ts';

export async function main(args: string[]): Promise<void> {
  const tokens = Number(flag(args, '--tokens') ?? 8192);
  const generate = Number(flag(args, '--generate') ?? 32);
  const out = flag(args, '--out') ?? 'docs/demo.png';
  const server = await buildAndPreviewDemo();
  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(server.url);
    await page.waitForFunction(() => document.body.dataset.phase === 'idle', undefined, { timeout: 300_000 });
    for (const box of await page.$$('input[name="compare"]')) await box.check();
    await page.check('input[name="length"][value="n"]');
    await page.fill('#tokens', String(tokens));
    await page.fill('#max-tokens', String(generate));
    const t0 = Date.now();
    await page.click('#start');
    await page.waitForFunction(() => document.body.dataset.phase !== 'idle', undefined, { timeout: 60_000 });
    await page.waitForFunction(() => document.body.dataset.phase === 'idle', undefined, { timeout: 4 * 3600_000, polling: 2000 });
    const state = await page.getAttribute('#status', 'data-state');
    if (state !== 'done') throw new Error(`the run ended in state "${state}": ${await page.textContent('#status')}`);
    if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
    const runs = await page.$$eval('.run', (rs) => rs.map((r) => ({
      model: (r as HTMLElement).dataset.model ?? '',
      readouts: Object.fromEntries([...r.querySelectorAll<HTMLElement>('[data-readout]')].map((d) => [d.dataset.readout ?? '', d.textContent ?? ''])),
    })));
    console.log(`adapter: ${await page.textContent('#gpu-status')}`);
    console.log(`${tokens} tokens + ${generate} generated, ${runs.length} models, ${Math.round((Date.now() - t0) / 1000)} s from Start to done`);
    for (const r of runs) console.log(`${r.model}: ${JSON.stringify(r.readouts)}`);
    await page.screenshot({ path: out, fullPage: true });
    console.log(`wrote ${out}`);
  } finally {
    await browser.close();
    await server.stop();
  }
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}
