/**
 * How job processes run their V8 heap. Audio frames flow through a job's event loop, and a
 * garbage-collection pause is a stall like any other (issue 3 measured them in `npm run
 * bench:summary`):
 *
 * - `--no-memory-reducer`: V8's memory reducer runs full mark-compact collections when a process
 *   allocates slowly, to hand memory back. A call is exactly that (mostly waiting between turns), and
 *   those collections paused the loop for 6-28 ms. A job process lives for one call, so holding its
 *   heap at its high-water mark until the call ends costs little.
 * - `--expose-gc`: lets the prewarm collect the garbage of loading the agent code while the process
 *   is idle, instead of the first scavenges of a call copying it (up to 10 ms each).
 *
 * The agents runtime forks job processes with the worker's `process.execArgv`, so the worker adds
 * these flags to its own execArgv before it starts (agent/main.ts).
 */
export const JOB_PROCESS_FLAGS = ['--no-memory-reducer', '--expose-gc'] as const;

/** Add the job flags to what forked job processes inherit (the worker's main process keeps its own). */
export function applyJobProcessFlags(execArgv: string[] = process.execArgv): void {
  for (const flag of JOB_PROCESS_FLAGS) if (!execArgv.includes(flag)) execArgv.push(flag);
}

/** True when this process runs with the job flags (benchmarks check they measure what production runs). */
export function hasJobProcessFlags(execArgv: readonly string[] = process.execArgv): boolean {
  return JOB_PROCESS_FLAGS.every((flag) => execArgv.includes(flag));
}

/**
 * Collect the start-up garbage now, while no call is flowing (a full collection takes 10-30 ms here).
 * Does nothing in a process started without `--expose-gc`.
 */
export function settleHeap(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
}
