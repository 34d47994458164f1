/**
 * Versioned schema migrations: `db/migrations/NNNN_name.sql`, applied in order at start-up and
 * recorded in `schema_migrations`. Each migration runs in its own write transaction that first
 * re-checks whether it is still pending, so workers starting at the same moment apply it once:
 * the others wait on the write lock (busy timeout / the server), then find it done.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import type { Client } from '@libsql/client';

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

export interface MigrationReport {
  applied: number[];
  /** Problems worth a warning (edited migrations, a schema newer than this build). */
  warnings: string[];
}

const MIGRATIONS_DIR = new URL('./migrations/', import.meta.url);
const FILE_RE = /^(\d+)_([\w-]+)\.sql$/;

let cached: Migration[] | undefined;

/** The migrations shipped with this build, by version. */
export function loadMigrations(): Migration[] {
  if (cached) return cached;
  const migrations = readdirSync(MIGRATIONS_DIR)
    .map((file) => ({ file, match: FILE_RE.exec(file) }))
    .filter((f): f is { file: string; match: RegExpExecArray } => f.match !== null)
    .map(({ file, match }) => {
      const sql = readFileSync(new URL(file, MIGRATIONS_DIR), 'utf8');
      return {
        version: Number(match[1]),
        name: match[2] ?? file,
        sql,
        checksum: createHash('sha256').update(sql).digest('hex').slice(0, 16),
      };
    })
    .sort((a, b) => a.version - b.version);
  const versions = new Set(migrations.map((m) => m.version));
  if (versions.size !== migrations.length) throw new Error('duplicate migration version in db/migrations');
  cached = migrations;
  return migrations;
}

const CREATE_MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version    INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  checksum   TEXT NOT NULL,
  applied_at INTEGER NOT NULL
)`;

export async function migrate(client: Client, migrations: Migration[] = loadMigrations()): Promise<MigrationReport> {
  await client.execute(CREATE_MIGRATIONS_TABLE);
  const report: MigrationReport = { applied: [], warnings: [] };
  const rows = (await client.execute('SELECT version, checksum FROM schema_migrations')).rows;
  const known = new Map(rows.map((r) => [Number(r.version), String(r.checksum)]));

  for (const m of migrations) {
    const checksum = known.get(m.version);
    if (checksum !== undefined) {
      if (checksum !== m.checksum) {
        report.warnings.push(`migration ${m.version}_${m.name} was edited after it was applied`);
      }
      continue;
    }
    const tx = await client.transaction('write');
    try {
      const again = await tx.execute({ sql: 'SELECT 1 FROM schema_migrations WHERE version = ?', args: [m.version] });
      if (again.rows.length === 0) {
        await tx.executeMultiple(m.sql);
        await tx.execute({
          sql: 'INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)',
          args: [m.version, m.name, m.checksum, Date.now()],
        });
        await tx.commit();
        report.applied.push(m.version);
      } else {
        await tx.rollback();
      }
    } finally {
      tx.close();
    }
  }
  const newest = migrations.at(-1)?.version ?? 0;
  const unknown = [...known.keys()].filter((v) => v > newest);
  if (unknown.length > 0) {
    report.warnings.push(`database has migrations newer than this build: ${unknown.join(', ')}`);
  }
  return report;
}
