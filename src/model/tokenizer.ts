/**
 * Text ↔ token ids. Two kinds, picked by config.json's `tokenizer` key:
 *   - "byte": ids 0..255 are the bytes of the UTF-8 text; ids from 256 on are specials (BOS, EOS);
 *   - "tokenizer.json": a Hugging Face tokenizer, run by `@huggingface/tokenizers` (pure JS).
 *
 * Generation produces one id at a time, and one id may end in the middle of a UTF-8 character (always
 * possible for bytes, and for byte-level BPE). `decoder()` returns a streaming decoder that emits only
 * completed characters, so a UI never shows a half character as U+FFFD.
 *
 * `encode` never adds special tokens: the caller prepends `bosId` when the model wants it, the same way
 * for both kinds.
 */
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import type { ModelConfig } from './model-config.ts';
import { ModelFetchError, TokenizerError } from './errors.ts';
import type { ModelSource } from './source.ts';

export interface StreamingDecoder {
  /** Feeds the next generated id; returns the text it completes (often '', e.g. mid-character). */
  push(id: number): string;
  /** Ends the stream: returns whatever was held back (an unfinished UTF-8 sequence becomes U+FFFD). */
  flush(): string;
}

export interface Tokenizer {
  readonly kind: 'byte' | 'huggingface';
  /** One more than the largest id the tokenizer can produce or decode. */
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  /** Text → ids, without special tokens. */
  encode(text: string): number[];
  /** Ids → text; special tokens are skipped. Ids outside [0, vocabSize) throw RangeError. */
  decode(ids: readonly number[]): string;
  /** A fresh streaming decoder (see `StreamingDecoder`). */
  decoder(): StreamingDecoder;
  /** Whether `id` is a special token (BOS, EOS, padding…), which decodes to nothing. */
  isSpecial(id: number): boolean;
}

function checkId(id: number, vocabSize: number): void {
  if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
    throw new RangeError(`token id ${id} is outside the tokenizer's vocabulary [0, ${vocabSize})`);
  }
}

export interface ByteTokenizerOptions {
  /** At least 256; ids 256..vocabSize-1 are specials. Default: 256 plus room for bosId and eosId. */
  vocabSize?: number;
  bosId?: number | null;
  eosId?: number | null;
  /**
   * The official TTT-E2E byte models' convention: BOS and EOS are control bytes inside 0..255 (1 and 2),
   * not extra ids. Then encode() never yields them (text holding those bytes is refused) and decode()
   * drops them.
   */
  specialsAreBytes?: boolean;
}

/** UTF-8 bytes as tokens: the tokenizer of the project's own byte-level models. */
export class ByteTokenizer implements Tokenizer {
  readonly kind = 'byte' as const;
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  private readonly inBytes: boolean;

  constructor(options: ByteTokenizerOptions = {}) {
    this.bosId = options.bosId ?? null;
    this.eosId = options.eosId ?? null;
    this.inBytes = options.specialsAreBytes ?? false;
    const specials = [this.bosId, this.eosId].filter((x): x is number => x !== null);
    this.vocabSize = options.vocabSize ?? Math.max(256, ...specials.map((s) => s + 1));
    if (!Number.isInteger(this.vocabSize) || this.vocabSize < 256) {
      throw new TokenizerError(`a byte tokenizer needs a vocabulary of at least 256, got ${this.vocabSize}`);
    }
    for (const [key, id] of [['bos_token_id', this.bosId], ['eos_token_id', this.eosId]] as const) {
      if (id === null) continue;
      if (this.inBytes) {
        if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new TokenizerError(`${key} ${id} must be an id in [0, ${this.vocabSize})`);
      } else if (!Number.isInteger(id) || id < 256 || id >= this.vocabSize) {
        throw new TokenizerError(`${key} ${id} must be a special id in [256, ${this.vocabSize}): ids 0..255 are the bytes`);
      }
    }
  }

  encode(text: string): number[] {
    const ids = Array.from(new TextEncoder().encode(text));
    if (this.inBytes) {
      const i = ids.findIndex((b) => this.isSpecial(b));
      if (i >= 0) throw new TokenizerError(`the text holds byte ${ids[i]} at byte ${i}, which this model reserves for ${ids[i] === this.bosId ? 'BOS' : 'EOS'}`);
    }
    return ids;
  }

  isSpecial(id: number): boolean {
    return id >= 256 || (this.inBytes && (id === this.bosId || id === this.eosId));
  }

  /** Invalid UTF-8 (e.g. a lone continuation byte) decodes to U+FFFD, per the WHATWG decoder. */
  decode(ids: readonly number[]): string {
    const bytes: number[] = [];
    for (const id of ids) {
      checkId(id, this.vocabSize);
      if (!this.isSpecial(id)) bytes.push(id);
    }
    return new TextDecoder('utf-8', { ignoreBOM: true }).decode(new Uint8Array(bytes));
  }

  decoder(): StreamingDecoder {
    const td = new TextDecoder('utf-8', { ignoreBOM: true });
    const one = new Uint8Array(1);
    return {
      push: (id: number): string => {
        checkId(id, this.vocabSize);
        if (this.isSpecial(id)) return '';
        one[0] = id;
        return td.decode(one, { stream: true });
      },
      flush: (): string => td.decode(),
    };
  }
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A JSON value for a message; never throws (JSON.parse reads nesting deeper than JSON.stringify writes). */
function show(v: unknown): string {
  try {
    const s = JSON.stringify(v) ?? String(v);
    return s.length > 80 ? `${s.slice(0, 80)}…` : s;
  } catch {
    return 'a value nested too deeply to show';
  }
}

/** What a failure of the tokenizer library says (it throws TypeErrors from inside on parts it cannot run). */
function failureOf(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/**
 * The largest id tokenizer.json assigns: model.vocab (token → id, or a Unigram list whose index is the
 * id) and added_tokens[].id; TokenizerError for an id that is not a non-negative integer. Read from the
 * JSON, not from the library's get_vocab(), which walks every index up to the largest id (an id of 2^31
 * takes minutes) and never lists negative or fractional ids (which the library nonetheless encodes to).
 */
function largestDeclaredId(json: Json, source: string | undefined): number {
  let max = -1;
  const check = (token: unknown, id: unknown): void => {
    if (!(typeof id === 'number' && Number.isSafeInteger(id) && id >= 0)) {
      throw new TokenizerError(`token ${show(token)} has id ${show(id)}; ids must be non-negative integers`, source);
    }
    max = Math.max(max, id);
  };
  const vocab = (json.model as Json).vocab;
  if (Array.isArray(vocab)) max = vocab.length - 1;
  else if (isObject(vocab)) for (const [token, id] of Object.entries(vocab)) check(token, id);
  if (Array.isArray(json.added_tokens)) for (const t of json.added_tokens) if (isObject(t)) check(t.content, t.id);
  return max;
}

/** A special token in tokenizer_config.json: "<s>" or { "content": "<s>", ... }. */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return null;
}

export interface HuggingFaceTokenizerOptions {
  /** Override the BOS/EOS ids (config.json's bos_token_id / eos_token_id take precedence over the tokenizer's). */
  bosId?: number | null;
  eosId?: number | null;
  /** Names the tokenizer file in error messages. */
  source?: string;
}

/** A Hugging Face `tokenizer.json` (BPE, WordPiece, Unigram), through `@huggingface/tokenizers`. */
export class HuggingFaceTokenizer implements Tokenizer {
  readonly kind = 'huggingface' as const;
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  private readonly hf: HfTokenizer;
  private readonly specials: ReadonlySet<number>;
  private readonly source: string | undefined;

  /**
   * `tokenizerJson` is the parsed tokenizer.json; `tokenizerConfig` the parsed tokenizer_config.json,
   * if the model has one (it names BOS/EOS and decoding options). Throws TokenizerError when the
   * library cannot build a tokenizer from them.
   */
  constructor(tokenizerJson: unknown, tokenizerConfig: unknown = {}, options: HuggingFaceTokenizerOptions = {}) {
    this.source = options.source;
    if (!isObject(tokenizerJson)) throw new TokenizerError('tokenizer.json must hold a JSON object', this.source);
    if (!isObject(tokenizerConfig)) throw new TokenizerError('tokenizer_config.json must hold a JSON object', this.source);
    // The library requires these keys (null is fine); old or hand-written files often omit some.
    const json: Json = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...tokenizerJson };
    if (!isObject(json.model)) throw new TokenizerError('tokenizer.json has no "model" object', this.source);
    // Before the library sees them: it encodes to any number it is given as an id (-5, 1.5).
    const largestId = largestDeclaredId(json, this.source);
    // Cleaning up spaces (" ." → ".") rewrites real text and breaks streaming; only if asked for.
    const cfg: Json = { ...tokenizerConfig, clean_up_tokenization_spaces: tokenizerConfig.clean_up_tokenization_spaces ?? false };
    try {
      this.hf = new HfTokenizer(json, cfg);
    } catch (e) {
      throw new TokenizerError(`cannot build the tokenizer: ${(e as Error).message}`, this.source);
    }

    this.vocabSize = largestId + 1;

    const specials = new Set<number>();
    for (const [id, tok] of this.hf.get_added_tokens_decoder()) if (tok.special) specials.add(id);
    const lookup = (key: string): number | null => {
      const content = tokenContent(tokenizerConfig[key]);
      return content === null ? null : this.hf.token_to_id(content) ?? null;
    };
    this.bosId = options.bosId !== undefined ? options.bosId : lookup('bos_token');
    this.eosId = options.eosId !== undefined ? options.eosId : lookup('eos_token');
    for (const id of [this.bosId, this.eosId]) if (id !== null) specials.add(id);
    this.specials = specials;

    // Parts the library builds but cannot run (a post-processor template that is not a list, a null
    // decoder in a sequence) fail on every text: find that out now, not at the first prompt.
    try {
      const ids = this.hf.encode('Hello, world', { add_special_tokens: false }).ids.filter((id) => Number.isInteger(id) && id >= 0 && id < this.vocabSize);
      if (ids.length > 0) this.hf.decode(ids, { skip_special_tokens: true });
    } catch (e) {
      throw new TokenizerError(`the tokenizer cannot encode and decode a test text: ${failureOf(e)}`, this.source);
    }
  }

  encode(text: string): number[] {
    let enc: ReturnType<HfTokenizer['encode']>;
    try {
      enc = this.hf.encode(text, { add_special_tokens: false });
    } catch (e) {
      throw new TokenizerError(`cannot encode ${show(text)}: the tokenizer failed: ${failureOf(e)}`, this.source);
    }
    const bad = enc.ids.findIndex((id) => typeof id !== 'number');
    if (bad >= 0) {
      throw new TokenizerError(`cannot encode ${JSON.stringify(enc.tokens[bad])}: not in the vocabulary and the tokenizer has no unk_token`, this.source);
    }
    return enc.ids;
  }

  isSpecial(id: number): boolean {
    return this.specials.has(id);
  }

  decode(ids: readonly number[]): string {
    for (const id of ids) checkId(id, this.vocabSize);
    const kept = ids.filter((id) => !this.specials.has(id));
    if (kept.length === 0) return '';
    try {
      return this.hf.decode(kept, { skip_special_tokens: true });
    } catch (e) {
      throw new TokenizerError(`cannot decode ids ${show(kept)}: the tokenizer failed: ${failureOf(e)}`, this.source);
    }
  }

  /**
   * Incremental detokenisation as in Hugging Face's text-generation-inference: decode a short window of
   * recent ids with and without the newest ones and emit the difference, holding back while the text
   * ends in U+FFFD (an unfinished character). The window keeps context for decoders that treat the
   * start of a text specially (e.g. Metaspace dropping a leading space), and stays short.
   */
  decoder(): StreamingDecoder {
    let ids: number[] = [];
    let read = 0; // ids[0..read) have been emitted; ids[0..read) also serve as context.
    let contextStart = 0;
    const emit = (final: boolean): string => {
      const before = this.decode(ids.slice(contextStart, read));
      const after = this.decode(ids.slice(contextStart));
      if (!final && (after.length <= before.length || after.endsWith('\uFFFD'))) return '';
      const out = after.slice(before.length);
      contextStart = read;
      read = ids.length;
      // Drop ids no longer needed as context.
      ids = ids.slice(contextStart);
      read -= contextStart;
      contextStart = 0;
      return out;
    };
    return {
      push: (id: number): string => {
        checkId(id, this.vocabSize);
        ids.push(id);
        return emit(false);
      },
      flush: (): string => {
        const out = read < ids.length ? emit(true) : '';
        ids = [];
        read = 0;
        contextStart = 0;
        return out;
      },
    };
  }
}

async function readJson(source: ModelSource, file: string): Promise<unknown> {
  const text = await source.readText(file);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TokenizerError(`${file} is not valid JSON: ${(e as Error).message}`, source.locate(file));
  }
}

/**
 * The tokenizer a config asks for: bytes, or tokenizer.json (+ tokenizer_config.json when present)
 * from the model's source. Throws TokenizerError when tokenizer.json is missing or unusable, or when
 * the tokenizer can produce ids the model's embedding table does not have.
 */
export async function loadTokenizer(source: ModelSource, config: ModelConfig): Promise<Tokenizer> {
  if (config.tokenizer === 'byte') {
    return new ByteTokenizer({ vocabSize: config.vocabSize, bosId: config.bosTokenId, eosId: config.eosTokenId, specialsAreBytes: config.family === 'ttt-e2e' });
  }
  const file = 'tokenizer.json';
  const where = source.locate(file);
  let json: unknown;
  try {
    json = await readJson(source, file);
  } catch (e) {
    if (e instanceof ModelFetchError) {
      throw new TokenizerError(
        `${file} is required (config.json has no "tokenizer": "byte") but could not be read: ${e.message}`,
        where,
      );
    }
    throw e;
  }
  const cfgFile = 'tokenizer_config.json';
  const tokenizerConfig = (await source.exists(cfgFile)) ? await readJson(source, cfgFile) : {};
  const tok = new HuggingFaceTokenizer(json, tokenizerConfig, {
    source: where,
    ...(config.bosTokenId !== null ? { bosId: config.bosTokenId } : {}),
    ...(config.eosTokenId !== null ? { eosId: config.eosTokenId } : {}),
  });
  if (tok.vocabSize > config.vocabSize) {
    throw new TokenizerError(
      `the tokenizer has ids up to ${tok.vocabSize - 1}, but config vocab_size is ${config.vocabSize} (wrong tokenizer for this model?)`,
      where,
    );
  }
  return tok;
}
