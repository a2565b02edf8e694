/**
 * Entry point of the packed GPU benchmark (scripts/pack-gpu-bench.mjs bundles it into one file with
 * everything but Dawn's and onnxruntime-web's binaries): `run.sh [suite flags]` in the unpacked folder.
 */
import { main } from './suite.ts';

await main(process.argv.slice(2));
process.exit(0);
