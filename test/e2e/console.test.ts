/**
 * The reference Agent B console against a real livekit-server, with the worker's side of the
 * console contract played by hand: a desk participant (`wt-desk-test`) that offers calls, and a
 * briefing participant (`wt-brief-test`) in the consult room that sends the summary and hands the
 * console over to the caller room. No worker process: this checks the console alone, so worker
 * tests can trust it.
 */
import { RpcError } from '@livekit/rtc-node';
import { RoomServiceClient, TwirpError } from 'livekit-server-sdk';
import { afterEach, describe, expect, inject, it } from 'vitest';
import {
  ATTR,
  AnswerSchema,
  CONTRACT_VERSION,
  ConnectSchema,
  type JoinRequest,
  type Offer,
  RPC,
  RPC_ERROR,
  type StatusMessage,
  type SummaryMessage,
  TOPIC,
  parsePayload,
} from '../../agent/contract.js';
import { type ConsoleOptions, ReferenceConsole } from '../support/console.js';
import { TestParticipant, mintToken, serverApi, uniqueRoom } from '../support/participants.js';
import { OSS_NOT_IMPLEMENTED, startTwirpRecorder } from '../support/twirp-recorder.js';
import { Inbox, eventually } from '../support/wait.js';

const server = inject('livekit');
const WAIT_MS = 15_000;

const participants: TestParticipant[] = [];
const consoles: ReferenceConsole[] = [];

afterEach(async () => {
  await Promise.all([...consoles.splice(0).map((c) => c.leave()), ...participants.splice(0).map((p) => p.leave())]);
});

async function joinParticipant(room: string, identity: string, kind: 'standard' | 'agent' = 'standard'): Promise<TestParticipant> {
  const p = await TestParticipant.join(server, room, identity, { kind });
  participants.push(p);
  return p;
}

async function joinConsole(opts: ConsoleOptions): Promise<ReferenceConsole> {
  const c = await ReferenceConsole.join(server, opts);
  consoles.push(c);
  return c;
}

interface RpcCall {
  from: string;
  payload: string;
}

/** Register `method` on a participant: record each call and reply `reply` (JSON). */
function answerRpc(p: TestParticipant, method: string, reply: object = { v: CONTRACT_VERSION, ok: true }): Inbox<RpcCall> {
  const calls = new Inbox<RpcCall>();
  p.room.localParticipant!.registerRpcMethod(method, async (data) => {
    calls.push({ from: data.callerIdentity, payload: data.payload });
    return JSON.stringify(reply);
  });
  return calls;
}

/** The worker's side of the desk room: it offers calls and hears the answers. */
async function fakeDeskWorker(deskRoom: string): Promise<{ worker: TestParticipant; answers: Inbox<RpcCall> }> {
  const worker = await joinParticipant(deskRoom, 'wt-desk-test', 'agent');
  return { worker, answers: answerRpc(worker, RPC.answer) };
}

let transferCounter = 0;
async function makeOffer(consoleIdentity: string, consultRoom: string, callerRoom: string): Promise<Offer> {
  transferCounter += 1;
  const now = Date.now();
  return {
    v: CONTRACT_VERSION,
    transferId: `tr-${process.pid}-${transferCounter}`,
    attemptId: `at-${process.pid}-${transferCounter}`,
    callerRoom,
    reason: 'refund over the limit of first line',
    skill: 'billing',
    consult: { url: server.url, room: consultRoom, token: await mintToken(server, consultRoom, consoleIdentity), expiresAt: now + 600_000, workerIdentity: 'wt-brief-test' },
    preview: { intent: 'refund for order 4471', urgency: 'medium', sentiment: 'frustrated', brief: 'Caller wants a refund.' },
    expiresAt: now + 30_000,
  };
}

function rpc(from: TestParticipant, to: string, method: string, payload: string | object): Promise<string> {
  return from.room.localParticipant!.performRpc({
    destinationIdentity: to,
    method,
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    responseTimeout: WAIT_MS,
  });
}

async function rpcError(call: Promise<unknown>): Promise<RpcError> {
  return call.then(
    (res) => expect.fail(`expected an RpcError, got ${JSON.stringify(res)}`),
    (err: unknown) => {
      expect(err).toBeInstanceOf(RpcError);
      return err as RpcError;
    },
  );
}

/** The console's attributes as another participant in the desk room sees them. */
function attributesSeenBy(p: TestParticipant, identity: string): Record<string, string> | undefined {
  return p.room.remoteParticipants.get(identity)?.attributes;
}

describe('reference console against a real livekit-server', () => {
  it('takes an offer through briefing into the caller room (rejoin strategy)', async () => {
    const deskRoom = uniqueRoom('desk');
    const consultRoom = uniqueRoom('consult');
    const callerRoom = uniqueRoom('caller');
    const { worker, answers } = await fakeDeskWorker(deskRoom);
    const agentB = await joinConsole({ deskRoom, identity: 'agent-b-1', name: 'Bea', skills: ['billing', 'returns'] });

    // Presence, as the worker sees it in the desk room.
    const before = Date.now();
    await worker.waitForParticipant((id) => id === 'agent-b-1', WAIT_MS, 'the console in the desk room');
    const attrs = await eventually(() => attributesSeenBy(worker, 'agent-b-1'), { timeoutMs: WAIT_MS, what: 'console attributes' });
    expect(attrs).toMatchObject({ [ATTR.role]: 'agent-b', [ATTR.available]: 'true', [ATTR.skills]: 'billing,returns' });
    expect(Number(attrs[ATTR.idleSince])).toBeLessThanOrEqual(before);

    // The worker's consult-room participant is there before the console.
    const briefer = await joinParticipant(consultRoom, 'wt-brief-test', 'agent');
    const connects = answerRpc(briefer, RPC.connect);

    const offer = await makeOffer('agent-b-1', consultRoom, callerRoom);
    expect(JSON.parse(await rpc(worker, 'agent-b-1', RPC.offer, offer))).toEqual({ v: 1, status: 'ringing' });

    const answer = await answers.waitFor(() => true, WAIT_MS, 'the console to answer');
    expect(answer.from).toBe('agent-b-1');
    const parsedAnswer = parsePayload(AnswerSchema, answer.payload);
    expect(parsedAnswer).toEqual({ ok: true, value: { v: 1, transferId: offer.transferId, attemptId: offer.attemptId, decision: 'accept' } });
    const sent = await agentB.answers.waitFor(() => true, WAIT_MS, 'the console to record the worker reply');
    expect(sent.outcome).toMatchObject({ ok: true, json: { v: 1, ok: true } });

    // Accepting makes it unavailable, and it joins the consult room with the offer's token.
    await agentB.inConsultRoom(WAIT_MS, offer.transferId);
    await briefer.waitForParticipant((id) => id === 'agent-b-1', WAIT_MS, 'the console in the consult room');
    await eventually(() => attributesSeenBy(worker, 'agent-b-1')?.[ATTR.available] === 'false', {
      timeoutMs: WAIT_MS,
      what: 'the console to turn unavailable',
    });
    expect(agentB.available).toBe(false);
    expect(agentB.acceptedOffer).toEqual(offer);

    // Briefing: summary, status and the agent's words reach the console; its question reaches the agent.
    const summary: SummaryMessage = {
      v: 1,
      transferId: offer.transferId,
      summary: { intent: 'refund', keyFacts: ['order 4471'] },
      brief: 'Caller wants a refund for order 4471.',
      source: 'llm',
      generatedAt: Date.now(),
    };
    const status: StatusMessage = { v: 1, transferId: offer.transferId, event: 'briefing', at: Date.now() };
    const local = briefer.room.localParticipant!;
    await local.sendText(JSON.stringify(summary), { topic: TOPIC.summary });
    await local.sendText(JSON.stringify(status), { topic: TOPIC.status });
    await local.sendText('The caller wants a refund for order 4471.', { topic: 'lk.transcription' });
    expect((await agentB.summaries.waitFor(() => true, WAIT_MS, 'the summary')).value).toEqual(summary);
    expect(await agentB.statuses.waitFor(() => true, WAIT_MS, 'the briefing status')).toMatchObject({
      room: 'consult',
      from: 'wt-brief-test',
      value: status,
    });
    const said = await agentB.briefingTexts.waitFor((m) => m.text.includes('order 4471'), WAIT_MS, 'the briefing words');
    expect(said.from).toBe('wt-brief-test');
    await agentB.ask('Was the order paid by card?');
    await briefer.texts.waitFor((m) => m.topic === 'lk.chat' && m.from === 'agent-b-1' && m.text.includes('paid by card'), WAIT_MS, 'the question');

    // Connect goes to the worker's participant in the consult room.
    expect(await agentB.connect()).toEqual({ v: 1, ok: true });
    const connect = await connects.waitFor(() => true, WAIT_MS, 'the connect RPC');
    expect(connect.from).toBe('agent-b-1');
    expect(parsePayload(ConnectSchema, connect.payload)).toEqual({ ok: true, value: { v: 1, transferId: offer.transferId } });

    // Rejoin: a join for another transfer is refused; the real one brings the console to the caller.
    const caller = await joinParticipant(callerRoom, 'caller');
    const join: JoinRequest = {
      v: 1,
      transferId: offer.transferId,
      callerRoom,
      url: server.url,
      token: await mintToken(server, callerRoom, 'agent-b-1'),
      expiresAt: Date.now() + 60_000,
    };
    const wrong = await rpcError(rpc(briefer, 'agent-b-1', RPC.join, { ...join, transferId: 'tr-someone-else' }));
    expect(wrong.code).toBe(RPC_ERROR.unknownTransfer);
    expect(JSON.parse(await rpc(briefer, 'agent-b-1', RPC.join, join))).toEqual({ v: 1, joined: true });

    const inCaller = await agentB.inCallerRoom(WAIT_MS, offer.transferId);
    expect(inCaller.name).toBe(callerRoom);
    expect(agentB.callerRoom).toBe(inCaller);
    expect(agentB.events.items.find((e) => e.kind === 'caller-joined')?.via).toBe('rejoin');
    await caller.waitForParticipant((id) => id === 'agent-b-1', WAIT_MS, 'Agent B in the caller room');

    // The worker then removes the console from the consult room; it stays with the caller.
    await serverApi(server).rooms.removeParticipant(consultRoom, 'agent-b-1');
    await agentB.events.waitFor((e) => e.kind === 'consult-left', WAIT_MS, 'the console to leave the consult room');
    expect(agentB.consultRoom).toBeUndefined();
    expect(agentB.callerRoom?.isConnected).toBe(true);

    // What is said in the caller room is collected apart from the briefing.
    await caller.room.localParticipant!.sendText('Agent A: I am handing you over to Bea.', { topic: 'lk.transcription' });
    await agentB.callerRoomTexts.waitFor((m) => m.text.includes('handing you over'), WAIT_MS, 'caller-room words');
    expect(agentB.briefingTexts.items.some((m) => m.text.includes('handing you over'))).toBe(false);

    expect(agentB.errors.items.filter((e) => !e.includes('tr-someone-else'))).toEqual([]);
  });

  it('reports a join it could not complete as joined:false, with the reason', async () => {
    const deskRoom = uniqueRoom('desk');
    const consultRoom = uniqueRoom('consult');
    const callerRoom = uniqueRoom('caller');
    const { worker } = await fakeDeskWorker(deskRoom);
    const agentB = await joinConsole({ deskRoom, identity: 'agent-b-join' });
    const briefer = await joinParticipant(consultRoom, 'wt-brief-test', 'agent');
    const offer = await makeOffer('agent-b-join', consultRoom, callerRoom);
    await rpc(worker, 'agent-b-join', RPC.offer, offer);
    await agentB.inConsultRoom(WAIT_MS, offer.transferId);

    const badToken = await mintToken({ ...server, apiSecret: 'not-the-server-secret-at-all-0000' }, callerRoom, 'agent-b-join');
    const join: JoinRequest = { v: 1, transferId: offer.transferId, callerRoom, url: server.url, token: badToken, expiresAt: Date.now() + 60_000 };
    const reply = JSON.parse(await rpc(briefer, 'agent-b-join', RPC.join, join)) as { v: number; joined: boolean; error?: string };
    expect(reply).toMatchObject({ v: 1, joined: false });
    expect(reply.error).toBeTruthy();
    expect(agentB.callerRoom).toBeUndefined();
    expect(agentB.joinRequests.items[0]?.reply).toEqual(reply);
  });

  it('declines with its reason and stays available, without joining the consult room', async () => {
    const deskRoom = uniqueRoom('desk');
    const { worker, answers } = await fakeDeskWorker(deskRoom);
    const agentB = await joinConsole({ deskRoom, identity: 'agent-b-2', policy: 'decline', declineReason: 'on a break' });
    const offer = await makeOffer('agent-b-2', uniqueRoom('consult'), uniqueRoom('caller'));

    expect(JSON.parse(await rpc(worker, 'agent-b-2', RPC.offer, offer))).toEqual({ v: 1, status: 'ringing' });
    const answer = await answers.waitFor(() => true, WAIT_MS, 'the decline');
    expect(JSON.parse(answer.payload)).toEqual({
      v: 1,
      transferId: offer.transferId,
      attemptId: offer.attemptId,
      decision: 'decline',
      reason: 'on a break',
    });
    expect(agentB.available).toBe(true);
    expect(agentB.consultRoom).toBeUndefined();
    expect(agentB.events.items).toEqual([]);
    await eventually(() => attributesSeenBy(worker, 'agent-b-2')?.[ATTR.available] === 'true', {
      timeoutMs: WAIT_MS,
      what: 'the worker to see the console still available',
    });
  });

  it('is busy when unavailable and while another offer rings, and free again afterwards', async () => {
    const deskRoom = uniqueRoom('desk');
    const { worker, answers } = await fakeDeskWorker(deskRoom);
    const agentB = await joinConsole({ deskRoom, identity: 'agent-b-3', policy: 'ignore' });
    await worker.waitForParticipant((id) => id === 'agent-b-3', WAIT_MS, 'the console in the desk room');

    await agentB.setAvailable(false);
    await eventually(() => attributesSeenBy(worker, 'agent-b-3')?.[ATTR.available] === 'false', {
      timeoutMs: WAIT_MS,
      what: 'the worker to see the console unavailable',
    });
    const first = await makeOffer('agent-b-3', uniqueRoom('consult'), uniqueRoom('caller'));
    expect(JSON.parse(await rpc(worker, 'agent-b-3', RPC.offer, first))).toEqual({ v: 1, status: 'busy' });

    // Available again: idle-since moves to now, and the next offer rings.
    const idleBefore = Number(attributesSeenBy(worker, 'agent-b-3')?.[ATTR.idleSince]);
    await agentB.setAvailable(true);
    const attrs = await eventually(
      () => {
        const a = attributesSeenBy(worker, 'agent-b-3');
        return a?.[ATTR.available] === 'true' && a;
      },
      { timeoutMs: WAIT_MS, what: 'the worker to see the console available' },
    );
    expect(Number(attrs[ATTR.idleSince])).toBeGreaterThan(idleBefore);
    const second = await makeOffer('agent-b-3', uniqueRoom('consult'), uniqueRoom('caller'));
    expect(JSON.parse(await rpc(worker, 'agent-b-3', RPC.offer, second))).toEqual({ v: 1, status: 'ringing' });

    // While that one rings (ignored, never answered), a third offer finds it busy.
    const third = await makeOffer('agent-b-3', uniqueRoom('consult'), uniqueRoom('caller'));
    expect(JSON.parse(await rpc(worker, 'agent-b-3', RPC.offer, third))).toEqual({ v: 1, status: 'busy' });

    // The worker withdraws the ringing offer: the console stops ringing and can take the next one.
    const cancelled: StatusMessage = { v: 1, transferId: second.transferId, event: 'cancelled', outcome: 'no_answer', at: Date.now() };
    await worker.room.localParticipant!.sendText(JSON.stringify(cancelled), { topic: TOPIC.status });
    await agentB.statuses.waitFor((s) => s.value.transferId === second.transferId, WAIT_MS, 'the cancellation');
    const fourth = await makeOffer('agent-b-3', uniqueRoom('consult'), uniqueRoom('caller'));
    expect(JSON.parse(await rpc(worker, 'agent-b-3', RPC.offer, fourth))).toEqual({ v: 1, status: 'ringing' });

    expect(agentB.offers.items.map((o) => [o.offer.attemptId, o.reply, o.from])).toEqual([
      [first.attemptId, 'busy', 'wt-desk-test'],
      [second.attemptId, 'ringing', 'wt-desk-test'],
      [third.attemptId, 'busy', 'wt-desk-test'],
      [fourth.attemptId, 'ringing', 'wt-desk-test'],
    ]);
    expect(answers.items).toEqual([]); // `ignore` never answers
  });

  it('refuses a malformed offer with RpcError 2400, and another contract version with 2426', async () => {
    const deskRoom = uniqueRoom('desk');
    const { worker } = await fakeDeskWorker(deskRoom);
    const agentB = await joinConsole({ deskRoom, identity: 'agent-b-4' });
    const offer = await makeOffer('agent-b-4', uniqueRoom('consult'), uniqueRoom('caller'));

    const notJson = await rpcError(rpc(worker, 'agent-b-4', RPC.offer, '{"v":1, transferId'));
    expect(notJson.code).toBe(RPC_ERROR.badRequest);
    expect(notJson.message).toContain('not JSON');

    const { consult: _dropped, ...noConsult } = offer;
    const missing = await rpcError(rpc(worker, 'agent-b-4', RPC.offer, noConsult));
    expect(missing.code).toBe(RPC_ERROR.badRequest);
    expect(missing.message).toContain('consult');

    const future = await rpcError(rpc(worker, 'agent-b-4', RPC.offer, { ...offer, v: 2 }));
    expect(future.code).toBe(RPC_ERROR.unsupportedVersion);

    expect(agentB.offers.items).toEqual([]);
    expect(agentB.errors.items).toHaveLength(3);
    // Still fine afterwards.
    expect(JSON.parse(await rpc(worker, 'agent-b-4', RPC.offer, offer))).toEqual({ v: 1, status: 'ringing' });
  });

  it('lets a test send raw RPCs to the worker and get the RpcError back', async () => {
    const deskRoom = uniqueRoom('desk');
    const { worker, answers } = await fakeDeskWorker(deskRoom);
    worker.room.localParticipant!.registerRpcMethod('test.refuse', async () => {
      throw new RpcError(RPC_ERROR.forbidden, 'not your offer', 'forbidden');
    });
    const agentB = await joinConsole({ deskRoom, identity: 'agent-b-5', policy: 'ignore' });

    const raw = await agentB.callWorker(RPC.answer, '{"nonsense": true}', { room: 'desk', destination: 'wt-desk-test' });
    expect(raw).toEqual({ ok: true, payload: '{"v":1,"ok":true}', json: { v: 1, ok: true } });
    expect(answers.items[0]).toEqual({ from: 'agent-b-5', payload: '{"nonsense": true}' });

    const refused = await agentB.callWorker('test.refuse', {}, { room: 'desk', destination: 'wt-desk-test' });
    const { code, message, data } = refused.ok ? ({} as Partial<RpcError>) : refused.error;
    expect({ ok: refused.ok, code, message, data }).toEqual({ ok: false, code: RPC_ERROR.forbidden, message: 'not your offer', data: 'forbidden' });

    const unknown = await agentB.callWorker('warm-transfer.nope', {}, { room: 'desk', destination: 'wt-desk-test' });
    expect(unknown.ok ? 'answered' : unknown.error.code).toBe(RpcError.ErrorCode.UNSUPPORTED_METHOD);
    await expect(agentB.callWorker(RPC.connect, {}, { room: 'consult' })).rejects.toThrow(/not connected to a consult room/);

    await agentB.leave();
    await agentB.leave(); // idempotent
    expect(agentB.desk.isConnected).toBe(false);
  });
});

describe('MoveParticipant on the open-source server, through the twirp recorder', () => {
  const OSS_NOT_IMPLEMENTED_MSG = OSS_NOT_IMPLEMENTED.kind === 'error' ? OSS_NOT_IMPLEMENTED.error.msg : '';

  it('is refused as "not implemented", wrapped as Twirp unknown/500 (so RoomEvent.Moved happens only on LiveKit Cloud)', async () => {
    const room = uniqueRoom('move-src');
    const recorder = await startTwirpRecorder({ upstream: server.httpUrl, apiSecret: server.apiSecret });
    try {
      const p = await joinParticipant(room, 'agent-b-move');
      const rooms = new RoomServiceClient(recorder.url, server.apiKey, server.apiSecret);

      // Other methods reach the real server through the recorder.
      expect((await rooms.listParticipants(room)).map((x) => x.identity)).toEqual([p.identity]);

      recorder.setMoveBehaviour('proxy');
      const err = await rooms.moveParticipant(room, 'agent-b-move', uniqueRoom('move-dst')).then(
        () => expect.fail('the open-source server moved a participant'),
        (e: unknown) => e,
      );
      // The recorder's `oss-not-implemented` behaviour must stay exactly this.
      expect(err).toBeInstanceOf(TwirpError);
      expect(err).toMatchObject({ name: 'Internal Server Error', status: 500, code: 'unknown', message: OSS_NOT_IMPLEMENTED_MSG });
      const [move] = recorder.calls('MoveParticipant');
      expect(move?.response).toEqual({ status: 500, proxied: true, body: { code: 'unknown', msg: OSS_NOT_IMPLEMENTED_MSG } });
      expect(move?.auth?.signatureValid).toBe(true);
    } finally {
      await recorder.close();
    }
  });
});
