/**
 * The spool (db/spool.ts): writes the database does not take in time are kept on disk, and any
 * store on the same database replays them once it can write. "Unwritable" is another connection
 * holding the file's write lock (`BEGIN EXCLUSIVE`) past the store's busy timeout: tests run as
 * root, where chmod stops nothing.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createClient, type Client } from '@libsql/client';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { resolveDatabaseTarget, resolveSpoolDir } from '../../db/config.js';
import { formatSpoolFileName, hostTag, parseSpoolFileName, spoolDatabaseTag } from '../../db/spool.js';
import { openTransferStore, type StoreLogger, type TransferStore, type WriteOp } from '../../db/store.js';

interface LogLine {
  level: 'info' | 'warn' | 'error';
  msg: string;
  obj: Record<string, unknown>;
}

function captureLog(): { log: StoreLogger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const make = (bindings: Record<string, unknown>): StoreLogger => {
    const at =
      (level: LogLine['level']) =>
      (obj: object, msg?: string): void => {
        lines.push({ level, msg: msg ?? '', obj: { ...bindings, ...obj } });
      };
    return { info: at('info'), warn: at('warn'), error: at('error'), child: (b) => make({ ...bindings, ...b }) };
  };
  return { log: make({}), lines };
}

const tmp = mkdtempSync(path.join(tmpdir(), 'db-spool-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let dbSeq = 0;
function newDb(): { url: string; file: string; spool: string } {
  const file = path.join(tmp, `spool-${dbSeq++}.db`);
  return { url: `file:${file}`, file, spool: `${file}.spool` };
}

/**
 * Holds the database's write lock from another connection until released. A write transaction
 * (BEGIN IMMEDIATE: the client's pool rolls back a bare `BEGIN EXCLUSIVE` when the statement
 * returns); in WAL mode EXCLUSIVE takes the very same lock. Readers still read meanwhile.
 */
async function lockDatabase(url: string): Promise<{ release: () => Promise<void> }> {
  const client: Client = createClient({ url });
  const tx = await client.transaction('write');
  await tx.execute('UPDATE schema_migrations SET applied_at = applied_at');
  return {
    release: async () => {
      await tx.rollback();
      client.close();
    },
  };
}

/** Waits for a condition that files or another store bring about; fails with `what` after 10 s. */
async function until<T>(check: () => T | undefined | false | Promise<T | undefined | false>, what: string): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function spoolFiles(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** The complete lines of a spool file (one being written may end in a partial line). */
function readOps(file: string): WriteOp[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  lines.pop();
  return lines.filter((l) => l !== '').map((l) => JSON.parse(l) as WriteOp);
}

/** A pid that surely runs no process any more: a child that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.once('exit', resolve));
  return child.pid!;
}

/** The writes of one whole transfer, as a store makes them (the file a dead job would leave). */
function transferOps(id: string, prefix: string, at = 1_000_000): WriteOp[] {
  let n = 0;
  const key = () => `${prefix}:${(n++).toString(36)}`;
  return [
    {
      kind: 'create',
      key: key(),
      at,
      transfer: { id, callerRoom: 'room-spool', mode: 'frontline', targetKind: 'participant', target: { skill: 'billing' }, requestedAt: at },
    },
    { kind: 'event', key: key(), at: at + 10, id, phase: 'summarizing', detail: null },
    { kind: 'summary', key: key(), at: at + 15, id, summary: { intent: 'refund' }, brief: 'wants a refund', source: 'fallback', model: null },
    { kind: 'event', key: key(), at: at + 20, id, phase: 'offering', detail: { attempt: 1 } },
    { kind: 'agentB', key: key(), at: at + 25, id, identity: 'console-ana', agentKind: 'participant' },
    { kind: 'consultRoom', key: key(), at: at + 26, id, consultRoom: 'consult-1' },
    { kind: 'event', key: key(), at: at + 30, id, phase: 'briefing', detail: null },
    { kind: 'event', key: key(), at: at + 40, id, phase: 'connecting', detail: { via: 'rpc' } },
    { kind: 'finish', key: key(), at: at + 50, id, outcome: 'completed', reason: 'agent b joined' },
  ];
}

function writeSealedFile(dir: string, database: string, ops: WriteOp[], opts: { createdMs?: number; tail?: string } = {}): string {
  mkdirSync(dir, { recursive: true });
  const name = formatSpoolFileName(
    spoolDatabaseTag(database),
    opts.createdMs ?? Date.now(),
    { pid: 4_000_000 + dbSeq++, store: 'test', host: hostTag() },
    'sealed',
  );
  writeFileSync(path.join(dir, name), ops.map((op) => `${JSON.stringify(op)}\n`).join('') + (opts.tail ?? ''));
  return name;
}

const FAST = { busyTimeoutMs: 50, retry: { baseMs: 20, maxMs: 100 }, ackTimeoutMs: 200 } as const;
const PHASES = ['requested', 'summarizing', 'offering', 'briefing', 'connecting', 'ended'];

describe('transfer record spool', () => {
  const open: TransferStore[] = [];
  const locks: { release: () => Promise<void> }[] = [];
  afterEach(async () => {
    await Promise.all(locks.splice(0).map((l) => l.release().catch(() => undefined)));
    await Promise.all(open.splice(0).map((s) => s.close(200)));
  });
  async function store(url: string, opts: Partial<Parameters<typeof openTransferStore>[0]> = {}) {
    const captured = captureLog();
    const s = await openTransferStore({ url, log: captured.log, ...FAST, ...opts });
    open.push(s);
    return { store: s, lines: captured.lines };
  }

  it('keeps every write of a store closed during an outage in a spool file, which the next store replays once, in order', async () => {
    const db = newDb();
    const first = await store(db.url);
    expect(first.store.spoolDir).toBe(db.spool);
    const lock = await lockDatabase(db.url);
    locks.push(lock);

    const id = 'tr_spooled';
    void first.store.createTransfer({ id, callerRoom: 'room-1', mode: 'frontline', targetKind: 'participant', target: { skill: 'billing' } });
    void first.store.recordEvent(id, 'summarizing');
    void first.store.setSummary(id, { summary: { intent: 'refund' }, brief: 'wants a refund', source: 'fallback' });
    void first.store.recordEvent(id, 'offering', { detail: { attempt: 1 } });
    void first.store.setAgentB(id, { identity: 'console-ana', kind: 'participant' });
    void first.store.setConsultRoom(id, 'consult-1');
    void first.store.recordEvent(id, 'briefing');
    void first.store.recordEvent(id, 'connecting', { detail: { via: 'rpc' } });
    void first.store.finish(id, 'completed', 'agent b joined');
    await first.store.close(300);

    // one sealed file, every write in it, in call order, each once
    const files = spoolFiles(db.spool);
    expect(files).toHaveLength(1);
    expect(parseSpoolFileName(files[0]!)).toMatchObject({ state: 'sealed', writer: { pid: process.pid } });
    const spooled = readOps(path.join(db.spool, files[0]!));
    expect(spooled.map((op) => op.kind)).toEqual(['create', 'event', 'summary', 'event', 'agentB', 'consultRoom', 'event', 'event', 'finish']);
    expect(new Set(spooled.map((op) => op.key)).size).toBe(spooled.length);
    expect(first.lines.some((l) => l.level === 'warn' && /not stored are in the spool/.test(l.msg))).toBe(true);
    const kept = path.join(tmp, 'kept-copy.jsonl');
    copyFileSync(path.join(db.spool, files[0]!), kept);

    await lock.release();
    locks.splice(0);
    const next = await store(db.url);
    await next.store.replaySpool(); // after the one it started when it opened
    expect(await next.store.flush(5_000)).toBe(0);
    const got = (await next.store.getTransfer(id))!;
    expect(got.events.map((e) => e.phase)).toEqual(PHASES);
    expect(got.events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(got.events.find((e) => e.phase === 'offering')?.detail).toEqual({ attempt: 1 });
    expect(got.transfer).toMatchObject({
      outcome: 'completed',
      reason: 'agent b joined',
      phase: 'ended',
      agentBIdentity: 'console-ana',
      consultRoom: 'consult-1',
      summary: { intent: 'refund' },
      summarySource: 'fallback',
    });
    // the times are those of the calls, not of the replay
    expect(got.transfer.endedAt! - got.transfer.requestedAt).toBeLessThan(1_000);
    const replayed = next.lines.filter((l) => l.msg === 'replaying transfer records from a spool file');
    expect(replayed).toHaveLength(1);
    expect(replayed[0]!.obj).toMatchObject({ records: 9, transfers: [id], writtenBy: { pid: process.pid } });
    expect(next.store.spoolStats().replayed).toBe(9);
    await until(() => spoolFiles(db.spool).length === 0, 'the replayed file to be deleted');

    // The same file once more (as if its replayer had died before deleting it): nothing changes.
    copyFileSync(kept, path.join(db.spool, files[0]!));
    expect(await next.store.replaySpool()).toBe(9);
    expect(await next.store.flush(5_000)).toBe(0);
    const again = (await next.store.getTransfer(id))!;
    expect(again.events).toEqual(got.events);
    expect(again.transfer).toEqual(got.transfer);
    expect(next.lines.filter((l) => l.level !== 'info')).toEqual([]);
  });

  it('writes to the spool while an outage lasts, so a process killed meanwhile loses nothing, and drops the file once all is stored', async () => {
    const db = newDb();
    const { store: s, lines } = await store(db.url, { spoolAfterMs: 100 });
    const lock = await lockDatabase(db.url);
    locks.push(lock);
    void s.createTransfer({ id: 'tr_live', callerRoom: 'r', mode: 'frontline', targetKind: 'participant' });
    void s.recordEvent('tr_live', 'summarizing');
    // no flush, no close: the file appears because the writes have waited too long
    const live = await until(() => {
      const f = spoolFiles(db.spool).find((name) => name.endsWith('.live'));
      return f !== undefined && readOps(path.join(db.spool, f)).length === 2 && f;
    }, 'a live spool file with both writes');
    expect(parseSpoolFileName(live)).toMatchObject({ state: 'live', writer: { pid: process.pid } });
    expect(readOps(path.join(db.spool, live)).map((op) => op.kind)).toEqual(['create', 'event']);
    // a write made during the outage follows into the same file
    void s.recordEvent('tr_live', 'offering');
    await until(() => readOps(path.join(db.spool, live)).length === 3, 'the later write to be spooled');
    // the process is running: another store leaves its file alone
    const other = await store(db.url, { spoolDir: db.spool });
    expect(await other.store.replaySpool()).toBe(0);

    await lock.release();
    locks.splice(0);
    expect(await s.flush(5_000)).toBe(0);
    await until(() => spoolFiles(db.spool).length === 0, 'the spool file to go once all is stored');
    expect((await s.getTransfer('tr_live'))!.events.map((e) => e.phase)).toEqual(['requested', 'summarizing', 'offering']);
    expect(s.spoolStats().spooled).toBe(3);
    expect(lines.filter((l) => l.level === 'error')).toEqual([]);
  });

  it('takes over a live file whose process is gone, and one whose holder stopped refreshing it, but not a running one', async () => {
    const db = newDb();
    const tag = spoolDatabaseTag(db.file); // a file database's location is its path
    mkdirSync(db.spool, { recursive: true });
    const write = (name: string, ops: WriteOp[]) => writeFileSync(path.join(db.spool, name), ops.map((op) => `${JSON.stringify(op)}\n`).join(''));
    const dead = formatSpoolFileName(tag, Date.now() - 1_000, { pid: await deadPid(), store: 'gone', host: hostTag() }, 'live');
    write(dead, transferOps('tr_dead', 'dead'));
    // the parent process runs: its file is its own business until it goes quiet
    const running = formatSpoolFileName(tag, Date.now(), { pid: process.ppid, store: 'busy', host: hostTag() }, 'live');
    write(running, transferOps('tr_running', 'running'));

    const { store: s, lines } = await store(db.url);
    await s.replaySpool();
    expect(await s.flush(5_000)).toBe(0);
    expect((await s.getTransfer('tr_dead'))?.transfer.outcome).toBe('completed');
    expect(await s.getTransfer('tr_running')).toBeNull();
    await until(() => spoolFiles(db.spool).length === 1, 'the dead process file to be gone');
    expect(spoolFiles(db.spool)).toEqual([running]);

    const longAgo = new Date(Date.now() - 6 * 60_000);
    utimesSync(path.join(db.spool, running), longAgo, longAgo);
    await s.replaySpool();
    expect(await s.flush(5_000)).toBe(0);
    expect((await s.getTransfer('tr_running'))?.events.map((e) => e.phase)).toEqual(PHASES);
    expect(lines.filter((l) => l.msg === 'replaying transfer records from a spool file').map((l) => l.obj.transfers)).toEqual([
      ['tr_dead'],
      ['tr_running'],
    ]);
  });

  it('skips and logs a torn last line and a line that is not a record, and replays the rest', async () => {
    const db = newDb();
    const ops = transferOps('tr_torn', 'torn');
    const [create, summarizing] = ops;
    const finish = ops.at(-1)!;
    const torn = '{"kind":"event","key":"torn:z","at":1000099,"id":"tr_to';
    const name = writeSealedFile(db.spool, db.file, [create!, summarizing!], { tail: `not json at all\n${JSON.stringify(finish)}\n${torn}` });

    const { store: s, lines } = await store(db.url);
    await s.replaySpool();
    expect(await s.flush(5_000)).toBe(0);
    const got = (await s.getTransfer('tr_torn'))!;
    expect(got.events.map((e) => e.phase)).toEqual(['requested', 'summarizing', 'ended']);
    expect(got.transfer.outcome).toBe('completed');

    const errors = lines.filter((l) => l.level === 'error');
    expect(errors.map((l) => l.msg)).toEqual([
      expect.stringMatching(/line is not a record; skipped/),
      expect.stringMatching(/ends in a torn line .*skipped/),
    ]);
    expect(errors[0]!.obj).toMatchObject({ line: 3, text: 'not json at all' });
    expect(errors[1]!.obj).toMatchObject({ line: 5, text: torn });
    expect(String(errors[1]!.obj.file)).toContain(name);
    await until(() => spoolFiles(db.spool).length === 0, 'the replayed file to be deleted');
  });

  it('lets only one of two stores opening at once replay each file', async () => {
    const db = newDb();
    // the schema first, so that the two stores race for the files and not for the migration
    await (await store(db.url)).store.close();
    const ids = ['tr_race_0', 'tr_race_1', 'tr_race_2', 'tr_race_3', 'tr_race_4', 'tr_race_5'];
    const names = ids.map((id, i) => writeSealedFile(db.spool, db.file, transferOps(id, `race${i}`), { createdMs: 1_000 + i }));

    const [a, b] = await Promise.all([store(db.url, { busyTimeoutMs: 5_000 }), store(db.url, { busyTimeoutMs: 5_000 })]);
    await Promise.all([a!.store.replaySpool(), b!.store.replaySpool()]);
    await Promise.all([a!.store.flush(10_000), b!.store.flush(10_000)]);

    const claims = [...a!.lines, ...b!.lines].filter((l) => l.msg === 'replaying transfer records from a spool file');
    const claimedBases = claims.map((l) => parseSpoolFileName(path.basename(String(l.obj.file)))!.base);
    expect(claimedBases.sort()).toEqual([...names].sort()); // each file once
    expect(a!.store.spoolStats().replayed + b!.store.spoolStats().replayed).toBe(ids.length * 9);
    for (const id of ids) {
      const got = (await a!.store.getTransfer(id))!;
      expect(got.events.map((e) => e.phase)).toEqual(PHASES);
    }
    await until(() => spoolFiles(db.spool).length === 0, 'every replayed file to be deleted');
  });

  it('keeps replayed writes in its own spool when the database is still down, for the next store', async () => {
    const db = newDb();
    await (await store(db.url)).store.close();
    writeSealedFile(db.spool, db.file, transferOps('tr_twice', 'twice'));
    const lock = await lockDatabase(db.url);
    locks.push(lock);

    const { store: s } = await store(db.url);
    await s.replaySpool();
    await until(() => s.pendingWrites() === 9, 'the replayed writes to be queued');
    await s.close(200);
    // the claimed file is covered by the store's own sealed file
    const files = spoolFiles(db.spool);
    expect(files).toHaveLength(1);
    expect(parseSpoolFileName(files[0]!)).toMatchObject({ state: 'sealed', writer: { pid: process.pid } });
    expect(readOps(path.join(db.spool, files[0]!)).map((op) => op.key)).toEqual(transferOps('tr_twice', 'twice').map((op) => op.key));

    await lock.release();
    locks.splice(0);
    const { store: next } = await store(db.url);
    await next.replaySpool();
    expect(await next.flush(5_000)).toBe(0);
    expect((await next.getTransfer('tr_twice'))?.events.map((e) => e.phase)).toEqual(PHASES);
  });

  it('puts the spool next to a database file, under data/ for a remote one, nowhere for :memory:', () => {
    const cwd = '/srv/app';
    const file = resolveDatabaseTarget('file:data/transfers.db', undefined, cwd);
    const remote = resolveDatabaseTarget('libsql://db.example.turso.io', 'token', cwd);
    const memory = resolveDatabaseTarget(':memory:', undefined, cwd);
    expect(resolveSpoolDir(file, undefined, {}, cwd)).toBe('/srv/app/data/transfers.db.spool');
    expect(resolveSpoolDir(remote, undefined, {}, cwd)).toBe('/srv/app/data/spool');
    expect(resolveSpoolDir(memory, undefined, {}, cwd)).toBeNull();
    expect(resolveSpoolDir(remote, undefined, { DATABASE_SPOOL_DIR: '/var/spool/wt' }, cwd)).toBe('/var/spool/wt');
    expect(resolveSpoolDir(file, undefined, { DATABASE_SPOOL_DIR: 'spool' }, cwd)).toBe('/srv/app/spool');
    expect(resolveSpoolDir(memory, undefined, { DATABASE_SPOOL_DIR: '/var/spool/wt' }, cwd)).toBeNull();
    expect(resolveSpoolDir(file, 'elsewhere', { DATABASE_SPOOL_DIR: '/var/spool/wt' }, cwd)).toBe('/srv/app/elsewhere');
    expect(resolveSpoolDir(file, false, { DATABASE_SPOOL_DIR: '/var/spool/wt' }, cwd)).toBeNull();
  });
});
