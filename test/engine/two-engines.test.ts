/**
 * Two engines on one device (one GpuContext, so one pipeline cache and one queue) do not interfere: each
 * engine's logits and sampled tokens, with the other's feeds interleaved between its own (call by call,
 * or both running at once so their blocks alternate on the queue), equal what it gives alone. Each engine
 * owns its buffers (KV window, fast weights, momentum, pending chunk, activations, uniforms, read-back);
 * any of them shared, or a per-device uniform written by one and read by the other, shows up here.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.ts';
import { Engine } from '../../src/engine/engine.ts';
import { loadModel, type LoadedModel } from '../../src/model/load.ts';
import { NodeDirectorySource } from '../../src/model/source.ts';
import { maxRelError, openTestGpu } from '../helpers/gpu.ts';

const dir = (name: string) => fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
const models = new Map<string, LoadedModel>();
async function model(name: string): Promise<LoadedModel> {
  if (!models.has(name)) models.set(name, await loadModel(new NodeDirectorySource(dir(name))));
  return models.get(name)!;
}

const BOS = 256;
const bytes = (s: string) => [...new TextEncoder().encode(s)];
const TEXT_A = [BOS, ...bytes('The quick brown fox jumps over the lazy dog, then naps beside a river while clouds drift slowly east.')];
const TEXT_B = [BOS, ...bytes('In the beginning was the word; and the word was with the model, and the model learned every chunk it read.')];

/** One engine's work: prompt pieces that cross chunk boundaries mid-block, a reset, then greedy and sampled decode. */
type Op = { feed: number[] } | { decode: number; temperature: number; seed?: number } | { reset: true };

function script(text: number[]): Op[] {
  return [
    { feed: text.slice(0, 7) },
    { feed: text.slice(7, 40) }, // crosses the chunk boundary at 16 and 32
    { decode: 6, temperature: 0 },
    { reset: true },
    { feed: text.slice(0, 50) },
    { feed: text.slice(50) },
    { decode: 12, temperature: 0 },
    { decode: 8, temperature: 0.9, seed: 1234 },
  ];
}

/** What an engine gave: the last-token logits after every feed and every token it sampled, in order. */
interface Trace {
  logits: Float32Array[];
  tokens: number[];
}

/** Runs the ops, yielding after each engine call (decode is one feed per token), so callers can interleave. */
async function* steps(engine: Engine, ops: Op[], trace: Trace): AsyncGenerator<void, void, undefined> {
  let last: number | null = null;
  for (const op of ops) {
    if ('reset' in op) {
      await engine.reset();
      last = null;
      yield;
    } else if ('feed' in op) {
      const r = await engine.feed(op.feed, { logits: 'last' });
      trace.logits.push(r.logits!);
      last = op.feed[op.feed.length - 1];
      yield;
    } else {
      // Decode feeds the last token and samples the next, one feed per token.
      let token: number = last!;
      for (let i = 0; i < op.decode; i++) {
        const sample = { temperature: op.temperature, seed: op.seed === undefined ? undefined : op.seed + i };
        const r = await engine.feed([token], { sample, logits: 'last' });
        trace.logits.push(r.logits!);
        trace.tokens.push(r.token!);
        token = r.token!;
        yield;
      }
      last = token;
    }
  }
}

async function run(engine: Engine, ops: Op[]): Promise<Trace> {
  const trace: Trace = { logits: [], tokens: [] };
  for await (const _ of steps(engine, ops, trace)) void _;
  return trace;
}

function expectSame(got: Trace, want: Trace, label: string): void {
  expect(got.tokens, `${label}: sampled tokens`).toEqual(want.tokens);
  expect(got.logits.length, label).toBe(want.logits.length);
  const worst = Math.max(...got.logits.map((l, i) => maxRelError(l, want.logits[i])));
  // The same kernels on the same device and inputs: bit for bit.
  expect(worst, `${label}: largest logit difference`).toBe(0);
}

/** Takes turns call by call: A's call, B's call, A's next, ...; whoever finishes first lets the other run on. */
async function interleaved(a: Engine, opsA: Op[], b: Engine, opsB: Op[]): Promise<[Trace, Trace]> {
  const ta: Trace = { logits: [], tokens: [] };
  const tb: Trace = { logits: [], tokens: [] };
  const ga = steps(a, opsA, ta);
  const gb = steps(b, opsB, tb);
  let doneA = false;
  let doneB = false;
  while (!doneA || !doneB) {
    if (!doneA) doneA = (await ga.next()).done === true;
    if (!doneB) doneB = (await gb.next()).done === true;
  }
  return [ta, tb];
}

describe('two engines on one GpuContext', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = (await openTestGpu()).ctx;
  });
  afterAll(() => ctx?.device.destroy());

  const cases: [string, string, string][] = [
    ['same TTT model (tiny-all-on), different texts', 'tiny-all-on', 'tiny-all-on'],
    ['two models (tiny-all-on and tiny-all-off)', 'tiny-all-on', 'tiny-all-off'],
    ['sliding window and full attention (tiny-swa and tiny-full)', 'tiny-swa', 'tiny-full'],
  ];

  for (const [label, nameA, nameB] of cases) {
    it(`${label}: interleaved call by call and running at once, each gives what it gives alone`, async () => {
      const [ma, mb] = [await model(nameA), await model(nameB)];
      const opsA = script(TEXT_A);
      const opsB = script(TEXT_B);
      const opts = { weights: 'f32' as const, maxRows: 8 };

      const aloneA = await Engine.create(ctx, ma, opts);
      const wantA = await run(aloneA, opsA);
      await aloneA.destroy();
      const aloneB = await Engine.create(ctx, mb, opts);
      const wantB = await run(aloneB, opsB);
      await aloneB.destroy();
      // Not vacuous: the two engines' outputs differ, so one leaking into the other would show.
      expect(maxRelError(wantA.logits[1], wantB.logits[1])).toBeGreaterThan(1e-3);
      expect(wantA.tokens).not.toEqual(wantB.tokens);

      // Both alive at once, taking turns call by call (A's feed, B's feed, ..., one decode token each).
      const a = await Engine.create(ctx, ma, opts);
      const b = await Engine.create(ctx, mb, opts);
      const [gotA, gotB] = await interleaved(a, opsA, b, opsB);
      expectSame(gotA, wantA, 'A, call by call');
      expectSame(gotB, wantB, 'B, call by call');

      // Both running at once: their blocks and read-backs alternate on the one queue as they come.
      await Promise.all([a.reset(), b.reset()]);
      const [bothA, bothB] = await Promise.all([run(a, opsA), run(b, opsB)]);
      expectSame(bothA, wantA, 'A, at once');
      expectSame(bothB, wantB, 'B, at once');

      // One destroyed, the other carries on unharmed.
      await a.reset();
      await b.destroy();
      expectSame(await run(a, opsA), wantA, 'A after B was destroyed');
      await a.destroy();
    });
  }
});
