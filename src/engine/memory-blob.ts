/**
 * The saved-memory format: "TTTMEM01", a u32 header length, a JSON header (format, model family, model
 * identity, position, the named sections and their byte lengths), then the sections back to back.
 * Little-endian f32 throughout, as the GPU holds them. What the sections hold is the family's business
 * (each part that owns state names and checks its own); this file only frames them.
 */
import type { MemorySection, SectionSource } from '../gpu/saved-state.ts';
import { MemoryMismatchError } from './errors.ts';

export const MEMORY_FORMAT = 2;
/** Format 1 had no family tag (every model was LaCT) and a `firstKvPosition` the KV sections now imply. */
const READABLE_FORMATS: readonly number[] = [1, 2];
const MAGIC = 'TTTMEM01';

export interface MemoryHeader {
  readonly format: number;
  /** The model family whose engine saved it (`ModelFamily.name`). */
  readonly family: string;
  readonly modelId: string;
  readonly position: number;
}

export function encodeMemory(header: MemoryHeader, sections: readonly MemorySection[]): Uint8Array {
  // Padded with spaces (JSON whitespace) to a multiple of 256 bytes, so the blob's size does not change
  // with the digits of the position.
  const text = JSON.stringify({ ...header, sections: sections.map((s) => [s.name, s.bytes.byteLength]) });
  const json = new TextEncoder().encode(text.padEnd(Math.ceil((text.length + 1) / 256) * 256, ' '));
  const total = 8 + 4 + json.byteLength + sections.reduce((n, s) => n + s.bytes.byteLength, 0);
  const out = new Uint8Array(total);
  out.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(out.buffer).setUint32(8, json.byteLength, true);
  out.set(json, 12);
  let o = 12 + json.byteLength;
  for (const s of sections) {
    out.set(s.bytes, o);
    o += s.bytes.byteLength;
  }
  return out;
}

export function decodeMemory(blob: Uint8Array): { header: MemoryHeader; sections: Map<string, Uint8Array> } {
  if (blob.byteLength < 12 || new TextDecoder().decode(blob.subarray(0, 8)) !== MAGIC) throw new MemoryMismatchError('not a ttt-web memory blob (bad magic)');
  const len = new DataView(blob.buffer, blob.byteOffset, blob.byteLength).getUint32(8, true);
  if (12 + len > blob.byteLength) throw new MemoryMismatchError(`corrupt memory blob: header of ${len} bytes in a ${blob.byteLength}-byte blob`);
  let parsed: Partial<MemoryHeader> & { sections?: unknown };
  try {
    parsed = JSON.parse(new TextDecoder().decode(blob.subarray(12, 12 + len))) as Partial<MemoryHeader> & { sections?: unknown };
  } catch (e) {
    throw new MemoryMismatchError(`corrupt memory blob: header is not JSON (${(e as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null) throw new MemoryMismatchError('corrupt memory blob: the header is not an object');
  if (!READABLE_FORMATS.includes(parsed.format as number)) throw new MemoryMismatchError(`memory format ${String(parsed.format)} is not supported (this engine reads ${READABLE_FORMATS.join(' and ')})`);
  const family = parsed.format === 1 ? 'lact' : parsed.family;
  const { position, modelId } = parsed;
  if (typeof family !== 'string' || typeof modelId !== 'string' || !Number.isInteger(position) || (position as number) < 0 || !Array.isArray(parsed.sections)) {
    throw new MemoryMismatchError('corrupt memory blob: bad header fields');
  }
  const sections = new Map<string, Uint8Array>();
  let o = 12 + len;
  for (const entry of parsed.sections as unknown[]) {
    const [name, n] = Array.isArray(entry) ? (entry as unknown[]) : [];
    if (typeof name !== 'string' || typeof n !== 'number') throw new MemoryMismatchError('corrupt memory blob: a section entry is not [name, bytes]');
    if (!Number.isInteger(n) || n < 0 || o + n > blob.byteLength) throw new MemoryMismatchError(`corrupt memory blob: section ${name} runs past the end`);
    sections.set(name, blob.subarray(o, o + n));
    o += n;
  }
  if (o !== blob.byteLength) throw new MemoryMismatchError(`corrupt memory blob: ${blob.byteLength - o} trailing bytes`);
  return { header: { format: parsed.format as number, family, modelId, position: position as number }, sections };
}

/** The sections of a decoded blob, each checked for presence and size as a part asks for it. */
export function sectionSource(sections: ReadonlyMap<string, Uint8Array>): SectionSource {
  return {
    need(name, bytes) {
      const s = sections.get(name);
      if (!s) throw new MemoryMismatchError(`corrupt memory: section ${name} is missing`);
      if (s.byteLength !== bytes) throw new MemoryMismatchError(`corrupt memory: section ${name} has ${s.byteLength} bytes, expected ${bytes}`);
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
