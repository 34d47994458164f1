/**
 * The retry queue between the store's write methods and the database. One FIFO for all
 * transfers (so each transfer's writes apply in call order), drained in batches: one transaction
 * per batch, which is also what makes a busy database fast (group commit).
 *
 * A failed attempt never reaches the caller: the batch stays at the head and is retried with
 * exponential backoff, and callers' promises resolve as `queued`. Only a write the database
 * rejects as such (a constraint or type error) is taken out, and then it is logged whole.
 */
import { classifyError } from './errors.js';
import { transferIdOf, type WriteOp, type WriteResult } from './types.js';

/** The logger surface the store uses; a pino logger (agent/log.ts) fits. */
export interface StoreLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): StoreLogger;
}

/** How a write call ended: in the database, waiting for a retry, or refused for good (logged). */
export type WriteOutcome = 'stored' | 'queued' | 'rejected';

export interface RetryPolicy {
  /** First delay after a failed attempt. */
  baseMs: number;
  /** Delays double up to this cap. */
  maxMs: number;
}

export interface WriteQueueOptions {
  write: (ops: WriteOp[]) => Promise<WriteResult>;
  log: StoreLogger;
  retry?: Partial<RetryPolicy>;
  /** Writes per transaction. */
  maxBatch?: number;
  /** A caller waits at most this long for an attempt before its write counts as queued. */
  ackTimeoutMs?: number;
  /** Writes left the queue for good: stored, or rejected by the database (and logged). */
  onDone?: (ops: WriteOp[]) => void;
  /** An attempt failed and its writes stay queued; `failures` counts consecutive failed attempts. */
  onFailure?: (failures: number) => void;
  /** The first attempt after a run of failures went through. */
  onRecovered?: () => void;
}

export interface WriteQueueStats {
  /** Writes waiting (including the batch in flight). */
  pending: number;
  stored: number;
  failedAttempts: number;
  /** Writes the database refused as such; each was logged whole. */
  rejected: number;
}

interface Entry {
  op: WriteOp;
  settle: ((outcome: WriteOutcome) => void) | undefined;
  /** When it was queued (ms since the epoch). */
  since: number;
}

const DEFAULT_RETRY: RetryPolicy = { baseMs: 250, maxMs: 30_000 };
/** Queue lengths at which to say that an outage is piling up writes (they are all kept). */
const GROWTH_WARNINGS = [1_000, 10_000, 100_000, 1_000_000];
/** While failing, repeat the warning at most this often. */
const OUTAGE_LOG_INTERVAL_MS = 30_000;

export class WriteQueue {
  private readonly entries: Entry[] = [];
  /** Keys of the queued writes, so that a write handed in twice (a replay) is noticed. */
  private readonly keys = new Set<string>();
  private readonly retry: RetryPolicy;
  private readonly maxBatch: number;
  private readonly ackTimeoutMs: number;
  private running = false;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Consecutive failed attempts; > 0 means the database is currently failing. */
  private failureCount = 0;
  private outageStartedAt = 0;
  private lastOutageLogAt = 0;
  /** After a batch failed for a reason of its own, the next N writes go one by one to find it. */
  private isolate = 0;
  private growthWarned = 0;
  private waiters: (() => void)[] = [];
  private flushDeadline = 0;
  private stopped = false;
  /** The attempt in flight has taken longer than `ackTimeoutMs`. */
  private slow = false;
  private readonly counters = { stored: 0, failedAttempts: 0, rejected: 0 };

  constructor(private readonly opts: WriteQueueOptions) {
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.maxBatch = opts.maxBatch ?? 256;
    this.ackTimeoutMs = opts.ackTimeoutMs ?? 1_000;
  }

  get length(): number {
    return this.entries.length;
  }

  stats(): WriteQueueStats {
    return { pending: this.entries.length, ...this.counters };
  }

  /** Consecutive failed attempts: 0 while the database takes writes. */
  get failures(): number {
    return this.failureCount;
  }

  /** When the oldest queued write was queued, or undefined when none is. */
  oldestSince(): number | undefined {
    return this.entries[0]?.since;
  }

  /** Whether a write with this key is queued. */
  has(key: string): boolean {
    return this.keys.has(key);
  }

  /** The remaining writes, oldest first (for the spool, and the last log line). */
  pendingOps(): WriteOp[] {
    return this.entries.map((e) => e.op);
  }

  enqueue(op: WriteOp): Promise<WriteOutcome> {
    return new Promise<WriteOutcome>((resolve) => {
      const entry: Entry = { op, settle: resolve, since: Date.now() };
      this.entries.push(entry);
      this.keys.add(op.key);
      // during an outage or a slow attempt there is no point in waiting: it is queued
      if (this.failureCount > 0 || this.slow) settle(entry, 'queued');
      this.warnOnGrowth();
      this.kick();
    });
  }

  /**
   * Write everything now, retrying (with backoff) until `timeoutMs` has passed. Resolves with the
   * number of writes still pending; they stay queued.
   */
  async flush(timeoutMs: number): Promise<number> {
    if (this.entries.length === 0) return 0;
    const deadline = Date.now() + Math.max(0, timeoutMs);
    this.flushDeadline = Math.max(this.flushDeadline, deadline);
    if (this.retryTimer !== undefined) {
      // try once more right now instead of waiting out the backoff
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    this.kick();
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve();
      };
      const waiter = (): void => {
        if (this.entries.length === 0) done();
      };
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      this.waiters.push(waiter);
      waiter();
    });
    if (Date.now() >= this.flushDeadline) this.flushDeadline = 0;
    return this.entries.length;
  }

  /** Stop retrying; what is left stays in `pendingOps()`. */
  stop(): void {
    this.stopped = true;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.flushDeadline = 0;
    for (const entry of this.entries) settle(entry, 'queued');
  }

  private kick(): void {
    if (!this.running && !this.stopped && this.retryTimer === undefined && this.entries.length > 0) void this.run();
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while (this.entries.length > 0 && this.retryTimer === undefined && !this.stopped) {
        // Yield a turn first: the callers just released by the last batch get to enqueue their
        // next writes (bigger batches), and their work and the next batch's hand-off to the
        // database do not add up into one long slice of the event loop.
        await new Promise<void>((resolve) => setImmediate(resolve));
        await this.attempt();
      }
    } finally {
      this.running = false;
      this.notifyWaiters();
    }
  }

  private async attempt(): Promise<void> {
    const size = this.isolate > 0 ? 1 : Math.min(this.maxBatch, this.entries.length);
    const batch = this.entries.slice(0, size);
    // a slow database must not hold callers: after a while their writes count as queued
    const ackTimer = setTimeout(() => {
      this.slow = true;
      for (const entry of this.entries) settle(entry, 'queued');
    }, this.ackTimeoutMs);
    try {
      const result = await this.opts.write(batch.map((e) => e.op));
      // only this loop removes entries, so the batch is still at the head
      this.entries.splice(0, size);
      for (const entry of batch) this.keys.delete(entry.op.key);
      if (this.isolate > 0) this.isolate -= size;
      this.counters.stored += size;
      for (const entry of batch) settle(entry, 'stored');
      if (this.failureCount > 0) this.recovered();
      if (this.entries.length === 0) this.growthWarned = 0;
      if (result.unmatched.length > 0) this.warnUnmatched(batch, result.unmatched);
      this.notify(() => this.opts.onDone?.(batch.map((e) => e.op)));
    } catch (err) {
      this.counters.failedAttempts++;
      this.failed(batch, err);
    } finally {
      clearTimeout(ackTimer);
      this.slow = false;
      this.notifyWaiters();
    }
  }

  private failed(batch: Entry[], err: unknown): void {
    if (classifyError(err) === 'permanent') {
      if (batch.length > 1) {
        // something in this batch can never be written: retry its writes one by one
        this.isolate = batch.length;
        return;
      }
      const [entry] = batch;
      if (entry === undefined) return;
      this.entries.shift();
      this.keys.delete(entry.op.key);
      if (this.isolate > 0) this.isolate--;
      this.counters.rejected++;
      this.opts.log
        .child({ transferId: transferIdOf(entry.op) })
        .error({ err, record: entry.op }, 'transfer record rejected by the database; the record follows in full');
      settle(entry, 'rejected');
      this.notify(() => this.opts.onDone?.([entry.op]));
      return;
    }

    this.failureCount++;
    if (this.stopped) return;
    const now = Date.now();
    if (this.failureCount === 1) {
      this.outageStartedAt = now;
      this.lastOutageLogAt = now;
      this.opts.log.warn(
        { err, pending: this.entries.length },
        'transfer records could not be written; keeping them queued and retrying',
      );
    } else if (now - this.lastOutageLogAt >= OUTAGE_LOG_INTERVAL_MS) {
      this.lastOutageLogAt = now;
      this.opts.log.warn(
        { err, pending: this.entries.length, failedAttempts: this.failureCount, sinceMs: now - this.outageStartedAt },
        'transfer records still cannot be written; retrying',
      );
    }
    for (const entry of this.entries) settle(entry, 'queued');
    this.notify(() => this.opts.onFailure?.(this.failureCount));

    let delay = Math.min(this.retry.maxMs, this.retry.baseMs * 2 ** Math.min(this.failureCount - 1, 30));
    delay = delay * (0.8 + Math.random() * 0.4); // jitter: many workers should not retry in step
    if (this.flushDeadline > now) delay = Math.min(delay, this.flushDeadline - now);
    const timer = setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, delay);
    // the queue alone must not keep a finished process alive: shutdown calls close(), which flushes
    timer.unref();
    this.retryTimer = timer;
  }

  private recovered(): void {
    this.opts.log.info(
      { failedAttempts: this.failureCount, outageMs: Date.now() - this.outageStartedAt, pending: this.entries.length },
      'transfer records are being written again',
    );
    this.failureCount = 0;
    this.notify(() => this.opts.onRecovered?.());
  }

  private warnUnmatched(batch: Entry[], keys: string[]): void {
    const unmatched = new Set(keys);
    for (const { op } of batch) {
      if (!unmatched.has(op.key)) continue;
      this.opts.log
        .child({ transferId: transferIdOf(op) })
        .warn({ record: op }, 'transfer record update matched no transfer (was it created?)');
    }
  }

  private warnOnGrowth(): void {
    const next = GROWTH_WARNINGS[this.growthWarned];
    if (next !== undefined && this.entries.length >= next) {
      this.growthWarned++;
      this.opts.log.warn(
        { pending: this.entries.length },
        'transfer record queue is long: the database is slow or unavailable; nothing is dropped',
      );
    }
  }

  /** Runs an observer; its failure is logged, never taken for a failed write (which would be retried). */
  private notify(observer: () => void): void {
    try {
      observer();
    } catch (err) {
      this.opts.log.error({ err }, 'transfer record queue observer failed');
    }
  }

  private notifyWaiters(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

function settle(entry: Entry, outcome: WriteOutcome): void {
  const resolve = entry.settle;
  if (resolve === undefined) return;
  entry.settle = undefined;
  resolve(outcome);
}
