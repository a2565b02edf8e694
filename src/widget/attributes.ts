/**
 * The `<ttt-chat>` attributes: one table says each attribute's property, default and valid values, so
 * parsing, reflection and the documentation (docs/widget.md) cannot drift apart. A bad value is reported
 * where it is used (load or generate) as TttChatAttributeError naming the attribute, the value and what
 * was expected; property getters never throw and give the default for a value they cannot read.
 */

export class TttChatAttributeError extends Error {
  constructor(
    readonly attribute: string,
    readonly value: string,
    readonly expected: string,
  ) {
    super(`<ttt-chat ${attribute}="${value}">: expected ${expected}`);
    this.name = 'TttChatAttributeError';
  }
}

interface NumberSpec {
  readonly default: number | null;
  readonly integer: boolean;
  readonly valid: (n: number) => boolean;
  readonly expected: string;
}

/** Sampling and length attributes, read at every generate(). */
const NUMBER_ATTRIBUTES = {
  'max-tokens': { default: 128, integer: true, valid: (n) => n >= 1, expected: 'an integer >= 1' },
  temperature: { default: 0.8, integer: false, valid: (n) => n >= 0, expected: 'a number >= 0 (0 = greedy)' },
  'top-k': { default: 0, integer: true, valid: (n) => n >= 0, expected: 'an integer >= 0 (0 = off)' },
  'top-p': { default: 0.95, integer: false, valid: (n) => n > 0 && n <= 1, expected: 'a number in (0, 1]' },
  seed: { default: null, integer: true, valid: (n) => n >= 0 && n <= 0xffffffff, expected: 'an integer in [0, 2^32) (absent = random)' },
} satisfies Record<string, NumberSpec>;

export type NumberAttribute = keyof typeof NUMBER_ATTRIBUTES;

/** Enumerated attributes, read when the model loads. */
export const ENUM_ATTRIBUTES = {
  weights: { values: ['f16', 'f32'], default: 'f16' },
  loading: { values: ['eager', 'lazy'], default: 'eager' },
} as const;

export type EnumAttribute = keyof typeof ENUM_ATTRIBUTES;
export type EnumValue<A extends EnumAttribute> = (typeof ENUM_ATTRIBUTES)[A]['values'][number];

/** Every attribute the element watches. */
export const OBSERVED_ATTRIBUTES: readonly string[] = ['model', 'placeholder', 'no-cache', 'learn-while-reading', 'show-loss', ...Object.keys(NUMBER_ATTRIBUTES), ...Object.keys(ENUM_ATTRIBUTES)];

/** Attributes whose change means a different engine (the model is loaded again). */
export const RELOAD_ATTRIBUTES: ReadonlySet<string> = new Set(['model', 'weights', 'no-cache', 'learn-while-reading']);

/** The attribute's number, its default when absent, or TttChatAttributeError. */
export function parseNumber(name: NumberAttribute, raw: string | null): number | null {
  const spec: NumberSpec = NUMBER_ATTRIBUTES[name];
  if (raw === null || raw.trim() === '') return spec.default;
  const n = Number(raw);
  if (!Number.isFinite(n) || (spec.integer && !Number.isInteger(n)) || !spec.valid(n)) {
    throw new TttChatAttributeError(name, raw, spec.expected);
  }
  return n;
}

export function parseEnum<A extends EnumAttribute>(name: A, raw: string | null): EnumValue<A> {
  const spec = ENUM_ATTRIBUTES[name];
  if (raw === null || raw === '') return spec.default;
  const values: readonly string[] = spec.values;
  if (!values.includes(raw)) throw new TttChatAttributeError(name, raw, `one of ${values.map((v) => `"${v}"`).join(', ')}`);
  return raw as EnumValue<A>;
}

/** The value a property setter writes back as the attribute (null removes it), after the same checks. */
export function numberToAttribute(name: NumberAttribute, value: number | null): string | null {
  if (value === null) return null;
  const text = String(value);
  parseNumber(name, text);
  return text;
}
