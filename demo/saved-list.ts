/**
 * The "Remembered documents" list: one line per saved document with each model's memory size, and its
 * Restore and Forget buttons.
 */
import type { SavedMemory } from './memory-store.ts';
import { formatBytes, formatInt } from './readouts.ts';

/** Whether a memory's size depends on the document's length, in words. */
export function sizeNote(mode: string, bytes: number, position: number): string {
  return mode === 'full-attention'
    ? `grows with the document: ${formatBytes(bytes / Math.max(position, 1))} per token`
    : 'the same size at any length';
}

export interface SavedListActions {
  readonly restore: (group: readonly SavedMemory[]) => void;
  readonly forget: (group: readonly SavedMemory[]) => void;
}

function note(text: string): HTMLLIElement {
  return Object.assign(document.createElement('li'), { className: 'empty', textContent: text });
}

/** Fills `list` with the saved documents (grouped by document), or says why there are none. */
export function renderSavedList(list: HTMLElement, groups: readonly (readonly SavedMemory[])[] | Error, actions: SavedListActions): void {
  if (groups instanceof Error) return list.replaceChildren(note(`Saved documents are unavailable: ${groups.message}`));
  if (groups.length === 0) return list.replaceChildren(note('Nothing saved yet.'));
  list.replaceChildren(...groups.map((group) => {
    const first = group[0];
    const li = document.createElement('li');
    li.dataset.docKey = first.docKey;
    const what = document.createElement('span');
    what.textContent = `${first.docLabel}, ${formatInt(first.inputTokens)} tokens: ` +
      group.map((m) => `${m.modelName} ${formatBytes(m.bytes)} (${sizeNote(m.mode, m.bytes, m.position)})`).join('; ');
    const restore = Object.assign(document.createElement('button'), { className: 'restore', textContent: 'Restore' });
    restore.addEventListener('click', () => actions.restore(group));
    const forget = Object.assign(document.createElement('button'), { className: 'forget', textContent: 'Forget' });
    forget.addEventListener('click', () => actions.forget(group));
    li.append(what, ' ', restore, ' ', forget);
    return li;
  }));
}
