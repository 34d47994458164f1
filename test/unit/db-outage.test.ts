/**
 * The database becomes unwritable during a transfer, then writable again: nothing is lost, nothing
 * throws into the call, the event loop keeps running, and what cannot be written by shutdown is
 * logged whole. Tests run as root, where chmod does not stop writes, so "unwritable" is another
 * connection holding the write lock past the store's busy timeout.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient, type Client, type Transaction } from '@libsql/client';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { openTransferStore, type TransferStore, type WriteOutcome } from '../../db/store.js';
import { captureLog } from '../support/capture-log.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'db-outage-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Holds the database's write lock from another connection until released. */
async function holdWriteLock(url: string): Promise<{ release: () => Promise<void> }> {
  const client: Client = createClient({ url });
  const tx: Transaction = await client.transaction('write'); // BEGIN IMMEDIATE
  await tx.execute('UPDATE schema_migrations SET applied_at = applied_at');
  return {
    release: async () => {
      await tx.rollback();
      client.close();
    },
  };
}

const PHASES = ['summarizing', 'offering', 'briefing', 'connecting'] as const;

describe('database outage during a transfer', () => {
  const stores: TransferStore[] = [];
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close(200)));
  });

  it('queues every write while the file is locked and stores them all, in order, once it is free', async () => {
    const url = `file:${path.join(tmp, 'locked.db')}`;
    const { log, lines } = captureLog();
    // failures (not the caller wait) are what acknowledge writes as queued here
    const store = await openTransferStore({ url, log, busyTimeoutMs: 100, retry: { baseMs: 20, maxMs: 200 }, ackTimeoutMs: 15_000 });
    stores.push(store);

    const before = 'tr_before_outage';
    expect(await store.createTransfer({ id: before, callerRoom: 'r0', mode: 'frontline', targetKind: 'participant' })).toBe('stored');

    const lock = await holdWriteLock(url);
    const loopBefore = performance.eventLoopUtilization();

    const id = 'tr_during_outage';
    const outcomes: Promise<WriteOutcome>[] = [];
    const callStarted = performance.now();
    outcomes.push(store.createTransfer({ id, callerRoom: 'r1', mode: 'assist', targetKind: 'sip', target: { phone: '+15550100' } }));
    for (const [i, phase] of PHASES.entries()) {
      outcomes.push(store.recordEvent(id, phase, { detail: { step: i } }));
      if (phase === 'offering') outcomes.push(store.setAgentB(id, { identity: '+15550100', kind: 'sip' }));
    }
    outcomes.push(store.recordEvent(before, 'summarizing'));
    outcomes.push(store.finish(id, 'completed', 'agent b joined'));
    outcomes.push(store.finish(before, 'caller_left', 'hung up'));
    // nothing throws and every call settles quickly although nothing can be written
    const settled = await Promise.all(outcomes);
    expect(performance.now() - callStarted).toBeLessThan(1_000);
    expect(settled.every((o) => o === 'queued')).toBe(true);

    await sleep(600); // several retries fail meanwhile
    const loop = performance.eventLoopUtilization(loopBefore);
    expect(store.pendingWrites()).toBe(outcomes.length);
    expect(store.stats().failedAttempts).toBeGreaterThanOrEqual(2);
    // the busy waits (100 ms per attempt) happen on the database thread: this loop stayed idle
    expect(loop.utilization).toBeLessThan(0.5);
    const warned = lines.filter((l) => l.level === 'warn');
    expect(warned[0]?.msg).toMatch(/could not be written; keeping them queued/);
    expect(warned[0]?.obj.err).toBeDefined();

    await lock.release();
    expect(await store.flush(5_000)).toBe(0);
    expect(lines.some((l) => l.level === 'info' && /written again/.test(l.msg))).toBe(true);

    const got = await store.getTransfer(id);
    expect(got!.transfer).toMatchObject({
      mode: 'assist',
      targetKind: 'sip',
      target: { phone: '+15550100' },
      agentBIdentity: '+15550100',
      outcome: 'completed',
      reason: 'agent b joined',
      phase: 'ended',
    });
    expect(got!.events.map((e) => e.phase)).toEqual(['requested', ...PHASES, 'ended']);
    expect(got!.events.slice(1, 5).map((e) => e.detail)).toEqual(PHASES.map((_, step) => ({ step })));
    // timestamps are the moments of the calls, not of the late write
    expect(got!.events.at(-1)!.at - got!.events[0]!.at).toBeLessThan(500);
    const other = await store.getTransfer(before);
    expect(other!.events.map((e) => e.phase)).toEqual(['requested', 'summarizing', 'ended']);
    expect(other!.transfer.outcome).toBe('caller_left');
    expect(lines.filter((l) => l.level === 'error')).toEqual([]);
  });

  it('logs each unwritten record whole, one line each, when shut down during the outage', async () => {
    const url = `file:${path.join(tmp, 'shutdown.db')}`;
    const { log, lines } = captureLog();
    const store = await openTransferStore({ url, log, busyTimeoutMs: 50, retry: { baseMs: 20, maxMs: 100 }, ackTimeoutMs: 200 });
    const lock = await holdWriteLock(url);
    try {
      void store.createTransfer({ id: 'tr_lost?', callerRoom: 'r', mode: 'frontline', targetKind: 'agent', target: { agentName: 'billing-bot' } });
      void store.recordEvent('tr_lost?', 'summarizing', { detail: { note: 'x'.repeat(50) } });
      void store.finish('tr_lost?', 'failed', 'db down');
      await store.close(300);
    } finally {
      await lock.release();
    }
    const unwritten = lines.filter((l) => l.level === 'error' && l.msg === 'transfer record not written');
    expect(unwritten.map((l) => (l.obj.record as { kind: string }).kind)).toEqual(['create', 'event', 'finish']);
    expect(unwritten[0]!.obj.record).toMatchObject({
      kind: 'create',
      transfer: { id: 'tr_lost?', callerRoom: 'r', mode: 'frontline', targetKind: 'agent', target: { agentName: 'billing-bot' } },
    });
    // whole records survive a JSON log line round trip
    for (const line of unwritten) {
      expect(JSON.parse(JSON.stringify(line.obj.record))).toEqual(line.obj.record);
    }
  });

  it('logs what a shutdown flush could not write, once, and still writes it when it can', async () => {
    const url = `file:${path.join(tmp, 'flush.db')}`;
    const { log, lines } = captureLog();
    const store = await openTransferStore({ url, log, busyTimeoutMs: 50, retry: { baseMs: 20, maxMs: 100 } });
    stores.push(store);
    await store.createTransfer({ id: 'tr_flush', callerRoom: 'r', mode: 'frontline', targetKind: 'participant' });
    const lock = await holdWriteLock(url);
    void store.recordEvent('tr_flush', 'summarizing');
    void store.finish('tr_flush', 'caller_left', 'hung up');
    expect(await store.flush(200)).toBe(2);
    expect(await store.flush(100)).toBe(2); // nothing new to log
    const logged = lines.filter((l) => l.level === 'error' && 'record' in l.obj);
    expect(logged.map((l) => (l.obj.record as { kind: string }).kind)).toEqual(['event', 'finish']);
    expect(logged[0]!.msg).toMatch(/not written yet; it stays queued/);
    await lock.release();
    expect(await store.flush(5_000)).toBe(0);
    expect((await store.getTransfer('tr_flush'))?.events.map((e) => e.phase)).toEqual(['requested', 'summarizing', 'ended']);
  });

  it('keeps a worker starting against a locked database usable', async () => {
    const url = `file:${path.join(tmp, 'late.db')}`;
    // create the file and schema, then lock it before the second store opens
    const first = await openTransferStore({ url, log: captureLog().log });
    await first.close();
    const lock = await holdWriteLock(url);
    const { log } = captureLog();
    const store = await openTransferStore({ url, log, busyTimeoutMs: 50, retry: { baseMs: 20, maxMs: 100 } });
    stores.push(store);
    expect(await store.createTransfer({ id: 'tr_late', callerRoom: 'r', mode: 'frontline', targetKind: 'participant' })).toBe('queued');
    await lock.release();
    expect(await store.flush(5_000)).toBe(0);
    expect((await store.getTransfer('tr_late'))?.events).toHaveLength(1);
  });
});
