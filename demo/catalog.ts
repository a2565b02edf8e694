/**
 * What the demo offers: the bundled models (public/models/index.json) and documents
 * (public/docs/index.json), read and checked once, so the rest of the page can trust their fields.
 */

export type ModelMode = 'ttt' | 'sliding-window' | 'full-attention';
const MODES: readonly ModelMode[] = ['ttt', 'sliding-window', 'full-attention'];

export const MODE_LABEL: Record<ModelMode, string> = {
  ttt: 'TTT (fast weights + window)',
  'sliding-window': 'sliding window only',
  'full-attention': 'full attention',
};

export interface ModelEntry {
  readonly name: string;
  /** URL prefix of config.json and model.safetensors, relative to the page. */
  readonly path: string;
  readonly mode: ModelMode;
  /** Models of one family share dimensions and tokenizer: the ones Compare puts side by side. */
  readonly family: string;
  readonly description: string;
  /**
   * Sliding-window models listed a second time to learn while reading: the engine's learnWhileReading,
   * `true` (its defaults) or `{ chunk, lr, clip }`; false otherwise.
   */
  readonly learnWhileReading: boolean | LearnSettings;
  /** The model the page opens on (`"default": true` in the index). */
  readonly isDefault: boolean;
}

export interface DocEntry {
  readonly id: string;
  readonly title: string;
  /** gzip file under docs/. */
  readonly file: string;
  /** Uncompressed UTF-8 bytes. */
  readonly bytes: number;
  readonly gzipBytes: number;
  readonly origin: string;
  readonly licence: string;
}

async function fetchJson(url: string): Promise<unknown> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
  return res.json();
}

function field(obj: Record<string, unknown>, key: string, where: string): string {
  const v = obj[key];
  if (typeof v !== 'string' || v === '') throw new Error(`${where}: "${key}" must be a non-empty string`);
  return v;
}

/** The model index; an entry without `mode`/`family` (the older format) is refused with a message. */
export async function loadModelIndex(url = 'models/index.json'): Promise<ModelEntry[]> {
  const raw = await fetchJson(url);
  if (!Array.isArray(raw) || raw.length === 0) throw new Error(`${url}: expected a non-empty array of models`);
  return raw.map((item: unknown, i) => {
    const where = `${url} entry ${i}`;
    if (!item || typeof item !== 'object') throw new Error(`${where}: not an object`);
    const o = item as Record<string, unknown>;
    const mode = field(o, 'mode', where);
    if (!MODES.includes(mode as ModelMode)) throw new Error(`${where}: mode must be one of ${MODES.join(', ')}, got ${mode}`);
    const path = field(o, 'path', where);
    return {
      name: field(o, 'name', where),
      path: path.endsWith('/') ? path : `${path}/`,
      mode: mode as ModelMode,
      family: field(o, 'family', where),
      description: typeof o.description === 'string' ? o.description : '',
      learnWhileReading: learnSettings(o.learnWhileReading, where),
      isDefault: o.default === true,
    };
  });
}

/** learnWhileReading's optional settings, as createEngine takes them. */
export interface LearnSettings {
  readonly chunk?: number;
  readonly lr?: number;
  readonly clip?: number;
}

function learnSettings(v: unknown, where: string): boolean | LearnSettings {
  if (v === undefined || v === false) return false;
  if (v === true) return true;
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${where}: learnWhileReading must be true or { chunk, lr, clip }`);
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!['chunk', 'lr', 'clip'].includes(k)) throw new Error(`${where}: learnWhileReading has no setting '${k}' (chunk, lr, clip)`);
    if (typeof o[k] !== 'number' || !Number.isFinite(o[k])) throw new Error(`${where}: learnWhileReading.${k} must be a number`);
  }
  return o as LearnSettings;
}

export async function loadDocIndex(url = 'docs/index.json'): Promise<DocEntry[]> {
  const raw = await fetchJson(url);
  if (!Array.isArray(raw)) throw new Error(`${url}: expected an array of documents`);
  return raw.map((item: unknown, i) => {
    const where = `${url} entry ${i}`;
    const o = (item ?? {}) as Record<string, unknown>;
    return {
      id: field(o, 'id', where),
      title: field(o, 'title', where),
      file: field(o, 'file', where),
      bytes: Number(o.bytes) || 0,
      gzipBytes: Number(o.gzipBytes) || 0,
      origin: typeof o.origin === 'string' ? o.origin : '',
      licence: typeof o.licence === 'string' ? o.licence : '',
    };
  });
}

/** The other models of the selected one's family, in index order: what Compare can put beside it. */
export function familyMates(models: readonly ModelEntry[], selected: ModelEntry): ModelEntry[] {
  return models.filter((m) => m.family === selected.family && m.name !== selected.name);
}

/** The model the page opens on: the index's `"default": true` entry (the trained family), else the first. */
export function defaultModelIndex(models: readonly ModelEntry[]): number {
  return Math.max(0, models.findIndex((m) => m.isDefault));
}

/** A model's place in its family (index order): its color on every chart, whichever models run beside it. */
export function familyPlace(models: readonly ModelEntry[], entry: ModelEntry): number {
  return Math.max(0, models.filter((m) => m.family === entry.family).findIndex((m) => m.name === entry.name));
}

/**
 * The model Compare ticks beside `selected` when the page opens: the full-attention model of its family,
 * or (for a full-attention model) the family's TTT model; else the family's sliding-window model. Null
 * when the family has none of these.
 */
export function comparePartner(models: readonly ModelEntry[], selected: ModelEntry): ModelEntry | null {
  const family = models.filter((m) => m.family === selected.family && m.name !== selected.name);
  // Full attention beside a memory model (the cost and memory that grow), a TTT model beside full
  // attention; a family without one falls back to its sliding-window model (learning while reading last).
  const want: ModelMode = selected.mode === 'full-attention' ? 'ttt' : 'full-attention';
  return family.find((m) => m.mode === want)
    ?? family.find((m) => m.mode === 'sliding-window' && !m.learnWhileReading)
    ?? family.find((m) => m.mode === 'sliding-window')
    ?? null;
}
