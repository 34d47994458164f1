/**
 * Phone (SIP) transfer targets, end to end: a human Agent A asks for a phone transfer by RPC.
 *
 * - On the open-source server (its own answer to MoveParticipant, proxied): the start is refused
 *   before anything is dialled, saying that phone transfers need a server that can move participants.
 * - On a server that has SIP and MoveParticipant (LiveKit Cloud), stood in for by the recording
 *   Twirp server in front of the real one: CreateSIPParticipant "rings" a phone, which here is a
 *   real participant of kind SIP that joins the consult room as the SIP service would; it hears the
 *   brief, presses 1, and MoveParticipant brings it to the caller. The exact requests are checked.
 */
import { ParticipantKind } from '@livekit/rtc-node';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { CONTRACT_VERSION, RPC_ERROR } from '../../agent/contract.js';
import { TestParticipant } from '../support/participants.js';
import { type Rig, startRig } from '../support/transfer-rig.js';
import { type RecordedExchange, type TwirpRecorder, sipParticipantReply, sipStatusReply, startTwirpRecorder } from '../support/twirp-recorder.js';
import { eventually } from '../support/wait.js';

const server = inject('livekit');
const WAIT_MS = 30_000;
const PHONE = '+15551234567';
const PHONE_IDENTITY = 'sip-+15551234567';
let rig: Rig;
let api: TwirpRecorder;

beforeAll(async () => {
  api = await startTwirpRecorder({ upstream: server.httpUrl, apiSecret: server.apiSecret });
  rig = await startRig(server, { LIVEKIT_API_URL: api.url, SIP_OUTBOUND_TRUNK_ID: 'ST_default', SIP_CALLER_ID: '+15550009999' });
});
afterEach(async () => rig.cleanupTest());
afterAll(async () => {
  await rig?.close();
  await api?.close();
});

async function startAssistedCall(prefix: string) {
  const call = await rig.startAssistedCall(prefix);
  await call.caller.say('My order 4471 arrived damaged; I was told to call the warehouse.');
  return call;
}

const moveOf = (identity: string) => (r: RecordedExchange) => r.method === 'MoveParticipant' && (r.body as { identity?: string }).identity === identity;

describe('phone (SIP) targets', () => {
  it('on the open-source server the start is refused before dialling: phone transfers need a server that can move participants', async () => {
    api.setMoveBehaviour('proxy'); // the real server's own answer
    api.setBehaviour('CreateSIPParticipant', (req) => sipParticipantReply(req));
    const { alex } = await startAssistedCall('sip-oss');
    const refused = await alex.start({ v: CONTRACT_VERSION, target: { kind: 'sip', number: PHONE } });
    expect(refused.ok).toBe(false);
    expect(refused.ok || refused.error.code).toBe(RPC_ERROR.unavailable);
    expect(refused.ok || refused.error.message).toMatch(/phone transfers need a LiveKit server that can move participants/);
    expect(refused.ok || refused.error.message).toMatch(/not implemented/);
    // The probe asked the real server, which said so; nobody's phone rang.
    expect(api.calls('MoveParticipant').at(-1)?.response).toMatchObject({ proxied: true, status: 500 });
    expect(api.calls('CreateSIPParticipant')).toEqual([]);
    expect(alex.statuses.items).toEqual([]);
  });

  it('on a server with SIP and MoveParticipant: dialled with the exact request, briefed, 1 on the keypad, moved to the caller', async () => {
    let phone: TestParticipant | undefined;
    // Cloud refuses to move agents (the worker's probe) and moves anyone else.
    api.setMoveBehaviour(async (req) => {
      const body = req.body as { room: string; identity: string; destinationRoom: string };
      if (body.identity.startsWith('agent-')) return { kind: 'error', error: { code: 'invalid_argument', msg: 'AGENT participants cannot be moved' } };
      if (body.identity !== PHONE_IDENTITY || !phone) return { kind: 'error', error: { code: 'not_found', msg: 'participant not found' } };
      // The same call, now in the caller room: the SIP leg leaves one room and appears in the other.
      await phone.leave();
      phone = await TestParticipant.join(server, body.destinationRoom, body.identity, { kind: 'sip', name: 'Warehouse desk' });
      rig.participants.push(phone);
      return { kind: 'ok' };
    });
    // The SIP service: the phone is answered and its leg joins the consult room before the reply.
    api.setBehaviour('CreateSIPParticipant', async (req) => {
      const body = req.body as { roomName: string; participantIdentity: string };
      phone = await TestParticipant.join(server, body.roomName, body.participantIdentity, { kind: 'sip', name: 'Warehouse desk' });
      rig.participants.push(phone);
      return sipParticipantReply(req);
    });

    const { room, caller, alex } = await startAssistedCall('sip-cloud');
    const started = await alex.start({
      v: CONTRACT_VERSION,
      target: { kind: 'sip', number: '+1 (555) 123-4567', headers: { 'X-Ticket': 'T-88' }, dtmf: 'ww42#', ringTimeoutMs: 20_000 },
      reason: 'The warehouse must check the damaged order',
    });
    expect(started.ok).toBe(true);
    const transferId = (started as { json: { transferId: string } }).json.transferId;

    const dial = await api.waitForRequest((r) => r.method === 'CreateSIPParticipant', WAIT_MS, 'the dial');
    expect(dial.body).toMatchObject({
      sipTrunkId: 'ST_default',
      sipCallTo: PHONE,
      sipNumber: '+15550009999',
      roomName: expect.stringContaining(`-consult-${transferId}-1`),
      participantIdentity: PHONE_IDENTITY,
      headers: { 'X-Ticket': 'T-88' },
      dtmf: 'ww42#',
      waitUntilAnswered: true,
      hidePhoneNumber: true,
      ringingTimeout: '20s',
    });
    expect(dial.auth?.signatureValid).toBe(true);
    expect(dial.auth?.claims.sip).toMatchObject({ call: true });
    const consultRoom = (dial.body as { roomName: string }).roomName;

    // The phone cannot read a screen: the brief is spoken at once, ending with what to press.
    const brief = await phone!.waitForAgentText((t) => t.includes('Press 1'), WAIT_MS, 'the spoken brief and keypad prompt');
    expect(brief.text).toContain('4471');
    await phone!.room.localParticipant!.publishDtmf(1, '1');

    const move = await api.waitForRequest(moveOf(PHONE_IDENTITY), WAIT_MS, 'the move of the phone leg');
    expect(move.body).toEqual({ room: consultRoom, identity: PHONE_IDENTITY, destinationRoom: room });
    expect(move.auth?.claims.video).toMatchObject({ roomAdmin: true, room: consultRoom, destinationRoom: room });
    await eventually(() => caller.room.remoteParticipants.get(PHONE_IDENTITY)?.kind === ParticipantKind.SIP || undefined, {
      timeoutMs: WAIT_MS,
      what: 'the phone leg in the caller room',
    });
    await caller.left.waitFor((id) => id === 'agent-a-alex', WAIT_MS, 'Agent A to leave');

    const record = await rig.ended(transferId);
    expect(record.transfer).toMatchObject({ outcome: 'completed', mode: 'assist', targetKind: 'sip', agentBIdentity: PHONE_IDENTITY, initiatedBy: 'agent-a-alex' });
    expect(record.transfer.reason).toContain('move');
    expect(record.events.find((e) => e.phase === 'connecting')?.detail).toMatchObject({ via: 'dtmf' });
    // What is stored of the target: the number and trunk, never header values.
    expect(JSON.stringify(record.transfer.target)).not.toContain('T-88');
  });

  it('a busy phone ends the attempt as declined; Agent A is told and is back with the caller', async () => {
    api.setMoveBehaviour(async (req) =>
      (req.body as { identity: string }).identity.startsWith('agent-')
        ? { kind: 'error', error: { code: 'invalid_argument', msg: 'AGENT participants cannot be moved' } }
        : { kind: 'ok' },
    );
    api.setBehaviour('CreateSIPParticipant', () => sipStatusReply(486, 'Busy Here'));
    const { alex, caller } = await startAssistedCall('sip-busy');
    const started = await alex.start({ v: CONTRACT_VERSION, target: { kind: 'sip', number: PHONE } });
    const transferId = (started as { json: { transferId: string } }).json.transferId;
    const cancelled = await alex.statuses.waitFor((s) => s.value.event === 'cancelled', WAIT_MS, 'the cancelled status');
    expect(cancelled.value).toMatchObject({ transferId, outcome: 'declined' });
    expect(cancelled.value.reason).toMatch(/busy/);
    const record = await rig.ended(transferId);
    expect(record.transfer).toMatchObject({ outcome: 'declined', targetKind: 'sip' });
    expect(caller.remoteIdentities()).toContain('agent-a-alex');
  });
});
