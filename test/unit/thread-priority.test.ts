/**
 * agent/thread-priority.ts, in a child process of its own (a test runner's own threads must not be
 * lowered): Node's helper threads go to the given nice value, the main thread and the native
 * library's threads (here @livekit/rtc-node's, started by creating an audio source) stay where
 * they were, and a thread started later is caught by a sweep.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const moduleUrl = new URL('../../agent/thread-priority.ts', import.meta.url).href;

/** Runs in the child: reports each thread's nice value (field 19 of /proc/self/task/<tid>/stat). */
const CHILD = `
import { readdirSync, readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { AudioSource, dispose } from '@livekit/rtc-node';
const { favourCallThread, lowerHelperThreads, newSweepState, SETTLE_MS, SWEEP_INTERVAL_MS } = await import(${JSON.stringify(moduleUrl)});
const niceOf = (tid) => {
  const stat = readFileSync('/proc/self/task/' + tid + '/stat', 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
};
const threads = () => readdirSync('/proc/self/task').map(Number).filter((t) => t !== process.pid);
const nameOf = (tid) => readFileSync('/proc/self/task/' + tid + '/comm', 'utf8').trim();
// The native library starts its own threads (an async runtime, and more) when first used.
const source = new AudioSource(48000, 1);
const idleWorker = () => new Promise((resolve) => {
  const w = new Worker('setInterval(() => {}, 1000); import("node:worker_threads").then((m) => m.parentPort.postMessage("up"));', { eval: true });
  w.once('message', () => resolve(w));
});

const first = await idleWorker();
const before = threads();
// First sight only notes the helpers (a native thread is named "node" too in its first moments);
// they are lowered once they have kept that name for SETTLE_MS (the clock is passed in).
const state = newSweepState();
const noted = lowerHelperThreads(7, state, 0);
const early = lowerHelperThreads(7, state, SETTLE_MS - 1);
const lowered = lowerHelperThreads(7, state, SETTLE_MS);
const isNode = (tid) => nameOf(tid) === 'node';
const afterLowering = {
  main: niceOf(process.pid),
  helpers: before.filter(isNode).map(niceOf),
  native: before.filter((t) => !isNode(t)).map((t) => [nameOf(t), niceOf(t)]),
};
const again = lowerHelperThreads(7, state, 2 * SETTLE_MS);

// A thread the main thread starts afterwards begins at the main thread's value, until a sweep.
const sweeps = favourCallThread(9);
const startedAt = Date.now();
const second = await idleWorker();
const newcomers = threads().filter((t) => !before.includes(t) && isNode(t));
const atStart = newcomers.map(niceOf);
while (newcomers.some((t) => niceOf(t) < 9) && Date.now() - startedAt < SWEEP_INTERVAL_MS * 5) await new Promise((r) => setTimeout(r, 50));
console.log(JSON.stringify({
  noted, early, lowered, again, afterLowering, atStart, newcomersLater: newcomers.map(niceOf), mainAtEnd: niceOf(process.pid), sweptLowered: sweeps.lowered(),
}));
sweeps.stop();
await Promise.all([first.terminate(), second.terminate(), source.close()]);
await dispose();
`;

describe('favouring the call thread', () => {
  it.runIf(process.platform === 'linux')("lowers Node's helper threads, not the main one nor native ones, once they have kept a helper's name for a moment; a sweep catches threads started later", () => {
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD], {
      encoding: 'utf8',
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
    });
    const r = JSON.parse(out.trim().split('\n').pop()!) as {
      noted: number;
      early: number;
      lowered: number;
      again: number;
      afterLowering: { main: number; helpers: number[]; native: [string, number][] };
      atStart: number[];
      newcomersLater: number[];
      mainAtEnd: number;
      sweptLowered: number;
    };
    // Node's own helpers (V8 platform, libuv) and the worker thread's: several threads.
    expect(r.afterLowering.helpers.length).toBeGreaterThanOrEqual(3);
    expect(r.noted).toBe(0);
    expect(r.early).toBe(0);
    expect(r.lowered).toBe(r.afterLowering.helpers.length);
    expect(r.afterLowering.helpers.every((n) => n === 7)).toBe(true);
    expect(r.afterLowering.main).toBe(0);
    // The native library's threads carry audio: left at the process's own priority.
    expect(r.afterLowering.native.length).toBeGreaterThan(0);
    expect(r.afterLowering.native.every(([, nice]) => nice === 0)).toBe(true);
    expect(r.again).toBe(0); // already there: nothing to do
    // The later worker was started by the main thread (nice 0) and then swept to 9, like the rest.
    expect(r.atStart.length).toBeGreaterThan(0);
    expect(r.newcomersLater.every((n) => n === 9)).toBe(true);
    expect(r.sweptLowered).toBeGreaterThanOrEqual(r.afterLowering.helpers.length + r.newcomersLater.length);
    expect(r.mainAtEnd).toBe(0);
  });

  it('does nothing when turned off', async () => {
    const { favourCallThread } = await import('../../agent/thread-priority.js');
    const off = favourCallThread(0);
    expect(off.lowered()).toBe(0);
    off.stop();
  });
});
