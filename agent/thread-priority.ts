/**
 * The call thread before Node's helpers: in a job process, the threads Node.js runs beside the
 * JavaScript thread get a lower priority.
 *
 * A job process's JavaScript thread carries the call: the agent, the transfer, the frames it hands
 * to the audio source. Node's own helper threads do work that can wait: V8's compiler and garbage
 * collection helpers, libuv's pool, and the worker threads (the record database, Groq requests).
 * When a host runs short of CPU, as when ten transfers start at once on two cores, Linux shares it
 * between all runnable threads alike, and at transfer time V8's helpers compile the transfer's code
 * in every call at once: the call thread waited in the run queue for most of a second at a time
 * (`npm run bench:e2e`; the stall probe's schedstat split shows it). With the helpers a few nice
 * levels down, the call thread goes first, and they still get every cycle it leaves.
 *
 * The native threads (libwebrtc's, the FFI's) keep their priority: they carry the audio after the
 * call thread has handed it over (the source's 10 ms clock, the encoder, the network). Lowering
 * them too made the stalls a little shorter, but the callers of that bench heard gaps of up to
 * 240 ms in their hold music while the call thread was never stalled longer than its queue.
 *
 * Why not all the way down: the call thread sometimes waits on a helper (V8 joins its parallel
 * garbage collectors). At nice 19 it sat blocked on starved helpers instead of waiting to run;
 * 10 kept that at zero in the same bench.
 *
 * Lowering a thread's own priority needs no privilege (Linux keeps nice values per thread), and
 * cannot be undone without it. New threads take their creator's value, so threads that helpers
 * start are covered at once; those the call thread starts (a worker thread) are caught by a later
 * sweep. A native thread the call thread starts is named "node" too until it names itself, a matter
 * of microseconds: a thread is lowered only once it has carried a helper's name for SETTLE_MS, so
 * that a sweep that catches a native thread in those microseconds cannot lower it for good (a test
 * run once saw an audio thread at nice 10 that way). Elsewhere than Linux (no /proc/self/task)
 * this does nothing.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/** How often new threads are looked for: they appear when rooms connect and tracks are published. */
export const SWEEP_INTERVAL_MS = 1_000;

/**
 * Node's own threads by name: Node 20 leaves them all "node" (the main thread too); newer releases
 * name libuv's "libuv-worker" and V8's "V8 ..." threads. Native libraries name theirs
 * (network_thread, AudioEncoder, tokio-rt-worker, ...).
 */
export const NODE_HELPER_THREAD = /^(node|libuv|V8)/;

/**
 * How long a thread must have been named like a Node helper before it is lowered: longer than any
 * native thread takes to name itself after it starts, shorter than a sweep interval.
 */
export const SETTLE_MS = 200;

/** What the sweeps of one process remember, so that a sweep of unchanged threads costs one listing. */
export interface SweepState {
  /** Threads decided on (lowered, found lower already, or native): never looked at again. */
  done: Set<number>;
  /** Threads named like a helper, with when that was first seen: lowered once SETTLE_MS old. */
  candidates: Map<number, number>;
}

export function newSweepState(): SweepState {
  return { done: new Set(), candidates: new Map() };
}

/**
 * Lower Node's helper threads in this process (all its threads named like NODE_HELPER_THREAD but
 * the main one, once they have been so named for SETTLE_MS) to at least `nice`. Returns how many it
 * lowered this time. Threads already at `nice` or below in priority are left alone.
 */
export function lowerHelperThreads(nice: number, state: SweepState, now = Date.now()): number {
  let listed: Set<number>;
  try {
    listed = new Set(readdirSync('/proc/self/task').map(Number));
  } catch {
    return 0;
  }
  for (const tid of state.done) if (!listed.has(tid)) state.done.delete(tid);
  for (const tid of state.candidates.keys()) if (!listed.has(tid)) state.candidates.delete(tid);
  let lowered = 0;
  for (const tid of listed) {
    // The main thread's id is the process id.
    if (tid === process.pid || !Number.isInteger(tid) || state.done.has(tid)) continue;
    try {
      if (!NODE_HELPER_THREAD.test(readFileSync(`/proc/self/task/${tid}/comm`, 'utf8'))) {
        state.done.add(tid); // a native thread, by its own name
        state.candidates.delete(tid);
        continue;
      }
      const since = state.candidates.get(tid);
      if (since === undefined) state.candidates.set(tid, now);
      if (since === undefined || now - since < SETTLE_MS) continue;
      if (getPriority(tid) < nice) {
        setPriority(tid, nice);
        lowered += 1;
      }
      state.done.add(tid);
      state.candidates.delete(tid);
    } catch {
      // The thread ended between the listing and now.
    }
  }
  return lowered;
}

/**
 * Keep this process's Node helper threads at `nice` from now on: a sweep now, then every
 * SWEEP_INTERVAL_MS (the timer never keeps the process alive). `nice` 0 turns it off.
 * Returns a function that stops the sweeps, and how many threads each sweep has lowered so far.
 */
export function favourCallThread(nice: number): { stop: () => void; lowered: () => number } {
  if (nice <= 0) return { stop: () => undefined, lowered: () => 0 };
  const state = newSweepState();
  let lowered = lowerHelperThreads(nice, state);
  const timer = setInterval(() => (lowered += lowerHelperThreads(nice, state)), SWEEP_INTERVAL_MS);
  timer.unref();
  return { stop: () => clearInterval(timer), lowered: () => lowered };
}
