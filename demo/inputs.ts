/**
 * The page's inputs: a bundled document (gzip, decompressed here), pasted text or an uploaded file, turned
 * into the token ids a run reads.
 */
import type { DocEntry } from './catalog.ts';
import { shapeTokens } from './plan.ts';

/** The input cannot be had (empty, missing, unreadable): the visitor picks another. */
export class InputError extends Error {
  override name = 'InputError';
}

export type InputChoice =
  | { readonly kind: 'doc'; readonly doc: DocEntry }
  | { readonly kind: 'paste'; readonly text: string }
  | { readonly kind: 'file'; readonly file: File };

export interface InputText {
  readonly text: string;
  /** Names the input in the UI and in saved memories. */
  readonly label: string;
}

const decompressed = new Map<string, Promise<string>>();

function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

async function gunzipText(bytes: Uint8Array): Promise<string> {
  if (typeof DecompressionStream === 'undefined') {
    throw new InputError('this browser has no DecompressionStream, needed to unpack the bundled documents: paste text or upload a file instead');
  }
  const stream = new Blob([bytes as BlobPart]).stream().pipeThrough(new DecompressionStream('gzip'));
  return new Response(stream).text();
}

/** A bundled document's text, fetched and decompressed once per page. */
export function readDocument(doc: DocEntry): Promise<string> {
  let p = decompressed.get(doc.id);
  if (!p) {
    p = (async () => {
      const url = `docs/${doc.file}`;
      const res = await fetch(url);
      if (!res.ok) throw new InputError(`${url}: HTTP ${res.status} ${res.statusText}`);
      const bytes = new Uint8Array(await res.arrayBuffer());
      // A server that marks .gz files with Content-Encoding: gzip has the browser unpack them already.
      return isGzip(bytes) ? gunzipText(bytes) : new TextDecoder().decode(bytes);
    })();
    p.catch(() => decompressed.delete(doc.id));
    decompressed.set(doc.id, p);
  }
  return p;
}

export async function inputText(choice: InputChoice): Promise<InputText> {
  switch (choice.kind) {
    case 'doc':
      return { text: await readDocument(choice.doc), label: choice.doc.title };
    case 'paste':
      if (!choice.text) throw new InputError('the text box is empty: paste some text, or pick a bundled document');
      return { text: choice.text, label: `pasted text (${choice.text.length.toLocaleString('en-US')} characters)` };
    case 'file': {
      const text = await choice.file.text();
      if (!text) throw new InputError(`${choice.file.name} is empty`);
      return { text, label: choice.file.name };
    }
  }
}

/**
 * The first `target` tokens of `text` (repeated when it is shorter), or all of it when `target` is null.
 * Only a prefix long enough is encoded, so a short run of a long document does not tokenise all of it:
 * a token covers at most a few characters, and the prefix grows until it holds enough.
 */
export async function inputTokens(text: string, target: number | null, encode: (s: string) => Promise<number[]>): Promise<number[]> {
  if (target === null) return encode(text);
  let chars = Math.min(text.length, target * 4 + 64);
  for (;;) {
    const ids = await encode(text.slice(0, chars));
    // Tokens near the cut may differ from those of the whole text; keep a margin past `target`.
    if (chars >= text.length || ids.length >= target + 16) return shapeTokens(ids, target);
    chars = Math.min(text.length, chars * 2);
  }
}
