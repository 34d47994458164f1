/**
 * Assist mode, end to end against the real server: a human Agent A (a test participant whose
 * token marks it as an agent) talks with the caller while the worker listens silently; Agent A
 * starts the transfer by RPC, meets Agent B in the consult room, and leaves when Agent B has the
 * caller. Also: a start refused to a non-agent, a decline that hands the caller back to Agent A,
 * and a transfer to another AI agent (a specialist served by a second worker process).
 */
import { ParticipantKind, RoomEvent } from '@livekit/rtc-node';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { CONTRACT_VERSION, RPC, RPC_ERROR } from '../../agent/contract.js';
import type { AgentAOptions } from '../support/agent-a-console.js';
import { callRpc } from '../support/console.js';
import type { ChatRequestInfo, ChatStep } from '../support/groq-standin.js';
import { serverApi } from '../support/participants.js';
import { type Rig, scriptedResponder, startRig } from '../support/transfer-rig.js';
import { eventually } from '../support/wait.js';

const server = inject('livekit');
const WAIT_MS = 30_000;
let rig: Rig;
const SPECIALIST = `wt-specialist-${process.pid}`;
const SPECIALIST_GREETING = 'Hi Dana, I am the returns specialist and I have your order 4471 in front of me.';

/** The default script, plus the specialist's greeting (its instructions carry the handoff). */
function script(req: ChatRequestInfo): ChatStep {
  if (JSON.stringify(req.messages[0] ?? '').includes('A colleague has just handed this caller over to you')) {
    return { content: SPECIALIST_GREETING };
  }
  return scriptedResponder()(req);
}

beforeAll(async () => {
  // An AI agent target that never comes should not hold the caller for the default 30 s here.
  rig = await startRig(server, { TRANSFER_AGENT_JOIN_TIMEOUT_MS: '15000' });
  await rig.startExtraWorker({ AGENT_NAME: SPECIALIST });
});
afterEach(async () => rig.cleanupTest());
afterAll(async () => rig?.close());

/** The messages of every chat request so far, as JSON text. */
function chatMessages(filter: (body: { response_format?: unknown }) => boolean = () => true): string[] {
  return rig.groq.requests
    .filter((r) => r.route === 'chat' && filter(r.body as { response_format?: unknown }))
    .map((r) => JSON.stringify((r.body as { messages?: unknown }).messages));
}
const summaryRequests = () => chatMessages((b) => b.response_format !== undefined);

/** An assisted call (see Rig.startAssistedCall) with a first turn from each side, typed. */
async function startAssistedCall(prefix: string, agentA: AgentAOptions = {}) {
  const call = await rig.startAssistedCall(prefix, { agentA, script });
  // The worker joined to listen: it says nothing to the caller.
  await call.caller.say('Hi, my order 4471 arrived damaged and I would like a refund.');
  await call.alex.callerRoom.localParticipant!.sendText('I am sorry to hear that, let me get you to our returns team.', { topic: 'lk.chat' });
  return call;
}

describe('assist mode: a human Agent A hands the call over', () => {
  it('Agent A starts by RPC, consults with Agent B, Agent B gets the caller, Agent A leaves; the record is complete', async () => {
    const agentB = await rig.addConsole({ identity: 'console-ana', name: 'Ana', skills: ['returns'] });
    const { room, caller, alex, workerIdentity } = await startAssistedCall('assist-happy');
    // The worker transcribes the caller's turn, and the rolling summary picks it up.
    await eventually(() => summaryRequests().some((m) => m.includes('order 4471 arrived damaged')), { timeoutMs: WAIT_MS, what: 'a rolling summary of the caller turn' });

    const started = await alex.start({ v: CONTRACT_VERSION, target: { kind: 'participant', skill: 'returns' }, note: 'Customer is polite, just wants the refund done.' });
    expect(started.ok).toBe(true);
    const transferId = (started as { json: { transferId: string } }).json.transferId;
    expect(transferId).toMatch(/^tr_/);

    // Progress reaches Agent A's console, with a pass to the consult room.
    const offered = await alex.statuses.waitFor((s) => s.value.event === 'offered', WAIT_MS, 'the offered status');
    expect(offered.value).toMatchObject({ transferId, target: 'console-ana' });
    expect(offered.value.consult?.room).toContain('-consult-');
    const offer = await agentB.offers.waitFor(() => true, WAIT_MS, 'the offer');
    expect(offer.offer.note).toBe('Customer is polite, just wants the refund done.');
    await agentB.inConsultRoom(WAIT_MS, transferId);
    await alex.consultJoined.waitFor(() => true, WAIT_MS, 'Agent A in the consult room');

    // The summary is on both screens.
    const [forB, forA] = await Promise.all([
      agentB.summaries.waitFor(() => true, WAIT_MS, 'the summary on Agent B\'s screen'),
      alex.summaries.waitFor(() => true, WAIT_MS, 'the summary on Agent A\'s screen'),
    ]);
    expect(forA.transferId).toBe(transferId);
    expect(forB.value.summary).toEqual(forA.summary);
    expect(forA.note).toBe('Customer is polite, just wants the refund done.');
    // In assist mode the AI does not talk over the humans: it reads the brief only when asked.
    const read = await alex.readBrief(transferId, offer.offer.consult.workerIdentity);
    expect(read.ok).toBe(true);
    await agentB.briefingTexts.waitFor((m) => m.text.includes('4471'), WAIT_MS, 'the brief read aloud on request');
    await alex.statuses.waitFor((s) => s.value.event === 'briefing', WAIT_MS, 'the briefing status');

    await agentB.connect();
    await agentB.inCallerRoom(WAIT_MS, transferId);
    // Agent A is asked to leave, and goes; the worker leaves too; caller and Agent B stay.
    const leave = await alex.leaveRequests.waitFor(() => true, WAIT_MS, 'the leave request');
    expect(leave.transferId).toBe(transferId);
    await caller.left.waitFor((id) => id === 'agent-a-alex', WAIT_MS, 'Agent A to leave');
    await caller.left.waitFor((id) => id === workerIdentity, WAIT_MS, 'the worker to leave');
    expect((await serverApi(server).rooms.listParticipants(room)).map((p) => p.identity).sort()).toEqual(['caller', 'console-ana']);

    const record = await rig.ended(transferId, 'completed');
    expect(record.transfer).toMatchObject({ mode: 'assist', initiatedBy: 'agent-a-alex', agentAIdentity: 'agent-a-alex', targetKind: 'participant', agentBIdentity: 'console-ana', callerIdentity: 'caller' });
    expect(record.events.map((e) => e.phase)).toEqual(['requested', 'summarizing', 'offering', 'briefing', 'connecting', 'ended']);
    // The worker transcribed Agent A's side too (in a later summary request, or as a turn attached verbatim).
    expect(summaryRequests().join('\n') + JSON.stringify(forA.summary)).toContain('let me get you to our returns team');
  });

  it('refuses a start from a participant that is not an agent, and a malformed one, with clear RPC errors', async () => {
    const { caller, alex, workerIdentity } = await startAssistedCall('assist-refuse');
    const fromCaller = await callRpc(caller.room, workerIdentity, RPC.start, { v: CONTRACT_VERSION, target: { kind: 'participant' } });
    expect(fromCaller.ok).toBe(false);
    expect(fromCaller.ok || fromCaller.error.code).toBe(RPC_ERROR.forbidden);
    expect(fromCaller.ok || fromCaller.error.message).toMatch(/only an agent/);

    const malformed = await alex.start({ v: CONTRACT_VERSION, target: { kind: 'carrier-pigeon' } });
    expect(malformed.ok || malformed.error.code).toBe(RPC_ERROR.badRequest);
    const notJson = await alex.start('{nope');
    expect(notJson.ok || notJson.error.message).toMatch(/not JSON/);
    const nobody = await alex.start({ v: CONTRACT_VERSION, target: { kind: 'participant', skill: 'astrophysics' } });
    expect(nobody.ok || nobody.error.code).toBe(RPC_ERROR.unavailable);
    expect(nobody.ok || nobody.error.message).toMatch(/astrophysics/);
    // Nothing was started, so nothing is recorded for this room.
    expect(alex.statuses.items.some((s) => s.value.event === 'requested')).toBe(false);
  });

  it('Agent B declines: Agent A is told, the hold ends, Agent A is back with the caller; recorded as declined', async () => {
    const agentB = await rig.addConsole({ identity: 'console-bo', name: 'Bo', skills: ['returns'], policy: 'decline', declineReason: 'in a meeting' });
    const { caller, alex, workerIdentity } = await startAssistedCall('assist-decline');
    const heldTracks = new Set<string>();
    caller.room.on(RoomEvent.TrackSubscribed, (_t, pub, p) => p.identity === workerIdentity && heldTracks.add(pub.sid!));
    const unpublished = new Promise<void>((resolve) => caller.room.on(RoomEvent.TrackUnpublished, (_pub, p) => p.identity === workerIdentity && resolve()));

    const started = await alex.start({ v: CONTRACT_VERSION, target: { kind: 'participant', identity: 'console-bo' } });
    const transferId = (started as { json: { transferId: string } }).json.transferId;
    await agentB.offers.waitFor(() => true, WAIT_MS, 'the offer');
    const cancelled = await alex.statuses.waitFor((s) => s.value.event === 'cancelled', WAIT_MS, 'the cancelled status');
    expect(cancelled.value).toMatchObject({ transferId, outcome: 'declined' });
    expect(cancelled.value.reason).toContain('in a meeting');
    // Hold music was on while Agent B was reached, and is off now.
    await eventually(async () => heldTracks.size > 0 || undefined, { timeoutMs: WAIT_MS, what: 'hold music in the caller room' });
    await unpublished;
    expect(alex.callerRoom.isConnected).toBe(true);
    expect(caller.remoteIdentities()).toContain('agent-a-alex');
    const record = await rig.ended(transferId, 'declined');
    expect(record.transfer).toMatchObject({ mode: 'assist', initiatedBy: 'agent-a-alex' });
    // Agent A can try again at once.
    const again = await alex.start({ v: CONTRACT_VERSION, target: { kind: 'participant', identity: 'console-bo' } });
    expect(again.ok).toBe(true);
  });

  it('hands the call to an AI specialist: dispatched with the summary, greets the caller, Agent A leaves; recorded', async () => {
    const { room, caller, alex } = await startAssistedCall('assist-ai');
    const started = await alex.start({ v: CONTRACT_VERSION, target: { kind: 'agent', agentName: SPECIALIST }, reason: 'Refund for a damaged order' });
    expect(started.ok).toBe(true);
    const transferId = (started as { json: { transferId: string } }).json.transferId;

    const greeting = await caller.waitForAgentText((t) => t.includes('returns specialist'), WAIT_MS, 'the specialist greeting');
    const specialist = greeting.from;
    expect(caller.room.remoteParticipants.get(specialist)?.kind).toBe(ParticipantKind.AGENT);
    // The specialist was dispatched with the handoff: its model saw the summary.
    const specialistRequest = chatMessages().find((m) => m.includes('handed this caller over'));
    expect(specialistRequest).toContain('4471');

    await caller.left.waitFor((id) => id === 'agent-a-alex', WAIT_MS, 'Agent A to leave');
    const record = await rig.ended(transferId, 'completed');
    expect(record.transfer).toMatchObject({ mode: 'assist', targetKind: 'agent', agentBIdentity: specialist });
    // The caller keeps talking to the specialist.
    expect((await serverApi(server).rooms.listParticipants(room)).map((p) => p.identity)).toContain(specialist);
  });

  it('an AI agent target that never joins: no answer, the hold ends, Agent A is told and stays with the caller', async () => {
    const { caller, alex } = await startAssistedCall('assist-ai-absent');
    const nobody = `wt-nobody-${process.pid}`;
    const started = await alex.start({ v: CONTRACT_VERSION, target: { kind: 'agent', agentName: nobody } });
    const transferId = (started as { json: { transferId: string } }).json.transferId;
    const cancelled = await alex.statuses.waitFor((s) => s.value.event === 'cancelled', WAIT_MS, 'the cancelled status');
    expect(cancelled.value).toMatchObject({ transferId, outcome: 'no_answer' });
    expect(cancelled.value.reason).toContain(`agent ${nobody} did not join within 15000 ms`);
    const record = await rig.ended(transferId, 'no_answer');
    expect(record.transfer).toMatchObject({ targetKind: 'agent', agentBIdentity: nobody });
    // The dispatch that nobody took is withdrawn, so no agent turns up in the call later.
    expect((await serverApi(server).dispatch.listDispatch(caller.room.name!)).filter((d) => d.agentName === nobody)).toEqual([]);
    expect(caller.remoteIdentities()).toContain('agent-a-alex');
  });

  it('an Agent A console that ignores the leave request is removed from the caller room once Agent B has the call', async () => {
    const { caller, alex } = await startAssistedCall('assist-stays', { leaveWhenAsked: false });
    const started = await alex.start({ v: CONTRACT_VERSION, target: { kind: 'agent', agentName: SPECIALIST } });
    const transferId = (started as { json: { transferId: string } }).json.transferId;
    await alex.leaveRequests.waitFor(() => true, WAIT_MS, 'the leave request');
    await caller.left.waitFor((id) => id === 'agent-a-alex', WAIT_MS, 'Agent A to be removed');
    await eventually(() => !alex.callerRoom.isConnected || undefined, { timeoutMs: WAIT_MS, what: 'Agent A disconnected by the server' });
    const record = await rig.ended(transferId, 'completed');
    expect(record.transfer.agentBIdentity).toMatch(/^agent-/);
  });
});
