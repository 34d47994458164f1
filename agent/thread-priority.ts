/**
 * The call thread first: every other thread of a job process runs at a lower priority.
 *
 * A job process's JavaScript thread carries the call: audio frames, the agent, the transfer. Its
 * other threads do work that can wait a few milliseconds: V8's compiler and garbage-collection
 * helpers, the database and Groq worker threads, libuv's pool, and libwebrtc's and the FFI's own
 * threads (codecs, network, signalling). When a host runs short of CPU, as when ten transfers
 * start at once on two cores, Linux shares it between all runnable threads alike, and the call
 * thread waited in the run queue for most of a second at a time (`npm run bench:e2e`; the stall
 * probe's schedstat split shows it). With the others a few nice levels down, the call thread goes
 * first, and they still get every cycle it leaves.
 *
 * Why not all the way down: the call thread sometimes waits on a helper (V8 joins its parallel
 * garbage collectors, some FFI requests wait for a libwebrtc thread). At nice 19 those helpers
 * starved and the call thread sat blocked instead; 10 kept that at zero in the same bench.
 *
 * Lowering a thread's own priority needs no privilege (Linux keeps nice values per thread). New
 * threads take their creator's value, so threads that helpers start are covered at once; those the
 * call thread starts (a room's first connection, a worker thread) are caught by the next sweep.
 * Elsewhere than Linux (no /proc/self/task) this does nothing.
 */
import { readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/** How often new threads are looked for: they appear when rooms connect and tracks are published. */
export const SWEEP_INTERVAL_MS = 1_000;

/**
 * Lower every thread of this process but the main (JavaScript) one to at least `nice`. Returns how
 * many it lowered this time. Threads already at `nice` or below in priority are left alone.
 */
export function lowerHelperThreads(nice: number): number {
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return 0;
  }
  let lowered = 0;
  for (const entry of tids) {
    const tid = Number(entry);
    // The main thread's id is the process id.
    if (tid === process.pid || !Number.isInteger(tid)) continue;
    try {
      if (getPriority(tid) < nice) {
        setPriority(tid, nice);
        lowered += 1;
      }
    } catch {
      // The thread ended between the listing and now.
    }
  }
  return lowered;
}

/**
 * Keep this process's helper threads at `nice` from now on: once now, then every
 * SWEEP_INTERVAL_MS (the timer never keeps the process alive). `nice` 0 turns it off.
 * Returns a function that stops the sweeps, and how many threads each sweep has lowered so far.
 */
export function favourCallThread(nice: number): { stop: () => void; lowered: () => number } {
  if (nice <= 0) return { stop: () => undefined, lowered: () => 0 };
  let lowered = lowerHelperThreads(nice);
  const timer = setInterval(() => (lowered += lowerHelperThreads(nice)), SWEEP_INTERVAL_MS);
  timer.unref();
  return { stop: () => clearInterval(timer), lowered: () => lowered };
}
