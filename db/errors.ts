/**
 * Database error classification, shared by the retry queue and the database thread.
 *
 * A write is retried unless the error says that the *statement itself* can never succeed
 * (a constraint or type error): the database being busy, locked, read-only, full, unreachable,
 * or answering 5xx is weather, and weather passes.
 */

/** An error as it crosses the thread boundary (structured clone drops class and extra fields). */
export interface SerializedError {
  name: string;
  message: string;
  code?: string;
  stack?: string;
}

/** `permanent`: retrying the same statement cannot help. `transient`: it can. */
export type ErrorClass = 'transient' | 'permanent' | 'unknown';

const PERMANENT_CODE_PREFIXES = [
  'SQLITE_CONSTRAINT',
  'SQLITE_MISMATCH',
  'SQLITE_TOOBIG',
  'SQLITE_RANGE',
  'SQL_PARSE_ERROR',
  'SQL_INPUT_ERROR',
];

const TRANSIENT_CODE_PREFIXES = [
  'SQLITE_BUSY',
  'SQLITE_LOCKED',
  'SQLITE_READONLY',
  'SQLITE_FULL',
  'SQLITE_IOERR',
  'SQLITE_CANTOPEN',
  'SQLITE_PROTOCOL',
  'SQLITE_INTERRUPT',
  'SQLITE_NOMEM',
  'SERVER_ERROR',
  'HRANA_',
  'CLIENT_CLOSED',
  'DB_THREAD_',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'UND_ERR',
  'ABORT_ERR',
];

export function errorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && code !== '' && code !== 'UNKNOWN') return code;
  // `fetch failed` hides the socket error in `cause`
  const cause = (err as { cause?: unknown }).cause;
  return cause !== undefined && cause !== err ? errorCode(cause) : undefined;
}

export function classifyError(err: unknown): ErrorClass {
  const code = errorCode(err);
  if (code !== undefined) {
    if (PERMANENT_CODE_PREFIXES.some((p) => code.startsWith(p))) return 'permanent';
    if (TRANSIENT_CODE_PREFIXES.some((p) => code.startsWith(p))) return 'transient';
  }
  const name = (err as { name?: unknown } | null)?.name;
  // An unreachable remote fails with a plain `TypeError: fetch failed`; timeouts abort the fetch.
  if (name === 'TimeoutError' || name === 'AbortError') return 'transient';
  const message = err instanceof Error ? err.message : '';
  if (/fetch failed|socket|network|terminated/i.test(message)) return 'transient';
  // Argument conversion errors (a NaN, an undefined, an unserialisable value) repeat forever.
  if (name === 'RangeError' || name === 'TypeError') return 'permanent';
  return 'unknown';
}

/** The server refused our credentials (HTTP 401/403): a setup problem, not an outage. */
export function isAuthError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; typeof e === 'object' && e !== null && depth < 5; depth++) {
    const status = (e as { status?: unknown }).status;
    if (status === 401 || status === 403) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof Error) {
    const code = errorCode(err);
    return {
      name: err.name,
      message: err.message,
      ...(code !== undefined ? { code } : {}),
      ...(err.stack !== undefined ? { stack: err.stack } : {}),
    };
  }
  return { name: 'Error', message: String(err) };
}

/** An error rebuilt from its serialized form, classifiable like the original. */
export class DbError extends Error {
  readonly code: string | undefined;
  constructor(serialized: SerializedError) {
    super(serialized.message);
    this.name = serialized.name;
    this.code = serialized.code;
    if (serialized.stack !== undefined) this.stack = serialized.stack;
  }
}
