// Starts a TypeScript module in a worker thread (the fuzz loader, test/fuzz/loader-worker.ts): Node
// cannot run .ts itself, so tsx's loader is registered first, for this thread only.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
