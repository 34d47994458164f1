/**
 * Fault 5 of issue 7: the record database is unwritable for the whole transfer. The transfer
 * completes for the caller and Agent B; the job process, which exits after its call, leaves its
 * records in the spool (db/spool.ts); once the database is writable again another process of the
 * worker replays them, and the full record appears.
 *
 * "Unwritable" is this test holding the database file's write lock from its own connection (a
 * write transaction; in WAL mode BEGIN EXCLUSIVE takes the same lock), past every busy timeout:
 * tests run as root, where chmod stops nothing. Readers still read, so the check that nothing
 * reached the database works during the outage.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createClient } from '@libsql/client';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { resolveDatabaseTarget, resolveSpoolDir } from '../../db/config.js';
import { parseSpoolFileName } from '../../db/spool.js';
import { openTransferStore, type StoreLogger, type TransferStore, type WriteOp } from '../../db/store.js';
import { type Rig, TRANSFER_PHRASE, startRig } from '../support/transfer-rig.js';
import { eventually } from '../support/wait.js';

const server = inject('livekit');
let rig: Rig;
let reader: TransferStore;

const quiet: StoreLogger = { info: () => {}, warn: () => {}, error: () => {}, child: () => quiet };

beforeAll(async () => {
  rig = await startRig(server);
  // The rig's store would replay spool files itself, from this test process, and so do the
  // worker's job for it: read through a store that has no spool instead.
  await rig.store.close();
  reader = await openTransferStore({ url: rig.dbUrl, spoolDir: false, log: quiet });
  rig.store = reader;
});
afterEach(async () => rig.cleanupTest());
afterAll(async () => {
  await rig?.close();
  await reader?.close();
});

/** Holds the write lock of the database file until released. */
async function lockDatabase(url: string): Promise<{ release: () => Promise<void> }> {
  const client = createClient({ url });
  const tx = await client.transaction('write');
  await tx.execute('UPDATE schema_migrations SET applied_at = applied_at');
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      await tx.rollback();
      client.close();
    },
  };
}

function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

/** Every write of `transferId` in the spool directory now, once each (complete lines only). */
function spooledWrites(dir: string, transferId: string): WriteOp[] {
  const byKey = new Map<string, WriteOp>();
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => parseSpoolFileName(n) !== undefined);
  } catch {
    return [];
  }
  for (const name of names.sort()) {
    let lines: string[];
    try {
      lines = readFileSync(path.join(dir, name), 'utf8').split('\n');
    } catch {
      continue; // claimed (renamed) meanwhile: its successor is read on the next look
    }
    lines.pop();
    for (const line of lines) {
      const op = JSON.parse(line) as WriteOp;
      if ((op.kind === 'create' ? op.transfer.id : op.id) === transferId && !byKey.has(op.key)) byKey.set(op.key, op);
    }
  }
  return [...byKey.values()];
}

describe('transfer records while the database is down', () => {
  it('database unwritable for the whole transfer: the transfer completes; the record appears once the database is back', async () => {
    const spoolDir = resolveSpoolDir(resolveDatabaseTarget(rig.dbUrl), undefined, {})!;
    const agentB = await rig.addConsole({ identity: 'console-dora', name: 'Dora', skills: ['billing'] });
    const { room, caller, agentIdentity } = await rig.startCall('db-down');

    const lock = await lockDatabase(rig.dbUrl);
    let transferId: string;
    try {
      await caller.say(`My order 4471 arrived damaged. I want to ${TRANSFER_PHRASE}.`);
      await caller.waitForAgentText((t) => t.includes('Please hold'), 20_000, 'the hold message');
      const offered = await agentB.offers.waitFor(() => true, 20_000, 'an offer');
      transferId = offered.offer.transferId;
      await agentB.inConsultRoom(20_000, transferId);
      await agentB.summaries.waitFor(() => true, 20_000, 'the summary on the console');
      await agentB.connect();
      await agentB.inCallerRoom(20_000, transferId);
      await caller.waitForAgentText((t) => t.includes('Dora is with us now'), 20_000, 'the introduction');
      await caller.left.waitFor((id) => id === agentIdentity, 20_000, 'Agent A to leave the caller room');
      expect(caller.room.isConnected).toBe(true);
      expect(caller.remoteIdentities()).toContain('console-dora');

      // The job ends with Agent A gone; its process puts what it could not store in the spool,
      // then exits. Its 'job stats' line carries its pid.
      const stats = await rig.worker.waitForLog((l) => l.includes('"job stats"') && l.includes(room), 30_000, 'the job to end');
      const jobPid = (JSON.parse(stats) as { pid?: number }).pid;
      expect(jobPid).toBeGreaterThan(0);
      await eventually(() => !processRuns(jobPid!), { timeoutMs: 30_000, what: `the job process ${jobPid} to exit` });

      // Nothing of the transfer reached the database; all of it is in the spool on this host.
      expect(await reader.getTransfer(transferId)).toBeNull();
      // (read again if a replayer renamed a file between listing and reading it)
      const id = transferId;
      const spooled = await eventually(() => {
        const ops = spooledWrites(spoolDir, id);
        return ops.some((op) => op.kind === 'finish') ? ops : undefined;
      }, { timeoutMs: 5_000, what: 'the transfer in the spool' });
      expect(spooled.filter((op) => op.kind === 'event').map((op) => (op as { phase: string }).phase)).toEqual([
        'summarizing',
        'offering',
        'briefing',
        'connecting',
      ]);
      expect(spooled.map((op) => op.kind)).toEqual(expect.arrayContaining(['create', 'summary', 'agentB', 'consultRoom', 'finish']));
    } finally {
      await lock.release();
    }

    // The database is back. The worker's main process and its idle job process each look for
    // spool files every 30 s (a new job process also looks when it starts); the first to look
    // since the job process exited claims its file and writes it (had it looked while the lock
    // was still held, the writes failed and wait in its retry queue, which retries within
    // seconds now). So the record appears within one replay interval plus one retry.
    const record = await eventually(
      async () => {
        const t = await reader.getTransfer(transferId);
        return t?.transfer.outcome === 'completed' && t.events.at(-1)?.phase === 'ended' ? t : undefined;
      },
      { timeoutMs: 90_000, what: `transfer ${transferId} to be replayed from the spool`, intervalMs: 250 },
    );
    const t = record.transfer;
    expect(t).toMatchObject({ callerRoom: room, callerIdentity: 'caller', agentBIdentity: 'console-dora', phase: 'ended', summarySource: 'llm' });
    expect(t.reason).toContain('rejoin');
    expect(t.consultRoom).toBeTruthy();
    for (const at of [t.requestedAt, t.summarizingAt, t.offeringAt, t.briefingAt, t.connectingAt, t.endedAt]) expect(at).toBeGreaterThan(0);
    expect(t.requestedAt <= t.offeringAt! && t.offeringAt! <= t.briefingAt! && t.briefingAt! <= t.connectingAt! && t.connectingAt! <= t.endedAt!).toBe(true);
    expect(record.events.map((e) => e.phase)).toEqual(['requested', 'summarizing', 'offering', 'briefing', 'connecting', 'ended']);
    expect(record.events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);

    // It was a process of the worker that replayed it (this test has no spool), and the spool
    // empties once everything in it is stored.
    const replays = rig.worker
      .records()
      .filter((r) => r.msg === 'replaying transfer records from a spool file' && (r.transfers as string[] | undefined)?.includes(transferId));
    expect(replays.length).toBeGreaterThan(0);
    await eventually(() => spooledWrites(spoolDir, transferId).length === 0, { timeoutMs: 30_000, what: 'the spool to be empty' });
  }, 240_000);
});
