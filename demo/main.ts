// The demo page, first version: reports the browser's WebGPU adapter and shows the bundled models'
// configs with the state each layer carries. Prefill/decode and the live charts come with the engine.
import { parseConfig, type LactConfig } from '../src/model/config.ts';
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

async function loadModel(entry: ModelEntry): Promise<void> {
  const status = $('model-status');
  setStatus(status, 'loading', `Loading ${entry.path}config.json…`);
  try {
    const res = await fetch(`${entry.path}config.json`);
    if (!res.ok) throw new Error(`${entry.path}config.json: HTTP ${res.status}`);
    const raw = (await res.json()) as Record<string, unknown>;
    const cfg = parseConfig(raw, `${entry.path}config.json`);
    showConfig(raw, cfg);
    setStatus(status, 'ok', `${entry.name}: ${entry.description}`);
    status.dataset.model = entry.name;
  } catch (err) {
    setStatus(status, 'error', `Could not load ${entry.name}: ${(err as Error).message}`);
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
    select.addEventListener('change', () => void loadModel(models[Number(select.value)]));
    await loadModel(models[0]);
  } catch (err) {
    setStatus($('model-status'), 'error', `No bundled models found: ${(err as Error).message}`);
  }
}

void main();
