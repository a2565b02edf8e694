/**
 * Every family's config format, in one registry: config.json is read by the format that claims its
 * model_type. A new family adds its format here (and its engine in src/families/index.ts).
 */
import type { ConfigFormat } from './config-format.ts';
import type { LactConfig } from './config.ts';
import { ConfigError } from './errors.ts';
import { LACT_CONFIG } from './lact-format.ts';
import { E2E_CONFIG, type E2EConfig } from './e2e-config.ts';

/** A config of any family, discriminated by `family`. */
export type ModelConfig = LactConfig | E2EConfig;

const FORMATS: { readonly [K in ModelConfig['family']]: ConfigFormat<Extract<ModelConfig, { family: K }>> } = {
  lact: LACT_CONFIG,
  'ttt-e2e': E2E_CONFIG,
};

/** config.json (parsed JSON) → the config of the family that claims it. */
export function parseModelConfig(raw: unknown, source?: string): ModelConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError('(root)', 'config.json must hold a JSON object', source);
  const format = Object.values(FORMATS).find((f) => f.claims(raw as Record<string, unknown>));
  if (!format) {
    const known = Object.keys(FORMATS).join(', ');
    let type: string | undefined;
    try {
      type = JSON.stringify((raw as Record<string, unknown>).model_type);
    } catch {
      type = 'a value nested too deeply to show'; // JSON.parse reads deeper arrays than JSON.stringify writes
    }
    if (type !== undefined && type.length > 200) type = `${type.slice(0, 200)}…`;
    throw new ConfigError('model_type', `${type} is not a model type of any family this engine runs (${known})`, source);
  }
  return format.parse(raw, source);
}

/** The config format of a parsed config's family. */
export function configFormatOf<C extends ModelConfig>(config: C): ConfigFormat<C> {
  return FORMATS[config.family] as unknown as ConfigFormat<C>;
}

/** The positions a model attends exactly (its sliding window), null for full attention. */
export function attentionWindow(config: ModelConfig): number | null {
  return config.family === 'lact' ? config.windowSize : config.slidingWindow;
}

/** `config` as its family's config type when it is of `family`; a ConfigError naming both otherwise (for tools that run one family). */
export function configOfFamily<K extends ModelConfig['family']>(config: ModelConfig, family: K): Extract<ModelConfig, { family: K }> {
  if (config.family !== family) throw new ConfigError('model_type', `this needs a ${family} model; the file holds a ${config.family} model`);
  return config as Extract<ModelConfig, { family: K }>;
}
