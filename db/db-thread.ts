/**
 * The database thread: owns the file/:memory: connection, whose driver is synchronous, so that
 * its work (and its busy waits on a locked file) never blocks the job's event loop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { serializeError } from './errors.js';
import { RecordDb } from './record-db.js';
import type { ReadCall, ThreadConfig, ThreadRequest, ThreadResponse } from './thread-protocol.js';

const port = parentPort;
if (port === null) throw new Error('db-thread.ts must run in a worker thread');
const config = (workerData as { config: ThreadConfig }).config;

let db: RecordDb | undefined;

async function ensureOpen(): Promise<{ db: RecordDb; warnings: string[] }> {
  if (db !== undefined) return { db, warnings: [] };
  const opened = await RecordDb.open({ target: config.target, busyTimeoutMs: config.busyTimeoutMs });
  db = opened.db;
  return opened;
}

async function read(call: ReadCall): Promise<unknown> {
  const { db: open } = await ensureOpen();
  switch (call.method) {
    case 'listTransfers':
      return open.listTransfers(call.arg);
    case 'getTransfer':
      return open.getTransfer(call.arg);
    case 'listOpenTransfers':
      return open.listOpenTransfers(call.arg);
  }
}

async function handle(req: ThreadRequest): Promise<unknown> {
  switch (req.type) {
    case 'open':
      return (await ensureOpen()).warnings;
    case 'write':
      return (await ensureOpen()).db.write(req.ops);
    case 'read':
      return read(req);
    case 'close':
      db?.close();
      db = undefined;
      return null;
  }
}

// Requests run one after another: the driver is synchronous anyway, and order is the contract.
let chain: Promise<void> = Promise.resolve();
port.on('message', (req: ThreadRequest) => {
  chain = chain.then(async () => {
    let res: ThreadResponse;
    try {
      res = { id: req.id, ok: true, value: await handle(req) };
    } catch (err) {
      // a failed open is retried by the next request: drop the half-open client
      if (req.type === 'open') db = undefined;
      res = { id: req.id, ok: false, error: serializeError(err) };
    }
    port.postMessage(res);
  });
});
