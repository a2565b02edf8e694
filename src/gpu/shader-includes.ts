/**
 * The snippets WGSL sources may `#include` (see ./wgsl.ts), by the name written in the directive: the
 * files of shaders/common/, imported as text like every shader source (`?raw`), so the same map serves
 * the Vite build, Vitest and the Node bench (run through Vite's loader). A new snippet needs a line here.
 */
import block from '../../shaders/common/block.wgsl?raw';
import chunkLoss from '../../shaders/common/chunk-loss.wgsl?raw';
import reduce from '../../shaders/common/reduce.wgsl?raw';
import reduceLse from '../../shaders/common/reduce-lse.wgsl?raw';
import ropeTurns from '../../shaders/common/rope-turns.wgsl?raw';
import type { Includes } from './wgsl.ts';

export const SHADER_INCLUDES: Includes = {
  'block.wgsl': block,
  'chunk-loss.wgsl': chunkLoss,
  'reduce.wgsl': reduce,
  'reduce-lse.wgsl': reduceLse,
  'rope-turns.wgsl': ropeTurns,
};
