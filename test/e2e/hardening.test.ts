/**
 * Hardening end to end (issue 7, part 7): secrets stay out of the logs, the tokens the worker
 * hands to consoles are narrow and short-lived, oversized RPCs are refused cleanly, and a caller
 * pasting a huge message does not break the call.
 *
 * This file runs its own livekit-server with a random API key and secret. The shared e2e server
 * uses the dev secret, which is the word "secret": scanning logs for it would match innocent text
 * and prove nothing. A random secret can only appear in the output if it leaked.
 */
import { randomBytes } from 'node:crypto';
import { AgentSession as pb } from '@livekit/protocol';
import { RpcError } from '@livekit/rtc-node';
import { type ClaimGrants, TokenVerifier } from 'livekit-server-sdk';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AnswerSchema, CONTRACT_VERSION, MAX_RPC_PAYLOAD_BYTES, RPC, RPC_ERROR, parsePayload } from '../../agent/contract.js';
import { type RunningLiveKitServer, startLiveKitServer } from '../../scripts/livekit-dev-server.js';
import type { RecordedRequest } from '../support/groq-standin.js';
import { AGENT_SESSION_TOPIC, SESSION_START_KINDS } from '../support/participants.js';
import { GROQ_KEY, type Rig, TRANSFER_PHRASE, startRig } from '../support/transfer-rig.js';

const WAIT_MS = 20_000;
/** What a JWT looks like in text: base64url header (always `{"...` so `eyJ`), payload, signature. */
const JWT = /eyJ[\w-]+\.[\w-]+\.[\w-]+/g;
/** Tokens handed to consoles must expire within minutes (the worker mints 5-minute tokens). */
const MAX_CONSOLE_TOKEN_TTL_S = 600;

let server: RunningLiveKitServer;
let rig: Rig;

beforeAll(async () => {
  server = await startLiveKitServer({
    bindAddress: '127.0.0.1',
    nodeIp: process.env.WT_TEST_NODE_IP,
    // Off the shared server's 7880-7882 and the benches' ports; the namespace is this run's own.
    httpPort: 7985,
    rtcTcpPort: 7986,
    rtcUdpPort: 7987,
    apiKey: `APIk${randomBytes(6).toString('hex')}`,
    apiSecret: randomBytes(24).toString('base64url'),
  });
  rig = await startRig(server, {
    // A rolling summary soon after a caller turn, so the huge-message test sees what the model gets.
    SUMMARY_DEBOUNCE_MS: '200',
    SUMMARY_MIN_INTERVAL_MS: '0',
    TRANSFER_OFFER_TIMEOUT_MS: '20000',
  });
});
afterEach(async () => rig.cleanupTest());
afterAll(async () => {
  await rig?.close();
  await server?.stop();
});

/** Decodes and checks the signature with the server's key: a token that does not verify fails here. */
async function claimsOf(token: string): Promise<ClaimGrants> {
  return new TokenVerifier(server.apiKey, server.apiSecret).verify(token);
}

/** One room, one identity (the console's), no admin-type grants, minutes to live. */
function expectConsoleToken(claims: ClaimGrants, room: string, identity: string): void {
  expect(claims.sub).toBe(identity);
  expect(claims.video?.room).toBe(room);
  expect(claims.video?.roomJoin).toBe(true);
  const admin = ['roomAdmin', 'roomCreate', 'roomList', 'roomRecord', 'ingressAdmin', 'agent', 'hidden', 'recorder', 'canManageAgentSession'] as const;
  for (const grant of admin) {
    expect(claims.video?.[grant], `grant ${grant}`).toBeFalsy();
  }
  expect(claims.sip?.admin ?? false).toBe(false);
  expect(claims.sip?.call ?? false).toBe(false);
  // A console is a person, not one of the worker's own agent participants.
  expect(claims.kind).not.toBe('agent');
  expect(typeof claims.exp).toBe('number');
  expect(typeof claims.nbf).toBe('number');
  expect(claims.exp! - claims.nbf!).toBeGreaterThan(0);
  expect(claims.exp! - claims.nbf!).toBeLessThanOrEqual(MAX_CONSOLE_TOKEN_TTL_S);
}

describe('hardening', () => {
  it('a full transfer leaves no secret or token in the worker output; console tokens are narrow and short-lived', async () => {
    const agentB = await rig.addConsole({ identity: 'console-hard', name: 'Ana' });
    const { room, caller, agentIdentity } = await rig.startCall('hardening');
    await caller.say(`My order 4471 arrived damaged. I want to ${TRANSFER_PHRASE}.`);
    const offered = await agentB.offers.waitFor(() => true, WAIT_MS, 'the offer');
    const transferId = offered.offer.transferId;
    await agentB.summaries.waitFor(() => true, WAIT_MS, 'the summary');
    await agentB.connect();
    await agentB.inCallerRoom(WAIT_MS, transferId);
    await caller.left.waitFor((id) => id === agentIdentity, WAIT_MS, 'Agent A to leave');
    const record = await rig.ended(transferId, 'completed');
    expect(record.transfer.reason).toContain('rejoin');
    // Scan only once the job has shut down, so its last lines (stats, teardown) are in the output too.
    await rig.worker.waitForLog((l) => l.includes('"job stats"') && l.includes(room), WAIT_MS, 'the job to shut down');

    // (a) Nothing secret in anything the worker or its jobs printed.
    const output = rig.worker.output();
    expect(output.length).toBeGreaterThan(1000); // the scan is over a real log, not an empty one
    expect(output).not.toContain(GROQ_KEY);
    expect(output).not.toContain(server.apiSecret);
    expect(output.match(JWT) ?? []).toEqual([]);
    // Nor in the transfer record operators read.
    expect(JSON.stringify(record).match(JWT) ?? []).toEqual([]);

    // (b) The consult-room token from the offer.
    expectConsoleToken(await claimsOf(offered.offer.consult.token), offered.offer.consult.room, 'console-hard');
    expect(offered.offer.consult.room).not.toBe(room);
    // The caller-room token from the join request (rejoin: the open-source server cannot move).
    const join = await agentB.joinRequests.waitFor(() => true, WAIT_MS, 'the join request');
    expect(join.value.callerRoom).toBe(room);
    expectConsoleToken(await claimsOf(join.value.token), room, 'console-hard');

    // (c) On the agents framework's session channel, the briefing session sent Agent B nothing but
    // its own start, and Agent A's sent the caller the same (see the session-channel test below).
    expect(agentB.agentSessionStreams.items.length).toBeGreaterThan(0); // the handler does see the channel
    expect(agentB.agentSessionStreams.items.map((m) => m.kind).filter((k) => !SESSION_START_KINDS.includes(k))).toEqual([]);
    expect(caller.agentSessionStreams.items.map((m) => m.kind).filter((k) => !SESSION_START_KINDS.includes(k))).toEqual([]);
  });

  it('an RPC payload over 15 KiB is refused as too large, and the worker carries on', async () => {
    const agentB = await rig.addConsole({ identity: 'console-big', policy: 'ignore' });
    const { caller } = await rig.startCall('big-rpc');
    await caller.say(`I want to ${TRANSFER_PHRASE}.`);
    const offered = await agentB.offers.waitFor(() => true, WAIT_MS, 'the offer');
    const answer = { v: CONTRACT_VERSION, transferId: offered.offer.transferId, attemptId: offered.offer.attemptId, decision: 'decline' as const };

    // A well-formed answer padded past the limit: refused for its size, not its content.
    const huge = JSON.stringify({ ...answer, reason: 'x'.repeat(MAX_RPC_PAYLOAD_BYTES) });
    expect(Buffer.byteLength(huge)).toBeGreaterThan(MAX_RPC_PAYLOAD_BYTES);
    const refused = await agentB.callWorker(RPC.answer, huge, { room: 'desk', destination: offered.from });
    expect(refused.ok).toBe(false);
    if (!refused.ok) {
      // LiveKit's SDKs (and the server, for server-side RPC) enforce the same 15 KiB limit before
      // sending, so a standard client is stopped by its own SDK: 1402 "Request payload too large".
      // The worker's 2400 answer is for clients that get a bigger payload through anyway; an SDK
      // that stopped checking would reach it. Either way the refusal must say what was wrong.
      expect([RPC_ERROR.badRequest, RpcError.ErrorCode.REQUEST_PAYLOAD_TOO_LARGE]).toContain(refused.error.code);
      expect(refused.error.message).toMatch(/larger than|too large/i);
    }
    // The worker's own guard, which its answer handler runs first, on the same bytes.
    expect(parsePayload(AnswerSchema, huge)).toEqual({ ok: false, code: RPC_ERROR.badRequest, message: `payload is larger than ${MAX_RPC_PAYLOAD_BYTES} bytes` });

    // The same console, within the limit, is heard: the offer is declined and recorded as such.
    const ok = await agentB.callWorker(RPC.answer, answer, { room: 'desk', destination: offered.from });
    expect(ok).toMatchObject({ ok: true, json: { v: CONTRACT_VERSION, ok: true } });
    const record = await rig.ended(offered.offer.transferId, 'declined');
    expect(record.transfer.agentBIdentity).toBe('console-big');
  });

  it('a caller pasting a 50 KB message does not break the call', async () => {
    const { caller } = await rig.startCall('huge-message');
    const seen = new Set(caller.texts.items);
    const nextReply = (match: (text: string) => boolean, what: string) =>
      caller.texts.waitFor((m) => !seen.has(m) && m.topic === 'lk.transcription' && m.from !== caller.identity && match(m.text), WAIT_MS, what);

    // Words, not one 50 KB token: closer to a real paste, and it exercises whitespace handling.
    const huge = 'Please read my whole complaint carefully. '.repeat(1_250);
    expect(huge.length).toBeGreaterThanOrEqual(50_000);
    await caller.say(huge);
    const isHugeTurn = (r: RecordedRequest) => r.route === 'chat' && JSON.stringify(r.body).includes(huge.slice(0, 5_000));
    await rig.groq.waitForRequest(isHugeTurn, WAIT_MS);
    await nextReply((t) => t.includes('help desk'), 'a reply to the huge message');

    // The next normal message gets a normal answer.
    await caller.say('What about order 4471?');
    await nextReply((t) => t.includes('I see order 4471'), 'a normal reply after the huge message');

    // The summary model gets the transcript's clipped turn (2000 characters a turn), not 50 KB.
    const isSummary = (r: RecordedRequest) => r.route === 'chat' && typeof r.body === 'object' && r.body !== null && 'response_format' in r.body;
    const summary = await rig.groq.waitForRequest((r) => isSummary(r) && JSON.stringify(r.body).includes('Please read my whole complaint'), WAIT_MS);
    expect(JSON.stringify(summary.body).length).toBeLessThan(20_000);
  });

  it("the agents framework's session channel is closed: a caller gets no conversation or answers, cannot read the instructions nor run input", async () => {
    // @livekit/agents 1.9 opens a `lk.agent.session` channel in every room its AgentSession runs
    // in (for LiveKit's own tools): it streams the conversation, tool calls with their arguments
    // and outputs, to the caller, and answers the caller's requests: the agent's instructions,
    // the history, running text through the model (past the hold), switching audio input back on.
    // The worker closes it (agent/session-channel.ts).
    const { caller, agentIdentity } = await rig.startCall('session-channel');
    const marker = 'run-input-marker-7731';
    for (const request of [
      { case: 'getAgentInfo' as const, value: new pb.SessionRequest_GetAgentInfo() },
      { case: 'runInput' as const, value: new pb.SessionRequest_RunInput({ text: `Say ${marker}.` }) },
      { case: 'ping' as const, value: new pb.SessionRequest_Ping() },
    ]) {
      const msg = new pb.AgentSessionMessage({ message: { case: 'request', value: new pb.SessionRequest({ requestId: request.case, request }) } });
      const writer = await caller.room.localParticipant!.streamBytes({ topic: AGENT_SESSION_TOPIC, destinationIdentities: [agentIdentity] });
      await writer.write(msg.toBinary());
      await writer.close();
    }
    // Two ordinary turns after the requests: with the channel open, each turn's conversation items
    // (and the answers to the requests) stream to the caller well before the second reply.
    const seen = new Set(caller.texts.items);
    for (const text of ['What about order 4471?', 'And order 4471 again?']) {
      await caller.say(text);
      await caller.texts.waitFor((m) => !seen.has(m) && m.topic === 'lk.transcription' && m.from === agentIdentity && m.text.includes('I see order 4471'), WAIT_MS, `a reply to "${text}"`);
      for (const m of caller.texts.items) seen.add(m);
    }
    expect(rig.groq.requests.filter((r) => JSON.stringify(r.body ?? null).includes(marker))).toEqual([]);
    // From the call's start the caller got only the session's own start (the agent taking over, its
    // state): no conversation item, tool call or answer.
    expect(caller.agentSessionStreams.items.map((m) => m.kind).filter((k) => !SESSION_START_KINDS.includes(k))).toEqual([]);
  });
});
