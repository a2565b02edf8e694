/**
 * Damaged safetensors files, as cases for the loader fuzz (safetensors.test.ts) and the engine fuzz
 * (engine-cases.ts): the header's bytes, length field, truncation, and JSON (dtypes, shapes, offsets,
 * tensors, __metadata__, numbers, nesting), and the tensor data (NaN/Inf, other flipped bytes, truncation,
 * extra bytes), on a tiny model with F32, F16 and BF16 tensors.
 */
import { hex, show, type Files, type LoadExpectation, type Rand } from './harness.ts';
import { assemble, mixedDtypeModel, padded, split, type TensorEntry } from './models.ts';

export const base = mixedDtypeModel();
const file = split(base.weights);
const entries = file.header as Record<string, TensorEntry>;
const BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };

export interface StCase extends LoadExpectation {
  what: string;
  weights: Uint8Array;
  /** A rewrite of the same model: it must load exactly the original weights. */
  same?: boolean;
}

export const withWeights = (weights: Uint8Array): Files => ({ ...base.files, 'model.safetensors': weights });
const clone = <T>(v: T): T => structuredClone(v);
/** The file with this header object, padded, over `data` (default: the original data). */
const rebuilt = (header: unknown, data: Uint8Array = file.data): Uint8Array => assemble(padded(JSON.stringify(header)), data);
const deep = (n: number): string => '['.repeat(n) + ']'.repeat(n);

const DTYPES: readonly unknown[] = ['F32', 'F16', 'BF16', 'I32', 'U32', 'I16', 'U16', 'U8', 'I8', 'BOOL', 'F64', 'I64', 'U64', 'F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'f32', 'float32', 'F32 ', '', 'F4', 'toString', '__proto__', 'hasOwnProperty', 123, null, true, ['F32'], {}];
const NUMBER_LITERALS = ['1e400', '-1e400', '1e308', '-0', '0.0', '1e0', '00', '-1', '1.5', '9007199254740993', '18446744073709551616', '1e-400', '0x10', 'NaN', 'Infinity', '"8"', 'null', '[]', '{}', 'true', deep(50), deep(20_000)];

function shapeVariant(r: Rand, shape: number[]): unknown {
  const numel = shape.reduce((a, b) => a * b, 1);
  const v = r.int(16);
  switch (v) {
    case 0: return [];
    case 1: return [0];
    case 2: return [numel];
    case 3: return [-1, ...shape.slice(1)];
    case 4: return [shape[0] + 0.5, ...shape.slice(1)];
    case 5: return shape.map(String);
    case 6: return [...shape, 1];
    case 7: return [1, ...shape];
    case 8: return [...shape].reverse();
    case 9: return shape.length > 1 && shape[0] % 2 === 0 ? [shape[0] / 2, shape[1] * 2, ...shape.slice(2)] : [numel, 1];
    case 10: return [2 ** 53, 2 ** 53];
    case 11: return [2 ** 26, 2 ** 26, 2 ** 26];
    case 12: return [2 ** 31, ...shape.slice(1)];
    case 13: return null;
    case 14: return shape.join('x');
    default: return [[...shape]];
  }
}

function offsetsVariant(r: Rand, [b, e]: [number, number]): unknown {
  switch (r.int(14)) {
    case 0: return [e, b];
    case 1: return [b, e + 1];
    case 2: return [b + 1, e + 1];
    case 3: return [b, e - 1];
    case 4: return [-1, e];
    case 5: return [b, 2 ** 53];
    case 6: return [b, file.data.byteLength + 8];
    case 7: return [b + 0.5, e + 0.5];
    case 8: return [String(b), String(e)];
    case 9: return [b];
    case 10: return [b, e, e];
    case 11: return null;
    case 12: return { begin: b, end: e };
    default: return [0, e - b];
  }
}

/** A structured change to the header JSON; returns the file and what it did (and what it must do). */
function jsonMutation(r: Rand): StCase {
  const h = clone(file.header) as Record<string, unknown>;
  const name = r.pick(file.names);
  const t = h[name] as TensorEntry;
  const kind = r.int(14);
  switch (kind) {
    case 0: {
      const d = r.pick(DTYPES);
      (t as { dtype: unknown }).dtype = d;
      return { what: `header JSON: "${name}" dtype ${show(t.dtype)} (was ${entries[name].dtype})`, weights: rebuilt(h), ...(d === entries[name].dtype ? { mustLoad: true, same: true } : {}) };
    }
    case 1: {
      const s = shapeVariant(r, t.shape);
      (t as { shape: unknown }).shape = s;
      return { what: `header JSON: "${name}" shape ${show(s)} (was ${show(entries[name].shape)})`, weights: rebuilt(h) };
    }
    case 2: {
      const o = offsetsVariant(r, t.data_offsets);
      (t as { data_offsets: unknown }).data_offsets = o;
      return { what: `header JSON: "${name}" data_offsets ${show(o)} (was ${show(entries[name].data_offsets)})`, weights: rebuilt(h) };
    }
    case 3: {
      // Removed from the header only (its bytes become a hole), or with its bytes (the others move up).
      delete h[name];
      if (r.chance(0.5)) return { what: `header JSON: "${name}" removed, its bytes left`, weights: rebuilt(h) };
      const [b, e] = entries[name].data_offsets;
      for (const n of file.names) {
        if (n === name) continue;
        const o = (h[n] as TensorEntry).data_offsets;
        if (o[0] >= e) (h[n] as TensorEntry).data_offsets = [o[0] - (e - b), o[1] - (e - b)];
      }
      const data = new Uint8Array(file.data.byteLength - (e - b));
      data.set(file.data.subarray(0, b));
      data.set(file.data.subarray(e), b);
      return { what: `header JSON: "${name}" removed with its bytes`, weights: rebuilt(h, data), mustFail: 'MissingTensorError' };
    }
    case 4: {
      const extra = r.pick(['model.layers.2.attn_norm.weight', 'lm_head.bias', 'model.layers.0.attn.qkv.weight.extra', 'MODEL.NORM.WEIGHT', '', ' ', '\u0000', '__proto__', 'constructor', 'x'.repeat(10_000), '😀']);
      const count = r.pick([0, 1, 16, 64]);
      const end = file.data.byteLength;
      const overlap = r.chance(0.3);
      h[extra] = { dtype: 'F32', shape: [count], data_offsets: overlap ? [0, 4 * count] : [end, end + 4 * count] };
      const data = overlap ? file.data : new Uint8Array([...file.data, ...new Uint8Array(4 * count)]);
      return { what: `header JSON: extra tensor ${show(extra, 30)} [${count}] F32 ${overlap ? 'over the first bytes' : 'at the end'}`, weights: rebuilt(h, data) };
    }
    case 5: {
      const other = r.pick(['model.layers.9.attn_norm.weight', name.toUpperCase(), `${name} `, r.pick(file.names)]);
      const entry = h[name];
      delete h[name];
      h[other] = entry;
      return { what: `header JSON: "${name}" renamed ${show(other)}`, weights: rebuilt(h), ...(other === name ? { mustLoad: true, same: true } : {}) };
    }
    case 6: {
      const pool: [unknown, boolean][] = [[null, true], [{}, true], [{ a: 'b' }, true], [{ a: 'b'.repeat(100_000) }, true], [{ __proto__x: 'x', constructor: 'y' }, true], [[], false], ['x', false], [1, false], [{ a: 1 }, false], [{ a: null }, false], [{ a: {} }, false], [{ a: ['b'] }, false]];
      const [m, ok] = r.pick(pool);
      h.__metadata__ = m;
      return { what: `header JSON: __metadata__ ${show(m)}`, weights: rebuilt(h), ...(ok ? { mustLoad: true, same: true } : { mustFail: 'HeaderMalformedError' }) };
    }
    case 7: {
      const e = r.pick<unknown>([null, [], 1, 'x', {}, { dtype: t.dtype, shape: t.shape }, { shape: t.shape, data_offsets: t.data_offsets }]);
      h[name] = e;
      return { what: `header JSON: "${name}" entry ${show(e)}`, weights: rebuilt(h) };
    }
    case 8: {
      const extraFields = { ...t, comment: 'x', data_offsets_2: [0, 1], dtype_alt: 'I32' };
      h[name] = extraFields;
      return { what: `header JSON: "${name}" with extra fields`, weights: rebuilt(h), mustLoad: true, same: true };
    }
    case 9: {
      const root = r.pick<unknown>([[], 1, null, 'x', true, Object.values(h)]);
      return { what: `header JSON: root ${show(root)}`, weights: rebuilt(root), mustFail: 'HeaderMalformedError' };
    }
    case 10: {
      const shuffled = Object.fromEntries(r.shuffle(Object.entries(h)));
      return { what: 'header JSON: keys in another order', weights: rebuilt(shuffled), mustLoad: true, same: true };
    }
    case 11: {
      // Every tensor moved to another place in the data section: a valid file with the same weights.
      const order = r.shuffle(file.names);
      const parts: Uint8Array[] = [];
      let at = 0;
      for (const n of order) {
        const [b, e] = entries[n].data_offsets;
        (h[n] as TensorEntry).data_offsets = [at, at + (e - b)];
        parts.push(file.data.subarray(b, e));
        at += e - b;
      }
      const data = new Uint8Array(at);
      let o = 0;
      for (const p of parts) (data.set(p, o), (o += p.byteLength));
      return { what: 'header JSON: tensors laid out in another order', weights: rebuilt(h, data), mustLoad: true, same: true };
    }
    case 12: {
      // Two tensors' byte ranges swapped (a valid file when their sizes match: other weights).
      const other = r.pick(file.names);
      const a = (h[name] as TensorEntry).data_offsets;
      (h[name] as TensorEntry).data_offsets = (h[other] as TensorEntry).data_offsets;
      (h[other] as TensorEntry).data_offsets = a;
      return { what: `header JSON: data_offsets of "${name}" and "${other}" swapped`, weights: rebuilt(h) };
    }
    default: {
      // Every offset moved by k: a hole at the start, or ranges past the end.
      const k = r.pick([-8, 4, 8, 1024]);
      for (const n of file.names) {
        const o = (h[n] as TensorEntry).data_offsets;
        (h[n] as TensorEntry).data_offsets = [o[0] + k, o[1] + k];
      }
      return { what: `header JSON: every data offset moved by ${k}`, weights: rebuilt(h) };
    }
  }
}

/** A change to the header's text: numbers replaced by odd literals, duplicate keys, padding, encoding. */
function textMutation(r: Rand): StCase {
  const text = file.text.trimEnd();
  switch (r.int(6)) {
    case 0: {
      const numbers = [...text.matchAll(/-?\d+(\.\d+)?([eE][-+]?\d+)?/g)];
      const m = r.pick(numbers);
      const lit = r.pick(NUMBER_LITERALS);
      const out = text.slice(0, m.index) + lit + text.slice(m.index! + m[0].length);
      return { what: `header text: number ${m[0]} at char ${m.index} = ${show(lit, 30)}`, weights: assemble(padded(out), file.data) };
    }
    case 1: {
      // A duplicate key: JSON.parse keeps the last; the entry given is the same or another tensor's.
      const name = r.pick(file.names);
      const same = r.chance(0.5);
      const entry = JSON.stringify(same ? entries[name] : entries[r.pick(file.names)]);
      const out = `{${JSON.stringify(name)}:${entry},${text.slice(1)}`;
      return { what: `header text: duplicate key "${name}" first (${same ? 'same entry' : 'another entry'})`, weights: assemble(padded(out), file.data), ...(same ? { mustLoad: true, same: true } : {}) };
    }
    case 2: {
      const pad = r.pick([' '.repeat(64), '\n\t\r ', '\u0000'.repeat(8), '\u00a0', '\ufeff', 'x', ',', '}']);
      const front = r.chance(0.3);
      const out = front ? pad + text : text + pad;
      const ok = /^[ \n\t\r]+$/.test(pad);
      return { what: `header text: ${show(pad)} ${front ? 'before' : 'after'} the JSON`, weights: assemble(padded(out), file.data), ...(ok ? { mustLoad: true, same: true } : { mustFail: 'HeaderMalformedError' }) };
    }
    case 3: {
      // Bytes that are not UTF-8, or a cut in the middle of a character.
      const bytes = new TextEncoder().encode(text);
      const at = r.int(bytes.byteLength);
      const junk = r.pick([[0xff], [0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80]]);
      const out = new Uint8Array([...bytes.subarray(0, at), ...junk, ...bytes.subarray(at)]);
      return { what: `header text: bytes ${junk.map((b) => hex(b)).join(' ')} at header byte ${at}`, weights: assemble(out, file.data), mustFail: 'HeaderMalformedError' };
    }
    case 4: {
      const name = r.pick(file.names);
      const key = r.pick(['shape', 'data_offsets', 'dtype']);
      const n = r.pick([10, 1000, 20_000]);
      const h = clone(file.header) as Record<string, Record<string, unknown>>;
      h[name][key] = '@@DEEP@@';
      const out = JSON.stringify(h).replace('"@@DEEP@@"', deep(n));
      return { what: `header text: "${name}" ${key} nested ${n} arrays deep`, weights: assemble(padded(out), file.data), mustFail: 'HeaderMalformedError' };
    }
    default: {
      const n = r.pick([10, 1000, 20_000]);
      const where = r.pick(['root', '__metadata__', 'entry']);
      const h = clone(file.header) as Record<string, unknown>;
      if (where === '__metadata__') h.__metadata__ = '@@DEEP@@';
      else if (where === 'entry') h[r.pick(file.names)] = '@@DEEP@@';
      const out = where === 'root' ? deep(n) : JSON.stringify(h).replace('"@@DEEP@@"', deep(n));
      return { what: `header text: ${where} nested ${n} arrays deep`, weights: assemble(padded(out), file.data), mustFail: 'HeaderMalformedError' };
    }
  }
}

export function headerCase(r: Rand): StCase {
  const size = file.bytes.byteLength;
  const kind = r.weighted<string>([[3, 'bytes'], [1, 'length'], [1, 'cut'], [6, 'json'], [3, 'text']]);
  if (kind === 'bytes') {
    const out = file.bytes.slice();
    const changes: string[] = [];
    for (let k = r.range(1, 3); k > 0; k--) {
      const i = r.int(8 + file.n);
      const v = r.chance(0.5) ? out[i] ^ (1 << r.int(8)) : r.int(256);
      changes.push(`byte ${i} = ${hex(v)} (was ${hex(out[i])})`);
      out[i] = v;
    }
    return { what: `header ${changes.join(', ')}`, weights: out };
  }
  if (kind === 'length') {
    const n = BigInt(file.n);
    const v = r.pick([0n, 1n, 2n, 7n, n - 1n, n + 1n, n - 8n, n + 8n, BigInt(size - 8), BigInt(size - 7), 2n ** 32n + n, 100n * 1024n * 1024n, 100n * 1024n * 1024n + 1n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n, BigInt(r.int(2 ** 30))]);
    return { what: `length field = ${v} (was ${file.n})`, weights: assemble(file.text, file.data, v) };
  }
  if (kind === 'cut') {
    const at = r.weighted<number>([[1, r.int(9)], [3, 8 + r.int(file.n)], [1, 8 + file.n + r.int(16)]]);
    return { what: `truncated to ${at} of ${size} bytes`, weights: file.bytes.slice(0, at), mustFail: 'FileTruncatedError' };
  }
  return kind === 'json' ? jsonMutation(r) : textMutation(r);
}

/** An element of tensor `name` and the bytes it lies in. */
function element(r: Rand, name: string): { at: number; width: number } {
  const t = entries[name];
  const width = BYTES[t.dtype];
  const count = (t.data_offsets[1] - t.data_offsets[0]) / width;
  return { at: 8 + file.n + t.data_offsets[0] + r.int(count) * width, width };
}

/** The value of the element whose bytes start at `at`. */
function valueAt(bytes: Uint8Array, at: number, dtype: string): number {
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  if (dtype === 'F32') return v.getFloat32(at, true);
  const h = v.getUint16(at, true);
  if (dtype === 'BF16') return new Float32Array(new Uint32Array([h << 16]).buffer)[0];
  const exp = (h >> 10) & 0x1f;
  return exp === 0x1f ? ((h & 0x3ff) ? NaN : Infinity) : 1; // only finiteness matters here
}

const NONFINITE: Record<string, number[]> = {
  F32: [0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffffffff],
  F16: [0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xffff],
  BF16: [0x7f80, 0xff80, 0x7fc0, 0x7f81, 0xffff],
};

export function dataCase(r: Rand): StCase {
  const name = r.pick(file.names);
  const dtype = entries[name].dtype;
  const kind = r.weighted<string>([[3, 'nonfinite'], [4, 'flip'], [1, 'cut'], [1, 'append']]);
  if (kind === 'nonfinite') {
    const { at, width } = element(r, name);
    const bits = r.pick(NONFINITE[dtype]);
    const out = file.bytes.slice();
    const v = new DataView(out.buffer);
    if (width === 4) v.setUint32(at, bits, true);
    else v.setUint16(at, bits, true);
    return { what: `data: "${name}" (${dtype}) element at file byte ${at} = ${hex(bits, width * 2)}`, weights: out, mustFail: 'NonFiniteWeightError' };
  }
  if (kind === 'flip') {
    // Random bytes changed: the loader must refuse exactly when some element became NaN or ±Inf.
    const out = file.bytes.slice();
    const changes: string[] = [];
    const touched: { at: number; name: string }[] = [];
    for (let k = r.range(1, 3); k > 0; k--) {
      const n = r.pick(file.names);
      const { at, width } = element(r, n);
      const i = at + r.int(width);
      const v = r.chance(0.5) ? out[i] ^ (1 << r.int(8)) : r.int(256);
      changes.push(`byte ${i} ("${n}") = ${hex(v)} (was ${hex(out[i])})`);
      out[i] = v;
      touched.push({ at, name: n });
    }
    const bad = touched.some(({ at, name: n }) => !Number.isFinite(valueAt(out, at, entries[n].dtype)));
    return { what: `data: ${changes.join(', ')}`, weights: out, ...(bad ? { mustFail: 'NonFiniteWeightError' } : { mustLoad: true }) };
  }
  if (kind === 'cut') {
    const at = 8 + file.n + r.int(file.data.byteLength);
    return { what: `data: truncated to ${at} of ${file.bytes.byteLength} bytes`, weights: file.bytes.slice(0, at), mustFail: 'FileTruncatedError' };
  }
  const extra = r.pick([1, 3, 8, 64, 4096]);
  return { what: `data: ${extra} bytes appended`, weights: new Uint8Array([...file.bytes, ...new Uint8Array(extra).fill(0x20)]), mustFail: 'HeaderMalformedError' };
}
