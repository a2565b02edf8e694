/**
 * One layer's keys (after RoPE) and values: a ring of the last W + maxRows - 1 positions for
 * sliding-window attention, or pages of `capacity` positions for full attention. It owns its state:
 * which positions are live after `position` tokens, and saving and restoring them in position order
 * (independent of the ring's layout, so a memory restores into an engine with another block size).
 */
import type { GpuContext } from '../context.ts';
import type { MemorySection, RestoreWrite, SectionSource } from '../saved-state.ts';
import { readBufferBytes } from '../readback.ts';

export interface AttentionSpec {
  readonly D: number;
  readonly heads: number;
  /** Keys seen per query, its own included; null: full attention. */
  readonly window: number | null;
  /** The largest block (rows) the engine ever runs. */
  readonly maxRows: number;
  /** Full attention only: positions the cache holds. */
  readonly capacity: number;
  /** Full attention only: bytes per K or V page (default: the device's maxStorageBufferBindingSize). */
  readonly maxBindingBytes?: number;
  /** Keys per split when a page's keys are split across invocations (default 256; small in tests). */
  readonly splitKeys?: number;
  /** CPU-emulator kernels: query rows per invocation of a prefill block (default CPU_ROW_BLOCK; 1: the per-row shape; tests and benchmarks vary it). */
  readonly rowBlock?: number;
  /**
   * Sliding window only: the chunk size B of a TTT-E2E block, whose update reads the W − 1 keys before
   * its pending chunk: the ring keeps W + max(maxRows, B) − 1 positions, and a save keeps every position
   * from W − 1 before the pending chunk's start.
   */
  readonly keepChunk?: number;
}

export function checkAttentionSpec(label: string, s: AttentionSpec): void {
  const posInt = (v: number) => Number.isInteger(v) && v >= 1;
  if (!posInt(s.D) || !posInt(s.heads) || s.D % s.heads !== 0) throw new RangeError(`${label}: ${s.heads} heads must divide D = ${s.D}`);
  if (!posInt(s.maxRows)) throw new RangeError(`${label}: maxRows ${s.maxRows}`);
  if (s.window !== null && !posInt(s.window)) throw new RangeError(`${label}: window ${s.window}`);
  if (s.window === null && !posInt(s.capacity)) throw new RangeError(`${label}: full attention needs a capacity >= 1, got ${s.capacity}`);
  if (s.splitKeys !== undefined && !posInt(s.splitKeys)) throw new RangeError(`${label}: splitKeys ${s.splitKeys}`);
  if (s.keepChunk !== undefined && (!posInt(s.keepChunk) || s.window === null)) throw new RangeError(`${label}: keepChunk ${s.keepChunk} (sliding window only)`);
}

/**
 * Where positions live: a ring of W + maxRows - 1 slots (a block's first query still sees W - 1 earlier
 * keys while the block writes up to maxRows new ones), or full attention's pages of `pageTokens`
 * positions up to the capacity. `pageSlots`: positions per page (one K and one V buffer each).
 */
export function kvGeometry(spec: AttentionSpec, maxBindingBytes: number): { ring: number; pageTokens: number; pageSlots: number[] } {
  if (spec.window !== null) {
    const ring = spec.window + Math.max(spec.maxRows, spec.keepChunk ?? 0) - 1;
    return { ring, pageTokens: ring, pageSlots: [ring] };
  }
  const pageTokens = Math.max(1, Math.floor(maxBindingBytes / (spec.D * 4)));
  const pageSlots: number[] = [];
  for (let base = 0; base < spec.capacity; base += pageTokens) pageSlots.push(Math.min(pageTokens, spec.capacity - base));
  return { ring: 0, pageTokens, pageSlots };
}

/** K and V for one layer: the ring (one page) or the full-attention pages, each page a K and a V buffer. */
export class KvCache {
  readonly bytes: number;
  /** Positions it can hold: Infinity for the ring, which forgets what the window no longer sees. */
  readonly capacity: number;
  /** Slots in the ring (position p lives in slot p mod ring), or 0 when paged. */
  readonly ring: number;
  /** Positions per page (page i holds [i * pageTokens, (i + 1) * pageTokens)); the ring's slot count. */
  readonly pageTokens: number;
  readonly pages: readonly { readonly k: GPUBuffer; readonly v: GPUBuffer }[];

  constructor(private readonly ctx: GpuContext, label: string, readonly spec: AttentionSpec) {
    checkAttentionSpec(label, spec);
    const maxBinding = spec.maxBindingBytes ?? ctx.limits.maxStorageBufferBindingSize;
    const g = kvGeometry(spec, maxBinding);
    if (g.ring * spec.D * 4 > maxBinding) throw new RangeError(`${label}: a ring of ${g.ring} positions x ${spec.D} floats exceeds the ${maxBinding}-byte binding limit`);
    this.ring = g.ring;
    this.pageTokens = g.pageTokens;
    this.capacity = g.ring ? Infinity : spec.capacity;
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    this.pages = g.pageSlots.map((slots, i) => {
      const name = g.ring ? '' : ` page ${i}`;
      return { k: ctx.allocator.create(`${label} K${name}`, 'kv', slots * spec.D * 4, usage), v: ctx.allocator.create(`${label} V${name}`, 'kv', slots * spec.D * 4, usage) };
    });
    this.bytes = this.pages.reduce((s, pg) => s + pg.k.size + pg.v.size, 0);
  }

  /**
   * The first position still needed after `position` tokens: the window's start (0 for full attention);
   * with keepChunk B, W − 1 before the start of the chunk that has not learned yet (the one holding the
   * last token fed).
   */
  firstLive(position: number): number {
    const W = this.spec.window, B = this.spec.keepChunk;
    if (W === null) return 0;
    if (B !== undefined && position > 0) return Math.max(0, Math.min(position - W, Math.floor((position - 1) / B) * B - W + 1));
    return Math.max(0, position - W);
  }

  /** Bytes holding live positions after `position` tokens. */
  liveBytes(position: number): number {
    return (position - this.firstLive(position)) * 2 * this.spec.D * 4;
  }

  /** Sections `${name}.k` and `${name}.v`: the live positions' rows in position order. */
  async save(name: string, position: number): Promise<MemorySection[]> {
    const rowBytes = this.spec.D * 4, first = this.firstLive(position);
    const out: MemorySection[] = [];
    for (const which of ['k', 'v'] as const) {
      const bytes = new Uint8Array((position - first) * rowBytes);
      const pages = new Map<number, Uint8Array>(); // each page read back once, then sliced by position
      for (const [p, page, slot] of this.slots(first, position)) {
        let held = pages.get(page);
        if (!held) pages.set(page, (held = await readBufferBytes(this.ctx.device, this.pages[page][which])));
        bytes.set(held.subarray(slot * rowBytes, (slot + 1) * rowBytes), (p - first) * rowBytes);
      }
      out.push({ name: `${name}.${which}`, bytes });
    }
    return out;
  }

  /** Checks the sections `save` wrote for `position` and returns the writes that restore them (none done yet). */
  planRestore(name: string, position: number, sections: SectionSource): RestoreWrite[] {
    const rowBytes = this.spec.D * 4, first = this.firstLive(position);
    const writes: RestoreWrite[] = [];
    for (const which of ['k', 'v'] as const) {
      const data = sections.need(`${name}.${which}`, (position - first) * rowBytes);
      // No bytes, no writes: an empty window, or a caller that only asks for the sizes (savedMemoryBytes,
      // on every stats push) and skips the per-position loop this way.
      if (data.byteLength === 0) continue;
      for (const [p, page, slot] of this.slots(first, position)) {
        writes.push({ buffer: this.pages[page][which], offset: slot * rowBytes, data: data.subarray((p - first) * rowBytes, (p - first + 1) * rowBytes) });
      }
    }
    return writes;
  }

  /** [position, page, slot] of each position in [from, to). */
  private *slots(from: number, to: number): Generator<[number, number, number]> {
    for (let p = from; p < to; p++) {
      if (this.ring > 0) yield [p, 0, p % this.ring];
      else yield [p, Math.floor(p / this.pageTokens), p % this.pageTokens];
    }
  }
}
