import { describe, expect, it } from 'vitest';
import {
  FileTruncatedError,
  HeaderMalformedError,
  HeaderTooLargeError,
  ModelFormatError,
  UnsupportedDtypeError,
} from '../../src/model/errors.ts';
import {
  SafetensorsFile,
  f16BitsToFloat32,
  parseHeader,
  parseSafetensorsHeader,
  readHeaderLength,
  tensorToFloat32,
} from '../../src/model/safetensors.ts';
import { float32ToBf16Bits, float32ToF16Bits } from '../../src/model/f16.ts';
import { writeSafetensors } from '../../src/model/safetensors-writer.ts';
import { gaussian, rng } from '../helpers/random-model.ts';
import { rawSafetensors } from './model-files.ts';

/** Runs `fn`, expects it to throw an instance of `cls`, and returns the error for message checks. */
function thrown<E extends Error>(cls: abstract new (...args: never[]) => E, fn: () => unknown): E {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(cls);
    return e as E;
  }
  throw new Error(`expected ${cls.name} to be thrown`);
}

const SPECIALS = [0, -0, 1, -1, 0.5, 65504, -65504, Infinity, -Infinity, NaN, 2 ** -24, -(2 ** -24), 2 ** -14, 3.140625];

/** Same value, treating NaN as equal to NaN and distinguishing -0 from 0 (Object.is). */
function sameValues(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

/** An independent f32 → f16 reference: nearest of all finite f16 values by search, ties to the even bit pattern. */
const F16_POSITIVE = Array.from({ length: 0x7c01 }, (_, h) => f16BitsToFloat32(h)); // 0 .. +inf, increasing
function referenceF16(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const sign = x < 0 || Object.is(x, -0) ? -1 : 1;
  const a = Math.abs(x);
  if (a >= 65520) return sign * Infinity; // 65504 + half an ulp (16) rounds to even, i.e. to inf
  let lo = 0;
  let hi = 0x7bff;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (F16_POSITIVE[mid] <= a) lo = mid;
    else hi = mid;
  }
  const dLo = a - F16_POSITIVE[lo];
  const dHi = F16_POSITIVE[hi] - a;
  const h = dLo < dHi ? lo : dHi < dLo ? hi : lo % 2 === 0 ? lo : hi;
  return sign * F16_POSITIVE[h];
}

function bf16Value(bits: number): number {
  const f = new Float32Array(1);
  new Uint32Array(f.buffer)[0] = bits << 16;
  return f[0];
}

describe('safetensors round trip (writer → parser)', () => {
  it('F32 is exact, including -0, ±inf, NaN, f32 subnormals and extremes', () => {
    const g = gaussian(rng(1));
    const data = new Float32Array(1000).map(() => g() * 100);
    data.set([...SPECIALS, 1e-45, 3.4028234663852886e38, -1.1754942e-38], 0);
    const file = SafetensorsFile.parse(writeSafetensors({ x: { dtype: 'F32', shape: [10, 100], data } }));
    const t = file.info('x');
    expect(t.dtype).toBe('F32');
    expect(t.shape).toEqual([10, 100]);
    expect(sameValues(file.float32('x'), data)).toBe(true);
  });

  it('F16: every finite f16 value and ±inf survive exactly; NaN stays NaN', () => {
    const all = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) all[h] = f16BitsToFloat32(h);
    const file = SafetensorsFile.parse(writeSafetensors({ all: { dtype: 'F16', shape: [256, 256], data: all } }));
    const back = file.float32('all');
    const raw = new Uint16Array(file.rawBytes('all').slice().buffer);
    for (let h = 0; h < 65536; h++) {
      const isNaN16 = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (isNaN16) {
        expect(Number.isNaN(back[h])).toBe(true);
      } else if (raw[h] !== h || !Object.is(back[h], all[h])) {
        throw new Error(`f16 0x${h.toString(16)} (${all[h]}) came back as 0x${raw[h].toString(16)} (${back[h]})`);
      }
    }
  });

  it('F16 decoding of landmark bit patterns (subnormals, inf, nan, -0)', () => {
    expect(f16BitsToFloat32(0x0001)).toBe(2 ** -24); // smallest subnormal
    expect(f16BitsToFloat32(0x03ff)).toBe(1023 * 2 ** -24); // largest subnormal
    expect(f16BitsToFloat32(0x0400)).toBe(2 ** -14); // smallest normal
    expect(f16BitsToFloat32(0x3c00)).toBe(1);
    expect(f16BitsToFloat32(0x7bff)).toBe(65504);
    expect(f16BitsToFloat32(0x7c00)).toBe(Infinity);
    expect(f16BitsToFloat32(0xfc00)).toBe(-Infinity);
    expect(f16BitsToFloat32(0x7e00)).toBeNaN();
    expect(Object.is(f16BitsToFloat32(0x8000), -0)).toBe(true);
    expect(f16BitsToFloat32(0xc000)).toBe(-2);
  });

  it('F16 rounds to nearest, ties to even (agrees with an independent search-based reference)', () => {
    const cases: [number, number][] = [
      [1 + 2 ** -11, 1], // tie between 1 and 1+2^-10 → even (1)
      [1 + 3 * 2 ** -11, 1 + 2 ** -9], // tie → even mantissa
      [1 + 2 ** -11 + 2 ** -20, 1 + 2 ** -10], // just above the tie
      [65519, 65504],
      [65520, Infinity], // tie between 65504 and "65536" → inf
      [1e6, Infinity],
      [-1e6, -Infinity],
      [2 ** -25, 0], // tie between 0 and the smallest subnormal → 0
      [2 ** -25 * 1.0001, 2 ** -24],
      [3 * 2 ** -25, 2 ** -23], // tie between 1 and 2 subnormal units → 2
      [2 ** -14 - 2 ** -25, 2 ** -14], // largest-subnormal/smallest-normal tie → normal (even)
      [1e-8, 0],
      [-1e-8, -0],
    ];
    for (const [x, want] of cases) {
      const got = f16BitsToFloat32(float32ToF16Bits(x));
      if (!Object.is(got, want)) throw new Error(`f16(${x}) = ${got}, want ${want}`);
    }
    const r = rng(5);
    const xs = new Float32Array(20000);
    for (let i = 0; i < xs.length; i++) {
      // log-uniform magnitudes from 2^-27 to 2^17 cover zero, subnormals, normals and overflow
      xs[i] = (r() < 0.5 ? -1 : 1) * 2 ** (-27 + 44 * r());
    }
    const file = SafetensorsFile.parse(writeSafetensors({ x: { dtype: 'F16', shape: [xs.length], data: xs } }));
    const back = file.float32('x');
    for (let i = 0; i < xs.length; i++) {
      const want = referenceF16(xs[i]);
      if (!Object.is(back[i], want)) throw new Error(`f16(${xs[i]}) = ${back[i]}, want ${want}`);
    }
    expect(Number.isNaN(f16BitsToFloat32(float32ToF16Bits(NaN)))).toBe(true);
  });

  it('BF16: every bf16 value survives exactly; rounding is to nearest even; NaN stays NaN', () => {
    const all = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) all[h] = bf16Value(h);
    const back = SafetensorsFile.parse(writeSafetensors({ all: { dtype: 'BF16', shape: [65536], data: all } })).float32('all');
    expect(sameValues(back, all)).toBe(true); // bit-exact shift keeps NaN payloads (Object.is(NaN, NaN) is true)

    const cases: [number, number][] = [
      [1 + 2 ** -8, 1], // tie → even
      [1 + 3 * 2 ** -8, 1 + 2 ** -6], // tie → even
      [1 + 2 ** -8 + 2 ** -20, 1 + 2 ** -7],
      [3.4028234663852886e38, Infinity], // max f32 rounds up past the largest bf16, as in PyTorch
      [-0, -0],
      [Infinity, Infinity],
      [1e-40, bf16Value(float32ToBf16Bits(1e-40))], // f32 subnormals round within bf16 subnormals
    ];
    for (const [x, want] of cases) {
      const got = bf16Value(float32ToBf16Bits(x));
      if (!Object.is(got, want)) throw new Error(`bf16(${x}) = ${got}, want ${want}`);
    }
    expect(Number.isNaN(bf16Value(float32ToBf16Bits(NaN)))).toBe(true);
    const g = gaussian(rng(9));
    const xs = new Float32Array(5000).map(() => g() * 10);
    const rt = SafetensorsFile.parse(writeSafetensors({ x: { dtype: 'BF16', shape: [5000], data: xs } })).float32('x');
    for (let i = 0; i < xs.length; i++) {
      // within half a bf16 ulp (8 significant bits)
      expect(Math.abs(rt[i] - xs[i])).toBeLessThanOrEqual(Math.abs(xs[i]) * 2 ** -8);
    }
  });

  it('keeps metadata, scalar and empty tensors, and mixes dtypes in one file', () => {
    const bytes = writeSafetensors(
      new Map([
        ['scalar', { dtype: 'F32' as const, shape: [], data: [2.5] }],
        ['empty', { dtype: 'F16' as const, shape: [0, 4], data: [] }],
        ['half', { dtype: 'F16' as const, shape: [3], data: [1, 2, 3] }],
        ['ints', { dtype: 'I32' as const, shape: [2, 2], data: [1, -2, 3, 2147483647] }],
      ]),
      { metadata: { format: 'pt', note: 'ünïcode ✓' } },
    );
    const file = SafetensorsFile.parse(bytes);
    expect(file.metadata).toEqual({ format: 'pt', note: 'ünïcode ✓' });
    expect(file.names().sort()).toEqual(['empty', 'half', 'ints', 'scalar']);
    expect(file.info('scalar')).toMatchObject({ shape: [], numel: 1 });
    expect(Array.from(file.float32('scalar'))).toEqual([2.5]);
    expect(file.float32('empty').length).toBe(0);
    expect(Array.from(file.float32('half'))).toEqual([1, 2, 3]);
    // Integer tensors parse structurally and expose their bytes; only converting them to f32 is refused.
    const ints = file.rawBytes('ints');
    expect(Array.from(new Int32Array(ints.slice().buffer))).toEqual([1, -2, 3, 2147483647]);
    // The writer aligns: the data section starts on 8 bytes, wider dtypes first.
    expect(file.header.dataStart % 8).toBe(0);
    for (const t of file.header.tensors.values()) expect(t.fileOffset % (t.dtype === 'F16' ? 2 : 4)).toBe(0);
  });

  it('reads F32 and F16 at unaligned offsets (copying where a typed view is impossible)', () => {
    // F16 [3] first (6 bytes), then F32 at data offset 6; the header length is odd too.
    const f16 = new Uint16Array([float32ToF16Bits(1.5), float32ToF16Bits(-2), float32ToF16Bits(65504)]);
    const f32 = new Float32Array([Math.PI, -1e-30, 42]);
    const data = new Uint8Array(6 + 12);
    data.set(new Uint8Array(f16.buffer), 0);
    data.set(new Uint8Array(f32.buffer), 6);
    const header = {
      h: { dtype: 'F16', shape: [3], data_offsets: [0, 6] },
      f: { dtype: 'F32', shape: [3], data_offsets: [6, 18] },
    };
    const file = rawSafetensors(header, data, { headerText: JSON.stringify(header) + ' ' });
    // Also place the whole file at an odd offset inside a larger buffer.
    for (const shift of [0, 1, 3]) {
      const big = new Uint8Array(file.byteLength + shift);
      big.set(file, shift);
      const st = SafetensorsFile.parse(big.subarray(shift));
      expect(Array.from(st.float32('h'))).toEqual([1.5, -2, 65504]);
      expect(Array.from(st.float32('f'))).toEqual(Array.from(f32));
    }
  });

  it('parses the header from a prefix and a known file size, then converts one tensor from its own bytes', () => {
    const bytes = writeSafetensors({ a: { dtype: 'F32', shape: [4], data: [1, 2, 3, 4] }, b: { dtype: 'BF16', shape: [2], data: [0.5, -8] } });
    const n = readHeaderLength(bytes.subarray(0, 8), bytes.byteLength);
    const header = parseHeader(bytes.subarray(8, 8 + n), bytes.byteLength);
    expect(header.dataStart).toBe(8 + n);
    expect(header.dataByteLength).toBe(16 + 4);
    const b = header.tensors.get('b')!;
    const slice = bytes.slice(b.fileOffset, b.fileOffset + b.byteLength);
    expect(Array.from(tensorToFloat32(b, slice))).toEqual([0.5, -8]);
    // Size unknown (no Content-Length): parse anyway, checking only what the header says.
    expect(parseSafetensorsHeader(bytes.subarray(0, 8 + n), null).tensors.size).toBe(2);
  });
});

describe('safetensors errors name what is wrong and where', () => {
  const good = () => writeSafetensors({ weight: { dtype: 'F32', shape: [2, 3], data: [1, 2, 3, 4, 5, 6] } });

  it('FileTruncatedError: shorter than the 8-byte length field', () => {
    const e = thrown(FileTruncatedError, () => SafetensorsFile.parse(new Uint8Array(5), { source: 'tiny.safetensors' }));
    expect(e.message).toContain('tiny.safetensors');
    expect(e.message).toMatch(/5 bytes/);
    expect(e).toBeInstanceOf(ModelFormatError);
  });

  it('FileTruncatedError: header length field beyond the end of the file', () => {
    const file = rawSafetensors({}, 0, { lengthField: 1000n });
    const e = thrown(FileTruncatedError, () => SafetensorsFile.parse(file));
    expect(e.message).toMatch(/1000 bytes of header/);
    expect(e.message).toMatch(/only 10 bytes/);
  });

  it('FileTruncatedError: data cut mid-tensor names the tensor and its byte range', () => {
    const bytes = good();
    const cut = bytes.subarray(0, bytes.byteLength - 5);
    const e = thrown(FileTruncatedError, () => SafetensorsFile.parse(cut, { source: 'model.safetensors' }));
    expect(e.message).toContain('"weight"');
    expect(e.message).toContain('data bytes [0, 24)');
    expect(e.message).toContain(`ends at byte ${cut.byteLength}`);
    expect(e.source).toBe('model.safetensors');
  });

  it('FileTruncatedError: a tensor whose end lies past the end of the file', () => {
    const header = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [100], data_offsets: [8, 408] } };
    const e = thrown(FileTruncatedError, () => SafetensorsFile.parse(rawSafetensors(header, 16)));
    expect(e.message).toContain('"b"');
    expect(e.message).toContain('[8, 408)');
  });

  it('HeaderTooLargeError: a huge length field is refused before anything is allocated', () => {
    const file = rawSafetensors({}, 0, { lengthField: 200n * 1024n * 1024n });
    const e = thrown(HeaderTooLargeError, () => SafetensorsFile.parse(file, { source: 'big.safetensors' }));
    expect(e.message).toContain('209715200');
    expect(e.message).toContain('big.safetensors');
    // The cap is configurable.
    const small = thrown(HeaderTooLargeError, () => SafetensorsFile.parse(good(), { maxHeaderBytes: 16 }));
    expect(small.message).toMatch(/16-byte limit/);
    const u64max = rawSafetensors({}, 0, { lengthField: 0xffffffffffffffffn });
    thrown(HeaderTooLargeError, () => SafetensorsFile.parse(u64max));
  });

  it('HeaderMalformedError: bad JSON, bad UTF-8, a non-object header', () => {
    expect(thrown(HeaderMalformedError, () => SafetensorsFile.parse(rawSafetensors(null, 0, { headerText: '{"a": ' }))).message).toMatch(/not valid JSON/);
    expect(thrown(HeaderMalformedError, () => SafetensorsFile.parse(rawSafetensors(null, 0, { headerBytes: new Uint8Array([0x7b, 0xff, 0x7d]) }))).message).toMatch(/UTF-8/);
    expect(thrown(HeaderMalformedError, () => SafetensorsFile.parse(rawSafetensors([1, 2]))).message).toMatch(/must be a JSON object/);
  });

  it('HeaderMalformedError: entries that are not objects, bad shapes, bad offsets, bad metadata', () => {
    const cases: [unknown, RegExp][] = [
      [{ w: 5 }, /tensor "w": entry must be an object/],
      [{ w: { dtype: 7, shape: [1], data_offsets: [0, 4] } }, /tensor "w": "dtype" must be a string/],
      [{ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, /tensor "w": "shape" must be an array of non-negative integers/],
      [{ w: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }, /tensor "w": "shape"/],
      [{ w: { dtype: 'F32', shape: '4', data_offsets: [0, 4] } }, /tensor "w": "shape"/],
      [{ w: { dtype: 'F32', shape: [1], data_offsets: [0] } }, /tensor "w": "data_offsets" must be two non-negative integers/],
      [{ w: { dtype: 'F32', shape: [1], data_offsets: [0, '4'] } }, /tensor "w": "data_offsets"/],
      [{ w: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, /tensor "w": "data_offsets" \[4, 0\] has begin > end/],
      [{ w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 20] } }, /tensor "w": shape \[2, 3\] of F32 needs 24 bytes, but data_offsets \[0, 20\] span 20/],
      [{ __metadata__: { a: 1 }, w: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, /"__metadata__" value "a" must be a string/],
    ];
    for (const [header, re] of cases) {
      const e = thrown(HeaderMalformedError, () => SafetensorsFile.parse(rawSafetensors(header, 64)));
      expect(e.message).toMatch(re);
    }
  });

  it('HeaderMalformedError: overlapping tensors, holes, and trailing bytes (the data must be tiled exactly)', () => {
    const overlap = {
      a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
      b: { dtype: 'F32', shape: [4], data_offsets: [12, 28] },
    };
    let e = thrown(HeaderMalformedError, () => SafetensorsFile.parse(rawSafetensors(overlap, 28)));
    expect(e.message).toMatch(/tensor "b" \(data bytes \[12, 28\)\) overlaps tensor "a" \(data bytes \[0, 16\)\)/);

    const hole = {
      a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
      b: { dtype: 'F32', shape: [4], data_offsets: [20, 36] },
    };
    e = thrown(HeaderMalformedError, () => SafetensorsFile.parse(rawSafetensors(hole, 36)));
    expect(e.message).toMatch(/hole in the data section: bytes \[16, 20\) before tensor "b"/);

    const notAtZero = { a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } };
    e = thrown(HeaderMalformedError, () => SafetensorsFile.parse(rawSafetensors(notAtZero, 8)));
    expect(e.message).toMatch(/bytes \[0, 4\) before tensor "a"/);

    const trailing = { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } };
    e = thrown(HeaderMalformedError, () => SafetensorsFile.parse(rawSafetensors(trailing, 10)));
    expect(e.message).toMatch(/6 bytes after the last tensor/);
  });

  it('UnsupportedDtypeError: unknown dtype strings at parse time, non-float dtypes at conversion', () => {
    let e = thrown(UnsupportedDtypeError, () =>
      SafetensorsFile.parse(rawSafetensors({ q: { dtype: 'Q4_K', shape: [2], data_offsets: [0, 2] } }, 2), { source: 'm.safetensors' }),
    );
    expect(e.tensor).toBe('q');
    expect(e.dtype).toBe('Q4_K');
    expect(e.message).toContain('m.safetensors');
    expect(e.message).toMatch(/F32, F16, BF16/);

    const header = {
      d: { dtype: 'F64', shape: [2], data_offsets: [0, 16] },
      i: { dtype: 'I32', shape: [2], data_offsets: [16, 24] },
    };
    const file = SafetensorsFile.parse(rawSafetensors(header, 24));
    for (const [name, dtype] of [['d', 'F64'], ['i', 'I32']]) {
      e = thrown(UnsupportedDtypeError, () => file.float32(name));
      expect(e.message).toContain(`tensor "${name}" has dtype ${dtype}`);
      expect(e.message).toMatch(/supported dtypes are F32, F16, BF16/);
    }
  });
});
