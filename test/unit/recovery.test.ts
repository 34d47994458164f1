/**
 * In-room recovery against a real (in-memory) record store: a new job ends a transfer whose owner
 * is gone, and leaves alone one whose owner is alive in the same room (an AI agent target
 * dispatched by that very transfer must not end it).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openTransferStore, type TransferStore } from '../../db/store.js';
import { STALE_AFTER_MS, jobParticipantIdentity, recoverRoom } from '../../agent/recovery.js';
import { logger } from '../../agent/log.js';
import { captureLog } from '../support/capture-log.js';

let store: TransferStore;
const deleted: string[] = [];
const roomService = {
  deleteRoom: async (room: string) => void deleted.push(room),
  listParticipants: async () => [],
};

beforeEach(async () => {
  deleted.length = 0;
  store = await openTransferStore({ url: ':memory:', log: captureLog().log, ackTimeoutMs: 15_000 });
});
afterEach(async () => store.close());

/** An open transfer created now; `heartbeatAt` moves its owner's last sign of life forward. */
async function openTransfer(id: string, jobId: string, heartbeatAt?: number) {
  await store.createTransfer({
    id,
    callerRoom: 'call-1',
    callerIdentity: 'caller',
    agentAIdentity: jobParticipantIdentity(jobId),
    mode: 'frontline',
    initiatedBy: 'agent_a',
    targetKind: 'agent',
    target: {},
    reason: 'r',
    workerId: 'w',
    jobId,
  });
  await store.setConsultRoom(id, `call-1-consult-${id}`);
  if (heartbeatAt) await store.touch(id, { at: heartbeatAt });
}

describe('recoverRoom', () => {
  it('leaves a live owner’s transfer alone and ends those whose owner left or went silent', async () => {
    // Judged a little later than STALE_AFTER_MS from now: only heartbeats after now are fresh then.
    const now = Date.now() + STALE_AFTER_MS + 5_000;
    await openTransfer('tr_live', 'AJ_live', now - 1_000);
    await openTransfer('tr_left', 'AJ_left', now - 1_000);
    await openTransfer('tr_silent', 'AJ_silent');
    await openTransfer('tr_mine', 'AJ_me');
    const present = new Set([jobParticipantIdentity('AJ_live'), jobParticipantIdentity('AJ_silent')]);

    const ended = await recoverRoom(
      'call-1',
      'AJ_me',
      { store, roomService, log: logger(), ownerInRoom: (job) => present.has(jobParticipantIdentity(job)) },
      now,
    );

    expect(ended.map((t) => t.id).sort()).toEqual(['tr_left', 'tr_silent']);
    expect(deleted.sort()).toEqual(['call-1-consult-tr_left', 'call-1-consult-tr_silent']);
    expect((await store.getTransfer('tr_live'))?.transfer.outcome).toBeNull();
    expect((await store.getTransfer('tr_mine'))?.transfer.outcome).toBeNull();
    expect((await store.getTransfer('tr_left'))?.transfer).toMatchObject({ outcome: 'failed' });
    expect((await store.getTransfer('tr_left'))?.transfer.reason).toMatch(/stopped in the .* phase; job AJ_me took the call back/);
  });
});
