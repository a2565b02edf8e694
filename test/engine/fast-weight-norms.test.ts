// After every fast-weight update, each row of W0 and W2 (over df) and each row of W1 (over dh) has the
// norm it had before any update: the renormalisation that keeps a model that learns while it runs from
// drifting. Read from the saved memory at every chunk boundary, against the weights at position 0.
import { configOfFamily } from '../../src/model/model-config.ts';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import { decodeMemory } from '../../src/engine/memory-blob.ts';
import type { GpuContext } from '../../src/gpu/context.ts';
import { loadModel } from '../../src/model/load.ts';
import { NodeDirectorySource } from '../../src/model/source.ts';
import { openTestGpu } from '../helpers/gpu.ts';

/** Norms of W0 rows, W2 rows and W1 rows (columns of the stored W1^T), per head, from [Hf, 3, dh, df]. */
function rowNorms(w: Float32Array, Hf: number, dh: number, df: number): number[] {
  const S = dh * df;
  const out: number[] = [];
  for (let h = 0; h < Hf; h++) {
    const o = 3 * h * S;
    for (let t = 0; t < 2 * dh; t++) {
      let ss = 0;
      for (let k = 0; k < df; k++) ss += w[o + t * df + k] ** 2;
      out.push(Math.sqrt(ss));
    }
    for (let r = 0; r < df; r++) {
      let ss = 0;
      for (let j = 0; j < dh; j++) ss += w[o + 2 * S + j * df + r] ** 2;
      out.push(Math.sqrt(ss));
    }
  }
  return out;
}

describe('fast-weight renormalisation', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = (await openTestGpu()).ctx;
  });
  afterAll(() => ctx?.device.destroy());

  it('keeps every row norm at its initial value after each of 6 chunk updates, while the weights change', async () => {
    const model = await loadModel(new NodeDirectorySource(fileURLToPath(new URL('../fixtures/tiny-all-on/', import.meta.url))));
    const c = configOfFamily(model.config, 'lact');
    const engine = await Engine.create(ctx.fork(), model, { weights: 'f32' });
    const text = Array.from(await readFile(fileURLToPath(import.meta.url))).slice(0, 6 * c.chunkSize);
    const weightsAt = async (): Promise<Float32Array[]> => {
      const { sections } = decodeMemory(await engine.saveMemory());
      return Array.from({ length: c.numLayers }, (_, l) => {
        const b = sections.get(`layer${l}.fastWeights`)!;
        return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
      });
    };
    const initial = await weightsAt();
    const targets = initial.map((w) => rowNorms(w, c.numFwHeads, c.fwHidden, c.fwHeadDim));
    let worst = 0;
    for (let k = 0; k < 6; k++) {
      await engine.feed(text.slice(k * c.chunkSize, (k + 1) * c.chunkSize)); // ends on a chunk boundary: one update
      const now = await weightsAt();
      for (let l = 0; l < c.numLayers; l++) {
        const norms = rowNorms(now[l], c.numFwHeads, c.fwHidden, c.fwHeadDim);
        norms.forEach((n, i) => (worst = Math.max(worst, Math.abs(n - targets[l][i]) / targets[l][i])));
        // The update did something: the weights moved well beyond rounding.
        let moved = 0;
        now[l].forEach((v, i) => (moved = Math.max(moved, Math.abs(v - initial[l][i]))));
        expect(moved).toBeGreaterThan(1e-3);
      }
    }
    process.stderr.write(`[fast-weight norms] worst relative deviation from the targets after 6 updates: ${worst.toExponential(2)}\n`);
    // w / (|w| + 1e-5) * n: the norm is n * |w| / (|w| + 1e-5), within 1e-5 relative of n, plus f32 rounding.
    expect(worst).toBeLessThan(1e-4);
    engine.destroy();
  });
});
