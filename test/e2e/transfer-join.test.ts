/**
 * The `move` join strategy. The open-source server has no MoveParticipant, so the worker's server
 * API calls go through a recording Twirp server (test/support/twirp-recorder.ts) that proxies
 * everything else to the real server: the tests check the exact MoveParticipant request, the
 * `auto` fallback on the real server's own answer, and a move that fails outright.
 */
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { TestParticipant } from '../support/participants.js';
import { type Rig, TRANSFER_PHRASE, startRig } from '../support/transfer-rig.js';
import { type RecordedExchange, type TwirpRecorder, startTwirpRecorder } from '../support/twirp-recorder.js';

const server = inject('livekit');
let rig: Rig;
let api: TwirpRecorder;

beforeAll(async () => {
  api = await startTwirpRecorder({ upstream: server.httpUrl, apiSecret: server.apiSecret });
  rig = await startRig(server, { LIVEKIT_API_URL: api.url, TRANSFER_JOIN_STRATEGY: 'auto' });
});
afterEach(async () => rig.cleanupTest());
afterAll(async () => {
  await rig?.close();
  await api?.close();
});

function isMoveOf(r: RecordedExchange, identity: string): boolean {
  return r.method === 'MoveParticipant' && (r.body as { identity?: string } | undefined)?.identity === identity;
}

describe('join strategies through the server API', () => {
  it('auto on the open-source server: MoveParticipant is tried with the exact request, refused, and rejoin brings Agent B in', async () => {
    api.setMoveBehaviour('proxy'); // the real server's own answer
    const agentB = await rig.addConsole({ identity: 'console-auto' });
    const { room, caller } = await rig.startCall('auto');
    await caller.say(`I want to ${TRANSFER_PHRASE}.`);
    const offered = await agentB.offers.waitFor(() => true, 20_000, 'the offer');
    await agentB.summaries.waitFor(() => true, 20_000, 'the summary');
    await agentB.connect();

    const move = await api.waitForRequest((r) => isMoveOf(r, 'console-auto'), 20_000, 'a MoveParticipant request');
    expect(move.body).toEqual({ room: offered.offer.consult.room, identity: 'console-auto', destinationRoom: room });
    expect(move.auth?.signatureValid).toBe(true);
    expect(move.auth?.claims.video).toMatchObject({ roomAdmin: true, room: offered.offer.consult.room, destinationRoom: room });
    expect(move.response).toMatchObject({ status: 500, proxied: true, body: { code: 'unknown', msg: expect.stringContaining('not implemented') } });

    await agentB.inCallerRoom(20_000);
    expect(agentB.events.items.find((e) => e.kind === 'caller-joined')?.via).toBe('rejoin');
    const record = await rig.ended(offered.offer.transferId);
    expect(record?.transfer).toMatchObject({ outcome: 'completed', reason: expect.stringContaining('rejoin') });
  });

  it('auto on a server that moves participants (LiveKit Cloud): the move is the join', async () => {
    // Stand in for Cloud: answer the move, and make its effect happen (the console's connection
    // appears in the caller room under the same identity).
    let moved: TestParticipant | undefined;
    api.setMoveBehaviour(async (req) => {
      const body = req.body as { room: string; identity: string; destinationRoom: string };
      moved = await TestParticipant.join(server, body.destinationRoom, body.identity);
      rig.participants.push(moved);
      return { kind: 'ok' };
    });
    const agentB = await rig.addConsole({ identity: 'console-cloud' });
    const { room, caller, agentIdentity } = await rig.startCall('cloud-move');
    await caller.say(`I want to ${TRANSFER_PHRASE}.`);
    const offered = await agentB.offers.waitFor(() => true, 20_000, 'the offer');
    await agentB.summaries.waitFor(() => true, 20_000, 'the summary');
    await agentB.connect();

    const move = await api.waitForRequest((r) => isMoveOf(r, 'console-cloud'), 20_000, 'a MoveParticipant request');
    expect(move.body).toEqual({ room: offered.offer.consult.room, identity: 'console-cloud', destinationRoom: room });
    await caller.left.waitFor((id) => id === agentIdentity, 20_000, 'Agent A to leave after the move');
    expect(moved?.room.isConnected).toBe(true);
    expect(agentB.joinRequests.items).toEqual([]); // no rejoin token was needed
    const record = await rig.ended(offered.offer.transferId);
    expect(record?.transfer).toMatchObject({ outcome: 'completed', reason: expect.stringContaining('move') });
  });

  it('a move that fails for another reason ends the attempt as failed and the caller is back with the AI', async () => {
    api.setMoveBehaviour('error');
    const agentB = await rig.addConsole({ identity: 'console-fail' });
    const { caller } = await rig.startCall('move-fails');
    await caller.say(`I want to ${TRANSFER_PHRASE}.`);
    const offered = await agentB.offers.waitFor(() => true, 20_000, 'the offer');
    await agentB.summaries.waitFor(() => true, 20_000, 'the summary');
    await agentB.connect();
    const record = await rig.ended(offered.offer.transferId);
    expect(record?.transfer).toMatchObject({ outcome: 'failed', reason: expect.stringContaining('MoveParticipant failed') });
    await caller.waitForAgentText((t) => t.includes('still here to help'), 20_000, 'the AI to come back');
  });
});

