/**
 * The transfer record store used by the orchestrator.
 *
 * Write methods are fire-and-forget safe: each returns a promise that resolves once the write is
 * stored or queued for retry, and never rejects. Writes apply in call order. In file/:memory: mode
 * the database runs on its own thread; remote databases (Turso, sqld) are used from this thread.
 * Reads (history, recovery sweeps) are not in the call path and do reject on database errors.
 * Writes the database does not take in time also go to a spool on disk, which any store on the
 * host replays once it can write (db/spool.ts): a process may end during an outage.
 */
import { randomUUID } from 'node:crypto';
import {
  AGENT_MODES,
  TARGET_KINDS,
  TRANSFER_OUTCOMES,
  TRANSFER_PHASES,
  type TransferOutcome,
  type TransferPhase,
} from '../agent/transfer-state.js';
import { DirectBackend, ThreadBackend, type Backend } from './backend.js';
import { DEFAULT_BUSY_TIMEOUT_MS, describeTarget, resolveDatabaseTarget, resolveSpoolDir } from './config.js';
import { classifyError, errorCode, isAuthError } from './errors.js';
import { Spool, type SpoolStats } from './spool.js';
import {
  SUMMARY_SOURCES,
  type AgentBInput,
  type EventInput,
  type JsonValue,
  type NewTransfer,
  type OpenTransfersQuery,
  type SummaryInput,
  type TransferFilter,
  type TransferPage,
  type TransferRecord,
  type TransferWithEvents,
  type WriteOp,
  transferIdOf,
} from './types.js';
import {
  WriteQueue,
  type RetryPolicy,
  type StoreLogger,
  type WriteOutcome,
  type WriteQueueStats,
} from './write-queue.js';

export type { StoreLogger, WriteOutcome, WriteQueueStats, RetryPolicy } from './write-queue.js';
export type { SpoolStats } from './spool.js';
export type * from './types.js';

export interface OpenTransferStoreOptions {
  /** `file:<path>`, `:memory:`, `libsql://…`, `https://…`, `http://…`. */
  url: string;
  /** Turso / sqld token (`DATABASE_AUTH_TOKEN`). */
  authToken?: string;
  /** How long a local write waits for another process's lock. Default 5000. */
  busyTimeoutMs?: number;
  /** Default: the shared agents logger (agent/log.ts). */
  log?: StoreLogger;
  /** Retry backoff. Default 250 ms doubling to 30 s. */
  retry?: Partial<RetryPolicy>;
  /** A write call waits at most this long for its first attempt. Default 1000. */
  ackTimeoutMs?: number;
  /**
   * Where writes not stored in time wait on disk for a store that can write them (db/spool.ts);
   * false: nowhere. Default: `DATABASE_SPOOL_DIR`, else `<database file>.spool/` for a file
   * database, `data/spool/` (under the working directory) for a remote one, none for `:memory:`.
   */
  spoolDir?: string | false;
  /** A write not stored this long after it was made goes to the spool. Default 2000. */
  spoolAfterMs?: number;
  /** How often to look for spool files that other processes left. Default 30 000. */
  spoolReplayIntervalMs?: number;
}

const DEFAULT_SPOOL_AFTER_MS = 2_000;

export interface TransferStore {
  /** Where the records go (a path, `:memory:`, or the remote host; never a token). */
  readonly location: string;

  createTransfer(transfer: NewTransfer): Promise<WriteOutcome>;
  setConsultRoom(id: string, consultRoom: string, at?: number): Promise<WriteOutcome>;
  setAgentB(id: string, agentB: AgentBInput, at?: number): Promise<WriteOutcome>;
  setSummary(id: string, summary: SummaryInput, at?: number): Promise<WriteOutcome>;
  /** Appends to the timeline and moves the transfer's current phase and that phase's timestamp. */
  recordEvent(id: string, phase: TransferPhase, event?: EventInput): Promise<WriteOutcome>;
  /** Sets the outcome; the first finish wins, later ones change nothing. */
  finish(id: string, outcome: TransferOutcome, reason: string, at?: number): Promise<WriteOutcome>;
  /** Owner heartbeat: crash-recovery sweeps look for open transfers whose owner went quiet. */
  touch(id: string, opts?: { ownerWorkerId?: string; at?: number }): Promise<WriteOutcome>;

  listTransfers(filter?: TransferFilter): Promise<TransferPage>;
  getTransfer(id: string): Promise<TransferWithEvents | null>;
  listOpenTransfers(query: OpenTransfersQuery): Promise<TransferRecord[]>;

  /** Writes not yet stored. */
  pendingWrites(): number;
  stats(): WriteQueueStats;
  /** Writes this store put in its spool, and took from spool files (zeros without a spool). */
  spoolStats(): SpoolStats;
  /** The spool directory, or null when this store has none. */
  readonly spoolDir: string | null;
  /**
   * Replays spool files now (the store also does at open, every 30 s, and when its database comes
   * back). Resolves with how many writes it queued from them, once queued: `flush` stores them.
   */
  replaySpool(): Promise<number>;
  /**
   * How many spool files of this database wait on this host (0 without a spool). While there are
   * any, some records are not in the database yet: e.g. a sweep that ends transfers whose
   * heartbeat stopped should wait.
   */
  spoolBacklog(): Promise<number>;
  /**
   * Tries to store everything within `timeoutMs` (default 5000) and resolves with how many writes
   * are left. Those are put in the spool, logged whole (one JSON line each) and stay queued for
   * retry: if the process ends now, another store writes them.
   */
  flush(timeoutMs?: number): Promise<number>;
  /**
   * Flushes, stops, and leaves what it could not store in a sealed spool file, which any store on
   * this database replays (and logs each of those writes whole, unless an earlier flush did).
   */
  close(timeoutMs?: number): Promise<void>;
}

export async function openTransferStore(opts: OpenTransferStoreOptions): Promise<TransferStore> {
  const target = resolveDatabaseTarget(opts.url, opts.authToken);
  const baseLog = opts.log ?? (await defaultLogger());
  const log = baseLog.child({ component: 'transfer-store' });
  const backendOpts = {
    target,
    busyTimeoutMs: opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS,
    ...(opts.authToken !== undefined ? { authToken: opts.authToken } : {}),
  };
  const backend: Backend = target.kind === 'remote' ? new DirectBackend(backendOpts) : new ThreadBackend(backendOpts);
  const location = describeTarget(target);

  try {
    for (const warning of await backend.open()) log.warn({ location }, warning);
  } catch (err) {
    // An unreachable or locked database must not keep the worker from taking calls: writes queue
    // and the next attempt opens again. A broken setup (thread that cannot load, bad schema) is
    // reported to whoever starts the worker; so is a refused token.
    if (classifyError(err) !== 'transient' || errorCode(err) === 'DB_THREAD_FAILED' || isAuthError(err)) {
      await backend.close();
      throw err;
    }
    log.warn({ err, location }, 'transfer database unavailable at start-up; records will be queued and retried');
  }

  // The queue reports to the store, which is made after it.
  let store: QueuedTransferStore | undefined;
  const queue = new WriteQueue({
    write: (ops) => backend.write(ops),
    log,
    ...(opts.retry !== undefined ? { retry: opts.retry } : {}),
    ...(opts.ackTimeoutMs !== undefined ? { ackTimeoutMs: opts.ackTimeoutMs } : {}),
    onDone: (ops) => store?.spool?.done(ops),
    onFailure: () => store?.checkSpool(),
    // the database is back: files that others could not write can be written now
    onRecovered: () => void store?.spool?.replay(),
  });
  const spoolDir = resolveSpoolDir(target, opts.spoolDir);
  const spool =
    spoolDir === null
      ? undefined
      : new Spool({
          dir: spoolDir,
          database: location,
          log,
          pending: () => queue.pendingOps(),
          isPending: (key) => queue.has(key),
          enqueue: (op) => void queue.enqueue(op),
          canClaim: () => queue.failures === 0,
          ...(opts.spoolReplayIntervalMs !== undefined ? { replayIntervalMs: opts.spoolReplayIntervalMs } : {}),
        });
  store = new QueuedTransferStore(location, backend, queue, log, spool, opts.spoolAfterMs ?? DEFAULT_SPOOL_AFTER_MS);
  spool?.start();
  return store;
}

async function defaultLogger(): Promise<StoreLogger> {
  // loaded lazily: it pulls in @livekit/agents, which scripts and tests that pass a logger skip
  const { logger } = await import('../agent/log.js');
  return logger();
}

class QueuedTransferStore implements TransferStore {
  private readonly keyPrefix = randomUUID();
  private nextKey = 0;
  private closed = false;
  /** Keys of pending records already logged whole by a flush that ran out of time. */
  private readonly loggedKeys = new Set<string>();

  private spoolTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly location: string,
    private readonly backend: Backend,
    private readonly queue: WriteQueue,
    private readonly log: StoreLogger,
    readonly spool: Spool | undefined,
    private readonly spoolAfterMs: number,
  ) {}

  get spoolDir(): string | null {
    return this.spool?.dir ?? null;
  }

  createTransfer(transfer: NewTransfer): Promise<WriteOutcome> {
    const at = Date.now();
    const problem =
      checkId(transfer?.id) ??
      (typeof transfer.callerRoom === 'string' && transfer.callerRoom !== '' ? undefined : 'callerRoom is required') ??
      checkOneOf('mode', transfer.mode, AGENT_MODES) ??
      checkOneOf('targetKind', transfer.targetKind, TARGET_KINDS);
    const requestedAt = time(transfer?.requestedAt, at);
    return this.submit(problem, { createTransfer: transfer }, () => ({
      kind: 'create',
      key: this.key(),
      at,
      transfer: { ...transfer, target: snapshot(transfer.target) as NewTransfer['target'], requestedAt },
    }));
  }

  setConsultRoom(id: string, consultRoom: string, at?: number): Promise<WriteOutcome> {
    const problem = checkId(id) ?? (typeof consultRoom === 'string' ? undefined : 'consultRoom must be a string');
    return this.submit(problem, { setConsultRoom: { id, consultRoom, at } }, () => ({ kind: 'consultRoom', key: this.key(), at: time(at), id, consultRoom }));
  }

  setAgentB(id: string, agentB: AgentBInput, at?: number): Promise<WriteOutcome> {
    const problem =
      checkId(id) ??
      (typeof agentB?.identity === 'string' ? undefined : 'agentB.identity must be a string') ??
      checkOneOf('agentB.kind', agentB.kind, TARGET_KINDS);
    return this.submit(problem, { setAgentB: { id, agentB, at } }, () => ({
      kind: 'agentB',
      key: this.key(),
      at: time(at),
      id,
      identity: agentB.identity,
      agentKind: agentB.kind,
    }));
  }

  setSummary(id: string, summary: SummaryInput, at?: number): Promise<WriteOutcome> {
    const problem =
      checkId(id) ??
      (typeof summary?.brief === 'string' ? undefined : 'summary.brief must be a string') ??
      checkOneOf('summary.source', summary.source, SUMMARY_SOURCES);
    return this.submit(problem, { setSummary: { id, summary, at } }, () => ({
      kind: 'summary',
      key: this.key(),
      at: time(at),
      id,
      summary: snapshot(summary.summary),
      brief: summary.brief,
      source: summary.source,
      model: summary.model ?? null,
    }));
  }

  recordEvent(id: string, phase: TransferPhase, event: EventInput = {}): Promise<WriteOutcome> {
    const problem = checkId(id) ?? checkOneOf('phase', phase, TRANSFER_PHASES);
    return this.submit(problem, { recordEvent: { id, phase, event } }, () => ({
      kind: 'event',
      key: this.key(),
      at: time(event.at),
      id,
      phase,
      detail: snapshot(event.detail),
    }));
  }

  finish(id: string, outcome: TransferOutcome, reason: string, at?: number): Promise<WriteOutcome> {
    const problem = checkId(id) ?? checkOneOf('outcome', outcome, TRANSFER_OUTCOMES);
    return this.submit(problem, { finish: { id, outcome, reason, at } }, () => ({
      kind: 'finish',
      key: this.key(),
      at: time(at),
      id,
      outcome,
      reason: typeof reason === 'string' ? reason : String(reason),
    }));
  }

  touch(id: string, opts: { ownerWorkerId?: string; at?: number } = {}): Promise<WriteOutcome> {
    return this.submit(checkId(id), { touch: { id, opts } }, () => ({
      kind: 'touch',
      key: this.key(),
      at: time(opts.at),
      id,
      ownerWorkerId: opts.ownerWorkerId ?? null,
    }));
  }

  listTransfers(filter: TransferFilter = {}): Promise<TransferPage> {
    return this.backend.listTransfers(filter);
  }
  getTransfer(id: string): Promise<TransferWithEvents | null> {
    return this.backend.getTransfer(id);
  }
  listOpenTransfers(query: OpenTransfersQuery): Promise<TransferRecord[]> {
    return this.backend.listOpenTransfers(query);
  }

  pendingWrites(): number {
    return this.queue.length;
  }
  stats(): WriteQueueStats {
    return this.queue.stats();
  }
  spoolStats(): SpoolStats {
    return this.spool?.stats() ?? { spooled: 0, replayed: 0 };
  }
  replaySpool(): Promise<number> {
    return this.spool?.replay() ?? Promise.resolve(0);
  }
  spoolBacklog(): Promise<number> {
    return this.spool?.backlog() ?? Promise.resolve(0);
  }

  async flush(timeoutMs = 5_000): Promise<number> {
    const left = await this.queue.flush(timeoutMs);
    if (left > 0) {
      // if the process ends now (flush is what shutdown paths call), another store writes them
      if (await this.spool?.persist()) {
        this.log.warn(
          { pending: left, spool: this.spool?.dir },
          'transfer records not stored yet are in the spool; they stay queued, and any store on this database writes them if this process ends',
        );
      }
      this.logUnwritten('transfer record not written yet; it stays queued and is retried');
    }
    return left;
  }

  async close(timeoutMs = 5_000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.spoolTimer);
    // no new claims while closing; a claim in progress ends with its writes in the queue
    await this.spool?.stop();
    const left = await this.queue.flush(timeoutMs);
    if (left > 0) this.queue.stop();
    const sealed = await this.spool?.seal();
    if (left > 0) {
      if (sealed?.durable) {
        this.log.warn(
          { pending: left, file: sealed.file },
          'transfer records not stored are in the spool; the next store to open on this database writes them',
        );
      }
      this.logUnwritten('transfer record not written');
    }
    await this.backend.close();
  }

  /**
   * Spools the queued writes once the oldest has waited `spoolAfterMs`: time, not a count of
   * failed attempts, because an attempt on a locked file lasts the whole busy timeout (5 s), while
   * an unreachable server fails in milliseconds. Called on every write and failed attempt.
   */
  checkSpool(): void {
    if (this.spool === undefined || this.closed) return;
    const since = this.queue.oldestSince();
    if (since === undefined) return;
    const wait = since + this.spoolAfterMs - Date.now();
    if (wait <= 0) {
      this.spool.persistSoon();
    } else if (this.queue.failures > 0 && this.spoolTimer === undefined) {
      // failing, with nothing else to call us back in time
      this.spoolTimer = setTimeout(() => {
        this.spoolTimer = undefined;
        this.checkSpool();
      }, wait);
      this.spoolTimer.unref();
    }
  }

  /** Logs each pending record whole, one line each; a record already logged is not repeated. */
  private logUnwritten(msg: string): void {
    const pending = this.queue.pendingOps();
    const stillPending = new Set(pending.map((op) => op.key));
    for (const key of this.loggedKeys) if (!stillPending.has(key)) this.loggedKeys.delete(key);
    const fresh = pending.filter((op) => !this.loggedKeys.has(op.key));
    this.log.error(
      { pending: pending.length, loggedNow: fresh.length },
      'transfer records could not be written in time; each one not logged before follows in full',
    );
    for (const op of fresh) {
      this.loggedKeys.add(op.key);
      this.log.error({ transferId: transferIdOf(op), record: op }, msg);
    }
  }

  private key(): string {
    return `${this.keyPrefix}:${(this.nextKey++).toString(36)}`;
  }

  /** Every write goes through here: a bad call or a closed store is logged whole, never thrown. */
  private submit(problem: string | undefined, call: Record<string, unknown>, build: () => WriteOp): Promise<WriteOutcome> {
    let op: WriteOp;
    try {
      if (problem !== undefined) throw new Error(problem);
      op = build();
    } catch (err) {
      this.log.error({ err, call }, 'invalid transfer record write; not stored (the call follows in full)');
      return Promise.resolve('rejected');
    }
    if (this.closed) {
      this.log.error(
        { transferId: transferIdOf(op), record: op },
        'transfer record written after the store was closed; not stored (the record follows in full)',
      );
      return Promise.resolve('rejected');
    }
    const outcome = this.queue.enqueue(op);
    this.checkSpool();
    return outcome;
  }
}

function checkId(id: unknown): string | undefined {
  return typeof id === 'string' && id !== '' ? undefined : 'transfer id must be a non-empty string';
}

function checkOneOf(field: string, value: unknown, allowed: readonly string[]): string | undefined {
  return typeof value === 'string' && allowed.includes(value)
    ? undefined
    : `${field} must be one of ${allowed.join(', ')} (got ${JSON.stringify(value)})`;
}

/** A caller's timestamp, or now when absent or not a finite number. */
function time(at: number | undefined, now: number = Date.now()): number {
  return typeof at === 'number' && Number.isFinite(at) ? Math.round(at) : now;
}

/**
 * A JSON copy taken at call time: later mutation by the caller does not change the record, and a
 * value JSON cannot hold (a cycle, a bigint) is recorded as such instead of failing the write.
 */
function snapshot(value: JsonValue | null | undefined): JsonValue | null {
  if (value === undefined || value === null) return null;
  try {
    const text = JSON.stringify(value);
    return text === undefined ? null : (JSON.parse(text) as JsonValue);
  } catch (err) {
    return { unserializable: err instanceof Error ? err.message : String(err) };
  }
}
