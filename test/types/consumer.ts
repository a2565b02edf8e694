// A consumer of the published package: compiled by test/e2e/widget-package.test.ts against the .d.ts
// files in the packed tarball (strict, skipLibCheck off), never against src/. Each @ts-expect-error line
// must fail to compile: it proves the types reject that misuse rather than accept anything.
import {
  cachedModelBytes,
  clearModelCache,
  createEngine,
  EngineAbortedError,
  InvalidTokenError,
  MODEL_CACHE_NAME,
  WebGpuUnavailableError,
  type GenerateResult,
  type LoadProgress,
  type TttEngine,
  type TttInfo,
  type TttStats,
} from 'ttt-web';
import {
  defineTttChat,
  formatBytes,
  TttChatAttributeError,
  TttChatBusyError,
  TttChatElement,
  type TttChatDoneDetail,
  type TttChatState,
} from 'ttt-web/widget';

export async function useEngine(out: HTMLElement): Promise<GenerateResult> {
  const engine: TttEngine = await createEngine({
    model: 'models/tiny-random-lact/',
    weights: 'f16',
    onProgress: (p: LoadProgress) => console.log(p.stage, p.loaded, p.total),
  });
  const info: TttInfo = engine.info;
  const mode: 'ttt' | 'sliding-window' | 'full-attention' = info.mode;
  const unsubscribe = engine.onStats((s: TttStats) => console.log(s.position, s.decodeMsRolling, s.memory.total, s.jsHeap.page));
  const stop = new AbortController();
  await engine.prefill('A long document. ', { signal: stop.signal, onProgress: (p) => console.log(p.processed / p.total) });
  const stream = engine.generate('Summary:', { maxTokens: 32, temperature: 0.7, topP: 0.9, stop: ['\n\n'], signal: stop.signal });
  try {
    for await (const { id, text } of stream) out.textContent += `${text}`.repeat(id >= 0 ? 1 : 0);
  } catch (e) {
    if (e instanceof EngineAbortedError) console.log(e.processed, e.position);
    else if (e instanceof InvalidTokenError) console.log(e.token, e.vocabSize);
    else if (e instanceof WebGpuUnavailableError) console.log(e.message);
  }
  const { blob, bytes }: { blob: Uint8Array; bytes: number } = await engine.saveMemory();
  await engine.loadMemory(blob);
  unsubscribe();
  console.log(mode, bytes, MODEL_CACHE_NAME, await cachedModelBytes(), await clearModelCache('models/'));
  // @ts-expect-error weights is 'f16' | 'f32'
  await createEngine({ model: 'm/', weights: 'f8' });
  // @ts-expect-error a model is a URL prefix, File[] or a directory handle
  await createEngine({ model: 42 });
  // @ts-expect-error maxTokens is a number
  engine.generate('x', { maxTokens: '10' });
  await engine.dispose();
  return stream.result;
}

export function useWidget(): void {
  const chat: TttChatElement = document.createElement('ttt-chat');
  chat.model = 'models/tiny-random-lact/';
  chat.maxTokens = 64;
  chat.temperature = 0;
  chat.seed = null;
  chat.weights = 'f32';
  chat.loading = 'lazy';
  chat.cache = false;
  const state: TttChatState = chat.state;
  console.log(state, chat.output, chat.stats?.position, chat.info?.adapter, chat.engine?.info.vocabSize);
  chat.addEventListener('token', (e) => console.log(e.detail.id, e.detail.text, e.detail.index));
  chat.addEventListener('stats', (e) => console.log(formatBytes(e.detail.memory.total)));
  chat.addEventListener('done', (e) => {
    const d: TttChatDoneDetail = e.detail;
    console.log(d.reason, d.generatedTokens, d.ms);
  });
  chat.addEventListener('error', (e) => console.log(e.detail.error.name, e.detail.unsupported));
  chat.addEventListener('click', (e: MouseEvent) => console.log(e.clientX));
  // @ts-expect-error the done event's detail has no 'tokens' field
  chat.addEventListener('done', (e) => console.log(e.detail.tokens));
  // @ts-expect-error weights is 'f16' | 'f32'
  chat.weights = 'f64';
  document.body.append(chat);
  void chat.generate('Once upon a time').then((d) => console.log(d.text), (e: unknown) => {
    if (e instanceof TttChatBusyError || e instanceof TttChatAttributeError) console.log(e.message);
  });
  chat.stop();
  void chat.reset();
  const again: CustomElementConstructor = defineTttChat('my-chat');
  console.log(again === TttChatElement);
}
