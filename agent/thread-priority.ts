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
 * start are covered at once; those the call thread starts (a worker thread) are caught by the next
 * sweep. (A native thread the call thread starts is named "node" until it names itself, a matter
 * of microseconds: a sweep could catch it then, and lower it for good.) Elsewhere than Linux (no
 * /proc/self/task) this does nothing.
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
 * Lower Node's helper threads in this process (all its threads named like NODE_HELPER_THREAD but
 * the main one) to at least `nice`. Returns how many it lowered this time. Threads already at
 * `nice` or below in priority are left alone. Threads in `done` are skipped, and every thread
 * looked at is added to it (those that have ended are dropped), so that a sweep of a process
 * whose threads have not changed costs one directory listing.
 */
export function lowerHelperThreads(nice: number, done: Set<number> = new Set()): number {
  let listed: Set<number>;
  try {
    listed = new Set(readdirSync('/proc/self/task').map(Number));
  } catch {
    return 0;
  }
  for (const tid of done) if (!listed.has(tid)) done.delete(tid);
  let lowered = 0;
  for (const tid of listed) {
    // The main thread's id is the process id.
    if (tid === process.pid || !Number.isInteger(tid) || done.has(tid)) continue;
    try {
      if (NODE_HELPER_THREAD.test(readFileSync(`/proc/self/task/${tid}/comm`, 'utf8')) && getPriority(tid) < nice) {
        setPriority(tid, nice);
        lowered += 1;
      }
      done.add(tid);
    } catch {
      // The thread ended between the listing and now.
    }
  }
  return lowered;
}

/**
 * Keep this process's Node helper threads at `nice` from now on: once now, then every
 * SWEEP_INTERVAL_MS (the timer never keeps the process alive). `nice` 0 turns it off.
 * Returns a function that stops the sweeps, and how many threads each sweep has lowered so far.
 */
export function favourCallThread(nice: number): { stop: () => void; lowered: () => number } {
  if (nice <= 0) return { stop: () => undefined, lowered: () => 0 };
  const done = new Set<number>();
  let lowered = lowerHelperThreads(nice, done);
  const timer = setInterval(() => (lowered += lowerHelperThreads(nice, done)), SWEEP_INTERVAL_MS);
  timer.unref();
  return { stop: () => clearInterval(timer), lowered: () => lowered };
}
