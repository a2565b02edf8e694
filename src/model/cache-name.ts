/**
 * The Cache Storage name model files are kept under; the version changes when the stored format (keys,
 * headers) changes. Its own module so the public entry point can name it without loading the cache code.
 */
export const MODEL_CACHE_NAME = 'ttt-web-models-v1';
