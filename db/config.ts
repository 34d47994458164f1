/**
 * The database URL decides the engine:
 * - `file:<path>` (default `file:data/transfers.db`, relative to the working directory): a local
 *   SQLite file in WAL mode, driven from a database thread because the driver is synchronous;
 * - `:memory:`: a private in-memory database (tests), also on the database thread;
 * - `libsql://`, `https://`, `http://` (and `ws://`, `wss://`): Turso or sqld, with
 *   `DATABASE_AUTH_TOKEN`; the client is truly asynchronous, so it runs on the calling thread.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';

export const DEFAULT_DATABASE_URL = 'file:data/transfers.db';
export const DEFAULT_BUSY_TIMEOUT_MS = 5_000;

export type DatabaseTarget =
  | { kind: 'file'; /** absolute path */ path: string; /** absolute file: URL */ url: string }
  | { kind: 'memory'; url: ':memory:' }
  | { kind: 'remote'; url: string; authToken?: string };

export class DatabaseUrlError extends Error {
  override name = 'DatabaseUrlError';
}

/** Parse a database URL. Relative file paths resolve against `cwd`. Throws on unsupported URLs. */
export function resolveDatabaseTarget(
  url: string | undefined,
  authToken?: string,
  cwd: string = process.cwd(),
): DatabaseTarget {
  const raw = (url ?? '').trim() || DEFAULT_DATABASE_URL;
  if (raw === ':memory:' || raw === 'file::memory:') return { kind: 'memory', url: ':memory:' };

  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(raw)?.[1]?.toLowerCase();
  if (scheme === 'file') {
    let rest = raw.slice('file:'.length);
    if (rest.includes('?') || rest.includes('#')) {
      throw new DatabaseUrlError(`file: database URLs take no query or fragment: ${raw}`);
    }
    if (rest.startsWith('//')) {
      // file:///abs/path or file://localhost/abs/path
      const afterAuthority = rest.slice(2);
      const slash = afterAuthority.indexOf('/');
      const host = slash < 0 ? afterAuthority : afterAuthority.slice(0, slash);
      if (host !== '' && host !== 'localhost') {
        throw new DatabaseUrlError(`file: URLs cannot name a host (${host}): ${raw}`);
      }
      rest = slash < 0 ? '' : afterAuthority.slice(slash);
    }
    const filePath = decodeURIComponent(rest);
    if (filePath === '' || filePath.endsWith('/')) {
      throw new DatabaseUrlError(`file: database URL has no file name: ${raw}`);
    }
    const absolute = path.resolve(cwd, filePath);
    return { kind: 'file', path: absolute, url: pathToFileURL(absolute).href };
  }
  if (scheme === 'libsql' || scheme === 'https' || scheme === 'http' || scheme === 'ws' || scheme === 'wss') {
    const token = authToken?.trim();
    return { kind: 'remote', url: raw, ...(token ? { authToken: token } : {}) };
  }
  if (scheme === undefined) {
    throw new DatabaseUrlError(
      `database URL needs a scheme (file:, libsql:, https:, http:) or :memory:, got ${JSON.stringify(raw)}`,
    );
  }
  throw new DatabaseUrlError(`unsupported database URL scheme "${scheme}:" in ${JSON.stringify(raw)}`);
}

/** `DATABASE_URL` / `DATABASE_AUTH_TOKEN` from the environment. */
export function databaseEnv(env: NodeJS.ProcessEnv = process.env): { url: string; authToken?: string } {
  const url = env.DATABASE_URL?.trim() || DEFAULT_DATABASE_URL;
  const authToken = env.DATABASE_AUTH_TOKEN?.trim();
  return authToken ? { url, authToken } : { url };
}

/** Where a target is, for logs: never includes the auth token. */
export function describeTarget(target: DatabaseTarget): string {
  if (target.kind === 'remote') {
    try {
      const u = new URL(target.url);
      return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
    } catch {
      return 'remote database';
    }
  }
  return target.kind === 'memory' ? ':memory:' : target.path;
}

/**
 * Where a store keeps the writes it could not store (see db/spool.ts), or null for none:
 * `explicit` (the `spoolDir` option; false turns the spool off), else `DATABASE_SPOOL_DIR`, else
 * `<database file>.spool/` next to a file database (the spool then goes wherever the database
 * goes) and `data/spool/` under `cwd` for a remote one. A private `:memory:` database gets none
 * unless asked for: it dies with its process, so there is nothing another store could replay into.
 */
export function resolveSpoolDir(
  target: DatabaseTarget,
  explicit: string | false | undefined,
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
): string | null {
  if (explicit === false) return null;
  if (explicit !== undefined && explicit.trim() !== '') return path.resolve(cwd, explicit.trim());
  const fromEnv = env.DATABASE_SPOOL_DIR?.trim();
  if (target.kind === 'memory') return null;
  if (fromEnv) return path.resolve(cwd, fromEnv);
  return target.kind === 'file' ? `${target.path}.spool` : path.resolve(cwd, 'data', 'spool');
}
