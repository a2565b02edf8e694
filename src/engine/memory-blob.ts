/**
 * The saved-memory format: "TTTMEM01", a u32 header length, a JSON header (format, model identity,
 * position, the named sections and their byte lengths), then the sections back to back. Little-endian
 * f32 throughout, as the GPU holds them.
 */
import type { LactConfig } from '../model/config.ts';
import { MemoryMismatchError } from './errors.ts';

export const MEMORY_FORMAT = 1;
const MAGIC = 'TTTMEM01';

export interface MemoryHeader {
  readonly format: number;
  readonly modelId: string;
  readonly position: number;
  /** First position whose keys and values are stored (the window's start; 0 for full attention). */
  readonly firstKvPosition: number;
}

export function encodeMemory(header: MemoryHeader, sections: readonly { name: string; bytes: Uint8Array }[]): Uint8Array {
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
  let parsed: MemoryHeader & { sections: [string, number][] };
  try {
    parsed = JSON.parse(new TextDecoder().decode(blob.subarray(12, 12 + len))) as MemoryHeader & { sections: [string, number][] };
  } catch (e) {
    throw new MemoryMismatchError(`corrupt memory blob: header is not JSON (${(e as Error).message})`);
  }
  if (parsed.format !== MEMORY_FORMAT) throw new MemoryMismatchError(`memory format ${parsed.format} is not supported (this engine reads ${MEMORY_FORMAT})`);
  if (!Number.isInteger(parsed.position) || parsed.position < 0 || !Number.isInteger(parsed.firstKvPosition) || !Array.isArray(parsed.sections)) {
    throw new MemoryMismatchError('corrupt memory blob: bad header fields');
  }
  const sections = new Map<string, Uint8Array>();
  let o = 12 + len;
  for (const [name, n] of parsed.sections) {
    if (!Number.isInteger(n) || n < 0 || o + n > blob.byteLength) throw new MemoryMismatchError(`corrupt memory blob: section ${name} runs past the end`);
    sections.set(name, blob.subarray(o, o + n));
    o += n;
  }
  if (o !== blob.byteLength) throw new MemoryMismatchError(`corrupt memory blob: ${blob.byteLength - o} trailing bytes`);
  const { sections: _s, ...header } = parsed;
  return { header, sections };
}

/**
 * A model's identity: FNV-1a (64-bit) over the config and, per tensor in name order, its name, shape and
 * a sample of its values (every element would cost a pass over gigabytes; a sample tells different
 * checkpoints apart). Tensors may be added in any order (a streamed file's order).
 */
export class ModelIdentity {
  private readonly parts = new Map<string, Uint8Array>();

  constructor(private readonly config: LactConfig) {}

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
