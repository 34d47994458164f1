import { describe, expect, it } from 'vitest';
import { type CpuClock, StallProbe } from '../../agent/stall-probe.js';

/** Block the loop by spinning on the CPU for `ms`, from a timer callback. */
function spinSoon(ms: number): Promise<void> {
  return new Promise((resolve) =>
    setTimeout(() => {
      const until = performance.now() + ms;
      while (performance.now() < until) {
        // spin: this is the stall the probe must see
      }
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
      await spinSoon(40);
      await idle(10);
      const stats = probe.stop();
      expect(stats.maxStallMs).toBeGreaterThanOrEqual(35);
      // On a CPU for most of it: a loaded machine may take some of the 40 ms away.
      expect(stats.maxStallOnCpuMs).toBeGreaterThan(20);
      expect(stats.maxStallOnCpuMs).toBeLessThanOrEqual(stats.maxStallMs);
      expect(stats.ticks).toBeGreaterThan(5);
    });
  }
});
