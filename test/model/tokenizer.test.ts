import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/model/config.ts';
import { TokenizerError } from '../../src/model/errors.ts';
import { MemorySource } from '../../src/model/source.ts';
import { ByteTokenizer, HuggingFaceTokenizer, loadTokenizer, type Tokenizer } from '../../src/model/tokenizer.ts';
import { TINY_BASE } from '../helpers/random-model.ts';
import { tinyBpeTokenizerJson } from './model-files.ts';

const MULTILINGUAL = [
  'Hello, world!',
  'héllo wörld — “quotes” …',
  '日本語のテキスト、中文文本',
  'مرحبا بالعالم',
  'Здравствуй, мир',
  'emoji: 🌍🚀 family: 👨‍👩‍👧‍👦 flag: 🇫🇷 skin: 👍🏽',
  'combining: e\u0301 a\u0308',
  'tabs\tand\nnewlines\r\n',
  '',
];

/** Feeds every id through a streaming decoder; returns each push's output and the flush. */
function stream(tok: Tokenizer, ids: readonly number[]): { pieces: string[]; text: string } {
  const d = tok.decoder();
  const pieces = ids.map((id) => d.push(id));
  pieces.push(d.flush());
  return { pieces, text: pieces.join('') };
}

describe('ByteTokenizer', () => {
  const tok = new ByteTokenizer({ vocabSize: 258, bosId: 256, eosId: 257 });

  it('encodes UTF-8 bytes and decodes them back, for many scripts and emoji', () => {
    for (const text of MULTILINGUAL) {
      const ids = tok.encode(text);
      expect(ids).toEqual(Array.from(new TextEncoder().encode(text)));
      expect(tok.decode(ids)).toBe(text);
    }
    expect(tok.encode('é')).toEqual([0xc3, 0xa9]);
    expect(tok.vocabSize).toBe(258);
    expect(tok.bosId).toBe(256);
    expect(tok.eosId).toBe(257);
  });

  it('decode skips special tokens', () => {
    expect(tok.decode([256, ...tok.encode('hi 👋'), 257])).toBe('hi 👋');
    expect(tok.isSpecial(256)).toBe(true);
    expect(tok.isSpecial(65)).toBe(false);
  });

  it('invalid UTF-8 decodes to U+FFFD', () => {
    expect(tok.decode([0x80])).toBe('\uFFFD'); // lone continuation byte
    expect(tok.decode([0x61, 0xe2, 0x82])).toBe('a\uFFFD'); // truncated 3-byte sequence
    expect(tok.decode([0xc0, 0x80])).toBe('\uFFFD\uFFFD'); // overlong encoding
    expect(tok.decode([0xff, 0x41])).toBe('\uFFFDA');
  });

  it('ids outside the vocabulary are a RangeError', () => {
    expect(() => tok.decode([258])).toThrow(RangeError);
    expect(() => tok.decode([-1])).toThrow(/outside the tokenizer's vocabulary/);
  });

  it('the streaming decoder emits each character only once its last byte arrives', () => {
    const text = 'aé€🌍b';
    const ids = tok.encode(text); // 1 + 2 + 3 + 4 + 1 bytes
    const { pieces, text: joined } = stream(tok, ids);
    expect(pieces).toEqual(['a', '', 'é', '', '', '€', '', '', '', '🌍', 'b', '']);
    expect(joined).toBe(text);
    for (const t of MULTILINGUAL) expect(stream(tok, [256, ...tok.encode(t), 257]).text).toBe(t);
  });

  it('the streaming decoder skips specials mid-character and flushes an unfinished character as U+FFFD', () => {
    const d = tok.decoder();
    expect(d.push(0xf0)).toBe('');
    expect(d.push(256)).toBe(''); // a special between bytes does not break the sequence
    expect(d.push(0x9f)).toBe('');
    expect(d.push(0x8c)).toBe('');
    expect(d.push(0x8d)).toBe('🌍');
    expect(d.push(0xe2)).toBe('');
    expect(d.flush()).toBe('\uFFFD');
  });

  it('rejects specials that collide with bytes', () => {
    expect(() => new ByteTokenizer({ vocabSize: 258, bosId: 10 })).toThrow(TokenizerError);
    expect(() => new ByteTokenizer({ vocabSize: 258, bosId: 10 })).toThrow(/bos_token_id 10/);
    expect(() => new ByteTokenizer({ vocabSize: 100 })).toThrow(/at least 256/);
  });
});

describe('HuggingFaceTokenizer (tokenizer.json through @huggingface/tokenizers)', () => {
  const tok = new HuggingFaceTokenizer(tinyBpeTokenizerJson(), { bos_token: '<|bos|>', eos_token: { content: '<|eos|>' } });

  it('encodes with the merges and decodes back', () => {
    expect(tok.encode('hello world')).toEqual([259, 264]);
    expect(tok.encode('hello')).toEqual([259]);
    expect(tok.decode([259, 264])).toBe('hello world');
    expect(tok.vocabSize).toBe(267);
  });

  it('round-trips multilingual text through byte fallback tokens', () => {
    for (const text of MULTILINGUAL) expect(tok.decode(tok.encode(text))).toBe(text);
    expect(tok.encode('hello 🌍')).toEqual([259, 32, 0xf0, 0x9f, 0x8c, 0x8d]);
  });

  it('finds BOS/EOS from tokenizer_config.json and skips specials when decoding', () => {
    expect(tok.bosId).toBe(265);
    expect(tok.eosId).toBe(266);
    expect(tok.isSpecial(266)).toBe(true);
    expect(tok.decode([265, 259, 264, 266])).toBe('hello world');
    // encode never adds specials; a special's text in the input is still recognised as that token
    expect(tok.encode('hello<|eos|>')).toEqual([259, 266]);
  });

  it('the streaming decoder holds split UTF-8 sequences and matches decode()', () => {
    const ids = tok.encode('hello 🌍 world é');
    const { pieces, text } = stream(tok, ids);
    expect(text).toBe('hello 🌍 world é');
    expect(pieces.some((p) => p.includes('\uFFFD'))).toBe(false);
    // the emoji's four byte tokens: nothing, nothing, nothing, then the whole character
    const at = ids.indexOf(0xf0);
    expect(pieces.slice(at, at + 4)).toEqual(['', '', '', '🌍']);
    const { text: withSpecials } = stream(tok, [265, ...ids, 266]);
    expect(withSpecials).toBe('hello 🌍 world é');
  });

  it('unusable tokenizer.json contents are a TokenizerError', () => {
    expect(() => new HuggingFaceTokenizer([1, 2])).toThrow(TokenizerError);
    expect(() => new HuggingFaceTokenizer({ version: '1.0' })).toThrow(/no "model" object/);
    expect(() => new HuggingFaceTokenizer({ model: { type: 'NoSuchModel' } }, {}, { source: 'x/tokenizer.json' })).toThrow(
      /x\/tokenizer\.json: cannot build the tokenizer/,
    );
  });
});

describe('loadTokenizer', () => {
  const hfConfig = parseConfig({ ...TINY_BASE, tokenizer: undefined, vocab_size: 300, bos_token_id: undefined, eos_token_id: undefined });

  it('"byte" needs no file', async () => {
    const tok = await loadTokenizer(new MemorySource({}), parseConfig(TINY_BASE));
    expect(tok.kind).toBe('byte');
    expect(tok.bosId).toBe(256);
  });

  it('otherwise reads tokenizer.json (+ tokenizer_config.json when present)', async () => {
    const src = new MemorySource({
      'tokenizer.json': JSON.stringify(tinyBpeTokenizerJson()),
      'tokenizer_config.json': JSON.stringify({ eos_token: '<|eos|>' }),
    });
    const tok = await loadTokenizer(src, hfConfig);
    expect(tok.kind).toBe('huggingface');
    expect(tok.encode('hello world')).toEqual([259, 264]);
    expect(tok.eosId).toBe(266);
    expect(tok.bosId).toBeNull();
  });

  it('config.json bos/eos ids take precedence over tokenizer_config.json', async () => {
    const src = new MemorySource({ 'tokenizer.json': JSON.stringify(tinyBpeTokenizerJson()), 'tokenizer_config.json': '{"eos_token": "<|eos|>"}' });
    const tok = await loadTokenizer(src, parseConfig({ ...TINY_BASE, tokenizer: 'tokenizer.json', vocab_size: 300, eos_token_id: 265 }));
    expect(tok.eosId).toBe(265);
  });

  it('missing tokenizer.json is a TokenizerError naming the file', async () => {
    const err = await loadTokenizer(new MemorySource({}, 'my-model'), hfConfig).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokenizerError);
    expect((err as Error).message).toContain('tokenizer.json');
    expect((err as Error).message).toContain('my-model');
  });

  it('unparseable tokenizer.json or tokenizer_config.json is a TokenizerError naming the file', async () => {
    let err = await loadTokenizer(new MemorySource({ 'tokenizer.json': '{"model": ' }), hfConfig).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokenizerError);
    expect((err as Error).message).toMatch(/tokenizer\.json is not valid JSON/);
    err = await loadTokenizer(
      new MemorySource({ 'tokenizer.json': JSON.stringify(tinyBpeTokenizerJson()), 'tokenizer_config.json': 'nope' }),
      hfConfig,
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokenizerError);
    expect((err as Error).message).toMatch(/tokenizer_config\.json is not valid JSON/);
  });

  it('a tokenizer with more ids than the model has embeddings is a TokenizerError', async () => {
    const src = new MemorySource({ 'tokenizer.json': JSON.stringify(tinyBpeTokenizerJson()) });
    const err = await loadTokenizer(src, parseConfig({ ...TINY_BASE, tokenizer: 'tokenizer.json', vocab_size: 260, bos_token_id: null, eos_token_id: null })).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TokenizerError);
    expect((err as Error).message).toMatch(/ids up to 266, but config vocab_size is 260/);
  });
});
