/**
 * The fuzz loader's worker thread (started by LoaderWorker in harness.ts): loads each model folder it is
 * sent through both loaders, `loadModel` and `openModelStream` (reading every tensor), and answers how
 * each ended. A model that loads is used: the CPU reference computes its next token after BOS, and the
 * tokenizer encodes, decodes and stream-decodes the probe texts.
 */
import { configOfFamily } from '../../src/model/model-config.ts';
import { parentPort } from 'node:worker_threads';
import { crc32 } from '../../src/engine/crc32.ts';
import type { TensorF32 } from '../../src/model/config.ts';
import { loadModel } from '../../src/model/load.ts';
import type { ModelConfig } from '../../src/model/model-config.ts';
import { MemorySource } from '../../src/model/source.ts';
import { openModelStream } from '../../src/model/stream.ts';
import type { Tokenizer } from '../../src/model/tokenizer.ts';
import { ReferenceModel } from '../../src/reference/model.ts';
import { describeError, projectErrorName, type LoadOutcome, type LoadReply, type LoadRequest } from './harness.ts';

const port = parentPort!;

function tensorCrc(name: string, shape: readonly number[], data: Float32Array): number {
  const head = new TextEncoder().encode(`${name}:${shape.join('x')}:`);
  return crc32(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), crc32(head));
}

function digestOf(crcs: ReadonlyMap<string, number>): string {
  const text = [...crcs.keys()].sort().map((n) => `${n}=${crcs.get(n)}`).join(';');
  return crc32(new TextEncoder().encode(text)).toString(16).padStart(8, '0');
}

/** The reference's greedy next token after `token` (NaN logits never win). */
function nextToken(config: ModelConfig, weights: ReadonlyMap<string, TensorF32>, token: number): number {
  const logits = new ReferenceModel(configOfFamily(config, 'lact'), weights).stream().step(token);
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best] || Number.isNaN(logits[best])) best = i;
  return best;
}

/** Encode, decode and stream-decode each text; named errors are results, raw ones propagate. */
function probe(tok: Tokenizer, config: ModelConfig, texts: readonly string[]): string {
  const out: string[] = [];
  for (const text of texts) {
    let step = 'encode';
    try {
      const ids = tok.encode(text);
      const bad = ids.find((id) => !(Number.isInteger(id) && id >= 0 && id < tok.vocabSize && id < config.vocabSize));
      if (bad !== undefined) throw new RangeError(`encode(${JSON.stringify(text)}) gave id ${bad}, outside the tokenizer's [0, ${tok.vocabSize}) or the model's [0, ${config.vocabSize})`);
      step = 'decode';
      const whole = tok.decode(ids);
      step = 'stream-decode';
      const d = tok.decoder();
      const streamed = ids.map((id) => d.push(id)).join('') + d.flush();
      if (typeof whole !== 'string' || typeof streamed !== 'string') throw new TypeError('decode gave something other than a string');
      out.push(`${ids.length} ids`);
    } catch (e) {
      // A named error is an answer (a text the vocabulary cannot spell); anything else is a bug.
      if (projectErrorName(e) === null) throw e;
      out.push(`${step}: ${projectErrorName(e)}`);
    }
  }
  return out.join(', ');
}

async function run(path: 'load' | 'stream', req: LoadRequest): Promise<LoadOutcome> {
  const t0 = performance.now();
  let config: ModelConfig;
  let tokenizer: Tokenizer;
  const weights = new Map<string, TensorF32>();
  const crcs = new Map<string, number>();
  try {
    const source = new MemorySource(new Map(Object.entries(req.files)), 'fuzz');
    if (path === 'load') {
      const m = await loadModel(source);
      config = m.config;
      tokenizer = m.tokenizer;
      for (const [name, t] of m.weights) {
        weights.set(name, t);
        crcs.set(name, tensorCrc(name, t.shape, t.data));
      }
    } else {
      const s = await openModelStream(source);
      config = s.config;
      tokenizer = s.tokenizer;
      for await (const t of s.tensors) {
        // Transient (it may share the download buffer): copied before the next one is asked for.
        weights.set(t.name, { shape: t.shape, data: t.data.slice() });
        crcs.set(t.name, tensorCrc(t.name, t.shape, t.data));
      }
    }
  } catch (e) {
    return { ok: false, named: projectErrorName(e), error: describeError(e), phase: 'load', ms: performance.now() - t0 };
  }
  try {
    const token = nextToken(config, weights, tokenizer.bosId ?? 0);
    const probed = req.probeTexts ? probe(tokenizer, config, req.probeTexts) : undefined;
    return { ok: true, digest: digestOf(crcs), tensors: weights.size, token, vocabSize: config.vocabSize, ...(probed !== undefined ? { probe: probed } : {}), ms: performance.now() - t0 };
  } catch (e) {
    return { ok: false, named: projectErrorName(e), error: describeError(e), phase: 'use', ms: performance.now() - t0 };
  }
}

port.on('message', (req: LoadRequest) => {
  void (async () => {
    const load = await run('load', req);
    const stream = await run('stream', req);
    port.postMessage({ id: req.id, load, stream } satisfies LoadReply);
  })();
});
port.postMessage('ready');
