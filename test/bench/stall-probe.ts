/**
 * How long the event loop is blocked, measured the same way by every benchmark.
 *
 * A 1 ms probe timer. For each gap between two ticks, the stall is the time the main thread was
 * *running* in it (its on-CPU time from Linux schedstat), minus the 1 ms period: our blocking work
 * and garbage collection, but not the time the OS gave the CPU to other processes. On these shared
 * two-core machines an idle Node process shows wall-clock gaps of several ms from preemption
 * alone, which says nothing about the code under test; the wall-clock figures are kept apart.
 * GC pauses inside a gap are reported apart too (`maxStallExGcMs`: our code's own blocking).
 *
 * Per-tick stalls go into a fixed histogram (0.1 ms buckets), so the probe itself makes no
 * garbage: its own allocations would cause the GC pauses being measured.
 */
import { existsSync, openSync, readSync } from 'node:fs';
import { PerformanceObserver, performance } from 'node:perf_hooks';

export interface StallStats {
  /** Longest on-CPU stall (ms). */
  maxStallMs: number;
  /** 99th percentile of the per-tick on-CPU stalls (ms). */
  p99StallMs: number;
  /** maxStallMs less the GC pauses inside it: the code's own blocking. */
  maxStallExGcMs: number;
  /** Longest raw wall-clock gap beyond the period, preemption included. */
  maxWallStallMs: number;
  p99WallStallMs: number;
  /** Longest GC pause seen. */
  maxGcMs: number;
  /** Probe ticks measured. */
  ticks: number;
}

const BUCKET_MS = 0.1;
const BUCKETS = 20_000; // up to 2 s; longer stalls land in the last bucket (and in the max)

class Histogram {
  private readonly counts = new Uint32Array(BUCKETS);
  total = 0;

  add(ms: number): void {
    this.counts[Math.min(BUCKETS - 1, Math.max(0, Math.floor(ms / BUCKET_MS)))]! += 1;
    this.total += 1;
  }

  quantile(q: number): number {
    if (this.total === 0) return 0;
    const rank = Math.ceil(q * this.total);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return (i + 1) * BUCKET_MS; // the bucket's upper edge: never flatters
    }
    return BUCKETS * BUCKET_MS;
  }
}

const SCHEDSTAT = '/proc/thread-self/schedstat';
// Opened once and re-read in place: readFileSync would allocate a 64 KiB buffer per tick (the
// file reports size 0). /proc/thread-self resolves when opened, on the main thread: the thread measured.
const schedstatFd = existsSync(SCHEDSTAT) ? openSync(SCHEDSTAT, 'r') : undefined;
const schedstatBuf = Buffer.alloc(64);

/** On-CPU time of the main thread (Linux schedstat); elsewhere process CPU time, an upper bound. */
function mainThreadCpuMs(): number {
  if (schedstatFd === undefined) {
    const { user, system } = process.cpuUsage();
    return (user + system) / 1000;
  }
  const n = readSync(schedstatFd, schedstatBuf, 0, schedstatBuf.length, 0);
  let ns = 0;
  for (let i = 0; i < n; i++) {
    const digit = schedstatBuf[i]! - 48;
    if (digit < 0 || digit > 9) break;
    ns = ns * 10 + digit;
  }
  return ns / 1e6;
}

export class StallProbe {
  private timer: NodeJS.Timeout | undefined;
  private lastWall = 0;
  private lastCpuMs = 0;
  private readonly onCpu = new Histogram();
  private readonly wall = new Histogram();
  private maxWallStallMs = 0;
  /** Gaps with a stall over 1 ms: [start, end, stall]; few, so GC pauses can be matched to them. */
  private readonly longGaps: [number, number, number][] = [];
  private readonly gcs: [number, number][] = [];
  private readonly gc = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) this.gcs.push([entry.startTime, entry.duration]);
  });

  start(): void {
    this.gc.observe({ entryTypes: ['gc'] });
    this.lastWall = performance.now();
    this.lastCpuMs = mainThreadCpuMs();
    this.timer = setInterval(() => this.tick(), 1);
  }

  stop(): StallStats {
    clearInterval(this.timer);
    this.tick(); // the gap still open at the end counts too
    this.gc.disconnect();
    let maxStallMs = 0;
    let maxStallExGcMs = 0;
    for (const [start, end, stall] of this.longGaps) {
      let gcInGap = 0;
      for (const [gcStart, gcDuration] of this.gcs) {
        gcInGap += Math.max(0, Math.min(end, gcStart + gcDuration) - Math.max(start, gcStart));
      }
      maxStallMs = Math.max(maxStallMs, stall);
      maxStallExGcMs = Math.max(maxStallExGcMs, stall - gcInGap);
    }
    const round = (n: number) => Math.round(n * 100) / 100;
    return {
      maxStallMs: round(maxStallMs),
      p99StallMs: round(Math.min(maxStallMs, this.onCpu.quantile(0.99))),
      maxStallExGcMs: round(Math.max(0, maxStallExGcMs)),
      maxWallStallMs: round(this.maxWallStallMs),
      p99WallStallMs: round(Math.min(this.maxWallStallMs, this.wall.quantile(0.99))),
      maxGcMs: round(this.gcs.reduce((m, [, d]) => Math.max(m, d), 0)),
      ticks: this.onCpu.total,
    };
  }

  private tick(): void {
    const wall = performance.now();
    const cpu = mainThreadCpuMs();
    const wallGap = wall - this.lastWall;
    const wallStall = Math.max(0, wallGap - 1);
    const stall = Math.max(0, Math.min(wallGap, cpu - this.lastCpuMs) - 1);
    this.wall.add(wallStall);
    this.onCpu.add(stall);
    this.maxWallStallMs = Math.max(this.maxWallStallMs, wallStall);
    if (stall > 1) this.longGaps.push([this.lastWall, wall, stall]);
    this.lastWall = wall;
    this.lastCpuMs = cpu;
  }
}
