/**
 * Where each checkpoint tensor goes on the GPU as it arrives (rows of a matrix, or a vector at an
 * offset), which have arrived, and the model's identity (for saved memories) from what arrived. Each
 * family's weights class declares its targets here; tensors the family keeps elsewhere (on the CPU, in
 * a dynamic-weight buffer) are its own `Other` kinds, handed back to it.
 */
import type { GpuContext } from '../gpu/context.ts';
import { writeAligned } from '../gpu/allocator.ts';
import { writeRows, type WeightParts } from '../gpu/weights.ts';
import { ModelIdentity } from '../engine/memory-blob.ts';

export type PlacedTarget =
  | { readonly kind: 'matrix'; readonly m: WeightParts; readonly row0: number }
  | { readonly kind: 'vector'; readonly buffer: GPUBuffer; readonly offset: number };

export class CheckpointTargets<Other extends { readonly kind: string }> {
  private readonly targets = new Map<string, PlacedTarget | Other>();
  private readonly written = new Set<string>();
  private readonly identity: ModelIdentity;

  /** `other`: puts a tensor of the family's own kinds where it belongs. */
  constructor(private readonly ctx: GpuContext, config: object, private readonly other: (target: Other, data: Float32Array, name: string) => void) {
    this.identity = new ModelIdentity(config);
  }

  at(name: string, target: PlacedTarget | Other): void {
    this.targets.set(name, target);
  }

  has(name: string): boolean {
    return this.targets.has(name);
  }

  names(): IterableIterator<string> {
    return this.targets.keys();
  }

  get missing(): string[] {
    return [...this.targets.keys()].filter((n) => !this.written.has(n));
  }

  get count(): number {
    return this.targets.size;
  }

  /** Puts one tensor (f32, transient) in place. */
  write(name: string, shape: readonly number[], data: Float32Array): void {
    const t = this.targets.get(name);
    if (!t) throw new Error(`tensor ${name} is not part of this model (the loader validates names before upload)`);
    if (this.written.has(name)) throw new Error(`tensor ${name} was written twice`);
    this.identity.add(name, shape, data);
    const placed = t as PlacedTarget; // a family's own kinds are neither 'matrix' nor 'vector'
    if (placed.kind === 'matrix') writeRows(this.ctx, placed.m, placed.row0, data);
    else if (placed.kind === 'vector') writeAligned(this.ctx.device, placed.buffer, placed.offset * 4, data);
    else this.other(t as Other, data, name);
    this.written.add(name);
  }

  /** After every tensor: the model's identity; an error naming what never arrived otherwise. */
  finish(): string {
    const missing = this.missing;
    if (missing.length) throw new Error(`tensors never arrived: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? '…' : ''}`);
    return this.identity.digest();
  }
}
