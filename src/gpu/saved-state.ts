/**
 * The shapes in which parts that own GPU state (the KV cache, fast weights) save and restore it. A
 * restore is planned first, every section checked, and only then written, so a bad memory leaves the
 * state as it was.
 */

/** One named section of a saved memory. */
export interface MemorySection {
  readonly name: string;
  readonly bytes: Uint8Array;
}

/** A write a planned restore performs once every section has been checked. */
export interface RestoreWrite {
  readonly buffer: GPUBuffer;
  readonly offset: number;
  readonly data: Uint8Array;
}

/** The sections of a memory being restored; `need` throws a named error when one is missing or of another size. */
export interface SectionSource {
  need(name: string, bytes: number): Uint8Array;
}
