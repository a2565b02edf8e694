/**
 * The transformers.js contender's model folder and report (bench/transformers-js-folder.ts,
 * bench/transformers-js-core.ts): what transformers.js reads to size its cache and find the weights, a
 * tokenizer that maps bytes to the ids our engine uses, and the greedy comparison that decides whether
 * the two runtimes computed the same thing. No browser: the benchmark itself runs transformers.js.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { benchModelFiles, sha256 } from '../../bench/model-folder.ts';
import { greedyAgreement, tjsMarkdown, tokenStream, type TjsResult, type TjsRow } from '../../bench/transformers-js-core.ts';
import { TRANSFORMERS_JS_FIXTURE, writeTransformersJsFolder } from '../../bench/transformers-js-folder.ts';
import { HuggingFaceTokenizer } from '../../src/model/tokenizer.ts';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('transformers.js model folder', () => {
  it('is a Llama-architecture folder over the bench weights, with the shared graph and its weights as onnx/model.onnx_data', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tjs-'));
    dirs.push(dir);
    const { folder, maxPositions } = await writeTransformersJsFolder(dir);
    const config = JSON.parse(await readFile(join(folder, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config.model_type).toBe('llama');
    // transformers.js sizes the empty past from these: [1, num_key_value_heads, 0, head_dim] per layer.
    expect([config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads, config.head_dim]).toEqual([2, 4, 4, 32]);
    expect(config['transformers.js_config']).toEqual({ dtype: 'fp32', use_external_data_format: 1 });
    expect(maxPositions).toBe(65536);
    const weights = await readFile(join(folder, 'onnx/model.onnx_data'));
    expect(sha256(weights)).toBe(sha256(benchModelFiles('full-attention').safetensors));
    const graph = await readFile(join(folder, 'onnx/model.onnx'));
    expect(graph.equals(await readFile(join(TRANSFORMERS_JS_FIXTURE, 'onnx/model.onnx')))).toBe(true);
    // Every weight's external-data reference names the file transformers.js fetches beside the graph
    // (21 tensors; the name appears once more in the export's metadata).
    const count = (s: string) => graph.toString('latin1').split(s).length - 1;
    expect(count('model.onnx_data')).toBe(22);
    expect(count('"model.safetensors"')).toBe(0);
    const record = JSON.parse(await readFile(join(TRANSFORMERS_JS_FIXTURE, 'onnx/model.onnx.json'), 'utf8')) as { inputs: string[]; outputs: string[] };
    expect(record.inputs).toEqual(['input_ids', 'attention_mask', 'past_key_values.0.key', 'past_key_values.0.value', 'past_key_values.1.key', 'past_key_values.1.value']);
    expect(record.outputs.slice(0, 3)).toEqual(['logits', 'present.0.key', 'present.0.value']);

    // The tokenizer maps every byte to the id of that byte, as our byte tokenizer does.
    const tok = new HuggingFaceTokenizer(
      JSON.parse(await readFile(join(folder, 'tokenizer.json'), 'utf8')),
      JSON.parse(await readFile(join(folder, 'tokenizer_config.json'), 'utf8')),
    );
    const text = 'héllo, wörld\n\t\u0000\u00ff';
    expect(tok.encode(text)).toEqual([...new TextEncoder().encode(text)]);
    expect(tok.decode([...new TextEncoder().encode(text)])).toBe(text);
    expect(tok.bosId).toBe(256);
    expect(tok.eosId).toBe(257);
  });
});

describe('transformers.js comparison report', () => {
  it('compares greedy tokens up to our first EOS (transformers.js runs with min_new_tokens)', () => {
    expect(greedyAgreement([1, 2, 3], [1, 2, 3])).toEqual({ same: 3, compared: 3 });
    expect(greedyAgreement([1, 2, 3], [1, 9, 3])).toEqual({ same: 1, compared: 3 });
    expect(greedyAgreement([1, 257, 3], [1, 4, 3])).toEqual({ same: 1, compared: 1 });
    expect(greedyAgreement([5, 6], [5])).toEqual({ same: 1, compared: 1 });
    expect(tokenStream(4)[0]).toBe(256);
    expect(tokenStream(4).slice(1).every((t) => t >= 0 && t < 256)).toBe(true);
  });

  it('reports ratios as theirs over ours, and greedy agreement on the transformers.js rows', () => {
    const row = (contender: TjsRow['contender'], prefillSeconds: number, decodeMsMedian: number, tokens: number[]): TjsRow => ({
      contender, context: 1024, prefillSeconds, prefillTokensPerSecond: 1024 / prefillSeconds, decodeMsMedian, decodeMsMin: decodeMsMedian,
      decodeSteps: 31, liveGpuBytes: 2 ** 20, allocatorBytes: contender === 'full-attention' ? 2 ** 20 : null, decodePipelines: 0, tokens,
    });
    const r: TjsResult = {
      date: '2026-12-03T00:00:00Z', device: 'd', environment: 'e', command: 'c', contexts: [1024], steps: 32, seconds: 60,
      rows: [row('full-attention', 2, 10, [1, 2, 3]), row('transformers.js', 1, 50, [1, 2, 4])],
    };
    const md = tjsMarkdown(r);
    expect(md).toContain('| 1024 | 0.50x | 5.00x |');
    expect(md).toContain('| 2 of 3 |');
  });
});
