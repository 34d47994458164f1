// Entry of the database thread. A worker thread does not inherit the parent's TypeScript loader
// (tsx in dev, tests and production; vitest's own transform in tests), so when the thread's code
// is TypeScript, register tsx here before importing it. Plain JavaScript builds skip this.
import { workerData } from 'node:worker_threads';

const entry = workerData?.entry;
if (typeof entry !== 'string') throw new Error('database thread started without workerData.entry');
if (entry.endsWith('.ts')) {
  const { register } = await import('tsx/esm/api');
  register();
}
await import(entry);
