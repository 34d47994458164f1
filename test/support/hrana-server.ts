/**
 * A small Hrana-over-HTTP server (the protocol of sqld and Turso) for tests: no libsql server can
 * be installed here. It implements what @libsql/client 0.18 calls for `http://` URLs:
 * `POST /v2/pipeline` with JSON bodies (the client uses protocol 2 unless asked for 3), streams
 * with batons (interactive transactions), `execute`, `batch` with conditions, `sequence`,
 * `store_sql`/`close_sql`, `get_autocommit` and `close`, executed against a local SQLite file.
 * `GET /v2` answers 200; the v3 endpoints answer 404, which makes a v3 client fall back to v2.
 *
 * Tests can make it fail: `failWith('http-503')` answers every pipeline request with 503, and
 * `stop()`/`start()` closes and reopens the listener (connection refused in between).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
// The native driver under @libsql/client (a dependency of it, so it is installed with it).
import Database from 'libsql';

type Connection = InstanceType<typeof Database>;

export interface HranaServerOptions {
  /** The SQLite file the server executes against. */
  dbPath: string;
  /** When set, requests must carry `Authorization: Bearer <token>`. */
  authToken?: string;
  /** 0 (default): any free port. */
  port?: number;
  busyTimeoutMs?: number;
}

export type HranaFailure = 'http-503' | null;

export interface HranaTestServer {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** Pipeline requests answered so far (including failed ones). */
  readonly pipelineRequests: number;
  failWith(failure: HranaFailure): void;
  /** Close the listener and every open connection: clients get "connection refused". */
  stop(): Promise<void>;
  /** Listen again on the same port. */
  start(): Promise<void>;
  close(): Promise<void>;
}

// ---- protocol shapes (JSON encoding of Hrana 2) -------------------------------------------

type HValue =
  | { type: 'null' }
  | { type: 'integer'; value: string }
  | { type: 'float'; value: number }
  | { type: 'text'; value: string }
  | { type: 'blob'; base64: string };

interface HStmt {
  sql?: string;
  sql_id?: number;
  args?: HValue[];
  named_args?: { name: string; value: HValue }[];
  want_rows?: boolean;
}

type HCond =
  | { type: 'ok'; step: number }
  | { type: 'error'; step: number }
  | { type: 'not'; cond: HCond }
  | { type: 'and'; conds: HCond[] }
  | { type: 'or'; conds: HCond[] }
  | { type: 'is_autocommit' };

interface HBatch {
  steps: { condition?: HCond; stmt: HStmt }[];
}

type HRequest =
  | { type: 'close' }
  | { type: 'execute'; stmt: HStmt }
  | { type: 'batch'; batch: HBatch }
  | { type: 'sequence'; sql?: string; sql_id?: number }
  | { type: 'store_sql'; sql_id: number; sql: string }
  | { type: 'close_sql'; sql_id: number }
  | { type: 'get_autocommit' }
  | { type: 'describe' };

interface HError {
  message: string;
  code?: string;
}

interface HStmtResult {
  cols: { name: string; decltype: string | null }[];
  rows: HValue[][];
  affected_row_count: number;
  last_insert_rowid: string | null;
}

type HStreamResult = { type: 'ok'; response: Record<string, unknown> & { type: string } } | { type: 'error'; error: HError };

class ProtocolError extends Error {}

// ---- one stream: one connection, its stored SQL texts --------------------------------------

class Stream {
  readonly sqls = new Map<number, string>();
  constructor(readonly db: Connection) {}

  sqlOf(sql: string | undefined, sqlId: number | undefined): string {
    if (sql !== undefined) return sql;
    if (sqlId !== undefined) {
      const stored = this.sqls.get(sqlId);
      if (stored !== undefined) return stored;
      throw new ProtocolError(`SQL text ${sqlId} not found`);
    }
    throw new ProtocolError('statement has neither sql nor sql_id');
  }

  execute(stmt: HStmt): HStmtResult {
    const sql = this.sqlOf(stmt.sql, stmt.sql_id);
    const prepared = this.db.prepare(sql);
    prepared.safeIntegers(true);
    const args = bindArgs(stmt);
    let returnsRows = true;
    try {
      prepared.raw(true);
    } catch {
      returnsRows = false; // raw() refuses statements that return no data
    }
    if (returnsRows) {
      const cols = prepared.columns().map((c) => ({ name: c.name, decltype: c.type }));
      const rows = (prepared.all(args) as unknown[][]).map((row) => row.map(encodeValue));
      return { cols, rows: stmt.want_rows === false ? [] : rows, affected_row_count: 0, last_insert_rowid: null };
    }
    const info = prepared.run(args);
    return {
      cols: [],
      rows: [],
      affected_row_count: info.changes,
      last_insert_rowid: String(info.lastInsertRowid),
    };
  }

  batch(batch: HBatch): { step_results: (HStmtResult | null)[]; step_errors: (HError | null)[] } {
    const results: (HStmtResult | null)[] = [];
    const errors: (HError | null)[] = [];
    const holds = (cond: HCond): boolean => {
      switch (cond.type) {
        case 'ok':
          return results[cond.step] != null;
        case 'error':
          return errors[cond.step] != null;
        case 'not':
          return !holds(cond.cond);
        case 'and':
          return cond.conds.every(holds);
        case 'or':
          return cond.conds.some(holds);
        case 'is_autocommit':
          return !this.db.inTransaction;
      }
    };
    for (const step of batch.steps) {
      if (step.condition !== undefined && !holds(step.condition)) {
        results.push(null);
        errors.push(null);
        continue;
      }
      try {
        results.push(this.execute(step.stmt));
        errors.push(null);
      } catch (err) {
        results.push(null);
        errors.push(toHError(err));
      }
    }
    return { step_results: results, step_errors: errors };
  }

  close(): void {
    try {
      if (this.db.open) this.db.close();
    } catch {
      // closing a broken connection: nothing to do
    }
  }
}

function bindArgs(stmt: HStmt): unknown[] | Record<string, unknown> {
  if (stmt.named_args !== undefined && stmt.named_args.length > 0) {
    const named: Record<string, unknown> = {};
    for (const { name, value } of stmt.named_args) {
      named[/^[:@$]/.test(name) ? name.slice(1) : name] = decodeValue(value);
    }
    return named;
  }
  return (stmt.args ?? []).map(decodeValue);
}

function decodeValue(v: HValue): unknown {
  switch (v.type) {
    case 'null':
      return null;
    case 'integer':
      return BigInt(v.value);
    case 'float':
      return v.value;
    case 'text':
      return v.value;
    case 'blob':
      return Buffer.from(v.base64, 'base64');
  }
}

function encodeValue(v: unknown): HValue {
  if (v === null || v === undefined) return { type: 'null' };
  if (typeof v === 'bigint') return { type: 'integer', value: v.toString() };
  // integers arrive as bigint (safeIntegers), so a number is a REAL
  if (typeof v === 'number') return { type: 'float', value: v };
  if (typeof v === 'string') return { type: 'text', value: v };
  if (v instanceof Uint8Array) return { type: 'blob', base64: Buffer.from(v).toString('base64') };
  if (v instanceof ArrayBuffer) return { type: 'blob', base64: Buffer.from(v).toString('base64') };
  return { type: 'text', value: String(v) };
}

function toHError(err: unknown): HError {
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? { message, code } : { message };
}

// ---- the HTTP server ----------------------------------------------------------------------

export async function startHranaServer(opts: HranaServerOptions): Promise<HranaTestServer> {
  const streams = new Map<string, Stream>();
  let failure: HranaFailure = null;
  let pipelineRequests = 0;
  let port = opts.port ?? 0;
  let server: Server | undefined;

  const openStream = (): Stream =>
    new Stream(new Database(opts.dbPath, { timeout: opts.busyTimeoutMs ?? 5_000 }));

  const handlePipeline = (body: { baton?: string | null; requests?: HRequest[] }): unknown => {
    let stream: Stream | undefined;
    if (body.baton) {
      stream = streams.get(body.baton);
      if (stream === undefined) throw new ProtocolError('unknown or expired baton');
      streams.delete(body.baton);
    } else {
      stream = openStream();
    }
    let closed = false;
    const results: HStreamResult[] = [];
    for (const req of body.requests ?? []) {
      try {
        results.push({ type: 'ok', response: handleRequest(stream, req, () => (closed = true)) });
      } catch (err) {
        if (err instanceof ProtocolError) throw err;
        results.push({ type: 'error', error: toHError(err) });
      }
    }
    let baton: string | null = null;
    if (closed) {
      stream.close();
    } else {
      baton = randomBytes(12).toString('base64url');
      streams.set(baton, stream);
    }
    return { baton, base_url: null, results };
  };

  const handleRequest = (
    stream: Stream,
    req: HRequest,
    markClosed: () => void,
  ): Record<string, unknown> & { type: string } => {
    switch (req.type) {
      case 'close':
        markClosed();
        return { type: 'close' };
      case 'execute':
        return { type: 'execute', result: stream.execute(req.stmt) };
      case 'batch':
        return { type: 'batch', result: stream.batch(req.batch) };
      case 'sequence':
        stream.db.exec(stream.sqlOf(req.sql, req.sql_id));
        return { type: 'sequence' };
      case 'store_sql':
        stream.sqls.set(req.sql_id, req.sql);
        return { type: 'store_sql' };
      case 'close_sql':
        stream.sqls.delete(req.sql_id);
        return { type: 'close_sql' };
      case 'get_autocommit':
        return { type: 'get_autocommit', is_autocommit: !stream.db.inTransaction };
      case 'describe':
        throw new Error('describe is not supported by the test server');
    }
  };

  const respond = (res: ServerResponse, status: number, body: unknown): void => {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json' });
    res.end(text);
  };

  const onRequest = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (opts.authToken !== undefined && req.headers.authorization !== `Bearer ${opts.authToken}`) {
      respond(res, 401, 'Unauthorized');
      return;
    }
    if (req.method === 'GET' && (path === '/' || path === '/health' || path === '/v2')) {
      respond(res, 200, '');
      return;
    }
    if (req.method !== 'POST' || path !== '/v2/pipeline') {
      respond(res, 404, 'Not found');
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    pipelineRequests++;
    if (failure === 'http-503') {
      respond(res, 503, 'Service unavailable (test failure)');
      return;
    }
    try {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { baton?: string; requests?: HRequest[] };
      respond(res, 200, handlePipeline(body));
    } catch (err) {
      respond(res, 400, { message: err instanceof Error ? err.message : String(err), code: 'PROTOCOL_ERROR' });
    }
  };

  const listen = async (): Promise<void> => {
    const s = createServer((req, res) => {
      onRequest(req, res).catch((err: unknown) => {
        if (!res.headersSent) respond(res, 500, String(err));
      });
    });
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => resolve());
    });
    port = (s.address() as AddressInfo).port;
    server = s;
  };

  const stop = async (): Promise<void> => {
    const s = server;
    if (s === undefined) return;
    server = undefined;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      // keep-alive sockets would otherwise go on serving a "stopped" server
      s.closeAllConnections();
    });
  };

  await listen();
  return {
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    get pipelineRequests() {
      return pipelineRequests;
    },
    failWith(f: HranaFailure) {
      failure = f;
    },
    stop,
    start: async () => {
      if (server === undefined) await listen();
    },
    close: async () => {
      await stop();
      for (const stream of streams.values()) stream.close();
      streams.clear();
    },
  };
}
