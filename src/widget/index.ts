/**
 * `ttt-web/widget`: importing this module registers the `<ttt-chat>` custom element (the package's one
 * side effect), so a page needs only
 *
 *   <script type="module">import 'ttt-web/widget';</script>
 *   <ttt-chat model="models/tiny-random-lact/"></ttt-chat>
 *
 * See docs/widget.md for its attributes, properties, events and CSS custom properties.
 */
import { TttChatElement } from './element.ts';

export { TttChatBusyError, TttChatElement, type TttChatState } from './element.ts';
export { TttChatAttributeError } from './attributes.ts';
export type { TttChatDoneDetail, TttChatErrorDetail, TttChatEventMap, TttChatEventName, TttChatTokenDetail } from './events.ts';
export { formatBytes } from './readout.ts';

/**
 * Registers the element under `tag` (default `ttt-chat`); a name already taken by this class is left
 * alone, one taken by another element is an error. Returns the class registered under the name.
 */
export function defineTttChat(tag: string = TttChatElement.tagName): CustomElementConstructor {
  const existing = customElements.get(tag);
  if (existing) {
    if (existing === TttChatElement || existing.prototype instanceof TttChatElement) return existing;
    throw new DOMException(`<${tag}> is already defined by another element`, 'NotSupportedError');
  }
  // A registry may hold a class only once: a second tag gets its own subclass.
  const cls = Object.values(registeredTags).includes(TttChatElement) ? class extends TttChatElement {} : TttChatElement;
  customElements.define(tag, cls);
  registeredTags[tag] = cls;
  return cls;
}

const registeredTags: Record<string, CustomElementConstructor> = {};

if (typeof customElements !== 'undefined') defineTttChat();

declare global {
  interface HTMLElementTagNameMap {
    'ttt-chat': TttChatElement;
  }
}
