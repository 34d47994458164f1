import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createClient } from '@libsql/client';
import { afterAll, describe, expect, it } from 'vitest';
import { loadMigrations, migrate } from '../../db/migrate.js';
import { openTransferStore, type StoreLogger } from '../../db/store.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'db-migrate-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const quiet: StoreLogger = { info() {}, warn() {}, error() {}, child: () => quiet };

describe('migrations', () => {
  it('ship in version order with unique versions', () => {
    const migrations = loadMigrations();
    expect(migrations.length).toBeGreaterThan(0);
    expect(migrations.map((m) => m.version)).toEqual([...migrations.map((m) => m.version)].sort((a, b) => a - b));
    expect(migrations[0]).toMatchObject({ version: 1, name: 'transfers' });
  });

  it('are idempotent and create the tables and history indexes', async () => {
    const url = `file:${path.join(tmp, 'idempotent.db')}`;
    const client = createClient({ url });
    try {
      const first = await migrate(client);
      expect(first.applied).toEqual(loadMigrations().map((m) => m.version));
      const second = await migrate(client);
      expect(second).toEqual({ applied: [], warnings: [] });
      const names = (await client.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")).rows.map(
        (r) => `${r.type}:${r.name}`,
      );
      expect(names).toEqual(
        expect.arrayContaining([
          'table:schema_migrations',
          'table:transfers',
          'table:transfer_events',
          'index:transfers_by_requested',
          'index:transfers_by_outcome',
          'index:transfers_by_room',
          'index:transfers_by_agent_a',
          'index:transfers_by_agent_b',
          'index:transfers_open_by_heartbeat',
        ]),
      );
      const recorded = (await client.execute('SELECT version FROM schema_migrations')).rows.map((r) => r.version);
      expect(recorded).toEqual(loadMigrations().map((m) => m.version));
      // the history queries use the indexes
      const plan = await client.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM transfers WHERE caller_room = 'r' ORDER BY requested_at DESC, id DESC LIMIT 10",
      );
      expect(plan.rows.map((r) => String(r.detail)).join(' ')).toMatch(/transfers_by_room/);
    } finally {
      client.close();
    }
  });

  it('warn about an edited migration and about a schema newer than the build', async () => {
    const url = `file:${path.join(tmp, 'edited.db')}`;
    const client = createClient({ url });
    try {
      await migrate(client);
      await client.execute("INSERT INTO schema_migrations VALUES (9999, 'future', 'x', 0)");
      const edited = loadMigrations().map((m) => ({ ...m, checksum: 'different' }));
      const report = await migrate(client, edited);
      expect(report.applied).toEqual([]);
      expect(report.warnings).toEqual([
        expect.stringMatching(/0?1_transfers was edited/),
        expect.stringMatching(/newer than this build: 9999/),
      ]);
    } finally {
      client.close();
    }
  });

  it('let two stores open the same fresh file at the same moment', async () => {
    const url = `file:${path.join(tmp, 'race', 'fresh.db')}`;
    const stores = await Promise.all([1, 2, 3].map(() => openTransferStore({ url, log: quiet })));
    try {
      await Promise.all(
        stores.map((s, i) => s.createTransfer({ id: `tr_race_${i}`, callerRoom: 'r', mode: 'frontline', targetKind: 'sip' })),
      );
      const page = await stores[0]!.listTransfers();
      expect(page.items.map((t) => t.id).sort()).toEqual(['tr_race_0', 'tr_race_1', 'tr_race_2']);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
    const client = createClient({ url });
    try {
      const rows = (await client.execute('SELECT version, COUNT(*) AS n FROM schema_migrations GROUP BY version')).rows;
      expect(rows.every((r) => r.n === 1)).toBe(true);
      expect((await client.execute('PRAGMA journal_mode')).rows[0]?.journal_mode).toBe('wal');
    } finally {
      client.close();
    }
  });
});
