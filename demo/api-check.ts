// The public API end to end in a real browser: the engine in a Web Worker, driven from the page through
// createEngine. Every result goes on window.__apiCheck for test/e2e/worker-api.test.ts; the page also
// prints them, so it doubles as a manual check (npm run demo, then open /api-check.html).
import {
  createEngine,
  EngineAbortedError,
  EngineDestroyedError,
  InvalidTokenError,
  MemoryMismatchError,
  ModelFetchError,
  WebGpuUnavailableError,
  type GeneratedToken,
  type TttEngine,
  type TttStats,
} from '../src/api/index.ts';

interface ErrorSeen {
  name: string;
  message: string;
  /** Whether the page-side `instanceof` holds (the class was rebuilt across the worker boundary). */
  instance: boolean;
  fields: Record<string, unknown>;
}

const check: Record<string, unknown> & { done: boolean; error: string | null } = { done: false, error: null };
(window as unknown as { __apiCheck: typeof check }).__apiCheck = check;
const log = document.getElementById('log')!;

function seen(e: unknown, cls: abstract new (...a: never[]) => Error): ErrorSeen {
  const err = e as Error & Record<string, unknown>;
  const fields: Record<string, unknown> = {};
  for (const k of Object.keys(err)) if (k !== 'stack') fields[k] = err[k];
  return { name: err.name, message: err.message, instance: e instanceof cls, fields };
}

async function collect(stream: AsyncIterable<GeneratedToken>): Promise<GeneratedToken[]> {
  const out: GeneratedToken[] = [];
  for await (const t of stream) out.push(t);
  return out;
}

function greedy(engine: TttEngine, prompt: string, maxTokens: number): Promise<GeneratedToken[]> {
  return collect(engine.generate(prompt, { maxTokens, temperature: 0, ignoreEos: true }));
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const stages: string[] = [];
  const engine = await createEngine({ model: 'models/tiny-random-lact/', onProgress: (p) => stages.push(p.stage) });
  check.loadMs = performance.now() - t0;
  check.stages = stages;
  check.info = engine.info;
  const pushed: TttStats[] = [];
  engine.onStats((s) => pushed.push(s));

  check.prefill = await engine.prefill('Once upon a time');
  const t1 = performance.now();
  const tokens = await greedy(engine, ' there', 20);
  check.generateMs = performance.now() - t1;
  check.generated = { ids: tokens.map((t) => t.id), text: tokens.map((t) => t.text).join('') };
  check.decoded = await engine.decode(tokens.map((t) => t.id));
  check.afterGenerate = await engine.stats();

  // A long prefill, aborted once some of it has been processed; then the engine carries on.
  const before = (await engine.stats()).position;
  const long = Array.from(new TextEncoder().encode('All work and no play makes Jack a dull boy. '.repeat(60)));
  const controller = new AbortController();
  const progress: number[] = [];
  try {
    await engine.prefill(long, {
      signal: controller.signal,
      onProgress: (p) => {
        progress.push(p.processed);
        if (p.processed >= 64) controller.abort();
      },
    });
    check.abort = 'not aborted';
  } catch (e) {
    check.abort = seen(e, EngineAbortedError);
  }
  check.abortProgress = progress;
  check.longLength = long.length;
  check.positionBeforeAbort = before;
  check.positionAfterAbort = (await engine.stats()).position;
  const again = await greedy(engine, '!', 5);
  check.afterAbort = { ids: again.map((t) => t.id), position: (await engine.stats()).position };

  // Named errors keep their class and fields across the worker boundary.
  check.invalid = await engine.prefill([999]).then(() => 'accepted', (e: unknown) => seen(e, InvalidTokenError));
  check.mismatch = await engine.loadMemory(new Uint8Array(64)).then(() => 'accepted', (e: unknown) => seen(e, MemoryMismatchError));

  // Memory round trip through the worker: the same continuation after reset + load.
  const { blob, bytes } = await engine.saveMemory();
  const want = (await greedy(engine, ' and', 6)).map((t) => t.id);
  await engine.reset();
  await engine.loadMemory(blob);
  const got = (await greedy(engine, ' and', 6)).map((t) => t.id);
  check.memory = { bytes, same: JSON.stringify(want) === JSON.stringify(got) };

  // The same model from Files (as a folder picker or a drop gives them) and from a directory handle (OPFS
  // stands in for showDirectoryPicker, which needs a user gesture): same greedy tokens as from the URL.
  await engine.reset();
  const fromUrl = (await greedy(engine, 'Files', 8)).map((t) => t.id);
  const names = ['config.json', 'model.safetensors'];
  const files = await Promise.all(names.map(async (n) => new File([await (await fetch(`models/tiny-random-lact/${n}`)).blob()], n)));
  const fileEngine = await createEngine({ model: files });
  const fromFiles = (await greedy(fileEngine, 'Files', 8)).map((t) => t.id);
  await fileEngine.dispose();
  const root = await navigator.storage.getDirectory();
  const dir = await root.getDirectoryHandle('ttt-api-check-model', { create: true });
  for (const f of files) {
    const w = await (await dir.getFileHandle(f.name, { create: true })).createWritable();
    await w.write(f);
    await w.close();
  }
  const dirEngine = await createEngine({ model: dir });
  const fromDir = (await greedy(dirEngine, 'Files', 8)).map((t) => t.id);
  await dirEngine.dispose();
  await root.removeEntry('ttt-api-check-model', { recursive: true });
  check.otherInputs = { fromUrl, fromFiles, fromDir };

  // A model that is not there fails in the worker and arrives as the named loader error.
  check.badModel = await createEngine({ model: 'models/does-not-exist/' }).then(
    async (e) => {
      await e.dispose();
      return 'created';
    },
    (e: unknown) => seen(e, ModelFetchError),
  );

  check.stats = await engine.stats();
  check.pushedStats = pushed.length;
  await engine.dispose();
  check.afterDispose = await engine.stats().then(() => 'accepted', (e: unknown) => seen(e, EngineDestroyedError));

  // A TTT-E2E model in the worker: its inner steps run on the GPU as it reads; stats carry each update.
  const e2e = await createEngine({ model: 'models/tiny-random-e2e/' });
  // 100 bytes: with BOS, 101 positions, 6 updates (whether or not the host holds the last token back).
  const text = 'Test-time training keeps learning while it reads: one step per chunk of sixteen bytes.'.padEnd(100, '.');
  check.e2ePrefill = await e2e.prefill(text.slice(0, 100));
  const e2eStats = await e2e.stats();
  check.e2e = { info: e2e.info, learning: e2eStats.learning, innerStep: e2eStats.memory.innerStep };
  const saved = (await e2e.saveMemory()).blob;
  const continued = (await greedy(e2e, ' It', 8)).map((t) => t.id);
  await e2e.loadMemory(saved);
  check.e2eRestored = { want: continued, got: (await greedy(e2e, ' It', 8)).map((t) => t.id) };
  await e2e.dispose();
  const frozen = await createEngine({ model: 'models/tiny-random-e2e/', learn: false });
  await frozen.prefill(text.slice(0, 100));
  check.e2eFrozen = { learning: (await frozen.stats()).learning, innerStep: (await frozen.stats()).memory.innerStep };
  await frozen.dispose();
  check.totalMs = performance.now() - t0;
}

/** `?check=no-webgpu`: only what createEngine says where the browser offers no WebGPU. */
async function noWebGpu(): Promise<void> {
  check.noWebGpu = await createEngine({ model: 'models/tiny-random-lact/' }).then(
    async (e) => {
      await e.dispose();
      return 'created';
    },
    (e: unknown) => seen(e, WebGpuUnavailableError),
  );
}

const mode = new URLSearchParams(location.search).get('check');
(mode === 'no-webgpu' ? noWebGpu() : main()).then(
  () => {
    check.done = true;
    log.dataset.state = 'ok';
    log.textContent = JSON.stringify(check, null, 2);
  },
  (e: unknown) => {
    check.error = `${(e as Error).name}: ${(e as Error).message}`;
    log.dataset.state = 'error';
    log.textContent = check.error;
  },
);
