/**
 * The retry queue and the small pure parts (URLs, error classes, cursors), without a database:
 * the queue is driven by a scripted `write` function.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { databaseEnv, describeTarget, resolveDatabaseTarget } from '../../db/config.js';
import { classifyError, DbError, serializeError } from '../../db/errors.js';
import { decodeCursor, encodeCursor } from '../../db/statements.js';
import type { WriteOp, WriteResult } from '../../db/types.js';
import { WriteQueue } from '../../db/write-queue.js';
import { captureLog } from '../support/capture-log.js';

let n = 0;
function event(id: string, i: number): WriteOp {
  return { kind: 'event', key: `k${n++}`, at: i, id, phase: 'offering', detail: { i } };
}

const busy = (): Error => Object.assign(new Error('SQLITE_BUSY: database is locked'), { code: 'SQLITE_BUSY' });
const constraint = (): Error => Object.assign(new Error('FOREIGN KEY constraint failed'), { code: 'SQLITE_CONSTRAINT_FOREIGNKEY' });

describe('WriteQueue', () => {
  it('writes in batches, in order', async () => {
    const written: WriteOp[][] = [];
    const queue = new WriteQueue({
      write: async (ops) => {
        written.push(ops);
        await sleep(5);
        return { unmatched: [] };
      },
      log: captureLog().log,
      maxBatch: 10,
    });
    const results = await Promise.all(Array.from({ length: 35 }, (_, i) => queue.enqueue(event('a', i))));
    expect(results.every((r) => r === 'stored')).toBe(true);
    expect(written.flat().map((op) => op.at)).toEqual([...Array(35).keys()]);
    expect(written.length).toBeLessThan(35); // batched
    expect(written.every((b) => b.length <= 10)).toBe(true);
  });

  it('retries with backoff after transient failures, then stores everything in order', async () => {
    const { log, lines } = captureLog();
    let failuresLeft = 4;
    const stored: number[] = [];
    const attemptsAt: number[] = [];
    const queue = new WriteQueue({
      write: async (ops) => {
        attemptsAt.push(Date.now());
        if (failuresLeft-- > 0) throw busy();
        stored.push(...ops.map((o) => o.at));
        return { unmatched: [] };
      },
      log,
      retry: { baseMs: 20, maxMs: 80 },
    });
    const first = await queue.enqueue(event('a', 0));
    expect(first).toBe('queued');
    // during an outage new writes are acknowledged at once
    expect(await queue.enqueue(event('a', 1))).toBe('queued');
    expect(await queue.flush(2_000)).toBe(0);
    expect(stored).toEqual([0, 1]);
    const gaps = attemptsAt.slice(1).map((t, i) => t - attemptsAt[i]!);
    expect(gaps.length).toBeGreaterThanOrEqual(4);
    expect(queue.stats()).toMatchObject({ failedAttempts: 4, stored: 2, rejected: 0, pending: 0 });
    expect(lines.map((l) => l.level)).toEqual(['warn', 'info']);
  });

  it('takes out (and logs whole) only the write the database refuses, keeping the others in order', async () => {
    const { log, lines } = captureLog();
    const stored: number[] = [];
    const queue = new WriteQueue({
      write: async (ops) => {
        if (ops.some((o) => o.kind === 'event' && o.id === 'poison')) throw constraint();
        stored.push(...ops.map((o) => o.at));
        return { unmatched: [] };
      },
      log,
    });
    const calls = [queue.enqueue(event('a', 0)), queue.enqueue(event('a', 1)), queue.enqueue(event('poison', 2)), queue.enqueue(event('a', 3))];
    const results = await Promise.all(calls);
    await queue.flush(1_000);
    expect(results).toEqual(['stored', 'stored', 'rejected', 'stored']);
    expect(stored).toEqual([0, 1, 3]);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'error', obj: { transferId: 'poison', record: { id: 'poison', at: 2 } } });
  });

  it('acknowledges a slow attempt as queued rather than holding the caller', async () => {
    let release: () => void = () => {};
    const queue = new WriteQueue({
      write: () => new Promise<WriteResult>((resolve) => (release = () => resolve({ unmatched: [] }))),
      log: captureLog().log,
      ackTimeoutMs: 50,
    });
    const started = Date.now();
    expect(await queue.enqueue(event('a', 0))).toBe('queued');
    expect(Date.now() - started).toBeLessThan(1_000);
    // a write arriving while that attempt is still stuck does not wait for it either
    expect(await queue.enqueue(event('a', 1))).toBe('queued');
    release();
    await sleep(0);
    release();
    expect(await queue.flush(1_000)).toBe(0);
  });

  it('flush gives up at its deadline and keeps the writes', async () => {
    const queue = new WriteQueue({
      write: async () => {
        throw busy();
      },
      log: captureLog().log,
      retry: { baseMs: 10, maxMs: 20 },
    });
    void queue.enqueue(event('a', 0));
    void queue.enqueue(event('a', 1));
    const started = Date.now();
    expect(await queue.flush(150)).toBe(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(queue.pendingOps().map((o) => o.at)).toEqual([0, 1]);
    queue.stop();
  });

  it('warns about updates that matched no transfer', async () => {
    const { log, lines } = captureLog();
    const queue = new WriteQueue({ write: async (ops) => ({ unmatched: [ops[0]!.key] }), log });
    await queue.enqueue({ kind: 'touch', key: 'touch-1', at: 1, id: 'ghost', ownerWorkerId: null });
    expect(lines).toEqual([expect.objectContaining({ level: 'warn', obj: expect.objectContaining({ transferId: 'ghost' }) })]);
  });
});

describe('database URLs', () => {
  it('resolves the engines', () => {
    expect(resolveDatabaseTarget(undefined, undefined, '/srv/app')).toEqual({
      kind: 'file',
      path: '/srv/app/data/transfers.db',
      url: 'file:///srv/app/data/transfers.db',
    });
    expect(resolveDatabaseTarget('file:/var/lib/x.db')).toMatchObject({ kind: 'file', path: '/var/lib/x.db' });
    expect(resolveDatabaseTarget('file:///var/lib/my%20db.db')).toMatchObject({ kind: 'file', path: '/var/lib/my db.db' });
    expect(resolveDatabaseTarget('file:rel/x.db', undefined, '/base')).toMatchObject({ path: path.join('/base', 'rel/x.db') });
    expect(resolveDatabaseTarget(':memory:')).toEqual({ kind: 'memory', url: ':memory:' });
    expect(resolveDatabaseTarget('libsql://db-org.turso.io', 'tok')).toEqual({ kind: 'remote', url: 'libsql://db-org.turso.io', authToken: 'tok' });
    expect(resolveDatabaseTarget('https://sqld.internal:8080')).toEqual({ kind: 'remote', url: 'https://sqld.internal:8080' });
    expect(resolveDatabaseTarget('http://127.0.0.1:8080', '  ')).toEqual({ kind: 'remote', url: 'http://127.0.0.1:8080' });
  });

  it('refuses what it cannot open', () => {
    expect(() => resolveDatabaseTarget('postgres://x')).toThrow(/unsupported/);
    expect(() => resolveDatabaseTarget('transfers.db')).toThrow(/needs a scheme/);
    expect(() => resolveDatabaseTarget('file://otherhost/x.db')).toThrow(/cannot name a host/);
    expect(() => resolveDatabaseTarget('file:dir/')).toThrow(/no file name/);
  });

  it('reads the environment and never prints the token', () => {
    expect(databaseEnv({ DATABASE_URL: 'libsql://a.turso.io', DATABASE_AUTH_TOKEN: 'secret' })).toEqual({
      url: 'libsql://a.turso.io',
      authToken: 'secret',
    });
    expect(databaseEnv({})).toEqual({ url: 'file:data/transfers.db' });
    expect(describeTarget(resolveDatabaseTarget('libsql://a.turso.io?authToken=secret'))).toBe('libsql://a.turso.io');
  });
});

describe('error classes', () => {
  it('retries outages and refuses what can never be written', () => {
    expect(classifyError(busy())).toBe('transient');
    expect(classifyError(Object.assign(new Error('x'), { code: 'SQLITE_READONLY' }))).toBe('transient');
    expect(classifyError(Object.assign(new Error('x'), { code: 'SQLITE_FULL' }))).toBe('transient');
    expect(classifyError(new TypeError('fetch failed', { cause: Object.assign(new Error('c'), { code: 'ECONNREFUSED' }) }))).toBe('transient');
    expect(classifyError(Object.assign(new Error('x'), { code: 'SERVER_ERROR' }))).toBe('transient');
    expect(classifyError(constraint())).toBe('permanent');
    expect(classifyError(new RangeError('Only finite numbers'))).toBe('permanent');
    expect(classifyError(new Error('something new'))).toBe('unknown');
    // classes survive the trip across the thread boundary
    expect(classifyError(new DbError(serializeError(busy())))).toBe('transient');
    expect(classifyError(new DbError(serializeError(constraint())))).toBe('permanent');
  });
});

describe('cursors', () => {
  it('round-trip and refuse garbage', () => {
    expect(decodeCursor(encodeCursor({ requestedAt: 123, id: 'tr_x' }))).toEqual({ requestedAt: 123, id: 'tr_x' });
    expect(() => decodeCursor('bm9wZQ')).toThrow(/invalid cursor/);
  });
});
