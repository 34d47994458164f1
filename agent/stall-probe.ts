/**
 * How long the event loop is blocked, measured the same way by every benchmark and, with
 * JOB_STALL_PROBE, inside each call's job process.
 *
 * A probe timer (1 ms unless told otherwise). For each gap between two ticks, the stall is the time
 * the loop was *busy* in it (running callbacks, or collecting garbage), beyond 1 ms: the gap less
 * the time the loop spent waiting for events (`performance.nodeTiming.idleTime`). That is what our code
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
 * garbage (two small objects a tick with the process clock, none with the thread clock): its own
 * allocations would cause the GC pauses being measured. `pooledP99` pools ticks of several runs,
 * so that a p99 rests on enough samples. With the thread clock, the largest stall is also split
 * into time on a CPU, time waiting for one, and time blocked (`largestStall`).
 *
 * The probe is not free: waking a Node thread costs ~50 µs on these machines, so a 1 ms timer
 * takes ~50 ms of CPU a second (5% of a core), a 5 ms one ~15. Inside a job process, where ten
 * calls share two cores, that load would make the stalls it measures (`periodMs: 5` there). A
 * longer period never flatters: the busy time of a gap can only add short pieces of separate work
 * to a long one, so a stall reads at most `periodMs - 1` ms too long.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { PerformanceObserver, constants, performance } from 'node:perf_hooks';

export interface StallStats {
  /** Longest busy stretch of a probe gap, beyond 1 ms (ms). */
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
  /**
   * With the `thread` clock, where the largest stall's time went: on a CPU, waiting in the run
   * queue for one (the host had no CPU free for a runnable thread), and the rest, off a CPU by the
   * thread's own doing (blocked in a system call, e.g. a synchronous wait on another thread).
   */
  largestStall?: StallBreakdown;
  /**
   * With the `thread` clock, the stall that held a CPU longest: a long piece of the call thread's
   * own work, which no share of the host makes shorter. Its `at` says when, to find what it was.
   */
  largestOnCpuStall?: StallBreakdown;
  /**
   * The largest stall inside each named window (`StallProbe.window`), e.g. while a caller is on
   * hold and hears music: what a stall there costs is audible.
   */
  windows: Record<string, { windows: number; maxStallMs: number; largestStall?: StallBreakdown }>;
  /** Longest GC pause seen. */
  maxGcMs: number;
  /** Longest pause of each kind of collection (minor = scavenge, major = mark-compact, ...). */
  maxGcMsByKind: Record<string, number>;
  /** Probe ticks measured, and the period they were due at. */
  ticks: number;
  periodMs: number;
}

/** Where one stall's time went (see `StallStats.largestStall`). */
export interface StallBreakdown {
  ms: number;
  onCpuMs: number;
  runQueueMs: number;
  blockedMs: number;
  /** When the stall ended (ms since the epoch), to match it with the log. */
  at: number;
}

/** [start, end, stall, CPU ms in the gap, run-queue ms in the gap] of a probe gap with a stall over 1 ms. */
type Gap = [number, number, number, number, number];

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
  private lastRunQueueMs = 0;
  /** Gaps with a stall over 1 ms; few, so GC pauses and windows can be matched to them. */
  private readonly longGaps: Gap[] = [];
  /** Named windows: [start, end (undefined while open)]. */
  private readonly windows = new Map<string, [number, number | undefined][]>();
  private readonly gcs: [number, number][] = [];
  private readonly gcByKind: Record<string, number> = {};
  private readonly gc = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      this.gcs.push([entry.startTime, entry.duration]);
      const kind = GC_KINDS[(entry as { detail?: { kind?: number } }).detail?.kind ?? 0] ?? 'other';
      this.gcByKind[kind] = Math.max(this.gcByKind[kind] ?? 0, round(entry.duration));
    }
  });

  /** [ms on a CPU, ms runnable but waiting for a CPU] so far; the second is 0 with the process clock. */
  private readonly clock: () => readonly [number, number];
  /** Only the thread clock tells the time spent waiting for a CPU. */
  private readonly knowsRunQueue: boolean;
  private readonly cpuLagMs: number;
  private readonly closeClock: (() => void) | undefined;
  private readonly periodMs: number;

  constructor(opts: { cpu?: CpuClock; periodMs?: number } = {}) {
    this.periodMs = opts.periodMs ?? 1;
    if (!Number.isInteger(this.periodMs) || this.periodMs < 1) throw new Error(`StallProbe periodMs must be a positive integer, got ${opts.periodMs}`);
    const thread = opts.cpu === 'thread' ? threadCpuClock() : undefined;
    this.clock = thread?.read ?? (() => [processCpuMs(), 0]);
    this.knowsRunQueue = thread !== undefined;
    this.closeClock = thread?.close;
    this.cpuLagMs = thread ? THREAD_CLOCK_LAG_MS : 0;
  }

  start(): void {
    this.gc.observe({ entryTypes: ['gc'] });
    this.lastWall = performance.now();
    this.lastIdle = performance.nodeTiming.idleTime;
    [this.lastCpuMs, this.lastRunQueueMs] = this.clock();
    this.timer = setInterval(() => this.tick(), this.periodMs);
  }

  /**
   * Open a window named `name`; its stalls are reported on their own too. Returns its end. A
   * stall that overlaps the window at all counts in it (never flattering).
   */
  window(name: string): () => void {
    const w: [number, number | undefined] = [performance.now(), undefined];
    const spans = this.windows.get(name) ?? [];
    spans.push(w);
    this.windows.set(name, spans);
    return () => {
      w[1] ??= performance.now();
    };
  }

  stop(): StallStats {
    clearInterval(this.timer);
    this.tick(); // the gap still open at the end counts too
    this.gc.disconnect();
    this.closeClock?.();
    let maxStallExGcMs = 0;
    let maxStallOnCpuMs = 0;
    let maxStallOnCpuExGcMs = 0;
    let largest: Gap | undefined;
    let longestOnCpu: Gap | undefined;
    for (const gap of this.longGaps) {
      const [start, end, stall, cpu] = gap;
      if (!largest || stall > largest[2]) largest = gap;
      if (!longestOnCpu || cpu > longestOnCpu[3]) longestOnCpu = gap;
      let gcInGap = 0;
      for (const [gcStart, gcDuration] of this.gcs) {
        gcInGap += Math.max(0, Math.min(end, gcStart + gcDuration) - Math.max(start, gcStart));
      }
      maxStallExGcMs = Math.max(maxStallExGcMs, stall - gcInGap);
      const onCpu = Math.min(stall, cpu + this.cpuLagMs);
      maxStallOnCpuMs = Math.max(maxStallOnCpuMs, onCpu);
      maxStallOnCpuExGcMs = Math.max(maxStallOnCpuExGcMs, onCpu - gcInGap);
    }
    const largestStall = largest && this.breakdown(largest);
    const largestOnCpuStall = longestOnCpu && this.breakdown(longestOnCpu);
    const now = performance.now();
    const windows: StallStats['windows'] = {};
    for (const [name, spans] of this.windows) {
      let top: Gap | undefined;
      for (const gap of this.longGaps) {
        const inside = spans.some(([from, to]) => gap[1] >= from && gap[0] <= (to ?? now));
        if (inside && (!top || gap[2] > top[2])) top = gap;
      }
      const breakdown = top && this.breakdown(top);
      windows[name] = { windows: spans.length, maxStallMs: round(top?.[2] ?? 0), ...(breakdown ? { largestStall: breakdown } : {}) };
    }
    return {
      maxStallMs: round(this.maxStallMs),
      p99StallMs: round(Math.min(this.maxStallMs, this.histogram.quantile(0.99))),
      maxWallStallMs: round(this.maxWallStallMs),
      p99WallStallMs: round(Math.min(this.maxWallStallMs, this.wallHistogram.quantile(0.99))),
      maxStallExGcMs: round(Math.max(0, maxStallExGcMs)),
      maxStallOnCpuMs: round(maxStallOnCpuMs),
      maxStallOnCpuExGcMs: round(Math.max(0, maxStallOnCpuExGcMs)),
      ...(largestStall ? { largestStall } : {}),
      ...(largestOnCpuStall ? { largestOnCpuStall } : {}),
      windows,
      maxGcMs: round(this.gcs.reduce((m, [, d]) => Math.max(m, d), 0)),
      maxGcMsByKind: { ...this.gcByKind },
      ticks: this.histogram.total,
      periodMs: this.periodMs,
    };
  }

  private breakdown([, end, ms, cpu, runQueue]: Gap): StallBreakdown | undefined {
    if (!this.knowsRunQueue) return undefined;
    const onCpuMs = Math.min(ms, cpu + this.cpuLagMs);
    const runQueueMs = Math.min(ms - onCpuMs, runQueue);
    return {
      ms: round(ms),
      onCpuMs: round(onCpuMs),
      runQueueMs: round(runQueueMs),
      blockedMs: round(Math.max(0, ms - onCpuMs - runQueueMs)),
      at: Math.round(performance.timeOrigin + end),
    };
  }

  private tick(): void {
    const wall = performance.now();
    const idle = performance.nodeTiming.idleTime;
    const [cpu, runQueue] = this.clock();
    const gap = wall - this.lastWall;
    const busy = gap - (idle - this.lastIdle);
    const stall = Math.max(0, Math.min(gap, busy) - 1);
    const wallStall = Math.max(0, gap - this.periodMs);
    this.histogram.add(stall);
    this.wallHistogram.add(wallStall);
    this.maxStallMs = Math.max(this.maxStallMs, stall);
    this.maxWallStallMs = Math.max(this.maxWallStallMs, wallStall);
    if (stall > 1) this.longGaps.push([this.lastWall, wall, stall, cpu - this.lastCpuMs, runQueue - this.lastRunQueueMs]);
    this.lastWall = wall;
    this.lastIdle = idle;
    this.lastCpuMs = cpu;
    this.lastRunQueueMs = runQueue;
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

/**
 * The calling thread's schedstat, read without allocating: [ms on a CPU, ms runnable waiting for
 * one], in one array reused by every read; undefined where there is no schedstat.
 */
export function threadCpuClock(): { read: () => readonly [number, number]; close: () => void } | undefined {
  let fd: number;
  try {
    fd = openSync('/proc/thread-self/schedstat', 'r');
  } catch {
    return undefined;
  }
  const buf = Buffer.alloc(64);
  const last: [number, number] = [0, 0];
  const read = (): readonly [number, number] => {
    const n = readSync(fd, buf, 0, buf.length, 0);
    // "<ns on a CPU> <ns waiting on a run queue> <timeslices>\n"
    let field = 0;
    let ns = 0;
    for (let i = 0; i < n && field < 2; i++) {
      const c = buf[i]!;
      if (c >= 48 && c <= 57) {
        ns = ns * 10 + (c - 48);
      } else {
        last[field] = ns / 1e6;
        field += 1;
        ns = 0;
      }
    }
    return last;
  };
  return { read, close: () => closeSync(fd) };
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
