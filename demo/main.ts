// The demo page, first version: reports the browser's WebGPU adapter and shows the bundled models'
// configs with the state each layer carries, and loads and validates their weights. Prefill/decode and the live charts come with the engine.
import { parseConfig, type LactConfig } from '../src/model/config.ts';
import { CONFIG_FILE, loadModel, WEIGHTS_FILE, type LoadedModel } from '../src/model/load.ts';
import { UrlSource } from '../src/model/source.ts';
import { stateBytesPerLayer } from '../src/model/state-size.ts';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

interface ModelEntry {
  name: string;
  path: string;
  description: string;
}

function setStatus(el: HTMLElement, state: 'ok' | 'error' | 'loading', text: string): void {
  el.dataset.state = state;
  el.textContent = text;
}

async function showGpu(): Promise<void> {
  const el = $('gpu-status');
  if (!('gpu' in navigator) || !navigator.gpu) {
    setStatus(el, 'error', 'This browser has no WebGPU (navigator.gpu is missing). Use a recent Chrome or Edge; ' +
      'on Linux start Chromium with --enable-unsafe-webgpu, or try another browser or device.');
    return;
  }
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) {
    setStatus(el, 'error', 'WebGPU is present but no adapter is available (blocklisted or no GPU driver). ' +
      'Check chrome://gpu, update the GPU driver, or enable a software adapter.');
    return;
  }
  const info = adapter.info;
  const feats = ['shader-f16', 'subgroups', 'timestamp-query'].map((f) => `${f}: ${adapter.features.has(f as GPUFeatureName) ? 'yes' : 'no'}`);
  setStatus(el, 'ok', `Adapter: ${info.vendor || '?'} ${info.architecture || ''} ${info.description || info.device || ''} — ${feats.join(', ')}`);
  el.dataset.adapter = `${info.vendor} ${info.architecture}`.trim();
}

function fillTable(table: HTMLTableElement, rows: [string, string][]): void {
  const body = table.tBodies[0];
  body.replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement('tr');
    const a = document.createElement('td');
    const b = document.createElement('td');
    a.textContent = k;
    b.textContent = v;
    tr.append(a, b);
    return tr;
  }));
  table.hidden = false;
}

const kib = (b: number) => `${(b / 1024).toFixed(1)} KiB`;

function showConfig(raw: Record<string, unknown>, cfg: LactConfig): void {
  fillTable($('config-table'), Object.entries(raw).map(([k, v]) => [k, JSON.stringify(v)]));
  const s = stateBytesPerLayer(cfg, 4);
  fillTable($('state-table'), [
    ['layers', String(cfg.numLayers)],
    ['attention window', cfg.windowSize === null ? 'none (full attention: grows with context)' : `${cfg.windowSize} tokens`],
    ['fast-weight chunk', cfg.useFastWeights ? `${cfg.chunkSize} tokens` : 'off'],
    ['KV window (f32)', s.kv === null ? 'grows 2·D·4 bytes per token' : kib(s.kv)],
    ['fast weights + momentum (f32)', kib(s.fastWeights + s.momentum)],
    ['pending chunk (f32)', kib(s.pending)],
  ]);
}

function showWeights(model: LoadedModel): void {
  let params = 0;
  for (const t of model.weights.values()) params += t.data.length;
  const table = $<HTMLTableElement>('weights-table');
  fillTable(table, [
    ['tensors', String(model.weights.size)],
    ['parameters', params.toLocaleString('en-US')],
    ['tokenizer', `${model.tokenizer.kind}, ${model.tokenizer.vocabSize} ids`],
    ...Object.entries(model.metadata).map(([k, v]): [string, string] => [`metadata: ${k}`, v]),
  ]);
  table.dataset.tensors = String(model.weights.size);
}

/** Shows the config at once (it is small), then loads and validates the weights. */
async function showModel(entry: ModelEntry): Promise<void> {
  const status = $('model-status');
  $<HTMLTableElement>('weights-table').hidden = true;
  try {
    const source = new UrlSource(entry.path);
    setStatus(status, 'loading', `Loading ${source.locate(CONFIG_FILE)}…`);
    const raw = JSON.parse(await source.readText(CONFIG_FILE)) as Record<string, unknown>;
    showConfig(raw, parseConfig(raw, source.locate(CONFIG_FILE)));
    setStatus(status, 'loading', `Loading and validating ${source.locate(WEIGHTS_FILE)}…`);
    const model = await loadModel(source);
    showWeights(model);
    setStatus(status, 'ok', `${entry.name}: ${entry.description}`);
    status.dataset.model = entry.name;
  } catch (err) {
    const e = err as Error;
    setStatus(status, 'error', `Could not load ${entry.name}: ${e.name}: ${e.message}`);
  }
}

async function main(): Promise<void> {
  void showGpu().catch((err: Error) => setStatus($('gpu-status'), 'error', `WebGPU check failed: ${err.message}`));
  const select = $<HTMLSelectElement>('model-select');
  try {
    const res = await fetch('models/index.json');
    if (!res.ok) throw new Error(`models/index.json: HTTP ${res.status}`);
    const models = (await res.json()) as ModelEntry[];
    select.replaceChildren(...models.map((m, i) => new Option(m.name, String(i))));
    select.disabled = false;
    select.addEventListener('change', () => void showModel(models[Number(select.value)]));
    await showModel(models[0]);
  } catch (err) {
    setStatus($('model-status'), 'error', `No bundled models found: ${(err as Error).message}`);
  }
}

void main();
