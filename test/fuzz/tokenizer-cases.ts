/**
 * Damaged tokenizer files, as cases for the loader fuzz (tokenizer.test.ts) and the engine fuzz
 * (engine-cases.ts), for a config with "tokenizer": "tokenizer.json": the JSON damaged or not an object,
 * fields removed or mistyped, vocabularies with ids that are negative, fractional, duplicated or beyond
 * vocab_size, odd merges, added tokens and components, a tokenizer_config.json beside it.
 */
import { hex, show, type Files, type Rand } from './harness.ts';
import { bpeModel } from './models.ts';

export const base = bpeModel();
export const PROBES = ['hello world', 'Hello, wörld — 日本語 🌍', '', '<|bos|>hello<|eos|>', ' \n\t x'];
const deep = (n: number): string => '['.repeat(n) + ']'.repeat(n);
/** A value written as arrays nested 100 or 20 000 deep (JSON.parse reads them; JSON.stringify cannot write the deep ones). */
export const DEEP = '@@DEEP@@';

export interface TokCase {
  what: string;
  tokenizer: string | null;
  tokenizerConfig?: string;
  config?: Record<string, unknown>;
}

export type Json = Record<string, unknown>;

/** Sets (or with `undefined`, removes) the value at a dotted path, creating objects on the way. */
export function setPath(obj: Json, path: string, v: unknown): void {
  const parts = path.split('.');
  let o: Json = obj;
  for (const p of parts.slice(0, -1)) {
    if (typeof o[p] !== 'object' || o[p] === null) o[p] = {};
    o = o[p] as Json;
  }
  const last = parts[parts.length - 1];
  if (v === undefined) delete o[last];
  else o[last] = v;
}

export const PATHS = [
  'model', 'model.type', 'model.vocab', 'model.merges', 'model.unk_token', 'model.byte_fallback', 'model.dropout', 'model.fuse_unk',
  'model.continuing_subword_prefix', 'model.end_of_word_suffix', 'model.ignore_merges', 'added_tokens', 'normalizer', 'pre_tokenizer',
  'post_processor', 'decoder', 'version', 'truncation', 'padding',
];

const COMPONENTS: unknown[] = [
  { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
  { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always' },
  { type: 'Whitespace' },
  { type: 'Split', pattern: { Regex: '(' }, behavior: 'Isolated', invert: false },
  { type: 'Split', pattern: { String: '' }, behavior: 'Removed', invert: false },
  { type: 'Replace', pattern: { String: '' }, content: 'x' },
  { type: 'Sequence', pretokenizers: 'x' },
  { type: 'Sequence', normalizers: [{ type: 'NFC' }, { type: 'Lowercase' }] },
  { type: 'Sequence', decoders: [null] },
  { type: 'TemplateProcessing', single: 'x', pair: 1, special_tokens: [] },
  { type: 'BertProcessing', sep: ['[SEP]', 102], cls: ['[CLS]', 101] },
  { type: 'Precompiled', precompiled_charsmap: '!!' },
  { type: 'WordPiece', prefix: '##' },
  { type: 'Strip', content: ' ', start: 1, stop: 1 },
  { type: 'Foo' },
  { type: null },
  {},
];

function valueFor(r: Rand, path: string): unknown {
  const generic: unknown[] = [null, 0, -1, 1.5, 2 ** 53, '', 'x', true, [], {}, [null], DEEP];
  const specific: Record<string, unknown[]> = {
    model: [{ type: 'BPE' }, { type: 'WordLevel', vocab: { a: 0 } }, { type: 'WordPiece', vocab: {} }, { type: 'Unigram', vocab: [['a', 0]] }, { type: 'Unigram', vocab: [['a']] }],
    'model.type': ['BPE', 'WordPiece', 'Unigram', 'WordLevel', 'bpe', 'Foo'],
    'model.vocab': [{ a: 0 }, { a: -1 }, { a: 1e9 }, { a: 1.5 }, { a: '1' }, [['a', 0]], ['a'], { '': 0 }],
    'model.merges': [[['h', 'e']], ['h'], ['h e x'], ['zz yy'], [1], [[1, 2]], [['h']], ['h e', 'h e'], 'h e'],
    'model.unk_token': ['<unk>', 'a', 5, { content: 'a' }],
    'model.byte_fallback': [true, 'yes'],
    'model.dropout': [0.5, 1, 2, -1],
    'model.continuing_subword_prefix': ['##', 5],
    'model.end_of_word_suffix': ['</w>', 5],
    'model.ignore_merges': [true],
    added_tokens: [
      [{ id: 265, content: '<|bos|>' }],
      [{ id: -1, content: '<x>', special: true }],
      [{ id: 1e6, content: '<x>', special: true }],
      [{ id: '265', content: '<|bos|>', special: true }],
      [{ id: 265, content: 5, special: true }],
      [{ id: 265, content: '', special: true }],
      [{ id: 267, content: '<a>', special: 'yes' }],
      [{ id: 265, content: '<|bos|>', special: true }, { id: 265, content: '<|eos|>', special: true }],
      [{ id: 100, content: 'he', special: false }],
      { id: 265, content: '<|bos|>' },
    ],
    normalizer: COMPONENTS,
    pre_tokenizer: COMPONENTS,
    post_processor: COMPONENTS,
    decoder: COMPONENTS,
    truncation: [{ max_length: 0, strategy: 'LongestFirst', stride: 0, direction: 'Right' }, { max_length: -1 }],
    padding: [{ strategy: 'BatchLongest', direction: 'Left', pad_to_multiple_of: 0, pad_id: -1, pad_type_id: 0, pad_token: '<pad>' }],
  };
  return r.chance(0.6) && specific[path] ? r.pick(specific[path]) : r.pick(generic);
}

export function text(obj: unknown, r: Rand): string {
  return JSON.stringify(obj).replace(JSON.stringify(DEEP), deep(r.pick([100, 20_000])));
}

export function tokenizerCase(r: Rand): TokCase {
  const tok = structuredClone(base.tokenizer) as Json;
  const vocab = (tok.model as Json).vocab as Record<string, number>;
  const kind = r.weighted<string>([[3, 'drop'], [6, 'set'], [3, 'vocab'], [1, 'text'], [1, 'root'], [2, 'config'], [2, 'tokconfig']]);
  switch (kind) {
    case 'drop': {
      const paths = r.shuffle(PATHS).slice(0, r.range(1, 2));
      for (const p of paths) setPath(tok, p, undefined);
      return { what: `tokenizer.json without ${paths.join(', ')}`, tokenizer: text(tok, r) };
    }
    case 'set': {
      const path = r.pick(PATHS);
      const v = valueFor(r, path);
      setPath(tok, path, v);
      return { what: `tokenizer.json ${path} = ${v === DEEP ? 'deeply nested arrays' : show(v, 80)}`, tokenizer: text(tok, r) };
    }
    case 'vocab': {
      const tokens = Object.keys(vocab);
      const t = r.pick(tokens);
      const op = r.int(4);
      if (op === 0) {
        const v = r.pick<unknown>([-1, -300, 1e9, 267, 268, 300, 2 ** 31, 1.5, '5', null, vocab[r.pick(tokens)], [], {}]);
        const was = vocab[t];
        vocab[t] = v as number;
        return { what: `tokenizer.json vocab[${show(t)}] = ${show(v)} (was ${was})`, tokenizer: text(tok, r) };
      }
      if (op === 1) {
        delete vocab[t];
        return { what: `tokenizer.json vocab without ${show(t)}`, tokenizer: text(tok, r) };
      }
      if (op === 2) {
        const id = r.pick([267, 268, 1000, -5]);
        vocab[r.pick(['new', 'hello', '', ' ', 'Ġ'])] = id;
        return { what: `tokenizer.json vocab with a new token of id ${id}`, tokenizer: text(tok, r) };
      }
      // Every id shifted: ids [k, 267 + k).
      const k = r.pick([-1, 1, 256]);
      for (const key of tokens) vocab[key] += k;
      return { what: `tokenizer.json vocab ids all moved by ${k}`, tokenizer: text(tok, r) };
    }
    case 'text': {
      const good = JSON.stringify(tok);
      if (r.chance(0.5)) {
        const at = r.int(good.length);
        return { what: `tokenizer.json cut at char ${at} of ${good.length}`, tokenizer: good.slice(0, at) };
      }
      const bytes = new TextEncoder().encode(good);
      const at = r.int(bytes.length);
      const v = r.int(256);
      const was = bytes[at];
      bytes[at] = v;
      return { what: `tokenizer.json byte ${at} = ${hex(v)} (was ${hex(was)})`, tokenizer: new TextDecoder().decode(bytes) };
    }
    case 'root': {
      const t = r.pick(['[]', '1', '"x"', 'null', 'true', '', deep(20_000), '{}', '{"model": null}']);
      return { what: `tokenizer.json is ${show(t, 40)}`, tokenizer: t };
    }
    case 'config': {
      const cfg = { ...base.config };
      const op = r.int(4);
      if (op === 0) {
        const v = r.pick([256, 266, 267, 269, 1000]);
        cfg.vocab_size = v;
        return { what: `config vocab_size = ${v}`, tokenizer: JSON.stringify(tok), config: cfg };
      }
      if (op === 1) {
        const key = r.pick(['bos_token_id', 'eos_token_id']);
        const v = r.pick([0, 100, 255, 264, 267, null]);
        cfg[key] = v;
        return { what: `config ${key} = ${show(v)}`, tokenizer: JSON.stringify(tok), config: cfg };
      }
      if (op === 2) {
        delete cfg.tokenizer;
        return { what: 'config without "tokenizer" (tokenizer.json by default)', tokenizer: JSON.stringify(tok), config: cfg };
      }
      return { what: 'no tokenizer.json in the folder', tokenizer: null };
    }
    default: {
      const v = r.pick<string>([
        '{"bos_token": "<|bos|>", "eos_token": "<|eos|>"}',
        '{"bos_token": {"content": "<|bos|>"}, "eos_token": {"content": "nope"}}',
        '{"bos_token": 5, "eos_token": ["<|eos|>"]}',
        '{"bos_token": "hello"}',
        '{"clean_up_tokenization_spaces": true}',
        '{"clean_up_tokenization_spaces": "x"}',
        '{"add_bos_token": "x", "model_max_length": -1, "chat_template": 1}',
        '{"added_tokens_decoder": {"265": {"content": 5}}}',
        '{"tokenizer_class": null, "legacy": 3}',
        '[]',
        'null',
        '"x"',
        '{"bos_token": ',
        `{"bos_token": ${deep(20_000)}}`,
      ]);
      return { what: `tokenizer_config.json ${show(v, 60)}`, tokenizer: JSON.stringify(tok), tokenizerConfig: v };
    }
  }
}

export function files(c: TokCase): Files {
  const f: Files = { 'config.json': JSON.stringify(c.config ?? base.config), 'model.safetensors': base.weights };
  if (c.tokenizer !== null) f['tokenizer.json'] = c.tokenizer;
  if (c.tokenizerConfig !== undefined) f['tokenizer_config.json'] = c.tokenizerConfig;
  return f;
}

/** The sweep: every id edge at each of four places, then every field of PATHS removed. */
const IDS: unknown[] = [-1, -5, 1.5, '5', null, [], DEEP, 266, 267, 268, 2 ** 24, 2 ** 31, 2 ** 32 - 2, 2 ** 53, 1e300];
const WHERE = ['vocab "h"', 'vocab "hello" (a merge)', 'a new vocab token', 'added_tokens[0].id'];
export const SWEEP_CASES = IDS.length * WHERE.length + PATHS.length;
export function sweepCase(r: Rand, i: number): TokCase {
  const tok = structuredClone(base.tokenizer) as Json;
  if (i >= IDS.length * WHERE.length) {
    const path = PATHS[i - IDS.length * WHERE.length];
    setPath(tok, path, undefined);
    return { what: `tokenizer.json without ${path}`, tokenizer: JSON.stringify(tok) };
  }
  const v = IDS[i % IDS.length];
  const w = Math.floor(i / IDS.length);
  const vocab = (tok.model as Json).vocab as Record<string, unknown>;
  if (w === 0) vocab.h = v;
  else if (w === 1) vocab.hello = v;
  else if (w === 2) vocab.brandnew = v;
  else (tok.added_tokens as Json[])[0].id = v;
  return { what: `tokenizer.json ${WHERE[w]} id = ${v === DEEP ? 'deeply nested arrays' : show(v)}`, tokenizer: text(tok, r) };
}
