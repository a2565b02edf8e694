/**
 * Damaged config.json files, as cases for the loader fuzz (config.test.ts) and the engine fuzz
 * (engine-cases.ts): every key the LaCT format reads set to random values and types or removed, extra
 * keys, JSON that is not an object, text that is not JSON; over four fixtures (TTT all on, all off,
 * sliding window, full attention).
 */
import { hex, show, type Files, type LoadExpectation, type Rand } from './harness.ts';
import { fixtureModel } from './models.ts';

const FIXTURES = ['tiny-all-on', 'tiny-all-off', 'tiny-swa', 'tiny-full'] as const;
export const bases = FIXTURES.map((name) => ({ name, ...fixtureModel(name) }));

/** Every key src/model/config.ts reads (and the model_type the registry reads). */
export const KEYS = [
  'vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attn_heads', 'use_fast_weights', 'num_lact_heads', 'lact_chunk_size', 'inter_multi',
  'intermediate_size', 'hidden_ratio', 'window_size', 'w0_w2_low_rank', 'lr_dim', 'lr_parameterization', 'ttt_loss_type', 'ttt_prenorm', 'no_v_silu',
  'ttt_nope', 'hidden_act', 'tokenizer', 'model_type', 'qkv_bias', 'attn_qk_norm', 'qkv_silu', 'use_muon', 'use_momentum', 'learnable_ttt_scale',
  'rope_theta', 'norm_eps', 'tie_word_embeddings', 'bos_token_id', 'eos_token_id',
] as const;

/** A value written as arrays nested 100 or 20 000 deep (JSON.parse reads them; JSON.stringify cannot write the deep ones). */
export const DEEP = '@@DEEP@@';
export const deep = (n: number): string => '['.repeat(n) + ']'.repeat(n);

/** Values every key is tried with, one key at a time (the sweep), and that random cases draw from. */
export const EDGE_VALUES: readonly unknown[] = [-1, 0, 1, 3, 2 ** 24, 2 ** 24 + 1, 2 ** 53, 1e300, 1.5, 1e-300, '64', '', null, true, [], {}, DEEP];

function valueFor(r: Rand, current: unknown): unknown {
  const groups: unknown[][] = [
    [-1, 0, 1, 2, 3, 7, 16, 63, 64, 255, 256],
    [2 ** 24, 2 ** 24 + 1, 2 ** 31, 2 ** 53, 1e300],
    [1.5, -0.5, 1e-300, 0.1],
    ['64', '', 'byte', 'tokenizer.json', 'lact_swiglu', 'llama', 'swish', 'mamba'],
    [null, true, false],
    [[], [64], {}, { value: 64 }, DEEP],
  ];
  if (typeof current === 'number') groups.push([current + 1, current - 1, current * 2, current / 2, -current, current + 0.5]);
  if (typeof current === 'boolean') groups.push([!current]);
  return r.pick(r.pick(groups));
}

export interface ConfigCase extends LoadExpectation {
  what: string;
  fixture: number;
  text: string;
  /** Only keys the loader ignores were added: the same model must load. */
  same?: boolean;
}

function configText(cfg: Record<string, unknown>, r: Rand): string {
  return JSON.stringify(cfg, null, r.chance(0.5) ? 2 : undefined).replace(JSON.stringify(DEEP), deep(r.pick([100, 20_000])));
}

export function configCase(r: Rand): ConfigCase {
  const fixture = r.int(bases.length);
  const base = bases[fixture].config;
  const on = `${bases[fixture].name}: `;
  const kind = r.weighted<string>([[8, 'keys'], [2, 'extra'], [1, 'root'], [2, 'text']]);
  if (kind === 'keys') {
    const cfg: Record<string, unknown> = { ...base };
    const changes: string[] = [];
    for (let k = r.weighted([[5, 1], [2, 2], [1, 3]] as const); k > 0; k--) {
      const key = r.pick(KEYS);
      if (r.chance(0.2)) {
        delete cfg[key];
        changes.push(`${key} removed`);
      } else {
        const v = valueFor(r, cfg[key]);
        cfg[key] = v;
        changes.push(`${key} = ${v === DEEP ? 'deeply nested arrays' : show(v)}`);
      }
    }
    return { what: on + changes.join(', '), fixture, text: configText(cfg, r) };
  }
  if (kind === 'extra') {
    const cfg: Record<string, unknown> = { ...base };
    const added: string[] = [];
    for (let k = r.range(1, 4); k > 0; k--) {
      const key = r.pick(['architectures', 'torch_dtype', 'transformers_version', 'x_' + r.int(1000), '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'vocab_size ', 'VOCAB_SIZE', '', 'ß']);
      const v = valueFor(r, undefined);
      cfg[key] = v;
      added.push(`${show(key)} = ${v === DEEP ? 'deeply nested arrays' : show(v)}`);
    }
    // `__proto__` as a key of an object literal would set the prototype; JSON text makes it an own key, as a file does.
    let text = configText(cfg, r);
    if (added.some((a) => a.startsWith('"__proto__"'))) text = text.replace(/^\{/, `{"__proto__": {"vocab_size": 1},`);
    return { what: `${on}extra keys ${added.join(', ')}`, fixture, text, mustLoad: true, same: true };
  }
  if (kind === 'root') {
    const text = r.pick(['[]', '1', '"config"', 'null', 'true', '', ' ', '[{"vocab_size": 258}]', deep(20_000)]);
    return { what: `config.json is ${show(text, 40)}`, fixture, text, mustFail: 'ConfigError' };
  }
  const good = JSON.stringify(base, null, 2);
  switch (r.int(4)) {
    case 0: {
      const at = r.int(good.length);
      return { what: `${on}config.json cut at char ${at} of ${good.length}`, fixture, text: good.slice(0, at), mustFail: 'ConfigError' };
    }
    case 1: {
      const at = r.int(good.length);
      const c = r.pick(['{', '}', ',', '"', ':', '\u0000', 'x', '/', '\\']);
      return { what: `${on}config.json ${show(c)} inserted at char ${at}`, fixture, text: good.slice(0, at) + c + good.slice(at) };
    }
    case 2: {
      const bytes = new TextEncoder().encode(good);
      const at = r.int(bytes.length);
      const v = r.int(256);
      const out = bytes.slice();
      out[at] = v;
      return { what: `${on}config.json byte ${at} = ${hex(v)} (was ${hex(bytes[at])})`, fixture, text: new TextDecoder().decode(out) };
    }
    default: {
      const bad = r.pick([good.replace(/\n}$/, ',\n}'), `// a comment\n${good}`, good.replace(/"norm_eps": [^,\n]+/, '"norm_eps": NaN'), good.replace(/"/g, "'"), `${good}\n{}`]);
      return { what: `${on}config.json in almost-JSON (${show(bad.slice(0, 20))}…)`, fixture, text: bad, mustFail: 'ConfigError' };
    }
  }
}

/** The folder of a case: its config.json over its fixture's weights. */
export const files = (c: ConfigCase): Files => ({ 'config.json': c.text, 'model.safetensors': bases[c.fixture].weights });

/** Case i of the sweep: key KEYS[i / (values + 1)], set to EDGE_VALUES[i % (values + 1)] or (the last) removed; on the all-on fixture. */
export const SWEEP_CASES = KEYS.length * (EDGE_VALUES.length + 1);
export function sweepCase(_r: Rand, i: number): ConfigCase {
  const per = EDGE_VALUES.length + 1;
  const key = KEYS[Math.floor(i / per) % KEYS.length];
  const cfg: Record<string, unknown> = { ...bases[0].config };
  const v = EDGE_VALUES[i % per];
  if (i % per === EDGE_VALUES.length) delete cfg[key];
  else cfg[key] = v;
  const text = JSON.stringify(cfg).replace(JSON.stringify(DEEP), deep(20_000));
  return { what: `${bases[0].name}: ${key} ${i % per === EDGE_VALUES.length ? 'removed' : `= ${v === DEEP ? 'deeply nested arrays' : show(v)}`}`, fixture: 0, text };
}
