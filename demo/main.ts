// The demo page: read a long input with a TTT model (and, in Compare, a full-attention model beside it),
// then generate, while the charts plot decode latency and GPU memory against position. This file wires the
// form, the buttons, the loaded models and the saved memories together; the runs themselves are runs.ts.
import { MemoryMismatchError } from '../src/api/index.ts';
import { comparePartner, defaultModelIndex, familyMates, familyPlace, loadDocIndex, loadModelIndex, MODE_LABEL, type DocEntry, type ModelEntry } from './catalog.ts';
import { LiveChart } from './charts.ts';
import { exportCsv, exportJson, type RunExport } from './export.ts';
import { InputError, inputText, inputTokens, type InputChoice } from './inputs.ts';
import { byDocument, docKeyOf, forgetMemory, listMemories, saveMemory, type SavedMemory } from './memory-store.ts';
import { CONTEXT_GRANULE, fullAttentionContext, probeInterval } from './plan.ts';
import { formatBytes, formatInt, formatMb } from './readouts.ts';
import { MAX_RUNS, Runs, type Generation } from './runs.ts';
import { renderSavedList, sizeNote } from './saved-list.ts';
import { isAbort, ModelSession } from './session.ts';
import { checkWebGpu, StatusPanel, WEBGPU_HELP } from './status.ts';

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
}

// `?weights=f32` keeps the weights in f32 on the GPU: exact, and the same on every adapter (the e2e test
// compares the page's text with Node's), where the default f16 halves their memory.
const WEIGHTS: 'f16' | 'f32' = new URLSearchParams(location.search).get('weights') === 'f32' ? 'f32' : 'f16';

const status = new StatusPanel($('status'));
const latencyChart = new LiveChart($('chart-latency'), { yLabel: 'ms / token', robust: true, format: (v) => (v === 0 ? '0' : v < 10 ? v.toFixed(2) : v.toFixed(1)) });
const memoryChart = new LiveChart($('chart-memory'), { yLabel: 'MB', format: (v) => (v === 0 ? '0' : v < 0.01 ? v.toFixed(4) : v < 1 ? v.toFixed(3) : v.toFixed(1)) });
const lossChart = new LiveChart($('chart-loss'), { yLabel: 'bits / token', fromMin: true, format: (v) => v.toFixed(2) });
const runs = new Runs($('runs'), latencyChart, memoryChart, lossChart, status, (phase) => setPhase(phase));
// For inspection from devtools (and scripts): what the charts hold.
(globalThis as { tttDemo?: object }).tttDemo = { latency: () => latencyChart.snapshot(), memory: () => memoryChart.snapshot(), loss: () => lossChart.snapshot(), exportJson: () => exportJson(runExport()), exportCsv: () => exportCsv(runExport()) };

let models: ModelEntry[] = [];
let docs: DocEntry[] = [];
const sessions = new Map<string, ModelSession>();
let current: { label: string; docKey: string; complete: boolean } | null = null;
let controller: AbortController | null = null;

// ---------------------------------------------------------------- phase: which buttons work now

type Phase = 'blocked' | 'idle' | 'busy' | 'prefill' | 'decode';

function setPhase(phase: Phase): void {
  document.body.dataset.phase = phase;
  const idle = phase === 'idle';
  $<HTMLButtonElement>('start').disabled = !idle;
  $<HTMLButtonElement>('cancel').disabled = phase !== 'prefill';
  $<HTMLButtonElement>('stop').disabled = phase !== 'decode';
  const list = runs.list;
  $<HTMLButtonElement>('generate').disabled = !idle || list.length === 0;
  $<HTMLButtonElement>('remember').disabled = !idle || list.length === 0 || !current?.complete || list.every((r) => r.ids.length === 0);
  for (const id of ['export-json', 'export-csv']) $<HTMLButtonElement>(id).disabled = !idle || list.length === 0;
  for (const el of document.querySelectorAll<HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement>('#setup input, #setup select, #setup textarea')) {
    el.disabled = !idle;
  }
  for (const b of document.querySelectorAll<HTMLButtonElement>('#saved-list button')) b.disabled = !idle;
}

// ---------------------------------------------------------------- form

function selectedModel(): ModelEntry {
  return models[Number($<HTMLSelectElement>('model').value)] ?? models[0];
}

function runEntries(): ModelEntry[] {
  const primary = selectedModel();
  const chosen = new Set([...document.querySelectorAll<HTMLInputElement>('input[name="compare"]:checked')].map((c) => c.value));
  return [primary, ...familyMates(models, primary).filter((m) => chosen.has(m.name))].slice(0, MAX_RUNS);
}

/**
 * One checkbox per other model of the selected one's family (any subset runs beside it); `checked`: the
 * names to tick, by default the model's usual partner (full attention for a TTT model, and the reverse).
 */
function renderCompare(checked?: readonly string[]): void {
  const primary = selectedModel();
  const mates = familyMates(models, primary).slice(0, MAX_RUNS - 1);
  const tick = new Set(checked ?? [comparePartner(models, primary)?.name ?? '']);
  const list = $('compare-list');
  list.replaceChildren();
  if (mates.length === 0) list.textContent = 'no other model of this family';
  for (const m of mates) {
    const label = document.createElement('label');
    label.className = 'check';
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.name = 'compare';
    box.value = m.name;
    box.checked = tick.has(m.name);
    box.disabled = document.body.dataset.phase !== 'idle';
    label.append(box, ` ${m.name} (${m.learnWhileReading ? `${MODE_LABEL[m.mode]}, learning while reading` : MODE_LABEL[m.mode]})`);
    list.append(label);
  }
}

function radio(name: string): string {
  return document.querySelector<HTMLInputElement>(`input[name="${name}"]:checked`)?.value ?? '';
}

function intField(id: string, min: number, max: number, what: string): number {
  const v = Number($<HTMLInputElement>(id).value);
  if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`${what} must be a whole number from ${min} to ${formatInt(max)}, got "${$<HTMLInputElement>(id).value}"`);
  return v;
}

function lengthTarget(): number | null {
  return radio('length') === 'whole' ? null : intField('tokens', 1, 4_194_304, 'the length');
}

function generation(): Generation {
  const temperature = Number($<HTMLInputElement>('temperature').value);
  if (!Number.isFinite(temperature) || temperature < 0 || temperature > 2) throw new RangeError(`the temperature must be from 0 to 2, got "${$<HTMLInputElement>('temperature').value}"`);
  return { maxTokens: intField('max-tokens', 1, 4096, 'tokens to generate'), temperature, prompt: $<HTMLInputElement>('prompt').value };
}

function inputChoice(): InputChoice {
  switch (radio('source')) {
    case 'paste':
      return { kind: 'paste', text: $<HTMLTextAreaElement>('paste').value };
    case 'file': {
      const file = $<HTMLInputElement>('file').files?.[0];
      if (!file) throw new InputError('no file chosen: pick a text file, or choose another input');
      return { kind: 'file', file };
    }
    default: {
      const doc = docs[Number($<HTMLSelectElement>('doc').value)];
      if (!doc) throw new InputError('no bundled document is available: paste text or upload a file');
      return { kind: 'doc', doc };
    }
  }
}

function updateNotes(): void {
  const m = selectedModel();
  if (!m) return;
  $('model-description').textContent = `${MODE_LABEL[m.mode]}: ${m.description}`;
  const doc = docs[Number($<HTMLSelectElement>('doc').value)];
  $('doc-origin').textContent = doc ? `${doc.origin}. Licence: ${doc.licence}.` : '';
  let target: number | null = null;
  try {
    target = lengthTarget();
  } catch {
    /* shown when Start is pressed */
  }
  $('probe-note').textContent = target ? `a one-token step every ${probeInterval(target + 1)} tokens` : 'about 48 one-token steps over the input';
}

// ---------------------------------------------------------------- sessions

async function ensureSession(entry: ModelEntry, maxContext?: number): Promise<ModelSession> {
  const have = sessions.get(entry.name);
  const fits = (s: ModelSession) => entry.mode !== 'full-attention' || maxContext === undefined || s.capacity >= maxContext;
  if (have && fits(have)) return have;
  if (have) {
    sessions.delete(entry.name);
    await have.dispose();
  }
  const why = entry.mode === 'full-attention' && maxContext !== undefined ? ` with a cache for ${formatInt(maxContext)} positions` : '';
  const title = `Loading ${entry.name}${why}…`;
  status.show('loading', { title, progress: { value: null, max: null } });
  const session = await ModelSession.open(entry, {
    weights: WEIGHTS,
    maxContext,
    onProgress: (p) => status.show('loading', { title, message: `${p.stage}: ${p.message}`, progress: { value: p.loaded, max: p.total } }),
  });
  sessions.set(entry.name, session);
  return session;
}

async function disposeExcept(keep: readonly ModelSession[]): Promise<void> {
  for (const [name, s] of sessions) {
    if (keep.includes(s)) continue;
    sessions.delete(name);
    await s.dispose();
  }
}

async function showConfig(entry: ModelEntry): Promise<void> {
  $('config-name').textContent = entry.name;
  const body = $<HTMLTableElement>('config-table').tBodies[0];
  try {
    const res = await fetch(`${entry.path}config.json`);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const config = (await res.json()) as Record<string, unknown>;
    body.replaceChildren(...Object.entries(config).map(([k, v]) => {
      const tr = document.createElement('tr');
      for (const text of [k, JSON.stringify(v)]) tr.append(Object.assign(document.createElement('td'), { textContent: text }));
      return tr;
    }));
  } catch (e) {
    body.replaceChildren(Object.assign(document.createElement('tr'), { textContent: `config.json could not be read: ${(e as Error).message}` }));
  }
}

// ---------------------------------------------------------------- Start: read, then generate

async function start(): Promise<void> {
  const entries = runEntries();
  const gen = generation();
  const target = lengthTarget();
  const choice = inputChoice();
  setPhase('busy');
  controller = new AbortController();
  const signal = controller.signal;
  status.show('reading', { title: 'Preparing the input…' });
  const { text, label } = await inputText(choice);

  // The tokenizer lives in the engine: encode with the first model, whose cache (for full attention) is
  // sized later, once the input's length is known. A byte count bounds a byte-level tokenizer's count.
  const guess = fullAttentionContext(target ?? new TextEncoder().encode(text).length + 1, gen.maxTokens);
  const encoder = sessions.get(entries[0].name) ?? (await ensureSession(entries[0], guess));
  const idsOf = async (s: ModelSession) => {
    const body = await inputTokens(text, target, (t) => s.engine.encode(t));
    const bos = s.engine.info.bosId;
    return bos === null ? body : [bos, ...body];
  };
  const firstIds = await idsOf(encoder);
  const needed = fullAttentionContext(firstIds.length, gen.maxTokens);
  const list: { session: ModelSession; ids: number[]; place: number }[] = [];
  for (const entry of entries) {
    const session = await ensureSession(entry, entry.mode === 'full-attention' ? needed : undefined);
    const same = session.engine.info.tokenizer === encoder.engine.info.tokenizer && session.engine.info.vocabSize === encoder.engine.info.vocabSize;
    list.push({ session, ids: same ? firstIds : await idsOf(session), place: familyPlace(models, entry) });
  }
  await disposeExcept(list.map((l) => l.session));
  for (const { session } of list) await session.reset();
  runs.setup(list);
  current = { label, docKey: docKeyOf(firstIds), complete: false };
  describeContext();

  await runs.read(signal, label, $<HTMLInputElement>('probes').checked);
  current.complete = true;
  await runs.generate(signal, gen);
}

function describeContext(): void {
  const full = runs.list.find((r) => r.session.entry.mode === 'full-attention');
  const note = $('context-note');
  if (!full) {
    note.textContent = 'TTT and sliding-window models keep a fixed window and fixed-size state: no context limit to choose.';
    return;
  }
  const cap = full.session.capacity;
  void full.session.engine.stats().then((s) => {
    note.textContent =
      `Full attention keeps every position, so its KV cache is sized to this run when the model loads: maxContext = ${formatInt(cap)} positions ` +
      `(the input's ${formatInt(full.ids.length)} tokens plus twice the tokens to generate, rounded up to ${CONTEXT_GRANULE}), ` +
      `${formatMb(s.memory.kv)} reserved. A longer input reloads it with a larger cache.`;
  });
}

async function generateMore(): Promise<void> {
  const gen = generation();
  setPhase('busy');
  controller = new AbortController();
  await runs.generate(controller.signal, gen);
}

// ---------------------------------------------------------------- Remember / restore

/** What the charts hold and which models made it, for the export buttons. */
function runExport(): RunExport {
  return {
    exported: new Date().toISOString(),
    document: current?.label ?? '',
    adapter: runs.list[0]?.session.engine.info.adapter ?? '',
    models: runs.list.map((r) => ({ name: r.session.entry.name, mode: r.session.entry.mode, window: r.session.engine.info.window, lossBits: r.loss.meanBits, tokensRead: r.loss.next })),
    charts: { loss: lossChart.snapshot(), latency: latencyChart.snapshot(), memory: memoryChart.snapshot() },
  };
}

function download(text: string, type: string, ext: string): void {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = `ttt-web-run-${new Date().toISOString().replace(/[:.]/g, '-')}.${ext}`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

async function remember(): Promise<void> {
  if (!current) return;
  setPhase('busy');
  status.show('loading', { title: 'Saving the memory…' });
  const saved: string[] = [];
  for (const r of runs.list) {
    const blob = await r.session.save();
    const s = await r.session.engine.stats();
    const info = r.session.engine.info;
    await saveMemory({
      docKey: current.docKey,
      docLabel: current.label,
      inputTokens: r.ids.length,
      position: s.position,
      modelName: r.session.entry.name,
      slot: r.index,
      modelId: info.modelId,
      mode: info.mode,
      bytes: blob.byteLength,
      savedAt: new Date().toISOString(),
      blob,
    });
    r.panel.set('saved', `${formatBytes(blob.byteLength)} at position ${formatInt(s.position)} (${sizeNote(info.mode, blob.byteLength, s.position)})`, blob.byteLength);
    saved.push(`${r.session.entry.name}: ${formatBytes(blob.byteLength)}`);
  }
  await renderSaved();
  status.show('done', { title: 'Remembered', message: `Saved in this browser (${saved.join(', ')}). After a reload, restore it under "Remembered documents".` });
}

async function restore(group: readonly SavedMemory[]): Promise<void> {
  setPhase('busy');
  const { maxTokens } = generation();
  const list: { session: ModelSession; memory: SavedMemory }[] = [];
  for (const memory of group.slice(0, MAX_RUNS)) {
    const entry = models.find((m) => m.name === memory.modelName);
    if (!entry) throw new Error(`the model ${memory.modelName} is no longer offered here: forget this memory`);
    const session = await ensureSession(entry, entry.mode === 'full-attention' ? fullAttentionContext(memory.position, maxTokens) : undefined);
    if (session.engine.info.modelId !== memory.modelId) {
      throw new MemoryMismatchError(`this memory was saved by another version of ${memory.modelName} (model id ${memory.modelId}, now ${session.engine.info.modelId})`);
    }
    list.push({ session, memory });
  }
  await disposeExcept(list.map((l) => l.session));
  runs.setup(list.map(({ session }) => ({ session, ids: [], place: familyPlace(models, session.entry) })));
  const done: string[] = [];
  for (const [i, { session, memory }] of list.entries()) {
    const t0 = performance.now();
    await session.restore(memory.blob);
    const ms = performance.now() - t0;
    const run = runs.list[i];
    runs.show(run, await session.engine.stats());
    run.panel.set('saved', `${formatBytes(memory.bytes)} at position ${formatInt(memory.position)} (${sizeNote(memory.mode, memory.bytes, memory.position)}); restored in ${ms.toFixed(0)} ms`, memory.bytes);
    run.panel.progress(memory.position, memory.position, `restored ${formatInt(memory.position)} tokens from memory in ${ms.toFixed(0)} ms`);
    run.panel.setContext(`[${memory.docLabel}: ${formatInt(memory.position)} tokens, restored from a saved memory]`);
    done.push(`${session.entry.name} (${formatBytes(memory.bytes)}, ${ms.toFixed(0)} ms)`);
  }
  const first = models.findIndex((m) => m.name === group[0].modelName);
  if (first >= 0) $<HTMLSelectElement>('model').value = String(first);
  renderCompare(list.slice(1).map((l) => l.session.entry.name));
  updateNotes();
  current = { label: group[0].docLabel, docKey: group[0].docKey, complete: true };
  status.show('done', {
    title: 'Restored',
    message: `${group[0].docLabel}: ${formatInt(group[0].position)} tokens back in ${done.join(' and ')}, without reading it again. Generate more continues after it.`,
  });
}

async function renderSaved(): Promise<void> {
  const groups = await listMemories().then(byDocument, (e: unknown) => (e instanceof Error ? e : new Error(String(e))));
  renderSavedList($('saved-list'), groups, {
    restore: (group) => void act('restore the saved memory', () => restore(group)),
    forget: (group) => void act('forget the saved memory', async () => {
      setPhase('busy');
      for (const m of group) await forgetMemory(m);
      await renderSaved();
      status.show('done', { title: 'Forgotten', message: `${group[0].docLabel} is no longer saved.` });
    }),
  });
  // New buttons take the enabled state of the others.
  setPhase((document.body.dataset.phase as Phase) ?? 'idle');
}

// ---------------------------------------------------------------- actions and start-up

/** Runs a user action; any failure becomes the error state, an abort keeps the state it set. */
async function act(doing: string, action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (e) {
    if (!isAbort(e)) {
      console.error(e);
      status.error(e, doing);
    }
  } finally {
    controller = null;
    setPhase('idle');
  }
}

/** Whether the visitor has set the length (or the tokens to generate): then the page no longer sizes it. */
let lengthTouched = false;
let generationTouched = false;

/**
 * The default length, sized to this adapter: a read of every run in about READ_SECONDS at the speed a
 * short timed prefill measures (after one to compile the pipelines), between 256 tokens and DEFAULT_MAX.
 * A real GPU gets DEFAULT_MAX (8K tokens pass a 256-token window 32 times); a software adapter fewer,
 * and generates 16 tokens instead of 64 (a decode step costs it about what a whole block does).
 */
const READ_SECONDS = 30;
const DEFAULT_MAX = 8192;
const SLOW_TOKENS_PER_SECOND = 500;
async function sizeLength(session: ModelSession): Promise<void> {
  if (lengthTouched) return;
  const probe = Array.from(new TextEncoder().encode('Test-time training keeps learning while it reads. ')).map((b) => b % session.engine.info.vocabSize);
  await session.engine.prefill(probe.slice(0, 32));
  const t0 = performance.now();
  const timed = [...probe, ...probe].slice(0, 96);
  await session.engine.prefill(timed);
  const tps = timed.length / ((performance.now() - t0) / 1000);
  await session.reset();
  const runsCount = runEntries().length;
  const sized = Math.floor(Math.min(DEFAULT_MAX, Math.max(256, (tps * READ_SECONDS) / runsCount)) / 256) * 256;
  if (lengthTouched) return;
  $<HTMLInputElement>('tokens').value = String(sized);
  if (tps < SLOW_TOKENS_PER_SECOND && !generationTouched) $<HTMLInputElement>('max-tokens').value = '16';
  $('length-note').textContent = `Sized to this GPU: ${formatInt(tps)} tokens/s measured with ${session.entry.name}, so ${runsCount} model${runsCount > 1 ? 's' : ''} read ${formatInt(sized)} tokens in about ${READ_SECONDS} s${sized === DEFAULT_MAX ? ' (the most the page picks by itself)' : ''}. Change it at will.`;
  updateNotes();
}

async function selectModel(): Promise<void> {
  setPhase('busy');
  renderCompare();
  updateNotes();
  const entry = selectedModel();
  void showConfig(entry);
  const t0 = performance.now();
  const target = lengthTarget() ?? 4096;
  const session = await ensureSession(entry, entry.mode === 'full-attention' ? fullAttentionContext(target + 1, generation().maxTokens) : undefined);
  if (!lengthTouched) {
    status.show('loading', { title: 'Timing this GPU…', message: `a short read with ${entry.name}, to size the default length` });
    await sizeLength(session);
  }
  status.show('ready', {
    title: 'Ready',
    message: `${entry.name} is loaded (${((performance.now() - t0) / 1000).toFixed(1)} s). Pick an input and press Start.`,
  });
}

async function init(): Promise<void> {
  const gpu = await checkWebGpu();
  const gpuLine = $('gpu-status');
  if (!gpu.ok) {
    gpuLine.dataset.state = 'error';
    gpuLine.textContent = gpu.reason;
    status.show('no-webgpu', { title: 'WebGPU is not available here, so the demo cannot run', message: gpu.reason, hint: WEBGPU_HELP });
    setPhase('blocked');
    return;
  }
  const f = gpu.adapter.features;
  const yes = (b: boolean) => (b ? 'yes' : 'no');
  gpuLine.dataset.state = 'ok';
  gpuLine.textContent = `${gpu.adapter.description}: shader-f16: ${yes(f.f16)}, subgroups: ${yes(f.subgroups)}, timestamp-query: ${yes(f.timestamps)}; weights requested as ${WEIGHTS}`;

  status.show('loading', { title: 'Loading the lists of models and documents…' });
  [models, docs] = await Promise.all([loadModelIndex(), loadDocIndex().catch((e: Error) => (console.warn(e), [] as DocEntry[]))]);
  $<HTMLSelectElement>('model').replaceChildren(...models.map((m, i) => new Option(`${m.name} (${MODE_LABEL[m.mode]})`, String(i))));
  $<HTMLSelectElement>('model').value = String(defaultModelIndex(models));
  $<HTMLSelectElement>('doc').replaceChildren(...docs.map((d, i) => new Option(`${d.title}: ${formatBytes(d.bytes)} of text, ${formatBytes(d.gzipBytes)} to download`, String(i))));
  await renderSaved();

  $('model').addEventListener('change', () => void act('load the model', selectModel));
  for (const id of ['doc', 'tokens', 'compare']) $(id).addEventListener('change', updateNotes);
  $('max-tokens').addEventListener('input', () => (generationTouched = true));
  $('tokens').addEventListener('input', () => {
    lengthTouched = true;
    $('length-note').textContent = '';
  });
  for (const el of document.querySelectorAll('input[name="length"]')) el.addEventListener('change', updateNotes);
  $('paste').addEventListener('input', () => (document.querySelector<HTMLInputElement>('input[name="source"][value="paste"]')!.checked = true));
  $('file').addEventListener('change', () => (document.querySelector<HTMLInputElement>('input[name="source"][value="file"]')!.checked = true));
  $('start').addEventListener('click', () => void act('read the input', start));
  $('generate').addEventListener('click', () => void act('generate', generateMore));
  $('remember').addEventListener('click', () => void act('save the memory', remember));
  $('cancel').addEventListener('click', () => controller?.abort());
  $('export-json').addEventListener('click', () => download(exportJson(runExport()), 'application/json', 'json'));
  $('export-csv').addEventListener('click', () => download(exportCsv(runExport()), 'text/csv', 'csv'));
  $('stop').addEventListener('click', () => controller?.abort());

  await act('load the model', selectModel);
}

void init().catch((e: unknown) => {
  console.error(e);
  status.error(e, 'start the demo');
  setPhase('blocked');
});
