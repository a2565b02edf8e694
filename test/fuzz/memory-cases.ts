/**
 * The memory-blob fuzz target, run in a child process by test/fuzz/memory.test.ts (see fuzzInChild).
 *
 * Two engines on one device (TTT with every option on, and full attention with a 96-position cache),
 * each fed a prompt that ends mid-chunk, and each one's saved memory damaged: flipped bytes, truncation,
 * extra bytes; blobs rebuilt with a valid checksum (encodeMemory, or framed by hand) around damaged
 * header fields and section tables; things that are not a Uint8Array. Every case must end in
 * MemoryCorruptError or MemoryMismatchError with the engine's state unchanged (its saveMemory bytes), or
 * load correctly: the engine then holds exactly the blob's position and sections, and generates a token.
 * After all of them each engine still holds its state and generates what a fresh engine fed the same
 * prompt generates.
 */
import { crc32 } from '../../src/engine/crc32.ts';
import { Engine } from '../../src/engine/engine.ts';
import { decodeMemory, encodeMemory, MEMORY_FORMAT, type MemoryHeader } from '../../src/engine/memory-blob.ts';
import type { GpuContext } from '../../src/gpu/context.ts';
import type { MemorySection } from '../../src/gpu/saved-state.ts';
import { openTestGpu } from '../helpers/gpu.ts';
import { ALL_ON, FULL_ATTN, randomModel } from '../helpers/random-model.ts';
import { serveCases } from './child-runner.ts';
import { CaseFailure, describeError, hex, projectErrorName, show, type Rand } from './harness.ts';

const PROMPT = Array.from({ length: 45 }, (_, i) => (i * 37 + 11) % 256); // two chunks of 16 and a pending tail
const SAMPLING = { temperature: 0 };

interface Subject {
  readonly name: string;
  readonly model: ReturnType<typeof randomModel>;
  readonly opts: { weights: 'f32'; maxContext?: number };
  readonly engine: Engine;
  readonly saved: Uint8Array;
  readonly header: MemoryHeader;
  readonly sections: MemorySection[];
  readonly capacity: number;
}

interface State {
  readonly ctx: GpuContext;
  readonly subjects: Subject[];
}

/** What a case must end in: refused as damaged, refused (damaged or mismatched), loaded, or any of these. */
type Want = 'corrupt' | 'refuse' | 'load' | 'any';

interface MemCase {
  what: string;
  subject: number;
  blob: unknown;
  want: Want;
}

const same = (a: Uint8Array, b: Uint8Array): boolean => a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);
const deep = (n: number): string => '['.repeat(n) + ']'.repeat(n);

/** "TTTMEM02" | u32 length | JSON | sections | CRC-32, with any JSON text and length field: a well-formed frame around anything. */
function frame(json: string, sections: readonly Uint8Array[], lengthField?: number): Uint8Array<ArrayBuffer> {
  const text = new TextEncoder().encode(json);
  const body = 12 + text.byteLength + sections.reduce((n, s) => n + s.byteLength, 0);
  const out = new Uint8Array(body + 4);
  const view = new DataView(out.buffer);
  out.set(new TextEncoder().encode('TTTMEM02'), 0);
  view.setUint32(8, lengthField ?? text.byteLength, true);
  out.set(text, 12);
  let o = 12 + text.byteLength;
  for (const s of sections) (out.set(s, o), (o += s.byteLength));
  view.setUint32(body, crc32(out.subarray(0, body)), true);
  return out;
}

/** The header as JSON text with the given section table, as encodeMemory writes it (unpadded). */
function headerJson(h: Record<string, unknown>, table: unknown): string {
  return JSON.stringify({ ...h, sections: table });
}

function fieldCase(r: Rand, s: Subject): Omit<MemCase, 'subject'> {
  const h: Record<string, unknown> = { ...s.header };
  const pos = s.header.position;
  const field = r.pick(['format', 'family', 'modelId', 'position', 'position', 'position', 'config', 'extra']);
  const pools: Record<string, unknown[]> = {
    format: [1, 3, '2', null, undefined, -2, 2.5, 2],
    family: ['ttt-e2e', '', 'LACT', 1, null, undefined, ['lact']],
    modelId: ['0000000000000000', '', 1, null, undefined, s.header.modelId.toUpperCase(), `${s.header.modelId} `],
    position: [-1, 1.5, '45', null, undefined, 0, pos - 1, pos + 1, pos + 16, pos + 51, s.capacity, s.capacity + 1, 2 ** 31, 2 ** 32 + pos, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 1e300, 2 ** 60],
    config: [null, [], {}, 'x', { windowSize: 99 }, undefined],
    extra: [1, null, { a: [1] }],
  };
  const v = r.pick(pools[field]);
  if (field === 'extra') h.note = v;
  else if (v === undefined) delete h[field];
  else h[field] = v;
  // A field that is still what it was, and extra fields, leave a blob that must load.
  const unchanged = field !== 'extra' && JSON.stringify(v) === JSON.stringify((s.header as unknown as Record<string, unknown>)[field]);
  const want: Want = unchanged || field === 'extra' ? 'load' : field === 'position' || field === 'config' ? 'any' : 'refuse';
  return { what: `${s.name}: valid checksum, header ${field === 'extra' ? `extra field "note" = ${show(v)}` : v === undefined ? `without "${field}"` : `${field} = ${show(v)}`}`, blob: encodeMemory(h as unknown as MemoryHeader, s.sections), want };
}

function sectionsCase(r: Rand, s: Subject): Omit<MemCase, 'subject'> {
  const secs = s.sections.map((x) => ({ name: x.name, bytes: x.bytes }));
  const k = r.int(secs.length);
  const name = secs[k].name;
  const enc = (list: MemorySection[]) => encodeMemory(s.header, list);
  switch (r.int(9)) {
    case 0:
      return { what: `${s.name}: valid checksum, section ${name} left out`, blob: enc(secs.filter((_, j) => j !== k)), want: 'refuse' };
    case 1:
      return { what: `${s.name}: valid checksum, section ${name} renamed`, blob: enc(secs.map((x, j) => (j === k ? { ...x, name: `${x.name}x` } : x))), want: 'refuse' };
    case 2: {
      const d = r.pick([-4, -1, 1, 4, 4096]);
      const bytes = d < 0 ? secs[k].bytes.subarray(0, Math.max(0, secs[k].bytes.byteLength + d)) : new Uint8Array([...secs[k].bytes, ...new Uint8Array(d)]);
      return { what: `${s.name}: valid checksum, section ${name} ${d < 0 ? `${-d} bytes short` : `${d} bytes long`}`, blob: enc(secs.map((x, j) => (j === k ? { ...x, bytes } : x))), want: secs[k].bytes.byteLength === 0 && d < 0 ? 'load' : 'refuse' };
    }
    case 3:
      return { what: `${s.name}: valid checksum, sections in another order`, blob: enc(r.shuffle(secs)), want: 'load' };
    case 4: {
      const j = r.int(secs.length);
      const out = [...secs];
      [out[k], out[j]] = [{ name: out[k].name, bytes: secs[j].bytes }, { name: out[j].name, bytes: secs[k].bytes }];
      return { what: `${s.name}: valid checksum, contents of ${name} and ${secs[j].name} swapped`, blob: enc(out), want: secs[k].bytes.byteLength === secs[j].bytes.byteLength ? 'load' : 'refuse' };
    }
    case 5:
      return { what: `${s.name}: valid checksum, section ${name} twice (the second one zeros)`, blob: enc([...secs, { name, bytes: new Uint8Array(secs[k].bytes.byteLength) }]), want: 'load' };
    case 6:
      return { what: `${s.name}: valid checksum, an extra section`, blob: enc([...secs, { name: r.pick(['layer9.k', 'extra', '', '__proto__']), bytes: new Uint8Array(r.pick([0, 8, 1000])) }]), want: 'any' };
    case 7:
      return { what: `${s.name}: valid checksum, no sections`, blob: enc([]), want: 'refuse' };
    default: {
      // Section bytes changed (NaN, noise) with the checksum fixed: a state no engine wrote, but one of the right shape.
      const bytes = secs[k].bytes.slice();
      if (bytes.byteLength >= 4) new DataView(bytes.buffer).setUint32(4 * r.int(bytes.byteLength / 4), r.pick([0x7fc00000, 0x7f800000, 0x3f800000]), true);
      return { what: `${s.name}: valid checksum, a value in section ${name} changed`, blob: enc(secs.map((x, j) => (j === k ? { ...x, bytes } : x))), want: 'load' };
    }
  }
}

function rawCase(r: Rand, s: Subject): Omit<MemCase, 'subject'> {
  const h = { ...s.header } as unknown as Record<string, unknown>;
  const table = s.sections.map((x) => [x.name, x.bytes.byteLength]);
  const bytes = s.sections.map((x) => x.bytes);
  const good = headerJson(h, table);
  switch (r.int(6)) {
    case 0: {
      const text = r.pick([good.slice(0, r.int(good.length)), `${good}}`, good.replace('{', '['), '', 'x', `\u0000${good}`]);
      return { what: `${s.name}: valid checksum, header text ${show(text, 30)}`, blob: frame(text, bytes), want: 'corrupt' };
    }
    case 1: {
      const text = r.pick(['[]', '1', '"x"', 'null', 'true', deep(20_000), `[${good}]`]);
      return { what: `${s.name}: valid checksum, header ${show(text, 30)}`, blob: frame(text, bytes), want: 'refuse' };
    }
    case 2: {
      const t = r.pick<unknown>([[['x']], [[1, 2]], [['a', -1]], [['a', 1.5]], [['a', 1e300]], [['a', '8']], [null], 'x', {}, [[]], [['a', 2 ** 53]], [[table[0][0], table[0][1], 'extra']]]);
      return { what: `${s.name}: valid checksum, section table ${show(t)}`, blob: frame(headerJson(h, t), bytes), want: 'refuse' };
    }
    case 3: {
      const len = new TextEncoder().encode(good).byteLength;
      const body = 12 + len + bytes.reduce((n, b) => n + b.byteLength, 0);
      const lie = r.pick([0, 1, len - 1, len + 1, len + 4, body, body - 11, 2 ** 32 - 1]);
      return { what: `${s.name}: valid checksum, header length field ${lie} (is ${len})`, blob: frame(good, bytes, lie), want: 'refuse' };
    }
    case 4: {
      // Another model's memory whose config cannot be shown the ordinary way (compared field by field in the message).
      const config = r.pick<unknown>([{ windowSize: '@@DEEP@@' }, { ...s.header.config, chunkSize: 8 }, { [`k${'x'.repeat(1000)}`]: 1 }]);
      const text = headerJson({ ...h, modelId: '0123456789abcdef', config }, table).replace('"@@DEEP@@"', deep(20_000));
      return { what: `${s.name}: valid checksum, another modelId, config ${show(config).includes('@@DEEP@@') ? '{"windowSize": deeply nested arrays}' : show(config)}`, blob: frame(text, bytes), want: 'refuse' };
    }
    default: {
      // The same position in other spellings (45.0, 4.5e1 load), or numbers JSON reads as something else.
      const lit = r.pick(['1e400', '-0', `${s.header.position}.0`, `${s.header.position / 10}e1`, '-1e-400', '9007199254740993']);
      const text = headerJson({ ...h, position: '@@POS@@' }, table).replace('"@@POS@@"', lit);
      return { what: `${s.name}: valid checksum, position written ${lit}`, blob: frame(text, bytes), want: 'any' };
    }
  }
}

function typeCase(r: Rand, s: Subject): Omit<MemCase, 'subject'> {
  const b = s.saved;
  const inside = new Uint8Array(b.byteLength + 7);
  inside.set(b, 3);
  const pool: [string, unknown, Want][] = [
    ['its ArrayBuffer', b.slice().buffer, 'corrupt'],
    ['a DataView', new DataView(b.slice().buffer), 'corrupt'],
    ['a Uint16Array over it', new Uint16Array(b.slice().buffer, 0, b.byteLength >> 1), 'corrupt'],
    ['a Uint8ClampedArray copy', new Uint8ClampedArray(b), 'corrupt'],
    ['a number', 45, 'corrupt'],
    ['a string', 'TTTMEM02', 'corrupt'],
    ['null', null, 'corrupt'],
    ['undefined', undefined, 'corrupt'],
    ['a plain array of its bytes', Array.from(b.subarray(0, 64)), 'corrupt'],
    ['an empty Uint8Array', new Uint8Array(0), 'corrupt'],
    ['a Node Buffer copy', Buffer.from(b), 'load'],
    ['a view at byte 3 of a larger buffer', inside.subarray(3, 3 + b.byteLength), 'load'],
  ];
  const [what, blob, want] = r.pick(pool);
  return { what: `${s.name}: ${what}`, blob, want };
}

function make(r: Rand, _i: number, st: State): MemCase {
  const subject = r.chance(0.7) ? 0 : 1;
  const s = st.subjects[subject];
  const kind = r.weighted<string>([[3, 'flip'], [1, 'cut'], [4, 'field'], [4, 'sections'], [3, 'raw'], [1, 'type']]);
  if (kind === 'flip') {
    const out = s.saved.slice();
    const headerEnd = 12 + new DataView(out.buffer).getUint32(8, true);
    const changes: string[] = [];
    for (let k = r.range(1, 4); k > 0; k--) {
      const i = r.chance(0.5) ? r.int(headerEnd) : r.int(out.byteLength);
      const v = r.chance(0.5) ? out[i] ^ (1 << r.int(8)) : (out[i] + 1 + r.int(255)) & 0xff;
      changes.push(`byte ${i} = ${hex(v)} (was ${hex(out[i])})`);
      out[i] = v;
    }
    return { what: `${s.name}: ${changes.join(', ')}`, subject, blob: out, want: 'corrupt' };
  }
  if (kind === 'cut') {
    if (r.chance(0.7)) {
      const n = r.int(s.saved.byteLength);
      return { what: `${s.name}: truncated to ${n} of ${s.saved.byteLength} bytes`, subject, blob: s.saved.slice(0, n), want: 'corrupt' };
    }
    const extra = r.pick([1, 4, 100]);
    return { what: `${s.name}: ${extra} bytes appended`, subject, blob: new Uint8Array([...s.saved, ...new Uint8Array(extra)]), want: 'corrupt' };
  }
  const c = kind === 'field' ? fieldCase(r, s) : kind === 'sections' ? sectionsCase(r, s) : kind === 'raw' ? rawCase(r, s) : typeCase(r, s);
  return { ...c, subject };
}

async function check(c: MemCase, st: State): Promise<string> {
  const s = st.subjects[c.subject];
  let error: unknown = null;
  try {
    await s.engine.loadMemory(c.blob as Uint8Array);
  } catch (e) {
    error = e;
  }
  if (error !== null) {
    const name = projectErrorName(error);
    if (name !== 'MemoryCorruptError' && name !== 'MemoryMismatchError') throw new CaseFailure(`loadMemory threw ${describeError(error)} (accepted here: MemoryCorruptError, MemoryMismatchError)`);
    if (c.want === 'load') throw new CaseFailure(`loadMemory threw ${describeError(error)}, but this blob must load`);
    if (c.want === 'corrupt' && name !== 'MemoryCorruptError') throw new CaseFailure(`loadMemory threw ${describeError(error)}, expected MemoryCorruptError`);
    const now = await s.engine.saveMemory();
    if (!same(now, s.saved)) throw new CaseFailure(`${name}, but the engine's state changed (its saved memory differs)`);
    return name!;
  }
  if (c.want === 'corrupt' || c.want === 'refuse') throw new CaseFailure(`loadMemory accepted it; expected ${c.want === 'corrupt' ? 'MemoryCorruptError' : 'MemoryCorruptError or MemoryMismatchError'}`);
  // A correct load: the engine now holds exactly what the blob says, and runs. Then (whatever happened) back
  // to the state the next case damages.
  try {
    await loadedCorrectly(c, s);
  } finally {
    await s.engine.loadMemory(s.saved);
  }
  if (!same(await s.engine.saveMemory(), s.saved)) throw new CaseFailure('loaded; restoring the original memory afterwards did not give back its bytes');
  return 'loaded';
}

async function loadedCorrectly(c: MemCase, s: Subject): Promise<void> {
  const given = decodeMemory(c.blob as Uint8Array);
  const held = decodeMemory(await s.engine.saveMemory());
  if (held.header.position !== given.header.position) throw new CaseFailure(`loaded, but the engine is at position ${held.header.position}, the blob says ${given.header.position}`);
  for (const [name, bytes] of held.sections) {
    const want = given.sections.get(name);
    if (!want || !same(bytes, want)) throw new CaseFailure(`loaded, but section ${name} of the engine's state is not the blob's`);
  }
  let token: number[];
  try {
    token = await s.engine.generate([65], 1, SAMPLING);
  } catch (e) {
    throw new CaseFailure(`loaded, then generate threw ${describeError(e)}`);
  }
  if (!(token.length === 1 && Number.isInteger(token[0]) && token[0] >= 0 && token[0] < s.model.config.vocabSize)) throw new CaseFailure(`loaded, then generated ${show(token)}`);
}

async function final(st: State): Promise<string[]> {
  const failures: string[] = [];
  for (const s of st.subjects) {
    if (!same(await s.engine.saveMemory(), s.saved)) failures.push(`${s.name}: after every case, the engine's state is not the memory it saved before them`);
    const fresh = await Engine.create(st.ctx, s.model, s.opts);
    await fresh.feed(PROMPT);
    const want = await fresh.generate([65], 12, SAMPLING);
    const got = await s.engine.generate([65], 12, SAMPLING);
    if (show(got) !== show(want)) failures.push(`${s.name}: after every case the engine generates ${show(got)}, a fresh one ${show(want)}`);
    await fresh.destroy();
    await s.engine.destroy();
  }
  st.ctx.device.destroy();
  return failures;
}

async function setup(): Promise<State> {
  const { ctx } = await openTestGpu();
  const subjects: Subject[] = [];
  for (const [name, raw, seed, opts] of [['ttt', ALL_ON, 3, { weights: 'f32' }], ['full-attention', FULL_ATTN, 4, { weights: 'f32', maxContext: 96 }]] as const) {
    const model = randomModel(raw, seed);
    const engine = await Engine.create(ctx, model, opts);
    await engine.feed(PROMPT);
    const saved = await engine.saveMemory();
    const { header, sections } = decodeMemory(saved);
    subjects.push({ name, model, opts, engine, saved, header, sections: [...sections].map(([n, bytes]) => ({ name: n, bytes })), capacity: engine.info.capacity });
  }
  return { ctx, subjects };
}

export async function main(): Promise<void> {
  await serveCases<State, MemCase>({ setup, make, check, final });
}
