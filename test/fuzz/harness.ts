/**
 * The fuzz tests' shared parts: seeded cases, the "named error" check, per-case time limits and a file's
 * time budget, and a loader in a worker thread (so that a case that blocks the thread, or eats the heap,
 * is caught and named instead of hanging the test process).
 *
 * Every case gets its own generator, seeded from (seed, case index), so one case can be replayed alone:
 *
 *   TTT_FUZZ_SEED=7 TTT_FUZZ_CASE=113 npx vitest run test/fuzz/safetensors.test.ts
 *
 * TTT_FUZZ_SEED overrides every target's seed, TTT_FUZZ_CASES its case count (for longer local runs;
 * raise TTT_FUZZ_BUDGET_S with it), TTT_FUZZ_CASE runs that one case only, TTT_FUZZ_VERBOSE=1 prints
 * every case and how it ended. (The sweeps are not seeded: their case i is always the same.)
 */
import { fork } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import * as apiErrors from '../../src/api/error-classes.ts';
import * as modelErrors from '../../src/model/errors.ts';
import { rng } from '../helpers/random-model.ts';

// ---------------------------------------------------------------------------------------------------
// Named errors

/** Every error class of the project, by the name it is exported under (the public API's, and the loader's subclasses). */
export const PROJECT_ERRORS: ReadonlyMap<unknown, string> = new Map(
  [...Object.entries(apiErrors), ...Object.entries(modelErrors)].filter(([, v]) => typeof v === 'function').map(([k, v]) => [v, k]),
);

/** The project's name for `e`'s class (its exact class, not an ancestor), or null for anything else. */
export function projectErrorName(e: unknown): string | null {
  if (e === null || typeof e !== 'object') return null;
  return PROJECT_ERRORS.get((e as object).constructor) ?? null;
}

/** "TypeError: x is undefined (at src/model/foo.ts:12:3)": what a failure message shows of an error. */
export function describeError(e: unknown): string {
  if (!(e instanceof Error)) return `a thrown ${typeof e}: ${String(e).slice(0, 200)}`;
  const frame = (e.stack ?? '').split('\n').slice(1).map((l) => l.trim()).find((l) => l.includes('/src/') || l.includes('node_modules')) ?? '';
  const where = frame.replace(/[^\s(]*?\/((?:src|test|node_modules)\/)/, '$1');
  return `${e.constructor.name}: ${e.message.slice(0, 300)}${where ? ` (${where})` : ''}`;
}

// ---------------------------------------------------------------------------------------------------
// Seeds and cases

/** TTT_FUZZ_VERBOSE=1: print every case and how it ended. */
const VERBOSE = process.env.TTT_FUZZ_VERBOSE === '1';

export interface FuzzPlan {
  readonly seed: number;
  readonly cases: number;
  /** TTT_FUZZ_CASE: run only this case. */
  readonly only: number | null;
  /** Each case must finish within this (ms). */
  readonly caseMs: number;
  /** The whole target stops starting cases after this (ms); the count that ran is printed. */
  readonly budgetMs: number;
}

function envInt(name: string): number | null {
  const v = process.env[name];
  if (v === undefined || v.trim() === '') return null;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return n;
}

/** The fixed seed and count of a target, unless the environment overrides them. */
export function fuzzPlan(defaults: { seed: number; cases: number; caseMs?: number; budgetMs?: number }): FuzzPlan {
  const budgetS = envInt('TTT_FUZZ_BUDGET_S');
  return {
    seed: envInt('TTT_FUZZ_SEED') ?? defaults.seed,
    cases: envInt('TTT_FUZZ_CASES') ?? defaults.cases,
    only: envInt('TTT_FUZZ_CASE'),
    caseMs: defaults.caseMs ?? 5_000,
    budgetMs: budgetS !== null ? budgetS * 1000 : defaults.budgetMs ?? 25_000,
  };
}

/** A seeded generator with the helpers mutations need. */
export class Rand {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = rng(seed);
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** A pick by weight: `[[3, 'a'], [1, 'b']]`. */
  weighted<T>(items: readonly (readonly [number, T])[]): T {
    const total = items.reduce((s, [w]) => s + w, 0);
    let x = this.next() * total;
    for (const [w, v] of items) if ((x -= w) < 0) return v;
    return items[items.length - 1][1];
  }
  shuffle<T>(items: readonly T[]): T[] {
    const a = [...items];
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  }
}

/** Case `i` of seed `seed` has its own stream of numbers, independent of the cases before it. */
export function caseRand(seed: number, i: number): Rand {
  return new Rand((Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) ^ Math.imul(i + 1, 0x85ebca6b)) >>> 0);
}

export const hex = (b: number, digits = 2): string => `0x${b.toString(16).padStart(digits, '0')}`;

/** A value for a failure message: JSON, shortened (and never throwing). */
export function show(v: unknown, max = 60): string {
  let s: string;
  try {
    s = v === undefined ? 'undefined' : JSON.stringify(v) ?? String(v);
  } catch {
    s = Array.isArray(v) ? '[…deeply nested…]' : String(v);
  }
  return s.length > max ? `${s.slice(0, max)}…(${s.length} chars)` : s;
}

/** Thrown by a check to fail its case with this message. */
export class CaseFailure extends Error {}

const TIMEOUT = Symbol('timeout');

/** `p`, or TIMEOUT when it has not settled within `ms`. */
export async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMEOUT> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([p, new Promise<typeof TIMEOUT>((resolve) => (timer = setTimeout(() => resolve(TIMEOUT), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

export interface FuzzReport {
  readonly target: string;
  readonly seed: number;
  /** Cases run (fewer than planned when the budget ran out). */
  readonly ran: number;
  readonly planned: number;
  readonly ms: number;
  /** "seed 7 case 113: header byte 41 = 0x7b: TypeError: …", one per failed case. */
  readonly failures: string[];
  /** How the cases ended: error class name or "loaded", with counts. */
  readonly outcomes: Readonly<Record<string, number>>;
}

/**
 * Runs `plan.cases` cases: `make` builds case i from its own generator (a description `what` and
 * whatever the check needs), `check` runs it and returns how it ended (an error class name, "loaded")
 * or throws CaseFailure. A check that does not settle within `plan.caseMs` fails its case; a check that
 * throws anything else fails it too (a bug in the check, or a raw error let through).
 */
export async function fuzz<C extends { what: string }>(
  target: string,
  plan: FuzzPlan,
  make: (r: Rand, i: number) => C,
  check: (c: C, i: number) => Promise<string>,
  opts: { caseMs?: number } = {},
): Promise<FuzzReport> {
  const t0 = performance.now();
  const failures: string[] = [];
  const outcomes: Record<string, number> = {};
  const caseMs = opts.caseMs ?? plan.caseMs;
  // The check's own limits (the loader worker's) answer first; this one catches a check that never settles.
  const hardMs = Math.round(caseMs * 1.5) + 2_000;
  const indices = plan.only !== null ? [plan.only] : Array.from({ length: plan.cases }, (_, i) => i);
  let ran = 0;
  let slowest = { i: -1, ms: 0 };
  for (const i of indices) {
    if (performance.now() - t0 > plan.budgetMs) break;
    const label = `seed ${plan.seed} case ${i}`;
    let c: C;
    try {
      c = make(caseRand(plan.seed, i), i);
    } catch (e) {
      failures.push(`${label}: the case generator threw ${describeError(e)}`);
      ran++;
      continue;
    }
    const started = performance.now();
    let outcome: string | typeof TIMEOUT;
    try {
      outcome = await withTimeout(check(c, i), hardMs);
    } catch (e) {
      failures.push(`${label}: ${c.what}: ${e instanceof CaseFailure ? e.message : `the check threw ${describeError(e)}`}`);
      ran++;
      continue;
    }
    ran++;
    if (outcome === TIMEOUT) {
      failures.push(`${label}: ${c.what}: no result within ${hardMs} ms (a hang)`);
      continue;
    }
    const took = performance.now() - started;
    if (took > slowest.ms) slowest = { i, ms: took };
    if (took > caseMs) failures.push(`${label}: ${c.what}: took ${took.toFixed(0)} ms, over the ${caseMs} ms limit`);
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    if (VERBOSE) console.log(`[fuzz] ${label}: ${c.what} → ${outcome} (${took.toFixed(0)} ms)`);
  }
  return summarize(target, plan, { t0, ran, planned: indices.length, failures, outcomes, slowest });
}

function summarize(
  target: string,
  plan: FuzzPlan,
  r: { t0: number; ran: number; planned: number; failures: string[]; outcomes: Record<string, number>; slowest: { i: number; ms: number } },
): FuzzReport {
  const ms = performance.now() - r.t0;
  const sorted = Object.fromEntries(Object.entries(r.outcomes).sort((a, b) => b[1] - a[1]));
  const stopped = r.ran < r.planned ? ` (stopped by the ${plan.budgetMs / 1000} s budget after ${r.ran} of ${r.planned})` : '';
  console.log(
    `[fuzz] ${target}: seed ${plan.seed}, ${r.ran} cases${stopped} in ${(ms / 1000).toFixed(1)} s, ${r.failures.length} failed; ` +
      Object.entries(sorted).map(([k, n]) => `${k} ${n}`).join(', ') +
      (r.slowest.i >= 0 ? `; slowest: case ${r.slowest.i}, ${r.slowest.ms.toFixed(0)} ms` : ''),
  );
  return { target, seed: plan.seed, ran: r.ran, planned: r.planned, ms, failures: r.failures, outcomes: sorted };
}

// ---------------------------------------------------------------------------------------------------
// GPU targets in a child process

/** What a child (child-runner.ts) is told: the plan, and the case to start from. */
export interface ChildPlan extends FuzzPlan {
  readonly start: number;
}

/** What a child says, in order: ready; per case start, then case (an outcome or a failure); done. */
export type ChildMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'start'; readonly i: number; readonly what: string }
  | { readonly type: 'case'; readonly i: number; readonly outcome?: string; readonly failure?: string; readonly ms: number }
  | { readonly type: 'budget'; readonly i: number }
  | { readonly type: 'done'; readonly failures: string[] };

/**
 * Runs a GPU fuzz target (a module under test/fuzz/ whose `main` calls `serveCases`) in a child process
 * through Vite's loader. A case after which the child says nothing for the time limit blocked it (a hang
 * on its main thread, which no timer in it can interrupt): it is named, the child killed, and a new one
 * started after that case. A child that dies in a case is named the same way.
 */
export async function fuzzInChild(target: string, module: string, plan: FuzzPlan, opts: { setupMs?: number; finalMs?: number } = {}): Promise<FuzzReport> {
  const t0 = performance.now();
  const failures: string[] = [];
  const outcomes: Record<string, number> = {};
  let slowest = { i: -1, ms: 0 };
  let ran = 0;
  const planned = plan.only !== null ? 1 : plan.cases;
  const hardMs = Math.round(plan.caseMs * 1.5) + 2_000;
  const setupMs = opts.setupMs ?? 180_000;
  const finalMs = opts.finalMs ?? 120_000;
  let start = 0;
  for (;;) {
    const budgetMs = Math.max(0, plan.budgetMs - (performance.now() - t0));
    const childPlan: ChildPlan = { ...plan, budgetMs, start };
    const child = fork(new URL('./child-boot.mjs', import.meta.url), [], {
      env: { ...process.env, TTT_FUZZ_MODULE: module, TTT_FUZZ_CHILD: JSON.stringify(childPlan) },
      silent: true,
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    child.stdout?.on('data', () => {});
    const end = await new Promise<{ kind: 'done' | 'hang' | 'exit'; current: { i: number; what: string } | null; code?: number | null }>((resolve) => {
      let current: { i: number; what: string } | null = null;
      let phase: 'setup' | 'cases' | 'final' = 'setup';
      let timer: ReturnType<typeof setTimeout> | undefined;
      const arm = (): void => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          resolve({ kind: 'hang', current });
        }, phase === 'setup' ? setupMs : phase === 'final' ? finalMs : hardMs);
      };
      arm();
      child.on('message', (m: ChildMessage) => {
        if (m.type === 'ready') phase = 'cases';
        else if (m.type === 'start') current = { i: m.i, what: m.what };
        else if (m.type === 'case') {
          ran++;
          if (m.failure !== undefined) failures.push(`seed ${plan.seed} case ${m.i}: ${current?.i === m.i ? `${current.what}: ` : ''}${m.failure}`);
          else {
            outcomes[m.outcome!] = (outcomes[m.outcome!] ?? 0) + 1;
            if (m.ms > slowest.ms) slowest = { i: m.i, ms: m.ms };
          }
          if (VERBOSE) console.log(`[fuzz] seed ${plan.seed} case ${m.i}: ${current?.what} → ${m.outcome ?? m.failure} (${m.ms.toFixed(0)} ms)`);
          current = null;
          // The next message is the next case's start, or (after the last) the final checks' result.
          if (m.i === plan.cases - 1 || plan.only !== null) phase = 'final';
        } else if (m.type === 'budget') phase = 'final';
        else if (m.type === 'done') {
          clearTimeout(timer);
          failures.push(...m.failures);
          resolve({ kind: 'done', current: null });
          return;
        }
        arm();
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolve({ kind: 'exit', current, code });
      });
    });
    if (end.kind === 'done') break;
    const tail = stderr.trim().split('\n').slice(-6).join(' | ');
    if (end.current === null) {
      failures.push(`${target}: the child process ${end.kind === 'hang' ? 'stopped answering' : `exited (code ${end.code})`} outside any case${tail ? `: ${tail}` : ''}`);
      break;
    }
    ran++;
    failures.push(
      `seed ${plan.seed} case ${end.current.i}: ${end.current.what}: ` +
        (end.kind === 'hang' ? `no answer within ${hardMs} ms: the process was blocked (a hang); killed it` : `the process died (exit code ${end.code})${tail ? `: ${tail}` : ''}`),
    );
    if (plan.only !== null || end.current.i + 1 >= plan.cases) break;
    start = end.current.i + 1;
  }
  return summarize(target, plan, { t0, ran, planned, failures, outcomes, slowest });
}

// ---------------------------------------------------------------------------------------------------
// The loader in a worker thread

/** A model folder as in-memory files. */
export type Files = Record<string, Uint8Array | string>;

export type LoadOutcome =
  | {
      readonly ok: true;
      /** CRC-32s of the weights, by tensor name, combined in name order (equal for equal weights). */
      readonly digest: string;
      readonly tensors: number;
      /** The CPU reference's greedy next token after the tokenizer's BOS (or token 0). */
      readonly token: number;
      readonly vocabSize: number;
      /** What the tokenizer made of the probe texts (when asked). */
      readonly probe?: string;
      readonly ms: number;
    }
  | {
      readonly ok: false;
      /** The project's name for the error class, or null for a raw error. */
      readonly named: string | null;
      /** "TypeError: … (at src/…)" */
      readonly error: string;
      /** Where it happened: opening the model, or using what loaded (the tokenizer, the reference). */
      readonly phase: 'load' | 'use';
      readonly ms: number;
    };

export interface LoadReply {
  readonly id: number;
  /** `loadModel` (the whole file in memory). */
  readonly load: LoadOutcome;
  /** `openModelStream`, every tensor read. */
  readonly stream: LoadOutcome;
}

export interface LoadRequest {
  readonly id: number;
  readonly files: Files;
  /** Texts to encode, decode and stream-decode with the loaded tokenizer. */
  readonly probeTexts?: readonly string[];
}

/**
 * Runs the loader (both paths) on model folders in a worker thread. A case that does not answer within
 * the time limit, or runs the worker out of memory, is reported as such and the worker is replaced.
 */
export class LoaderWorker {
  private worker: Worker | null = null;
  private nextId = 1;
  private waiting: { id: number; resolve: (r: LoadReply | string) => void } | null = null;
  private ready: Promise<void> | null = null;
  /** Worker restarts (each follows a hang or a crash). */
  restarts = 0;

  constructor(private readonly heapMb = 768) {}

  private start(): Promise<void> {
    const worker = new Worker(new URL('./worker-boot.mjs', import.meta.url), {
      workerData: { entry: new URL('./loader-worker.ts', import.meta.url).href },
      resourceLimits: { maxOldGenerationSizeMb: this.heapMb },
      stdout: false,
      stderr: false,
    });
    this.worker = worker;
    const ready = new Promise<void>((resolve, reject) => {
      const onMessage = (m: unknown): void => {
        if (m === 'ready') {
          worker.off('message', onMessage);
          resolve();
        }
      };
      worker.on('message', onMessage);
      worker.once('error', reject);
    });
    worker.on('message', (m: LoadReply | 'ready') => {
      if (m === 'ready') return;
      if (this.waiting && this.waiting.id === m.id) {
        const w = this.waiting;
        this.waiting = null;
        w.resolve(m);
      }
    });
    const died = (why: string): void => {
      if (this.worker !== worker) return;
      this.worker = null;
      this.ready = null;
      const w = this.waiting;
      this.waiting = null;
      w?.resolve(why);
    };
    worker.on('error', (e) => died(`the loader's worker thread died: ${describeError(e)}${(e as { code?: string }).code ? ` [${(e as { code?: string }).code}]` : ''}`));
    worker.on('exit', (code) => died(`the loader's worker thread exited (code ${code})`));
    return ready;
  }

  /** The loader's outcomes for `files`, or a sentence saying why there are none (a hang, a crash). */
  async load(files: Files, timeoutMs: number, probeTexts?: readonly string[]): Promise<LoadReply | string> {
    if (!this.worker || !this.ready) {
      if (this.worker) this.restarts++;
      this.ready = this.start();
    }
    await this.ready;
    const id = this.nextId++;
    const reply = new Promise<LoadReply | string>((resolve) => (this.waiting = { id, resolve }));
    this.worker!.postMessage({ id, files, probeTexts } satisfies LoadRequest);
    const r = await withTimeout(reply, timeoutMs);
    if (r !== TIMEOUT) {
      if (typeof r === 'string') this.restarts++;
      return r;
    }
    // Blocked (or just too slow): the thread cannot be interrupted, only replaced.
    const w = this.worker;
    this.worker = null;
    this.ready = null;
    this.waiting = null;
    this.restarts++;
    await w?.terminate();
    return `no answer within ${timeoutMs} ms (the loader blocked its thread: a hang)`;
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    this.ready = null;
    await w?.terminate();
  }
}

/** One loader outcome as a failure message part: "loadModel: TypeError: …". */
function outcomeText(path: string, o: LoadOutcome): string {
  return o.ok ? `${path} loaded` : `${path} ${o.phase === 'use' ? 'loaded, then using it threw' : 'threw'} ${o.error}`;
}

export interface LoadExpectation {
  /** Error class names accepted (default: any ModelFormatError subclass). */
  readonly errors?: readonly string[];
  /** The case must load (e.g. a rewrite that keeps the model valid). */
  readonly mustLoad?: boolean;
  /** The case must fail with exactly this class. */
  readonly mustFail?: string;
  /** When it loads, its weights must have this digest. */
  readonly digest?: string;
}

/** The loader's named errors: ModelFormatError and its subclasses. */
export const LOADER_ERRORS: readonly string[] = Object.keys(modelErrors).filter((k) => {
  const v = (modelErrors as Record<string, unknown>)[k];
  return typeof v === 'function' && (v === modelErrors.ModelFormatError || (v as { prototype: unknown }).prototype instanceof modelErrors.ModelFormatError);
});

/**
 * Checks a loader reply against what the case allows, and returns the outcome's label: the error class
 * name, or "loaded". Both paths must end the same way (the same class, or both loaded with equal weights).
 */
export function checkLoad(reply: LoadReply | string, want: LoadExpectation = {}): string {
  if (typeof reply === 'string') throw new CaseFailure(reply);
  const allowed = want.errors ?? LOADER_ERRORS;
  for (const [path, o] of [['loadModel', reply.load], ['openModelStream', reply.stream]] as const) {
    if (o.ok) {
      if (want.mustFail) throw new CaseFailure(`${path} loaded, expected ${want.mustFail}`);
      if (want.digest !== undefined && o.digest !== want.digest) throw new CaseFailure(`${path} loaded other weights (digest ${o.digest}, expected ${want.digest})`);
      continue;
    }
    if (o.phase === 'use') throw new CaseFailure(outcomeText(path, o));
    if (o.named === null) throw new CaseFailure(`${outcomeText(path, o)} (not one of the project's error classes)`);
    if (!allowed.includes(o.named)) throw new CaseFailure(`${outcomeText(path, o)} (accepted here: ${allowed.join(', ')})`);
    if (want.mustLoad) throw new CaseFailure(`${outcomeText(path, o)}, but this case must load`);
    if (want.mustFail && o.named !== want.mustFail) throw new CaseFailure(`${outcomeText(path, o)}, expected ${want.mustFail}`);
  }
  const a = reply.load, b = reply.stream;
  if (a.ok !== b.ok || (!a.ok && !b.ok && a.named !== b.named) || (a.ok && b.ok && (a.digest !== b.digest || a.token !== b.token))) {
    throw new CaseFailure(`the two loaders disagree: ${outcomeText('loadModel', a)}; ${outcomeText('openModelStream', b)}`);
  }
  if (a.ok) {
    if (!(Number.isInteger(a.token) && a.token >= 0 && a.token < a.vocabSize)) throw new CaseFailure(`loaded, but the reference's next token is ${a.token}`);
    return 'loaded';
  }
  return (a as { named: string }).named;
}

/**
 * Fails unless each of these outcomes (error class names, "loaded") ended some case: a target whose
 * mutations stop reaching a path says so. Skipped when replaying one case (TTT_FUZZ_CASE).
 */
export function assertOutcomes(report: FuzzReport, names: readonly string[], minKinds = 0): void {
  if (report.planned === 1) return;
  const missing = names.filter((n) => !(report.outcomes[n] > 0));
  if (missing.length > 0) throw new Error(`${report.target}: no case ended in ${missing.join(', ')} (outcomes: ${JSON.stringify(report.outcomes)})`);
  const kinds = Object.keys(report.outcomes).length;
  if (kinds < minKinds) throw new Error(`${report.target}: the cases ended in only ${kinds} ways (outcomes: ${JSON.stringify(report.outcomes)}), expected at least ${minKinds}`);
}

/** Fails with every case's message (one line each) when there are any. */
export function assertNoFailures(report: FuzzReport): void {
  if (report.failures.length === 0) return;
  const shown = report.failures.slice(0, 40);
  throw new Error(
    `${report.target}: ${report.failures.length} of ${report.ran} cases failed (seed ${report.seed}; replay one with TTT_FUZZ_SEED=${report.seed} TTT_FUZZ_CASE=<n>):\n` +
      shown.join('\n') +
      (report.failures.length > shown.length ? `\n… and ${report.failures.length - shown.length} more` : ''),
  );
}
