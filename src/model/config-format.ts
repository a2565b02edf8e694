/**
 * What the loader needs from a model family's config format: whether a config.json is the family's,
 * how to read it, the tensors a config implies and why each is wanted. The loader (stream.ts, load.ts,
 * validate.ts) works through this and knows no family's keys.
 */
export interface ConfigFormat<C> {
  /** The family tag the parsed config carries (the engine's family registry is keyed by it). */
  readonly family: string;
  /** This config.json (a JSON object) is the family's, by its model_type. */
  claims(raw: Readonly<Record<string, unknown>>): boolean;
  /** config.json → a validated config; ConfigError naming the key otherwise. */
  parse(raw: unknown, source?: string): C;
  /** Tensor name → shape, every tensor the checkpoint must hold. */
  expectedTensors(config: C): Map<string, number[]>;
  /** Why the config requires `name` (for MissingTensorError). */
  tensorRequirement(config: C, name: string): string;
  /** Why a tensor the file holds is not wanted, when a config key explains it. */
  unexpectedHint(config: C, name: string): string | null;
}
