import { describe, expect, it } from 'vitest';
import type { TttStats } from '../../src/api/types.ts';
import { numberToAttribute, parseEnum, parseNumber, TttChatAttributeError } from '../../src/widget/attributes.ts';
import { EMPTY_READOUT, formatBytes, formatReadout, meanBits } from '../../src/widget/readout.ts';

function attributeError(f: () => unknown): TttChatAttributeError {
  try {
    f();
  } catch (e) {
    if (e instanceof TttChatAttributeError) return e;
    throw e;
  }
  throw new Error('expected a TttChatAttributeError');
}

describe('<ttt-chat> attributes', () => {
  it('reads numbers and enums, with defaults when absent or empty', () => {
    expect(parseNumber('max-tokens', null)).toBe(128);
    expect(parseNumber('max-tokens', ' ')).toBe(128);
    expect(parseNumber('max-tokens', '12')).toBe(12);
    expect(parseNumber('temperature', '0')).toBe(0);
    expect(parseNumber('top-p', '1')).toBe(1);
    expect(parseNumber('seed', null)).toBeNull();
    expect(parseNumber('seed', '4294967295')).toBe(4294967295);
    expect(parseEnum('weights', null)).toBe('f16');
    expect(parseEnum('weights', 'f32')).toBe('f32');
    expect(parseEnum('loading', 'lazy')).toBe('lazy');
  });

  it('names the attribute, the value and what was expected for every bad value', () => {
    const cases: [() => unknown, string, string][] = [
      [() => parseNumber('max-tokens', 'lots'), 'max-tokens', 'an integer >= 1'],
      [() => parseNumber('max-tokens', '0'), 'max-tokens', 'an integer >= 1'],
      [() => parseNumber('max-tokens', '2.5'), 'max-tokens', 'an integer >= 1'],
      [() => parseNumber('temperature', '-1'), 'temperature', 'a number >= 0'],
      [() => parseNumber('top-p', '0'), 'top-p', '(0, 1]'],
      [() => parseNumber('top-k', 'Infinity'), 'top-k', 'an integer >= 0'],
      [() => parseNumber('seed', '4294967296'), 'seed', '[0, 2^32)'],
      [() => parseEnum('weights', 'f8'), 'weights', '"f16", "f32"'],
      [() => parseEnum('loading', 'soon'), 'loading', '"eager", "lazy"'],
      [() => numberToAttribute('temperature', Number.NaN), 'temperature', 'a number >= 0'],
    ];
    for (const [f, attribute, expected] of cases) {
      const e = attributeError(f);
      expect(e.name).toBe('TttChatAttributeError');
      expect(e.attribute).toBe(attribute);
      expect(e.message).toContain(`${attribute}="`);
      expect(e.message).toContain(expected);
    }
    expect(numberToAttribute('seed', null)).toBeNull();
    expect(numberToAttribute('max-tokens', 64)).toBe('64');
  });
});

describe('<ttt-chat> readout', () => {
  it('formats bytes in binary units', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1536)).toBe('1.5 KB');
    expect(formatBytes(889_856)).toBe('869 KB');
    expect(formatBytes(5 * 1024 ** 3)).toBe('5.0 GB');
  });

  it('shows latency, prompt speed, GPU memory and position; dashes where nothing was measured', () => {
    const memory = { weights: 600_000, kv: 200_000, fastWeights: 50_000, momentum: 0, pending: 0, activations: 0, scratch: 0, total: 850_000 };
    const s = { position: 81, decodeMsRolling: 55.1234, decodeMsLast: 50, prefillTokensPerSecond: 47.5, memory, timing: 'wall clock' } as unknown as TttStats;
    expect(formatReadout(s)).toMatchObject({ latency: '55.1 ms/token', speed: '47.5 tok/s', memory: '830 KB GPU', position: '81 tokens' });
    const fresh = { ...s, position: 1, decodeMsRolling: null, decodeMsLast: null, prefillTokensPerSecond: null } as TttStats;
    expect(formatReadout(fresh)).toMatchObject({ latency: EMPTY_READOUT.latency, speed: EMPTY_READOUT.speed, position: '1 token', learning: '' });
    // A model learning while it reads: its updates and the last chunk's loss in bits.
    const learning = { ...s, learning: { updates: 6, recent: [{ chunk: 5, loss: 2 * Math.LN2, validTargets: 16, gradNorm: 0.5, clipScale: 1, lossAfter: null }] } } as TttStats;
    expect(formatReadout(learning).learning).toBe('learned 6× · 2.00 bits/token');
    expect(formatReadout({ ...s, learning: { updates: 0, recent: [] } } as TttStats).learning).toBe('learning: no chunk yet');
  });
});

describe('ttt-web/widget outside a browser', () => {
  it('imports without a DOM (server-side rendering) and registers nothing', async () => {
    const mod = await import('../../src/widget/index.ts');
    expect(typeof mod.TttChatElement).toBe('function');
    expect(typeof (globalThis as { customElements?: unknown }).customElements).toBe('undefined');
  });
});

describe('meanBits (the widget\'s prompt loss)', () => {
  it('averages -logprob / ln 2 over the entries that have one', () => {
    expect(meanBits([NaN, -Math.LN2, -3 * Math.LN2])).toBeCloseTo(2, 12);
    expect(meanBits([NaN])).toBeNull();
    expect(meanBits(new Float32Array(0))).toBeNull();
  });
});
