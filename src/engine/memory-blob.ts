/**
 * The saved-memory format:
 *
 *   "TTTMEM02" | u32 header length | JSON header | sections back to back | u32 CRC-32 of all before it
 *
 * The header holds the format, the model family, the model's identity and config, the position, and the
 * named sections with their byte lengths. Little-endian throughout; sections are f32 as the GPU holds
 * them. What the sections hold is the family's business (each part that owns state names and checks its
 * own); this file frames them and refuses, before anything is restored, a blob that is damaged
 * (MemoryCorruptError: truncated, any byte changed) or from another model or configuration
 * (MemoryMismatchError naming what differs).
 */
import type { MemorySection, SectionSource } from '../gpu/saved-state.ts';
import { crc32 } from './crc32.ts';
import { MemoryCorruptError, MemoryMismatchError } from './errors.ts';

export const MEMORY_FORMAT = 2;
const MAGIC = 'TTTMEM02';
/** Format 1 (magic TTTMEM01) had no checksum: a damaged one could not be told from a good one. */
const UNCHECKED_MAGIC = 'TTTMEM01';
const PREFIX = 12; // magic + header length
const TRAILER = 4; // CRC-32

export interface MemoryHeader {
  readonly format: number;
  /** The model family whose engine saved it (`ModelFamily.name`). */
  readonly family: string;
  readonly modelId: string;
  /** The parsed config of the model that saved it (so a mismatch can say what differs). */
  readonly config: Readonly<Record<string, unknown>>;
  readonly position: number;
}

/** The header as stored: JSON padded with spaces to a multiple of 256 bytes, so the blob's size does not change with the digits of the position. */
function headerJson(header: MemoryHeader, sections: readonly (readonly [string, number])[]): Uint8Array {
  const text = JSON.stringify({ ...header, sections });
  return new TextEncoder().encode(text.padEnd(Math.ceil((text.length + 1) / 256) * 256, ' '));
}

/** The size of encodeMemory(header, sections) for sections of these names and byte lengths. */
export function encodedMemoryBytes(header: MemoryHeader, sections: readonly (readonly [string, number])[]): number {
  return PREFIX + headerJson(header, sections).byteLength + sections.reduce((n, s) => n + s[1], 0) + TRAILER;
}

export function encodeMemory(header: MemoryHeader, sections: readonly MemorySection[]): Uint8Array {
  const json = headerJson(header, sections.map((s) => [s.name, s.bytes.byteLength]));
  const body = PREFIX + json.byteLength + sections.reduce((n, s) => n + s.bytes.byteLength, 0);
  const out = new Uint8Array(body + TRAILER);
  const view = new DataView(out.buffer);
  out.set(new TextEncoder().encode(MAGIC), 0);
  view.setUint32(8, json.byteLength, true);
  out.set(json, PREFIX);
  let o = PREFIX + json.byteLength;
  for (const s of sections) {
    out.set(s.bytes, o);
    o += s.bytes.byteLength;
  }
  view.setUint32(body, crc32(out.subarray(0, body)), true);
  return out;
}

export function decodeMemory(blob: Uint8Array): { header: MemoryHeader; sections: Map<string, Uint8Array> } {
  if (!(blob instanceof Uint8Array)) throw new MemoryCorruptError('a memory blob is a Uint8Array from saveMemory()');
  const magic = new TextDecoder().decode(blob.subarray(0, 8));
  if (magic === UNCHECKED_MAGIC) {
    throw new MemoryMismatchError('this memory was saved by an older ttt-web (format 1, without a checksum) and cannot be verified; read the document again and save a new memory');
  }
  if (blob.byteLength < PREFIX + TRAILER || magic !== MAGIC) throw new MemoryCorruptError(`not a ttt-web memory blob (${blob.byteLength < PREFIX + TRAILER ? `only ${blob.byteLength} bytes` : 'bad magic'})`);
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const body = blob.byteLength - TRAILER;
  const stored = view.getUint32(body, true);
  const actual = crc32(blob.subarray(0, body));
  if (stored !== actual) {
    throw new MemoryCorruptError(`damaged memory blob: its checksum is ${hex(actual)}, it says ${hex(stored)} (truncated, or bytes changed in storage or transit); nothing was restored`);
  }
  // From here on the bytes are as saveMemory wrote them; the checks below guard against blobs built by hand.
  const len = view.getUint32(8, true);
  if (PREFIX + len > body) throw new MemoryCorruptError(`corrupt memory blob: header of ${len} bytes in a ${blob.byteLength}-byte blob`);
  let parsed: Partial<MemoryHeader> & { sections?: unknown };
  try {
    parsed = JSON.parse(new TextDecoder().decode(blob.subarray(PREFIX, PREFIX + len))) as Partial<MemoryHeader> & { sections?: unknown };
  } catch (e) {
    throw new MemoryCorruptError(`corrupt memory blob: header is not JSON (${(e as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null) throw new MemoryCorruptError('corrupt memory blob: the header is not an object');
  if (parsed.format !== MEMORY_FORMAT) throw new MemoryMismatchError(`memory format ${String(parsed.format)} is not supported (this engine reads ${MEMORY_FORMAT})`);
  const { family, modelId, position, config } = parsed;
  // Positions stay below 2^32 - 1: the sampler draws with (seed, position) as u32, and past 2^53 a loop over positions never ends.
  if (typeof family !== 'string' || typeof modelId !== 'string' || !Number.isSafeInteger(position) || (position as number) < 0 || (position as number) >= 0xffffffff || typeof config !== 'object' || config === null || !Array.isArray(parsed.sections)) {
    throw new MemoryCorruptError('corrupt memory blob: bad header fields');
  }
  const sections = new Map<string, Uint8Array>();
  let o = PREFIX + len;
  for (const entry of parsed.sections as unknown[]) {
    const [name, n] = Array.isArray(entry) ? (entry as unknown[]) : [];
    if (typeof name !== 'string' || typeof n !== 'number') throw new MemoryCorruptError('corrupt memory blob: a section entry is not [name, bytes]');
    if (!Number.isInteger(n) || n < 0 || o + n > body) throw new MemoryCorruptError(`corrupt memory blob: section ${name} runs past the end`);
    sections.set(name, blob.subarray(o, o + n));
    o += n;
  }
  if (o !== body) throw new MemoryCorruptError(`corrupt memory blob: ${body - o} bytes after the last section`);
  return { header: { format: MEMORY_FORMAT, family, modelId, config, position: position as number }, sections };
}

/**
 * Why a memory saved with `saved` does not fit a model with `current` (same family): the config fields
 * that differ, e.g. "windowSize: saved 512, this model 1024". Empty when the configs are equal.
 */
export function configDifferences(saved: Readonly<Record<string, unknown>>, current: Readonly<Record<string, unknown>>): string[] {
  // A hand-made header can nest a value deeper than JSON.stringify can recurse: it shows as such, never throws.
  const show = (v: unknown): string => {
    try {
      return String(JSON.stringify(v));
    } catch {
      return '(a value nested too deeply to show)';
    }
  };
  const keys = [...new Set([...Object.keys(saved), ...Object.keys(current)])];
  return keys.filter((k) => show(saved[k]) !== show(current[k])).map((k) => `${k}: saved ${show(saved[k])}, this model ${show(current[k])}`);
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}

/** The sections of a decoded blob, each checked for presence and size as a part asks for it. */
export function sectionSource(sections: ReadonlyMap<string, Uint8Array>): SectionSource {
  return {
    need(name, bytes) {
      const s = sections.get(name);
      if (!s) throw new MemoryMismatchError(`this memory does not fit the model: section ${name} is missing`);
      if (s.byteLength !== bytes) throw new MemoryMismatchError(`this memory does not fit the model: section ${name} has ${s.byteLength} bytes, the model's state ${bytes}`);
      return s;
    },
  };
}

/**
 * A model's identity: FNV-1a (64-bit) over the config and, per tensor in name order, its name, shape and
 * a sample of its values (every element would cost a pass over gigabytes; a sample tells different
 * checkpoints apart). Tensors may be added in any order (a streamed file's order).
 */
export class ModelIdentity {
  private readonly parts = new Map<string, Uint8Array>();

  constructor(private readonly config: object) {}

  add(name: string, shape: readonly number[], data: Float32Array): void {
    const step = Math.max(1, Math.floor(data.length / 64));
    const sample = new Float32Array(Math.ceil(data.length / step));
    for (let i = 0, j = 0; i < data.length; i += step, j++) sample[j] = data[i];
    const head = new TextEncoder().encode(`${name}:${shape.join('x')}`);
    const bytes = new Uint8Array(head.byteLength + sample.byteLength);
    bytes.set(head);
    bytes.set(new Uint8Array(sample.buffer), head.byteLength);
    this.parts.set(name, bytes);
  }

  digest(): string {
    let h = 0xcbf29ce484222325n;
    const mask = 0xffffffffffffffffn;
    const feed = (bytes: Uint8Array) => {
      for (const b of bytes) h = ((h ^ BigInt(b)) * 0x100000001b3n) & mask;
    };
    feed(new TextEncoder().encode(JSON.stringify(this.config)));
    for (const name of [...this.parts.keys()].sort()) feed(this.parts.get(name)!);
    return h.toString(16).padStart(16, '0');
  }
}
