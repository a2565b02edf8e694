// Importing the widget entry registers <ttt-chat>; its types come with it.
import { formatBytes, type TttChatEventName } from 'ttt-web/widget';

const chat = document.querySelector('ttt-chat');
if (!chat) throw new Error('the page has no <ttt-chat>');

// ?model=<url prefix> tries another model without editing the page.
const model = new URLSearchParams(location.search).get('model');
if (model) chat.model = model;

const counts: Record<TttChatEventName, number> = { progress: 0, ready: 0, token: 0, stats: 0, done: 0, error: 0 };
const countsEl = document.getElementById('counts')!;
const log = document.getElementById('log')!;

function note(line: string): void {
  log.textContent = `${line}\n${log.textContent ?? ''}`.slice(0, 4000);
}

function count(name: TttChatEventName): void {
  counts[name]++;
  countsEl.textContent = Object.entries(counts)
    .map(([k, v]) => `${k}: ${v}`)
    .join(' · ');
}

chat.addEventListener('progress', () => count('progress'));
chat.addEventListener('token', () => count('token'));
chat.addEventListener('ready', (e) => {
  count('ready');
  note(`ready: ${e.detail.mode} model ${e.detail.modelId.slice(0, 12)} on ${e.detail.adapter}`);
});
chat.addEventListener('stats', (e) => {
  count('stats');
  const s = e.detail;
  note(`stats: position ${s.position}, ${s.decodeMsRolling?.toFixed(1) ?? '–'} ms/token, GPU ${formatBytes(s.memory.total)}`);
});
chat.addEventListener('done', (e) => {
  count('done');
  note(`done: ${e.detail.reason}, ${e.detail.generatedTokens} tokens in ${e.detail.ms.toFixed(0)} ms`);
});
chat.addEventListener('error', (e) => {
  count('error');
  note(`error: ${e.detail.error.name}: ${e.detail.error.message}`);
});
