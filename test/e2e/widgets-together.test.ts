/**
 * Several `<ttt-chat>` elements on one page (the library as it ships, built into a temporary folder) do
 * not interfere: three elements on the same model, one greedy and two sampling with the same seed, each
 * with its own engine and worker, generating at the same time produce exactly the tokens, text and
 * transcript each produces alone, one after another. They also load at the same time (the model's files
 * written to Cache Storage by three engines at once).
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../helpers/browser.ts';
import { serveLibraryPages } from '../helpers/build-lib.ts';
import type { StaticServer } from '../helpers/static-server.ts';

const PAGE_HTML = `<!doctype html>
<html lang="en">
  <head><meta charset="utf-8"><link rel="icon" href="data:,"><title>three ttt-chat elements</title></head>
  <body>
    <ttt-chat id="greedy" model="/models/tiny-random-lact/" max-tokens="24" temperature="0"></ttt-chat>
    <ttt-chat id="seeded" model="/models/tiny-random-lact/" max-tokens="24" temperature="1" top-p="1" seed="7"></ttt-chat>
    <ttt-chat id="seeded-other-prompt" model="/models/tiny-random-lact/" max-tokens="24" temperature="1" top-p="1" seed="7"></ttt-chat>
    <script type="module" src="/lib/widget.js"></script>
  </body>
</html>
`;

const PROMPTS = ['Once upon a time', 'Once upon a time', 'In a hole in the ground there lived'];

interface Run {
  ids: number[];
  text: string;
  output: string;
  generatedTokens: number;
  position: number;
}

describe('several <ttt-chat> elements on one page, in headless Chromium', () => {
  let site: { server: StaticServer; close(): Promise<void> };
  let server: StaticServer;
  let browser: Browser;

  beforeAll(async () => {
    site = await serveLibraryPages('ttt-widgets-', { 'index.html': PAGE_HTML });
    server = site.server;
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await site?.close();
  });

  it('three elements generating at once give exactly what each gives alone', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    let workers = 0;
    page.on('worker', () => workers++);
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
    try {
      await page.goto(server.url);
      const r = await page.evaluate(async (prompts) => {
        await customElements.whenDefined('ttt-chat');
        const chats = [...document.querySelectorAll('ttt-chat')];
        const infos = await Promise.all(chats.map((c) => c.load()));
        /** One generation on one element: the ids its token events carried, its done detail, its transcript. */
        const runOne = async (chat: (typeof chats)[number], prompt: string) => {
          const ids: number[] = [];
          let firstToken = NaN;
          const onToken = (e: Event) => {
            if (!ids.length) firstToken = performance.now();
            ids.push((e as CustomEvent<{ id: number }>).detail.id);
          };
          chat.addEventListener('token', onToken);
          try {
            const d = await chat.generate(prompt);
            return { run: { ids, text: d.text, output: chat.output, generatedTokens: d.generatedTokens, position: d.position }, firstToken, end: performance.now() };
          } finally {
            chat.removeEventListener('token', onToken);
          }
        };
        const alone = [];
        for (let i = 0; i < chats.length; i++) {
          alone.push((await runOne(chats[i], prompts[i])).run);
          await chats[i].reset();
        }
        const t0 = performance.now();
        const timed = await Promise.all(chats.map((c, i) => runOne(c, prompts[i])));
        const togetherMs = performance.now() - t0;
        const together = timed.map((t) => t.run);
        // They did run at the same time: every one had its first token before any had finished.
        const overlapped = Math.max(...timed.map((t) => t.firstToken)) < Math.min(...timed.map((t) => t.end));
        // And once more, each continuing from what it just generated, alone (then its memory put back)
        // vs. together.
        const snapshots = await Promise.all(chats.map((c) => c.engine!.saveMemory()));
        const nextAlone = [];
        for (let i = 0; i < chats.length; i++) {
          nextAlone.push((await runOne(chats[i], ' and then')).run);
          await chats[i].engine!.loadMemory(snapshots[i].blob);
        }
        const nextTogether = (await Promise.all(chats.map((c) => runOne(c, ' and then')))).map((t) => t.run);
        return { alone, together, nextAlone, nextTogether, togetherMs, overlapped, workers: infos.filter((info) => info.worker).length, states: chats.map((c) => c.state) };
      }, PROMPTS);

      process.stderr.write(`[widgets-together] 3 × 24 tokens at once in ${r.togetherMs.toFixed(0)} ms; texts ${JSON.stringify(r.together.map((t: Run) => t.text))}\n`);
      expect(r.states).toEqual(['ready', 'ready', 'ready']);
      expect(r.overlapped, 'the three generations overlapped in time').toBe(true);
      // One engine, in its own worker, per element.
      expect(r.workers).toBe(3);
      expect(workers).toBe(3);
      expect(r.alone.map((a: Run) => a.ids.length)).toEqual([24, 24, 24]);
      // Not vacuous: the three differ from one another (greedy vs. sampled, same seed on another prompt).
      expect(new Set(r.alone.map((a: Run) => JSON.stringify(a.ids))).size).toBe(3);
      for (let i = 0; i < 3; i++) {
        expect(r.together[i], `element ${i} at once`).toEqual(r.alone[i]);
        expect(r.together[i].output, `element ${i}'s transcript`).toBe(PROMPTS[i] + r.together[i].text);
        const { output: _a, ...nextAlone } = r.nextAlone[i];
        const { output: _t, ...nextTogether } = r.nextTogether[i];
        expect(nextTogether, `element ${i}, second generation at once`).toEqual(nextAlone);
      }
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 240_000);
});
