// The bundled trained models against PyTorch's greedy continuations (train/golden.py writes
// public/models/<name>/golden.json): the engine must produce the same tokens, one at a time from its
// incremental state, as the twin recomputing the whole sequence at every step.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import type { GpuContext } from '../../src/gpu/context.ts';
import { loadModel } from '../../src/model/load.ts';
import { NodeDirectorySource } from '../../src/model/source.ts';
import type { NodeGpu } from '../../src/node/webgpu.ts';
import { openTestGpu } from '../helpers/gpu.ts';

interface GoldenCase {
  name: string;
  prompt: number[];
  greedy: number[];
  margins: number[];
}

const ROOT = 'public/models';
/** Every bundled model that ships golden generations. */
const MODELS = readdirSync(ROOT).filter((m) => existsSync(`${ROOT}/${m}/golden.json`)).sort();

describe('bundled trained models reproduce PyTorch greedy generations token for token', () => {
  let gpu: NodeGpu;
  let ctx: GpuContext;
  beforeAll(async () => {
    ({ gpu, ctx } = await openTestGpu());
  });
  afterAll(() => gpu?.device.destroy());

  it('at least one bundled model has golden generations', () => {
    expect(MODELS.length).toBeGreaterThan(0);
  });

  for (const name of MODELS) {
    const golden = JSON.parse(readFileSync(`${ROOT}/${name}/golden.json`, 'utf8')) as { cases: GoldenCase[] };
    // f32 storage holds the F16 checkpoint exactly and computes in f32, as PyTorch did: every token must
    // match. f16 storage also computes partly in f16: it must match wherever PyTorch's top-1 margin is not
    // a near tie, i.e. up to the first step whose margin is below 0.05.
    for (const weights of ['f32', 'f16'] as const) {
      it(`${name} (${weights} weights): ${golden.cases.map((c) => c.name).join(', ')}`, async () => {
        const model = await loadModel(new NodeDirectorySource(`${ROOT}/${name}/`));
        const engine = await Engine.create(ctx.fork(), model, { weights });
        try {
          for (const c of golden.cases) {
            engine.reset();
            const ids = await engine.generate(c.prompt, c.greedy.length, { temperature: 0 });
            const firstTie = c.margins.findIndex((m) => m < 0.05);
            const upTo = weights === 'f32' || firstTie < 0 ? c.greedy.length : firstTie + 1;
            expect(ids.slice(0, upTo), `${c.name} (${c.prompt.length} prompt tokens)`).toEqual(c.greedy.slice(0, upTo));
          }
        } finally {
          engine.destroy();
        }
      });
    }
  }
});
