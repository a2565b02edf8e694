/**
 * "Remember this document": saved engine memories (the blobs of `saveMemory()`) in IndexedDB, keyed by
 * model and document, so a reload can restore them instead of reading the document again.
 */
import { createStore, del, entries, set, type UseStore } from 'idb-keyval';

export interface SavedMemory {
  /** Identifies the input: a hash of its token ids, so the same text at the same length matches. */
  readonly docKey: string;
  readonly docLabel: string;
  /** Tokens of the input (BOS included). */
  readonly inputTokens: number;
  /** Positions the memory holds. */
  readonly position: number;
  readonly modelName: string;
  /** The model's place in the run that saved it (0: the selected model, 1 and up: the ones compared with it). */
  readonly slot: number;
  readonly modelId: string;
  readonly mode: string;
  readonly bytes: number;
  readonly savedAt: string;
  readonly blob: Uint8Array;
}

let store: UseStore | null = null;
function db(): UseStore {
  if (typeof indexedDB === 'undefined') throw new Error('this browser offers no IndexedDB here (a private window may block it): saved documents are unavailable');
  store ??= createStore('ttt-web-demo', 'memories');
  return store;
}

const keyOf = (m: Pick<SavedMemory, 'modelId' | 'docKey'>) => `${m.modelId}|${m.docKey}`;

/** A stable 64-bit hash of token ids (cyrb53), as hex: crypto.subtle is missing outside secure contexts. */
export function docKeyOf(ids: readonly number[]): string {
  let h1 = 0xdeadbeef ^ ids.length, h2 = 0x41c6ce57 ^ ids.length;
  for (const id of ids) {
    h1 = Math.imul(h1 ^ id, 2654435761);
    h2 = Math.imul(h2 ^ id, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return `${(h2 >>> 0).toString(16).padStart(8, '0')}${(h1 >>> 0).toString(16).padStart(8, '0')}-${ids.length}`;
}

export async function saveMemory(m: SavedMemory): Promise<void> {
  await set(keyOf(m), m, db());
}

export async function listMemories(): Promise<SavedMemory[]> {
  const all = await entries<string, SavedMemory>(db());
  return all.map(([, v]) => v).sort((a, b) => b.savedAt.localeCompare(a.savedAt));
}

export async function forgetMemory(m: Pick<SavedMemory, 'modelId' | 'docKey'>): Promise<void> {
  await del(keyOf(m), db());
}

/** Saved memories grouped by document, newest first. */
export function byDocument(list: readonly SavedMemory[]): SavedMemory[][] {
  const groups = new Map<string, SavedMemory[]>();
  for (const m of list) {
    const g = groups.get(m.docKey);
    if (g) g.push(m);
    else groups.set(m.docKey, [m]);
  }
  return [...groups.values()].map((g) => g.sort((a, b) => a.slot - b.slot));
}
