/**
 * What one layer carries between calls, in bytes, from the config alone (the spec's constant-memory
 * formula): the KV window, fast weights and momentum per head, and the pending chunk's rows.
 */
import type { LactConfig } from './config.ts';

export interface LayerStateBytes {
  /** Roped keys and values of the window; null for full attention, whose cache grows per token. */
  kv: number | null;
  fastWeights: number;
  momentum: number;
  /** The pending chunk: fast k and v rows [C, D] each, 3 learning rates and 1 momentum gate per head. */
  pending: number;
}

export function stateBytesPerLayer(c: LactConfig, bytesPerValue: number): LayerStateBytes {
  const D = c.hiddenSize;
  const fw = c.useFastWeights ? 3 * c.numFwHeads * c.fwHeadDim * c.fwHidden * bytesPerValue : 0;
  return {
    kv: c.windowSize === null ? null : 2 * c.windowSize * D * bytesPerValue,
    fastWeights: fw,
    momentum: c.useFastWeights && c.useMomentum ? fw : 0,
    pending: c.useFastWeights ? c.chunkSize * (2 * D + 4 * c.numFwHeads) * bytesPerValue : 0,
  };
}
