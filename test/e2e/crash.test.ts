/**
 * The worker dies mid-transfer (its whole process group killed during the briefing). The
 * open-source server does not restart failed jobs, so a new worker's stale-transfer sweep notices
 * the silent transfer and sends an agent back into the call; that job ends the orphaned transfer,
 * deletes its consult room, tells Agent B, and tells the caller what happened. Nothing may stay
 * open in the database.
 */
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { serverApi } from '../support/participants.js';
import { type Rig, TRANSFER_PHRASE, startRig } from '../support/transfer-rig.js';
import { eventually } from '../support/wait.js';

const server = inject('livekit');
let rig: Rig;

beforeAll(async () => {
  rig = await startRig(server);
});
afterEach(async () => rig.cleanupTest());
afterAll(async () => rig?.close());

describe('worker crash during a transfer', () => {
  it('a new worker sends an agent back to the caller, ends the transfer, and cleans up after the dead worker', async () => {
    const agentB = await rig.addConsole({ identity: 'console-crash' });
    const { caller, agentIdentity } = await rig.startCall('crash');
    await caller.say(`I need to ${TRANSFER_PHRASE}.`);
    const offered = await agentB.offers.waitFor(() => true, 20_000, 'the offer');
    await agentB.summaries.waitFor(() => true, 20_000, 'the summary: Agent B is being briefed');
    // Crash only once the briefing is on record: a write still queued in memory dies with the process.
    await eventually(async () => (await rig.store.getTransfer(offered.offer.transferId))?.transfer.phase === 'briefing', {
      timeoutMs: 20_000,
      what: 'the briefing phase to be recorded',
    });

    await rig.crashAndRestartWorker();

    // The new worker's sweep sees the heartbeat stop and dispatches an agent to the caller again.
    const newAgent = await caller.waitForParticipant((id) => id.startsWith('agent-') && id !== agentIdentity, 60_000, 'a new agent in the room');
    const back = await caller.waitForAgentText((t) => t.includes('cut off'), 30_000, 'the caller to be told what happened');
    expect(back.from).toBe(newAgent);

    // Agent B is told and is out of the consult room, which is gone.
    const cancelled = await agentB.statuses.waitFor((s) => s.value.event === 'cancelled', 30_000, 'Agent B to be told');
    expect(cancelled.value).toMatchObject({ transferId: offered.offer.transferId, outcome: 'failed' });
    const { rooms } = serverApi(server);
    await eventually(async () => !(await rooms.listRooms()).some((r) => r.name === offered.offer.consult.room), {
      timeoutMs: 30_000,
      what: 'the consult room to be deleted',
    });

    const record = await eventually(async () => (await rig.store.getTransfer(offered.offer.transferId))?.transfer.outcome ? rig.store.getTransfer(offered.offer.transferId) : undefined, {
      timeoutMs: 30_000,
      what: 'the orphaned transfer to be ended',
    });
    expect(record?.transfer).toMatchObject({ outcome: 'failed', reason: expect.stringContaining('stopped in the briefing phase') });
    expect((await rig.store.listTransfers({ status: 'open' })).items).toEqual([]);

    // The new agent is a working agent: the caller can go on.
    await caller.say('What about order 4471?');
    await caller.waitForAgentText((t) => t.includes('I see order 4471'), 20_000, 'a normal reply from the new agent');
  });
});
