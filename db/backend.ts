/**
 * Where the database work runs. Both backends look the same to the store (and so share one retry
 * queue): `open` once, `write` batches, read, `close`. A failed open is not final: the next call
 * opens again, so a database that is down at start-up is picked up when it comes back.
 */
import { Worker } from 'node:worker_threads';
import type { DatabaseTarget } from './config.js';
import { DbError } from './errors.js';
import { RecordDb, type RecordReads } from './record-db.js';
import type { ReadCall, ThreadConfig, ThreadRequest, ThreadResponse } from './thread-protocol.js';
import type {
  OpenTransfersQuery,
  TransferFilter,
  TransferPage,
  TransferRecord,
  TransferWithEvents,
  WriteOp,
  WriteResult,
} from './types.js';

export interface Backend extends RecordReads {
  /** Open and migrate; resolves with warnings worth logging. */
  open(): Promise<string[]>;
  write(ops: WriteOp[]): Promise<WriteResult>;
  close(): Promise<void>;
}

export interface BackendOptions {
  target: DatabaseTarget;
  authToken?: string;
  busyTimeoutMs: number;
}

/** Remote databases: the client is asynchronous all the way down, so it runs on this thread. */
export class DirectBackend implements Backend {
  private db: RecordDb | undefined;
  private opening: Promise<{ db: RecordDb; warnings: string[] }> | undefined;

  constructor(private readonly opts: BackendOptions) {}

  async open(): Promise<string[]> {
    if (this.db !== undefined) return [];
    return (await this.ensureOpen()).warnings;
  }

  private async ensureOpen(): Promise<{ db: RecordDb; warnings: string[] }> {
    if (this.db !== undefined) return { db: this.db, warnings: [] };
    this.opening ??= RecordDb.open({
      target: this.opts.target,
      busyTimeoutMs: this.opts.busyTimeoutMs,
      ...(this.opts.authToken !== undefined ? { authToken: this.opts.authToken } : {}),
    }).finally(() => {
      this.opening = undefined;
    });
    const opened = await this.opening;
    this.db = opened.db;
    return opened;
  }

  async write(ops: WriteOp[]): Promise<WriteResult> {
    return (await this.ensureOpen()).db.write(ops);
  }
  async listTransfers(filter: TransferFilter): Promise<TransferPage> {
    return (await this.ensureOpen()).db.listTransfers(filter);
  }
  async getTransfer(id: string): Promise<TransferWithEvents | null> {
    return (await this.ensureOpen()).db.getTransfer(id);
  }
  async listOpenTransfers(query: OpenTransfersQuery): Promise<TransferRecord[]> {
    return (await this.ensureOpen()).db.listOpenTransfers(query);
  }
  async close(): Promise<void> {
    this.db?.close();
    this.db = undefined;
  }
}

/** The thread's code: TypeScript in dev/tests/tsx production, JavaScript if ever compiled. */
const THREAD_ENTRY = new URL(import.meta.url.endsWith('.ts') ? './db-thread.ts' : './db-thread.js', import.meta.url);
const THREAD_BOOT = new URL('./thread-boot.mjs', import.meta.url);

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

/**
 * file: and :memory: databases: a worker thread owns the connection, because the driver runs
 * every "async" call synchronously on the calling thread (and busy-waits there on a locked file).
 * If the thread dies, pending calls fail with a retryable error and the next call starts a new one.
 */
export class ThreadBackend implements Backend {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;

  constructor(private readonly opts: BackendOptions) {}

  open(): Promise<string[]> {
    return this.call({ type: 'open' }) as Promise<string[]>;
  }
  write(ops: WriteOp[]): Promise<WriteResult> {
    return this.call({ type: 'write', ops }) as Promise<WriteResult>;
  }
  listTransfers(filter: TransferFilter): Promise<TransferPage> {
    return this.read({ method: 'listTransfers', arg: filter }) as Promise<TransferPage>;
  }
  getTransfer(id: string): Promise<TransferWithEvents | null> {
    return this.read({ method: 'getTransfer', arg: id }) as Promise<TransferWithEvents | null>;
  }
  listOpenTransfers(query: OpenTransfersQuery): Promise<TransferRecord[]> {
    return this.read({ method: 'listOpenTransfers', arg: query }) as Promise<TransferRecord[]>;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const worker = this.worker;
    if (worker === undefined) return;
    try {
      await this.send(worker, { type: 'close' });
    } catch {
      // the thread is going away either way
    }
    await worker.terminate();
    this.worker = undefined;
  }

  private read(call: ReadCall): Promise<unknown> {
    return this.call({ type: 'read', ...call });
  }

  // The reply's shape is fixed by the request type (see db-thread.ts); the casts above rely on it.
  private call(req: DistributiveOmit<ThreadRequest, 'id'>): Promise<unknown> {
    if (this.closed) {
      return Promise.reject(new DbError({ name: 'Error', message: 'transfer store is closed', code: 'CLIENT_CLOSED' }));
    }
    return this.send(this.ensureWorker(), req);
  }

  private send(worker: Worker, req: DistributiveOmit<ThreadRequest, 'id'>): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // while a reply is awaited the thread keeps the process alive; idle, it must not
      if (this.pending.size === 1) worker.ref();
      worker.postMessage({ ...req, id } as ThreadRequest);
    });
  }

  private ensureWorker(): Worker {
    if (this.worker !== undefined) return this.worker;
    const config: ThreadConfig = { target: this.opts.target, busyTimeoutMs: this.opts.busyTimeoutMs };
    const worker = new Worker(THREAD_BOOT, { workerData: { entry: THREAD_ENTRY.href, config } });
    worker.unref();
    worker.on('message', (res: ThreadResponse) => {
      const p = this.pending.get(res.id);
      if (p === undefined) return;
      this.pending.delete(res.id);
      if (this.pending.size === 0) worker.unref();
      if (res.ok) p.resolve(res.value);
      else p.reject(new DbError(res.error));
    });
    const lost = (why: string, code: string): void => {
      if (this.worker === worker) this.worker = undefined;
      const err = new DbError({ name: 'Error', message: `database thread ${why}`, code });
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    worker.on('error', (err) => lost(`failed: ${err.message}`, 'DB_THREAD_FAILED'));
    worker.on('exit', (code) => lost(`exited with code ${code}`, 'DB_THREAD_EXITED'));
    this.worker = worker;
    return worker;
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
