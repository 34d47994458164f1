/**
 * The transfer records over one @libsql/client: open (directories, pragmas, migrations), apply a
 * batch of writes in one transaction, and the history reads. Runs wherever it is put: inside the
 * database thread for file/:memory: (where its synchronous driver cannot stall a call), or on the
 * main thread for remote URLs (where the client is truly asynchronous).
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { createClient, type Client, type Config, type InStatement } from '@libsql/client';
import type { DatabaseTarget } from './config.js';
import { migrate } from './migrate.js';
import {
  eventFromRow,
  encodeCursor,
  getTransferStatements,
  listTransfersStatement,
  openTransfersStatement,
  statementsFor,
  transferFromRow,
  unmatchedCheckOf,
} from './statements.js';
import type {
  OpenTransfersQuery,
  TransferFilter,
  TransferPage,
  TransferRecord,
  TransferWithEvents,
  WriteOp,
  WriteResult,
} from './types.js';

/** The read side, identical in every engine and across the thread boundary. */
export interface RecordReads {
  listTransfers(filter: TransferFilter): Promise<TransferPage>;
  getTransfer(id: string): Promise<TransferWithEvents | null>;
  listOpenTransfers(query: OpenTransfersQuery): Promise<TransferRecord[]>;
}

export interface RecordDbOptions {
  target: DatabaseTarget;
  authToken?: string;
  /** How long a local write waits for another connection's lock before SQLITE_BUSY. */
  busyTimeoutMs: number;
  /** Remote requests give up after this long (then the write is retried). */
  requestTimeoutMs?: number;
  /** Switch to WAL and apply pending migrations (default). The history command only reads:
   * it passes false and leaves the database exactly as it found it. */
  setup?: boolean;
}

export interface OpenedRecordDb {
  db: RecordDb;
  warnings: string[];
}

const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

export class RecordDb implements RecordReads {
  private constructor(
    private readonly client: Client,
    private readonly target: DatabaseTarget,
  ) {}

  static async open(opts: RecordDbOptions): Promise<OpenedRecordDb> {
    const client = createClient(clientConfig(opts));
    try {
      const warnings: string[] = [];
      await configureConnection(client, opts.target);
      if (opts.setup !== false) {
        if (opts.target.kind === 'file') await enableWal(client, warnings);
        const report = await migrate(client);
        warnings.push(...report.warnings);
      }
      return { db: new RecordDb(client, opts.target), warnings };
    } catch (err) {
      client.close();
      throw err;
    }
  }

  /** All writes in one transaction, in order: either all are stored or none. */
  async write(ops: WriteOp[]): Promise<WriteResult> {
    const stmts: InStatement[] = [];
    const checks: { key: string; update: number; fresh: number | undefined }[] = [];
    for (const op of ops) {
      const opStmts = statementsFor(op);
      const check = unmatchedCheckOf(op);
      if (check !== undefined) {
        const base = stmts.length;
        checks.push({ key: op.key, update: base + check.update, fresh: check.fresh === undefined ? undefined : base + check.fresh });
      }
      stmts.push(...opStmts);
    }
    if (stmts.length === 0) return { unmatched: [] };
    const results = await this.guard(() => this.client.batch(stmts, 'write'));
    // a write applied before (a retry, a replay) changes no row either, and is no news
    const unmatched = checks
      .filter((c) => results[c.update]?.rowsAffected === 0 && (c.fresh === undefined || results[c.fresh]?.rowsAffected !== 0))
      .map((c) => c.key);
    return { unmatched };
  }

  async hasSchema(): Promise<boolean> {
    const rs = await this.client.execute(
      "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name IN ('transfers', 'transfer_events')",
    );
    return rs.rows.length === 2;
  }

  async listTransfers(filter: TransferFilter): Promise<TransferPage> {
    const { stmt, limit } = listTransfersStatement(filter);
    const rows = (await this.guard(() => this.client.execute(stmt))).rows;
    const items = rows.slice(0, limit).map(transferFromRow);
    const last = items.at(-1);
    const nextCursor =
      rows.length > limit && last ? encodeCursor({ requestedAt: last.requestedAt, id: last.id }) : null;
    return { items, nextCursor };
  }

  async getTransfer(id: string): Promise<TransferWithEvents | null> {
    // one read transaction: the row and its events are from the same moment
    const [transferRs, eventsRs] = await this.guard(() => this.client.batch(getTransferStatements(id), 'read'));
    const row = transferRs?.rows[0];
    if (row === undefined) return null;
    return { transfer: transferFromRow(row), events: (eventsRs?.rows ?? []).map(eventFromRow) };
  }

  async listOpenTransfers(query: OpenTransfersQuery): Promise<TransferRecord[]> {
    return (await this.guard(() => this.client.execute(openTransfersStatement(query)))).rows.map(transferFromRow);
  }

  /**
   * After a failed statement (SQLITE_BUSY above all) a local connection of @libsql/client 0.18
   * keeps the failed statement "in progress" until it is garbage-collected, and every later
   * COMMIT on that connection fails with "cannot commit transaction - SQL statements in
   * progress". Measured: retries kept failing for ~7 s after the lock was gone. A fresh
   * connection does not carry it, so a local file client reconnects after any failure.
   * (In-memory databases cannot reconnect without losing their content, and cannot be busy.)
   */
  private async guard<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if (this.target.kind === 'file') {
        try {
          await this.client.reconnect();
          await configureConnection(this.client, this.target);
        } catch {
          // the next attempt reports whatever is wrong
        }
      }
      throw err;
    }
  }

  close(): void {
    this.client.close();
  }
}

function clientConfig(opts: RecordDbOptions): Config {
  const target = opts.target;
  switch (target.kind) {
    case 'memory':
      return { url: ':memory:', intMode: 'number' };
    case 'file':
      mkdirSync(path.dirname(target.path), { recursive: true });
      // One connection: the thread does one thing at a time, and per-connection pragmas then
      // reach every statement. `timeout` is the busy timeout of every connection the client opens.
      return { url: target.url, timeout: opts.busyTimeoutMs, concurrency: 1, intMode: 'number' };
    case 'remote': {
      const requestTimeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
      const authToken = opts.authToken ?? target.authToken;
      return {
        url: target.url,
        ...(authToken !== undefined ? { authToken } : {}),
        intMode: 'number',
        // a hung server must fail the attempt (and so be retried), never hold it forever
        fetch: (request: Request) => fetch(request, { signal: AbortSignal.timeout(requestTimeoutMs) }),
      };
    }
  }
}

/**
 * Per-connection settings (the client has exactly one connection in file mode). In WAL mode,
 * `synchronous = NORMAL` commits without an fsync: a commit survives a crash of the process (the
 * case that matters for a worker), only an OS crash or power cut can lose the last ones. It keeps
 * each write lock short, which is what lets several worker processes share one file: with the
 * default (FULL) every commit fsyncs while holding the lock and the others wait in the busy handler.
 */
async function configureConnection(client: Client, target: DatabaseTarget): Promise<void> {
  if (target.kind === 'file') await client.execute('PRAGMA synchronous = NORMAL');
}

/**
 * WAL lets readers (the history command, other workers) proceed while one process writes. The
 * switch needs a moment of exclusive access, so a worker starting while another holds the file
 * may see the old mode: retry briefly. The mode is stored in the file; once set it stays.
 */
async function enableWal(client: Client, warnings: string[]): Promise<void> {
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      const rs = await client.execute('PRAGMA journal_mode = WAL');
      if (String(rs.rows[0]?.journal_mode).toLowerCase() === 'wal') return;
    } catch (err) {
      if (attempt === 19) throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, 25 * (attempt + 1)));
  }
  warnings.push('could not switch the database to WAL mode; writes from several workers will contend more');
}
