import { describe, expect, it } from 'vitest';
import { type CpuClock, StallProbe, threadCpuClock } from '../../agent/stall-probe.js';

/**
 * Block the loop by spinning for `ms`, from a timer callback: `ms` of wall time, or `ms` on a CPU
 * by this thread's own clock (schedstat; other test files run on other threads of this process).
 * On a loaded machine a wall-clock spin may get little CPU (the rest is run-queue time), so a test
 * of the on-CPU split spins by CPU time: the stall is then at least `ms` long, and about `ms` on a CPU.
 */
function spinSoon(ms: number, by: 'wall' | 'cpu' = 'wall'): Promise<void> {
  return new Promise((resolve) =>
    setTimeout(() => {
      const clock = by === 'cpu' ? threadCpuClock() : undefined;
      const spent = clock ? () => clock.read()[0] : () => performance.now();
      const until = spent() + ms;
      while (spent() < until) {
        // spin: this is the stall the probe must see
      }
      clock?.close();
      resolve();
    }, 5),
  );
}

/** Block the loop off the CPU: a synchronous wait, as on a lock another thread holds. */
function sleepSyncSoon(ms: number): Promise<void> {
  return new Promise((resolve) =>
    setTimeout(() => {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
      resolve();
    }, 5),
  );
}

/** Wait for `ms` without blocking (the loop idles). */
const idle = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

describe('stall probe', () => {
  for (const cpu of ['process', 'thread'] satisfies CpuClock[]) {
    it(`sees a 40 ms spin as a stall spent on a CPU (${cpu} clock)`, async () => {
      const probe = new StallProbe({ cpu });
      probe.start();
      await idle(30);
      await spinSoon(40, 'cpu');
      await idle(10);
      const stats = probe.stop();
      expect(stats.maxStallMs).toBeGreaterThanOrEqual(35);
      // On a CPU for most of it (the process's other threads may take a little of the 40 ms).
      expect(stats.maxStallOnCpuMs).toBeGreaterThan(20);
      expect(stats.maxStallOnCpuMs).toBeLessThanOrEqual(stats.maxStallMs);
      expect(stats.ticks).toBeGreaterThan(2); // it ticks (a starved host may run few of its 1 ms timers)
    });
  }

  it('splits the largest stall into on a CPU, waiting for one, and blocked (thread clock)', async () => {
    const probe = new StallProbe({ cpu: 'thread' });
    probe.start();
    await idle(20);
    await sleepSyncSoon(60);
    await idle(10);
    const stats = probe.stop();
    const largest = stats.largestStall!;
    expect(largest.ms).toBe(stats.maxStallMs);
    expect(largest.onCpuMs + largest.runQueueMs + largest.blockedMs).toBeCloseTo(largest.ms, 0);
    // Asleep in a system call for most of it: blocked, not on a CPU nor the host's doing.
    expect(largest.blockedMs).toBeGreaterThan(40);
    expect(largest.onCpuMs).toBeLessThan(15);
  });

  it('has no breakdown with the process clock, which cannot tell run-queue time', async () => {
    const probe = new StallProbe({ cpu: 'process' });
    probe.start();
    await spinSoon(10);
    expect(probe.stop().largestStall).toBeUndefined();
  });

  it('reports the largest stall inside a window apart from the ones outside it', async () => {
    const probe = new StallProbe({ cpu: 'thread' });
    probe.start();
    // Outside any window, and far longer than the one inside: a loaded machine stretches a 25 ms
    // spin (run-queue time), but not past this one.
    await spinSoon(150, 'cpu');
    await idle(10); // a probe tick ends that stall before the window opens (a stall open at its start counts in it)
    const endHold = probe.window('onHold');
    await idle(10);
    await spinSoon(25);
    await idle(10);
    endHold();
    probe.window('quiet')(); // opened and closed at once: nothing inside
    await idle(10);
    const stats = probe.stop();
    expect(stats.maxStallMs).toBeGreaterThanOrEqual(145);
    const onHold = stats.windows.onHold!;
    expect(onHold.windows).toBe(1);
    expect(onHold.maxStallMs).toBeGreaterThanOrEqual(20);
    expect(onHold.maxStallMs).toBeLessThan(stats.maxStallMs);
    expect(onHold.largestStall?.ms).toBe(onHold.maxStallMs);
    expect(stats.windows.quiet).toEqual({ windows: 1, maxStallMs: 0 });
  });
});

describe('stall probe with a longer period', () => {
  it('still sees a 40 ms spin whole at a 5 ms period, and ticks about a fifth as often', async () => {
    const probe = new StallProbe({ cpu: 'thread', periodMs: 5 });
    probe.start();
    await idle(30);
    await spinSoon(40);
    await idle(30);
    const stats = probe.stop();
    expect(stats.periodMs).toBe(5);
    // Never flatters: the stall is at least the spin less the 1 ms floor (a loaded machine may
    // stretch it, not shrink it).
    expect(stats.maxStallMs).toBeGreaterThanOrEqual(39);
    // ~100 ms at one tick per 5 ms; a 1 ms probe would tick ~100 times.
    expect(stats.ticks).toBeLessThan(40);
  });

  it('refuses a period that is not a positive whole number of milliseconds', () => {
    expect(() => new StallProbe({ periodMs: 0 })).toThrow(/periodMs must be a positive integer, got 0/);
    expect(() => new StallProbe({ periodMs: 2.5 })).toThrow(/periodMs/);
  });
});
