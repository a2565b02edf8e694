/**
 * The model families the engine runs, keyed by the `family` tag their configs carry (src/model/model-config.ts reads configs). A new
 * family is one file beside this one, registered here.
 */
import type { ModelFamily } from '../engine/family.ts';
import type { ModelConfig } from '../model/model-config.ts';
import { LACT_FAMILY } from './lact.ts';
import { E2E_FAMILY } from './ttt-e2e.ts';

type FamilyFor<C extends ModelConfig> = ModelFamily<C>;

const FAMILIES: { readonly [K in ModelConfig['family']]: FamilyFor<Extract<ModelConfig, { family: K }>> } = {
  lact: LACT_FAMILY,
  'ttt-e2e': E2E_FAMILY,
};

/** The family that runs `config`. */
export function familyOf<C extends ModelConfig>(config: C): ModelFamily<C> {
  return FAMILIES[config.family] as unknown as ModelFamily<C>;
}
