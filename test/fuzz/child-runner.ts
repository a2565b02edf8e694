/**
 * The child side of fuzzInChild (harness.ts): a GPU fuzz target's `main` calls `serveCases`, which sets up
 * (a device, engines), runs the cases it is told to, says how each ended, and runs the final checks.
 */
import { caseRand, CaseFailure, describeError, withTimeout, type ChildMessage, type ChildPlan, type Rand } from './harness.ts';

export interface CaseSpec<S, C extends { what: string }> {
  setup(): Promise<S>;
  make(r: Rand, i: number, s: S): C;
  /** How the case ended (an error class name, "loaded"); CaseFailure (or anything else thrown) fails it. */
  check(c: C, s: S, i: number): Promise<string>;
  /** After the cases: a failure message for each check of the state and the device that does not hold. */
  final?(s: S): Promise<string[]>;
}

function send(m: ChildMessage): Promise<void> {
  return new Promise((resolve) => process.send!(m, () => resolve()));
}

export async function serveCases<S, C extends { what: string }>(spec: CaseSpec<S, C>): Promise<void> {
  const plan = JSON.parse(process.env.TTT_FUZZ_CHILD ?? 'null') as ChildPlan | null;
  if (!plan || !process.send) throw new Error('serveCases runs in a child started by fuzzInChild (harness.ts)');
  const s = await spec.setup();
  await send({ type: 'ready' });
  const t0 = performance.now();
  const indices = plan.only !== null ? [plan.only] : Array.from({ length: Math.max(0, plan.cases - plan.start) }, (_, k) => plan.start + k);
  for (const i of indices) {
    if (performance.now() - t0 > plan.budgetMs) {
      await send({ type: 'budget', i });
      break;
    }
    let c: C;
    try {
      c = spec.make(caseRand(plan.seed, i), i, s);
    } catch (e) {
      await send({ type: 'case', i, failure: `the case generator threw ${describeError(e)}`, ms: 0 });
      continue;
    }
    await send({ type: 'start', i, what: c.what });
    const started = performance.now();
    let failure: string | undefined;
    let outcome: string | undefined;
    try {
      const r = await withTimeout(spec.check(c, s, i), plan.caseMs);
      if (typeof r !== 'string') failure = `no result within ${plan.caseMs} ms (a promise that never settles)`;
      else outcome = r;
    } catch (e) {
      failure = e instanceof CaseFailure ? e.message : `the check threw ${describeError(e)}`;
    }
    const ms = performance.now() - started;
    if (failure === undefined && ms > plan.caseMs) failure = `took ${ms.toFixed(0)} ms, over the ${plan.caseMs} ms limit`;
    await send(failure === undefined ? { type: 'case', i, outcome, ms } : { type: 'case', i, failure, ms });
  }
  let failures: string[] = [];
  try {
    failures = spec.final ? await spec.final(s) : [];
  } catch (e) {
    failures = [`the final checks threw ${describeError(e)}`];
  }
  await send({ type: 'done', failures });
}
