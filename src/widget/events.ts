/**
 * The DOM events `<ttt-chat>` dispatches, with their detail types. All are CustomEvents on the element;
 * all but `error` bubble and are composed (they cross shadow roots the element sits in). `error` does not
 * bubble, like the error events of <img> and <script>, so window-level error handlers never mistake it
 * for an uncaught exception.
 */
import type { GeneratedToken, GenerateResult, LoadProgress, TttInfo, TttStats } from '../api/index.ts';

/** `done`: a generation ended (its own text; the transcript holds every generation). */
export interface TttChatDoneDetail {
  /** The engine's reason, or 'abort' when stop() (the Stop button) ended it. */
  readonly reason: GenerateResult['reason'] | 'abort';
  readonly prompt: string;
  readonly text: string;
  readonly generatedTokens: number;
  /** Tokens in the engine's memory afterwards. */
  readonly position: number;
  /** Wall-clock milliseconds from the call to the end. */
  readonly ms: number;
  /** With `show-loss`: the prompt's mean loss in bits per token under the model (from its log-probabilities), else null. */
  readonly promptBits: number | null;
}

/** `error`: anything that failed (loading, generating, a bad attribute); also shown in the element. */
export interface TttChatErrorDetail {
  readonly error: Error;
  /** True when the failure is that this browser has no usable WebGPU (WebGpuUnavailableError). */
  readonly unsupported: boolean;
}

/** `token`: one sampled token and the text it added ('' while held back; see docs/api.md, Generation). */
export interface TttChatTokenDetail extends GeneratedToken {
  /** 0 for the first token of this generation. */
  readonly index: number;
}

export interface TttChatEventMap {
  /** Loading progress (fetch, cache, upload), as createEngine's onProgress. */
  progress: CustomEvent<LoadProgress>;
  /** The model is loaded and the engine is ready. */
  ready: CustomEvent<TttInfo>;
  token: CustomEvent<TttChatTokenDetail>;
  /** The engine's stats: after every request and every few decode tokens. */
  stats: CustomEvent<TttStats>;
  done: CustomEvent<TttChatDoneDetail>;
  error: CustomEvent<TttChatErrorDetail>;
}

export type TttChatEventName = keyof TttChatEventMap;

type DetailOf<K extends TttChatEventName> = TttChatEventMap[K] extends CustomEvent<infer D> ? D : never;

export function chatEvent<K extends TttChatEventName>(type: K, detail: DetailOf<K>): CustomEvent<DetailOf<K>> {
  const bubbles = type !== 'error';
  return new CustomEvent(type, { detail, bubbles, composed: bubbles });
}
