/**
 * Phone targets: the exact CreateSIPParticipant requests the real SipClient sends for a target
 * (seen by the recording Twirp server), what each way a call can fail becomes, the MoveParticipant
 * probe that refuses phone transfers on a server that cannot move participants, and the phone
 * Agent B's side (voicemail greetings, keypad decisions).
 */
import { RoomServiceClient, SipCallError, SipClient } from 'livekit-server-sdk';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../agent/config.js';
import {
  PHONE_DECISION_PROMPT,
  type SipDefaults,
  type SipTarget,
  type SipTargetInput,
  SipTargetSchema,
  decisionFromDtmf,
  dialAgentB,
  looksLikeVoicemail,
  probeMoveSupport,
  reasonFromSipStatus,
  resetMoveSupportCache,
  sipFailureFromError,
} from '../../agent/sip.js';
import {
  OSS_NOT_IMPLEMENTED,
  SIP_RING_TIMEOUT_REPLY,
  type TwirpRecorder,
  type TwirpReply,
  sipParticipantReply,
  sipStatusReply,
  startTwirpRecorder,
} from '../support/twirp-recorder.js';

const API_KEY = 'recorder-key';
const API_SECRET = 'recorder-secret-that-is-long-enough';
const DEFAULTS: SipDefaults = { outboundTrunkId: 'ST_default', callerId: '+15550009999', ringTimeoutMs: 30_000 };

const started: TwirpRecorder[] = [];
async function recorder(): Promise<TwirpRecorder> {
  const r = await startTwirpRecorder({ apiSecret: API_SECRET });
  started.push(r);
  return r;
}

/** Behaviours that hold their reply until released (released in afterEach so no server waits). */
const gates: (() => void)[] = [];
function held(reply: TwirpReply, onArrival?: () => void): () => Promise<TwirpReply> {
  return () => {
    onArrival?.();
    return new Promise((resolve) => gates.push(() => resolve(reply)));
  };
}

afterEach(async () => {
  for (const release of gates.splice(0)) release();
  await Promise.all(started.splice(0).map((r) => r.close()));
});

function target(input: Omit<SipTargetInput, 'kind'>): SipTarget {
  return SipTargetSchema.parse({ kind: 'sip', ...input });
}

function issues(input: unknown): string[] {
  const parsed = SipTargetSchema.safeParse(input);
  return parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

describe('SipTargetSchema', () => {
  it('takes a full target and normalises the numbers', () => {
    const t = target({
      number: '+1 (555) 123-4567',
      trunkId: 'ST_abc123',
      callerId: '+1 555 000 1111',
      displayName: 'Acme Support',
      headers: { 'X-Transfer-Id': 'tr_1' },
      dtmf: 'ww1234#',
      ringTimeoutMs: 20_000,
    });
    expect(t).toEqual({
      kind: 'sip',
      number: '+15551234567',
      trunkId: 'ST_abc123',
      callerId: '+15550001111',
      displayName: 'Acme Support',
      headers: { 'X-Transfer-Id': 'tr_1' },
      dtmf: 'ww1234#',
      ringTimeoutMs: 20_000,
    });
    expect(target({ number: '2001' }).number).toBe('2001'); // an extension
  });

  it('refuses what would go wrong on the wire, naming the field', () => {
    expect(issues({ kind: 'sip', number: 'call me' })).toEqual([expect.stringMatching(/^number: must be a phone number/)]);
    expect(issues({ kind: 'sip', number: '+0123456789' })).toEqual([expect.stringMatching(/^number: /)]);
    expect(issues({ kind: 'sip', number: '+15551234567', trunkId: 'ST_a', trunk: { hostname: 'sip.example.com' } })).toEqual([
      'trunk: give trunkId or trunk, not both',
    ]);
    expect(issues({ kind: 'sip', number: '+15551234567', trunk: { hostname: 'sip:pbx.example.com' } })).toEqual([expect.stringMatching(/^trunk.hostname: /)]);
    expect(issues({ kind: 'sip', number: '+15551234567', dtmf: '12a' })).toEqual([expect.stringMatching(/^dtmf: /)]);
    expect(issues({ kind: 'sip', number: '+15551234567', ringTimeoutMs: 1_000 })).toEqual([expect.stringMatching(/^ringTimeoutMs: /)]);
    expect(issues({ kind: 'sip', number: '+15551234567', ringTimeoutMs: 120_000 })).toEqual([expect.stringMatching(/^ringTimeoutMs: /)]);
    expect(issues({ kind: 'sip', number: '+15551234567', displayName: 'Acme "Support"' })).toEqual([expect.stringMatching(/^displayName: /)]);
    expect(issues({ kind: 'sip', number: '+15551234567', extra: true })).toHaveLength(1);
  });

  it('caps SIP headers: no header injection, no stack-owned headers, bounded count and size', () => {
    const n = '+15551234567';
    expect(issues({ kind: 'sip', number: n, headers: { 'X-A': 'ok\r\nVia: evil' } })).toEqual([expect.stringMatching(/^headers.X-A: must be printable ASCII/)]);
    expect(issues({ kind: 'sip', number: n, headers: { 'Call-ID': 'x' } })).toEqual(['headers.Call-ID: Call-ID is set by the SIP stack and cannot be given']);
    expect(issues({ kind: 'sip', number: n, headers: { 'X A': 'x' } })).toEqual([expect.stringMatching(/^headers.X A: must be a SIP header name/)]);
    const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`X-H${i}`, 'v']));
    expect(issues({ kind: 'sip', number: n, headers: many })).toEqual(['headers: at most 16 headers']);
    const big = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`X-H${i}`, 'v'.repeat(1000)]));
    expect(issues({ kind: 'sip', number: n, headers: big })).toEqual([expect.stringMatching(/^headers: headers take 50\d\d bytes; at most 4096$/)]);
  });
});

describe('SIP configuration', () => {
  const VALID = { LIVEKIT_URL: 'ws://127.0.0.1:7880', LIVEKIT_API_KEY: 'devkey', LIVEKIT_API_SECRET: 'secret-value-123', GROQ_API_KEY: 'gsk_abcdef' };

  it('defaults to no trunk, no caller ID and a 30 s ring', () => {
    expect(loadConfig(VALID).sip).toEqual({ outboundTrunkId: undefined, callerId: undefined, ringTimeoutMs: 30_000 });
  });

  it('reads the trunk, caller ID and ring timeout', () => {
    const c = loadConfig({ ...VALID, SIP_OUTBOUND_TRUNK_ID: 'ST_abc123', SIP_CALLER_ID: '+1 555 000 1111', SIP_RING_TIMEOUT_MS: '45000' });
    expect(c.sip).toEqual({ outboundTrunkId: 'ST_abc123', callerId: '+15550001111', ringTimeoutMs: 45_000 });
  });

  it('names each bad SIP variable', () => {
    let problems: readonly { variable: string; message: string }[] = [];
    try {
      loadConfig({ ...VALID, SIP_OUTBOUND_TRUNK_ID: 'ST abc', SIP_CALLER_ID: 'reception', SIP_RING_TIMEOUT_MS: '500' });
    } catch (err) {
      if (err instanceof ConfigError) problems = err.problems;
    }
    expect(problems).toEqual([
      { variable: 'SIP_OUTBOUND_TRUNK_ID', message: 'is not a trunk id (got "ST abc"); expected a LiveKit outbound trunk id such as ST_abc123 (letters, digits, _ and -)' },
      { variable: 'SIP_CALLER_ID', message: 'is not a phone number (got "reception"); expected a phone number: E.164 such as +15551234567, or 3 to 15 digits' },
      { variable: 'SIP_RING_TIMEOUT_MS', message: 'is out of range (got 500); expected milliseconds, 5000 to 75000' },
    ]);
  });
});

describe('dialAgentB against a recording SIP API', () => {
  const opts = (extra: Partial<Parameters<typeof dialAgentB>[2]> = {}) => ({
    consultRoom: 'consult-1',
    identity: 'sip-agent-b',
    name: 'Sam (phone)',
    defaults: DEFAULTS,
    ...extra,
  });

  it('dials through the target trunk with caller ID, headers, DTMF and ring timeout, waiting until answered', async () => {
    const rec = await recorder();
    rec.setBehaviour('CreateSIPParticipant', sipParticipantReply);
    const sip = new SipClient(rec.url, API_KEY, API_SECRET);
    const t = target({
      number: '+15551234567',
      trunkId: 'ST_target',
      callerId: '+15550001111',
      displayName: 'Acme Support',
      headers: { 'X-Transfer-Id': 'tr_1' },
      dtmf: 'w1234#',
      ringTimeoutMs: 20_000,
    });

    const result = await dialAgentB(sip, t, opts({ attributes: { 'warm-transfer.transfer': 'tr_1' } }));

    expect(result).toEqual({ ok: true, identity: 'sip-agent-b', participantId: 'PA_recorded', sipCallId: 'SCL_recorded' });
    const [call, ...more] = rec.calls('CreateSIPParticipant');
    expect(more).toEqual([]);
    expect(call!.path).toBe('/twirp/livekit.SIP/CreateSIPParticipant');
    expect(call!.body).toEqual({
      sipTrunkId: 'ST_target',
      sipCallTo: '+15551234567',
      sipNumber: '+15550001111',
      roomName: 'consult-1',
      participantIdentity: 'sip-agent-b',
      participantName: 'Sam (phone)',
      participantAttributes: { 'warm-transfer.transfer': 'tr_1' },
      displayName: 'Acme Support',
      dtmf: 'w1234#',
      headers: { 'X-Transfer-Id': 'tr_1' },
      hidePhoneNumber: true,
      ringingTimeout: '20s',
      waitUntilAnswered: true,
    });
    // Placing calls takes the SIP call grant, and no room grant.
    expect(call!.auth?.signatureValid).toBe(true);
    expect(call!.auth?.claims.sip).toEqual({ call: true });
    expect(call!.auth?.claims.video ?? {}).toEqual({});
  });

  it('falls back to the configured trunk, caller ID and ring timeout', async () => {
    const rec = await recorder();
    rec.setBehaviour('CreateSIPParticipant', sipParticipantReply);
    const result = await dialAgentB(new SipClient(rec.url, API_KEY, API_SECRET), target({ number: '+442071234567' }), opts());
    expect(result).toMatchObject({ ok: true, identity: 'sip-agent-b' });
    expect(rec.calls('CreateSIPParticipant')[0]?.body).toEqual({
      sipTrunkId: 'ST_default',
      sipCallTo: '+442071234567',
      sipNumber: '+15550009999',
      roomName: 'consult-1',
      participantIdentity: 'sip-agent-b',
      participantName: 'Sam (phone)',
      hidePhoneNumber: true,
      ringingTimeout: '30s',
      waitUntilAnswered: true,
    });
  });

  it('sends an inline trunk instead of a trunk id', async () => {
    const rec = await recorder();
    rec.setBehaviour('CreateSIPParticipant', sipParticipantReply);
    const t = target({
      number: '+15551234567',
      trunk: { hostname: 'pbx.example.com:5061', transport: 'tls', username: 'worker', password: 'pbx-password', destinationCountry: 'US' },
    });
    const result = await dialAgentB(new SipClient(rec.url, API_KEY, API_SECRET), t, opts({ defaults: { ...DEFAULTS, outboundTrunkId: undefined } }));
    expect(result).toMatchObject({ ok: true });
    const body = rec.calls('CreateSIPParticipant')[0]?.body as Record<string, unknown>;
    expect(body.sipTrunkId).toBeUndefined();
    expect(body.trunk).toEqual({
      hostname: 'pbx.example.com:5061',
      transport: 'SIP_TRANSPORT_TLS',
      authUsername: 'worker',
      authPassword: 'pbx-password',
      destinationCountry: 'US',
    });
    expect(body.sipNumber).toBe('+15550009999');
  });

  it('without any trunk, answers not_configured and sends nothing', async () => {
    const rec = await recorder();
    const sip = new SipClient(rec.url, API_KEY, API_SECRET);
    const noTrunk = await dialAgentB(sip, target({ number: '+15551234567' }), opts({ defaults: { ringTimeoutMs: 30_000 } }));
    expect(noTrunk).toEqual({
      ok: false,
      reason: 'not_configured',
      detail: 'no outbound SIP trunk: give the target a trunkId or an inline trunk, or set SIP_OUTBOUND_TRUNK_ID',
    });
    const inlineNoCallerId = await dialAgentB(sip, target({ number: '+15551234567', trunk: { hostname: 'pbx.example.com' } }), opts({ defaults: { ringTimeoutMs: 30_000 } }));
    expect(inlineNoCallerId).toMatchObject({ ok: false, reason: 'not_configured', detail: expect.stringContaining('needs a caller ID') });
    expect(rec.requests.items).toEqual([]);
  });

  it.each([
    [486, 'Busy Here', 'busy'],
    [600, 'Busy Everywhere', 'busy'],
    [603, 'Decline', 'declined'],
    [403, 'Forbidden', 'declined'],
    [480, 'Temporarily Unavailable', 'no_answer'],
    [408, 'Request Timeout', 'no_answer'],
    [487, 'Request Terminated', 'no_answer'],
    [404, 'Not Found', 'unreachable'],
    [484, 'Address Incomplete', 'unreachable'],
    [503, 'Service Unavailable', 'unreachable'],
    [407, 'Proxy Authentication Required', 'not_configured'],
  ] as const)('maps SIP %i %s from the server to %s', async (code, status, reason) => {
    const rec = await recorder();
    rec.setBehaviour('CreateSIPParticipant', () => sipStatusReply(code, status));
    const result = await dialAgentB(new SipClient(rec.url, API_KEY, API_SECRET), target({ number: '+15551234567' }), opts());
    expect(result).toEqual({ ok: false, reason, sipStatusCode: code, detail: expect.stringContaining(`(SIP ${code} ${status})`) });
    expect(rec.calls('CreateSIPParticipant')[0]?.response.body).toMatchObject({ meta: { sip_status_code: String(code), sip_status: status } });
  });

  it('the SDK surfaces a SIP status as a SipCallError, which is what gets classified', async () => {
    const rec = await recorder();
    rec.setBehaviour('CreateSIPParticipant', () => sipStatusReply(486, 'Busy Here'));
    const err = await new SipClient(rec.url, API_KEY, API_SECRET)
      .createSipParticipant('ST_x', '+15551234567', 'consult-1', { waitUntilAnswered: true })
      .then(() => expect.fail('resolved'), (e: unknown) => e);
    expect(err).toBeInstanceOf(SipCallError);
    expect(err).toMatchObject({ status: 429, code: 'resource_exhausted', sipStatusCode: 486, sipStatus: 'Busy Here', message: 'SIP call failed: 486 Busy Here (resource_exhausted)' });
    expect(sipFailureFromError(err)).toEqual({ reason: 'busy', sipStatusCode: 486, detail: 'the line is busy (SIP 486 Busy Here)' });
  });

  it.each([
    ['the ring timeout ran out', SIP_RING_TIMEOUT_REPLY, 'no_answer'],
    ['the server has no SIP service', { kind: 'error', error: { code: 'internal', msg: 'sip not connected (redis required)' } }, 'not_configured'],
    ['the trunk id is unknown', { kind: 'error', error: { code: 'not_found', msg: 'requested sip trunk does not exist' } }, 'not_configured'],
    ['the API key may not place calls', { kind: 'error', error: { code: 'permission_denied', msg: 'permissions denied' } }, 'not_configured'],
    ['the server fails otherwise', { kind: 'error', error: { code: 'internal', msg: 'boom' } }, 'failed'],
  ] as const)('without a SIP status: %s gives %s', async (_what, reply, reason) => {
    const rec = await recorder();
    rec.setBehaviour('CreateSIPParticipant', () => reply as TwirpReply);
    const result = await dialAgentB(new SipClient(rec.url, API_KEY, API_SECRET), target({ number: '+15551234567' }), opts());
    expect(result).toMatchObject({ ok: false, reason });
    expect(result).not.toHaveProperty('sipStatusCode');
  });

  it('an abort ends the attempt while the phone still rings', async () => {
    const rec = await recorder();
    let arrived!: () => void;
    const ringing = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    rec.setBehaviour('CreateSIPParticipant', held(SIP_RING_TIMEOUT_REPLY, () => arrived()));
    const abort = new AbortController();
    const dialling = dialAgentB(new SipClient(rec.url, API_KEY, API_SECRET), target({ number: '+15551234567' }), opts({ signal: abort.signal }));
    await ringing;
    abort.abort(new Error('the caller hung up'));
    expect(await dialling).toEqual({ ok: false, reason: 'cancelled', detail: 'the call was cancelled: the caller hung up' });
  });

  it('an already aborted signal dials nothing', async () => {
    const rec = await recorder();
    const abort = new AbortController();
    abort.abort('caller left');
    const result = await dialAgentB(new SipClient(rec.url, API_KEY, API_SECRET), target({ number: '+15551234567' }), opts({ signal: abort.signal }));
    expect(result).toEqual({ ok: false, reason: 'cancelled', detail: 'the call was cancelled: caller left' });
    expect(rec.requests.items).toEqual([]);
  });
});

describe('classifying dial errors', () => {
  it('maps SIP codes by meaning and by class', () => {
    expect([486, 600, 603, 403, 607, 608, 408, 480, 487, 404, 604, 410, 500, 502, 401, 407, 488, 302].map(reasonFromSipStatus)).toEqual([
      'busy', 'busy', 'declined', 'declined', 'declined', 'declined', 'no_answer', 'no_answer', 'no_answer',
      'unreachable', 'unreachable', 'unreachable', 'unreachable', 'unreachable', 'not_configured', 'not_configured', 'failed', 'failed',
    ]);
  });

  it('takes the SDK giving up after the ring timeout as no answer, and a dead API as a failure', () => {
    const timeout = new DOMException('The operation was aborted due to timeout', 'TimeoutError');
    expect(sipFailureFromError(timeout, 30_000)).toEqual({ reason: 'no_answer', detail: 'nobody answered within 30 s: The operation was aborted due to timeout' });
    expect(sipFailureFromError(new TypeError('fetch failed'))).toEqual({ reason: 'failed', detail: 'the call failed: fetch failed' });
  });
});

describe('probeMoveSupport', () => {
  beforeEach(() => resetMoveSupportCache());
  const probe = { room: 'caller-1', identity: 'agent-AJ_worker' };

  it('on the open-source server: refused before dialling, with the server answer in the message; cached', async () => {
    const rec = await recorder();
    rec.setMoveBehaviour('oss-not-implemented');
    const rooms = new RoomServiceClient(rec.url, API_KEY, API_SECRET);
    const answer = await probeMoveSupport(rooms, probe);
    expect(answer).toEqual({
      supported: false,
      known: true,
      message:
        'phone transfers need a LiveKit server that can move participants (LiveKit Cloud); this server answered MoveParticipant with "twirp error unknown: not implemented"',
    });
    const [move] = rec.calls('MoveParticipant');
    expect(move?.body).toEqual({ room: 'caller-1', identity: 'agent-AJ_worker', destinationRoom: 'caller-1-move-probe' });
    expect(OSS_NOT_IMPLEMENTED).toMatchObject({ error: { msg: 'twirp error unknown: not implemented' } });

    rec.setMoveBehaviour('ok');
    expect(await probeMoveSupport(rooms, probe)).toEqual(answer);
    expect(rec.calls('MoveParticipant')).toHaveLength(1);
  });

  it('a spec-style unimplemented (501) is unsupported too', async () => {
    const rec = await recorder();
    rec.setMoveBehaviour('unimplemented');
    expect(await probeMoveSupport(new RoomServiceClient(rec.url, API_KEY, API_SECRET), probe)).toMatchObject({ supported: false, known: true });
  });

  it.each([
    ['refuses to move an agent participant', { kind: 'error', status: 500, error: { code: 'unknown', msg: 'AGENT participants cannot be moved, one-shot signaling mode: false' } }],
    ['says the participant is not there', { kind: 'error', error: { code: 'not_found', msg: 'participant does not exist' } }],
    ['moves it', { kind: 'ok' }],
  ] as const)('supported when the server %s', async (_what, reply) => {
    const rec = await recorder();
    rec.setMoveBehaviour(() => reply as TwirpReply);
    const answer = await probeMoveSupport(new RoomServiceClient(rec.url, API_KEY, API_SECRET), probe);
    expect(answer.supported).toBe(true);
  });

  it('inconclusive answers (auth, silence) refuse but are not cached', async () => {
    const rec = await recorder();
    const rooms = new RoomServiceClient(rec.url, API_KEY, API_SECRET);
    rec.setMoveBehaviour(() => ({ kind: 'error', error: { code: 'unauthenticated', msg: 'invalid token' } }));
    expect(await probeMoveSupport(rooms, probe)).toEqual({
      supported: false,
      known: false,
      message: 'phone transfers need a LiveKit server that can move participants (LiveKit Cloud); a MoveParticipant probe failed: invalid token',
    });

    rec.setMoveBehaviour(held({ kind: 'ok' }));
    expect(await probeMoveSupport(rooms, probe, { timeoutMs: 100 })).toEqual({
      supported: false,
      known: false,
      message: 'phone transfers need a LiveKit server that can move participants (LiveKit Cloud); this server did not answer a MoveParticipant probe within 100 ms',
    });

    rec.setMoveBehaviour('oss-not-implemented');
    expect(await probeMoveSupport(rooms, probe)).toMatchObject({ supported: false, known: true });
  });

  it('shares one probe between concurrent transfers', async () => {
    const rec = await recorder();
    rec.setMoveBehaviour('oss-not-implemented');
    const rooms = new RoomServiceClient(rec.url, API_KEY, API_SECRET);
    const [a, b] = await Promise.all([probeMoveSupport(rooms, probe), probeMoveSupport(rooms, probe)]);
    expect(a).toBe(b);
    expect(rec.calls('MoveParticipant')).toHaveLength(1);
  });
});

describe('the phone Agent B', () => {
  it.each([
    'Hi, you have reached Sam. Please leave a message after the tone.',
    "You've reached the voicemail of Sam Jones.",
    'The person you are calling is not available. Please record your message after the beep.',
    'Sorry, I can’t take your call right now, leave your name and number',
    'The mailbox is full and cannot accept any messages at this time.',
    'The subscriber you have dialled is unavailable',
    "Hey it's Sam, sorry I missed your call",
    'At the tone, please record your message. When you are finished, press pound.',
    'Your call has been forwarded to an automated voice messaging system.',
    "It's Sam, talk to me after the beep",
  ])('hears voicemail in %j', (greeting) => {
    expect(looksLikeVoicemail(greeting)).toBe(true);
  });

  it.each([
    'hello, this is Sam from billing',
    'Hi, Sam speaking, how can I help?',
    "Yes, I'm available, go ahead",
    'Hello? Who is this?',
    'Sure, I can take a message for the caller later, brief me',
    '',
  ])('hears a person in %j', (greeting) => {
    expect(looksLikeVoicemail(greeting)).toBe(false);
  });

  it('1 connects, 2 declines, anything else is nothing', () => {
    expect(['1', '2', ' 1', '3', '*', '#', '0', '', '12'].map(decisionFromDtmf)).toEqual(['connect', 'decline', 'connect', undefined, undefined, undefined, undefined, undefined, undefined]);
    expect(PHONE_DECISION_PROMPT).toBe('Press 1 or say connect to take the call, press 2 to decline.');
  });
});
