/**
 * How long the event loop is blocked, measured the same way by every benchmark and, with
 * JOB_STALL_PROBE, inside each call's job process.
 *
 * A 1 ms probe timer. For each gap between two ticks, the stall is the time the loop was *busy*
 * in it (running callbacks, or collecting garbage), beyond the 1 ms period: the gap less the time
 * the loop spent waiting for events (`performance.nodeTiming.idleTime`). That is what our code
 * costs the audio frames queued behind it. What it leaves out is the time the OS did not run an
 * idle loop when its timer was due: on these shared two-core machines an idle Node process shows
 * wall-clock gaps of 4 to 13 ms from that alone, more than the targets being checked. The raw
 * wall-clock figures are reported too (`maxWallStallMs`, `p99WallStallMs`). (Linux's per-thread
 * schedstat cannot time 1 ms ticks: it lags a running thread by up to a scheduler tick. It can tell
 * whether a long stall was spent on a CPU; see `CpuClock`.)
 * GC pauses inside a gap are reported apart (`maxStallExGcMs`), and so is the part of a stall the
 * process spent on a CPU (`maxStallOnCpuMs`, from its CPU time across the gap).
 *
 * Per-tick stalls go into fixed histograms (0.1 ms buckets), so the probe itself makes almost no
 * garbage (one small object a tick, from process.cpuUsage()): its own allocations would cause the
 * GC pauses being measured. `pooledP99` pools ticks of several runs, so that a p99 rests on
 * enough samples.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { PerformanceObserver, constants, performance } from 'node:perf_hooks';

export interface StallStats {
  /** Longest busy stretch beyond the 1 ms period (ms). */
  maxStallMs: number;
  /** 99th percentile of the per-tick stalls (ms). */
  p99StallMs: number;
  /** The same by the wall clock: what the OS's scheduling adds on top. */
  maxWallStallMs: number;
  p99WallStallMs: number;
  /** maxStallMs less the GC pauses inside it. */
  maxStallExGcMs: number;
  /**
   * The largest stall counting only time spent on a CPU during it, by the probe's `CpuClock`
   * (never flattering: the process clock counts every thread, the thread clock adds its lag). A
   * loop that is "busy" while the host does not run it (a shared VM's steal, other tenants, an
   * overloaded machine) shows a large maxStallMs and a small value here.
   */
  maxStallOnCpuMs: number;
  /** The same less the GC pauses inside it: our code's own blocking. */
  maxStallOnCpuExGcMs: number;
  /** Longest GC pause seen. */
  maxGcMs: number;
  /** Longest pause of each kind of collection (minor = scavenge, major = mark-compact, ...). */
  maxGcMsByKind: Record<string, number>;
  /** Probe ticks measured. */
  ticks: number;
}

/** `PerformanceEntry.detail.kind` of a gc entry. */
const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

const BUCKET_MS = 0.1;
const BUCKETS = 20_000; // up to 2 s; longer stalls land in the last bucket (and in the max)

export class Histogram {
  private readonly counts = new Uint32Array(BUCKETS);
  total = 0;

  add(ms: number): void {
    this.counts[Math.min(BUCKETS - 1, Math.max(0, Math.floor(ms / BUCKET_MS)))]! += 1;
    this.total += 1;
  }

  merge(other: Histogram): void {
    for (let i = 0; i < BUCKETS; i++) this.counts[i]! += other.counts[i]!;
    this.total += other.total;
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

/**
 * Which CPU time tells a stall on a CPU from one the host caused:
 * - `process`: every thread of the process (getrusage): an over-estimate, never flattering;
 * - `thread`: the probing thread's own (Linux `/proc/thread-self/schedstat`, updated at each
 *   scheduler tick, so up to one tick behind; that tick is added back). For a job process, whose
 *   native WebRTC threads would swamp the process figure.
 */
export type CpuClock = 'process' | 'thread';

/** One scheduler tick at HZ=250, the most the thread clock can lag behind. */
const THREAD_CLOCK_LAG_MS = 4;

export class StallProbe {
  private timer: NodeJS.Timeout | undefined;
  private lastWall = 0;
  private lastIdle = 0;
  readonly histogram = new Histogram();
  readonly wallHistogram = new Histogram();
  private maxStallMs = 0;
  private maxWallStallMs = 0;
  private lastCpuMs = 0;
  /** Gaps with a stall over 1 ms: [start, end, stall, process CPU ms in the gap]; few, so GC pauses can be matched to them. */
  private readonly longGaps: [number, number, number, number][] = [];
  private readonly gcs: [number, number][] = [];
  private readonly gcByKind: Record<string, number> = {};
  private readonly gc = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      this.gcs.push([entry.startTime, entry.duration]);
      const kind = GC_KINDS[(entry as { detail?: { kind?: number } }).detail?.kind ?? 0] ?? 'other';
      this.gcByKind[kind] = Math.max(this.gcByKind[kind] ?? 0, round(entry.duration));
    }
  });

  private readonly cpuMs: () => number;
  private readonly cpuLagMs: number;
  private readonly closeClock: (() => void) | undefined;

  constructor(opts: { cpu?: CpuClock } = {}) {
    const thread = opts.cpu === 'thread' ? threadCpuClock() : undefined;
    this.cpuMs = thread?.read ?? processCpuMs;
    this.closeClock = thread?.close;
    this.cpuLagMs = thread ? THREAD_CLOCK_LAG_MS : 0;
  }

  start(): void {
    this.gc.observe({ entryTypes: ['gc'] });
    this.lastWall = performance.now();
    this.lastIdle = performance.nodeTiming.idleTime;
    this.lastCpuMs = this.cpuMs();
    this.timer = setInterval(() => this.tick(), 1);
  }

  stop(): StallStats {
    clearInterval(this.timer);
    this.tick(); // the gap still open at the end counts too
    this.gc.disconnect();
    this.closeClock?.();
    let maxStallExGcMs = 0;
    let maxStallOnCpuMs = 0;
    let maxStallOnCpuExGcMs = 0;
    for (const [start, end, stall, cpu] of this.longGaps) {
      let gcInGap = 0;
      for (const [gcStart, gcDuration] of this.gcs) {
        gcInGap += Math.max(0, Math.min(end, gcStart + gcDuration) - Math.max(start, gcStart));
      }
      maxStallExGcMs = Math.max(maxStallExGcMs, stall - gcInGap);
      const onCpu = Math.min(stall, cpu + this.cpuLagMs);
      maxStallOnCpuMs = Math.max(maxStallOnCpuMs, onCpu);
      maxStallOnCpuExGcMs = Math.max(maxStallOnCpuExGcMs, onCpu - gcInGap);
    }
    return {
      maxStallMs: round(this.maxStallMs),
      p99StallMs: round(Math.min(this.maxStallMs, this.histogram.quantile(0.99))),
      maxWallStallMs: round(this.maxWallStallMs),
      p99WallStallMs: round(Math.min(this.maxWallStallMs, this.wallHistogram.quantile(0.99))),
      maxStallExGcMs: round(Math.max(0, maxStallExGcMs)),
      maxStallOnCpuMs: round(maxStallOnCpuMs),
      maxStallOnCpuExGcMs: round(Math.max(0, maxStallOnCpuExGcMs)),
      maxGcMs: round(this.gcs.reduce((m, [, d]) => Math.max(m, d), 0)),
      maxGcMsByKind: { ...this.gcByKind },
      ticks: this.histogram.total,
    };
  }

  private tick(): void {
    const wall = performance.now();
    const idle = performance.nodeTiming.idleTime;
    const cpu = this.cpuMs();
    const gap = wall - this.lastWall;
    const busy = gap - (idle - this.lastIdle);
    const stall = Math.max(0, Math.min(gap, busy) - 1);
    const wallStall = Math.max(0, gap - 1);
    this.histogram.add(stall);
    this.wallHistogram.add(wallStall);
    this.maxStallMs = Math.max(this.maxStallMs, stall);
    this.maxWallStallMs = Math.max(this.maxWallStallMs, wallStall);
    if (stall > 1) this.longGaps.push([this.lastWall, wall, stall, cpu - this.lastCpuMs]);
    this.lastWall = wall;
    this.lastIdle = idle;
    this.lastCpuMs = cpu;
  }
}

/** p99 over the ticks of several probes together (busy stalls, or `wall`). */
export function pooledP99(probes: StallProbe[], which: 'busy' | 'wall' = 'busy'): number {
  const pooled = new Histogram();
  for (const p of probes) pooled.merge(which === 'busy' ? p.histogram : p.wallHistogram);
  return round(pooled.quantile(0.99));
}

/** CPU time of the whole process so far (user + system, every thread), in ms. */
function processCpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1_000;
}

/** The calling thread's CPU time in ms, read without allocating; undefined where there is no schedstat. */
function threadCpuClock(): { read: () => number; close: () => void } | undefined {
  let fd: number;
  try {
    fd = openSync('/proc/thread-self/schedstat', 'r');
  } catch {
    return undefined;
  }
  const buf = Buffer.alloc(64);
  const read = () => {
    const n = readSync(fd, buf, 0, buf.length, 0);
    let ns = 0;
    for (let i = 0; i < n; i++) {
      const c = buf[i]!;
      if (c < 48 || c > 57) break; // the first field: nanoseconds on a CPU
      ns = ns * 10 + (c - 48);
    }
    return ns / 1e6;
  };
  return { read, close: () => closeSync(fd) };
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
