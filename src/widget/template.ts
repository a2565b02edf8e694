/**
 * The shadow DOM of `<ttt-chat>`: static markup and styles. Colours and sizes come from CSS custom
 * properties (documented in docs/widget.md) with defaults from the page's colour scheme, and every piece
 * has a `part` name for ::part() styling. Nothing here is built from user text: the element writes model
 * and prompt text with textContent only.
 */

const STYLE = /* css */ `
:host {
  display: block;
  box-sizing: border-box;
  font-family: var(--ttt-chat-font-family, system-ui, sans-serif);
  font-size: var(--ttt-chat-font-size, 14px);
  color: var(--ttt-chat-color, CanvasText);
  background: var(--ttt-chat-background, Canvas);
  border: var(--ttt-chat-border, 1px solid color-mix(in srgb, currentColor 20%, transparent));
  border-radius: var(--ttt-chat-radius, 8px);
  padding: var(--ttt-chat-padding, 12px);
}
:host([hidden]) { display: none; }
/* Without WebGPU only the notice remains: nothing else could work. */
:host([state='unsupported']) :is([part='output'], form, [part='readout']) { display: none; }
* { box-sizing: border-box; }
.box { display: flex; flex-direction: column; gap: var(--ttt-chat-gap, 8px); }
[part='output'] {
  min-height: 3em;
  max-height: var(--ttt-chat-output-height, 16em);
  overflow-y: auto;
  white-space: pre-wrap;
  overflow-wrap: anywhere;
  font-family: var(--ttt-chat-output-font-family, ui-monospace, monospace);
  line-height: 1.45;
}
[part='output']:empty::before { content: attr(data-empty); color: var(--ttt-chat-muted, GrayText); }
[part~='prompt-text'] { color: var(--ttt-chat-prompt-color, var(--ttt-chat-muted, GrayText)); }
[part~='reply-text'] { color: var(--ttt-chat-reply-color, inherit); }
[part='status'] { color: var(--ttt-chat-muted, GrayText); font-size: 0.9em; }
[part='status']:empty { display: none; }
[part='status'][data-kind='error'] { color: var(--ttt-chat-error-color, #c62828); }
[part='status'][data-kind='unsupported'] {
  color: var(--ttt-chat-color, CanvasText);
  border-left: 3px solid var(--ttt-chat-error-color, #c62828);
  padding-left: 8px;
}
[part='progress'] { width: 100%; height: 4px; accent-color: var(--ttt-chat-accent, #3b6fd8); }
[part='progress'][hidden] { display: none; }
form { display: flex; gap: var(--ttt-chat-gap, 8px); align-items: flex-end; margin: 0; }
[part='prompt'] {
  flex: 1;
  min-height: 2.4em;
  resize: vertical;
  font: inherit;
  color: inherit;
  background: var(--ttt-chat-input-background, transparent);
  border: var(--ttt-chat-border, 1px solid color-mix(in srgb, currentColor 25%, transparent));
  border-radius: calc(var(--ttt-chat-radius, 8px) * 0.75);
  padding: 6px 8px;
}
.buttons { display: flex; gap: 4px; }
button {
  font: inherit;
  padding: 6px 12px;
  border-radius: calc(var(--ttt-chat-radius, 8px) * 0.75);
  border: 1px solid var(--ttt-chat-accent, #3b6fd8);
  background: transparent;
  color: var(--ttt-chat-accent, #3b6fd8);
  cursor: pointer;
}
button[part~='generate'] { background: var(--ttt-chat-accent, #3b6fd8); color: var(--ttt-chat-accent-text, #fff); }
button:disabled { opacity: 0.45; cursor: default; }
[part='readout'] {
  display: flex;
  flex-wrap: wrap;
  gap: 0 12px;
  font-size: 0.8em;
  color: var(--ttt-chat-muted, GrayText);
  font-variant-numeric: tabular-nums;
}
`;

const MARKUP = /* html */ `
<div class="box" part="container">
  <div part="output" role="log" aria-live="polite" aria-label="Transcript" data-empty="The model's text appears here."></div>
  <progress part="progress" hidden></progress>
  <div part="status" role="status"></div>
  <form part="form">
    <textarea part="prompt" rows="2" aria-label="Prompt"></textarea>
    <div class="buttons">
      <button type="submit" part="button generate">Generate</button>
      <button type="button" part="button stop" disabled>Stop</button>
      <button type="button" part="button reset" title="Forget everything the model has read">Reset</button>
    </div>
  </form>
  <div part="readout">
    <span data-stat="latency"></span>
    <span data-stat="speed"></span>
    <span data-stat="memory"></span>
    <span data-stat="position"></span>
    <span data-stat="learning"></span>
    <span data-stat="loss"></span>
  </div>
</div>
`;

/** One constructed sheet per window (a sheet can only be adopted by documents of the window that made it). */
const SHEETS = new WeakMap<object, CSSStyleSheet>();

function constructedSheet(doc: Document): CSSStyleSheet | null {
  const win = doc.defaultView as (Window & typeof globalThis) | null;
  const Sheet = win?.CSSStyleSheet;
  if (!win || typeof Sheet !== 'function' || typeof Sheet.prototype.replaceSync !== 'function') return null;
  let sheet = SHEETS.get(win) ?? null;
  if (!sheet) {
    try {
      sheet = new Sheet();
      sheet.replaceSync(STYLE);
    } catch {
      return null;
    }
    SHEETS.set(win, sheet);
  }
  return sheet;
}

/**
 * Fills a fresh shadow root with the widget's markup and styles. The styles are a constructed stylesheet
 * (`adoptedStyleSheets`), shared by every `<ttt-chat>` of the page, so a page whose Content Security Policy
 * has no `style-src 'unsafe-inline'` styles the widget all the same (CSP governs `<style>` elements, not
 * constructed sheets); where the browser has no constructable stylesheets, a `<style>` element.
 */
export function fillShadowRoot(root: ShadowRoot): void {
  const doc = root.ownerDocument;
  const template = doc.createElement('template');
  const sheet = 'adoptedStyleSheets' in root ? constructedSheet(doc) : null;
  if (sheet) {
    root.adoptedStyleSheets = [...root.adoptedStyleSheets, sheet];
    template.innerHTML = MARKUP;
  } else {
    template.innerHTML = `<style>${STYLE}</style>${MARKUP}`;
  }
  root.append(template.content);
}
