/**
 * Phone targets (SIP): Agent B is dialled into the consult room through an outbound trunk.
 *
 * - `SipTargetSchema`: what a phone target looks like (number, trunk id or inline trunk, caller ID,
 *   SIP headers, DTMF, ring timeout), validated before anything is dialled.
 * - `dialAgentB`: one CreateSIPParticipant that waits until the phone is answered, and what a failed
 *   call means for the transfer (`SipFailureReason`, from the SIP status the server passes on).
 * - `probeMoveSupport`: a phone leg has no console that could rejoin the caller room with a token,
 *   so MoveParticipant is its only way there. Without it the transfer is refused before dialling.
 * - `looksLikeVoicemail`, `decisionFromDtmf`, `PHONE_DECISION_PROMPT`: the phone Agent B's side.
 */
import type { RoomServiceClient, SipClient } from 'livekit-server-sdk';
import { z } from 'zod';
import { isNotImplemented } from './server-errors.js';
import type { TransferOutcome } from './transfer-state.js';

// ---------------------------------------------------------------------------------------------
// The target
// ---------------------------------------------------------------------------------------------

/** E.164 with "+", or a national number / extension of 3 to 15 digits (after normalizePhoneNumber). */
export const PHONE_NUMBER_RE = /^(\+[1-9]\d{6,14}|\d{3,15})$/;
const PHONE_NUMBER_EXPECTED = 'a phone number: E.164 such as +15551234567, or 3 to 15 digits';

/** Drops the spaces, dots, dashes and brackets people write numbers with. */
export function normalizePhoneNumber(raw: string): string {
  return raw.trim().replace(/[\s().-]/g, '');
}

/** LiveKit outbound trunk ids (`ST_...`): a plain token. */
export const TRUNK_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Ring timeout bounds. The upper one stays under the 80 s the server gives a CreateSIPParticipant
 * that waits until answered, so the ring timeout (not the server's deadline) ends an unanswered call.
 */
export const SIP_RING_TIMEOUT_MIN_MS = 5_000;
export const SIP_RING_TIMEOUT_MAX_MS = 75_000;

export const MAX_SIP_HEADERS = 16;
/** Names and values of all headers together. */
export const MAX_SIP_HEADER_BYTES = 4096;

/**
 * Headers the SIP stack writes itself; livekit refuses requests that set them (and `To`/`Via`
 * are on their way to being refused).
 */
const RESERVED_SIP_HEADERS = new Set([
  'accept', 'accept-encoding', 'accept-language', 'allow', 'allow-events', 'call-id', 'contact', 'content-encoding',
  'content-length', 'content-type', 'cseq', 'event', 'expires', 'from', 'max-forwards', 'record-route', 'refer-to',
  'reply-to', 'to', 'via', 'k', 'l', 'm', 'o', 'r', 't', 'u', 'v',
]);

/** RFC 3261 token characters. */
const SIP_HEADER_NAME_RE = /^[A-Za-z0-9!%*_+`'~.-]{1,64}$/;
/** Printable ASCII only: a CR or LF in a value would inject headers. */
const SIP_HEADER_VALUE_RE = /^[\x20-\x7e]{0,1024}$/;
/** Host name or IPv4 address, optional port; no scheme, user or path. */
const HOST_RE = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:\d{1,5})?$/;

const phoneNumber = z
  .string()
  .max(40)
  .transform(normalizePhoneNumber)
  .pipe(z.string().regex(PHONE_NUMBER_RE, `must be ${PHONE_NUMBER_EXPECTED}`));

export const SIP_TRANSPORTS = ['auto', 'udp', 'tcp', 'tls'] as const;
export type SipTransport = (typeof SIP_TRANSPORTS)[number];

/** An outbound trunk given inline instead of by id (livekit's SIPOutboundConfig). */
export const SipTrunkSchema = z
  .object({
    hostname: z.string().max(253).regex(HOST_RE, 'must be a host name or address with an optional :port (no sip: and no path)'),
    transport: z.enum(SIP_TRANSPORTS).optional(),
    username: z.string().min(1).max(256).optional(),
    password: z.string().min(1).max(256).optional(),
    /** ISO 3166-1 alpha-2 country the call terminates in (LiveKit Cloud routes by it). */
    destinationCountry: z.string().regex(/^[A-Z]{2}$/, 'must be an ISO 3166-1 alpha-2 code such as US').optional(),
    /** Host for the From header, instead of the project's SIP domain. */
    fromHost: z.string().max(253).regex(HOST_RE, 'must be a host name').optional(),
  })
  .strict();
export type SipTrunk = z.infer<typeof SipTrunkSchema>;

const sipHeaders = z
  .record(z.string(), z.string().regex(SIP_HEADER_VALUE_RE, 'must be printable ASCII, at most 1024 characters'))
  .superRefine((headers, ctx) => {
    const names = Object.keys(headers);
    if (names.length > MAX_SIP_HEADERS) ctx.addIssue({ code: 'custom', message: `at most ${MAX_SIP_HEADERS} headers` });
    const bytes = names.reduce((n, k) => n + k.length + (headers[k]?.length ?? 0), 0);
    if (bytes > MAX_SIP_HEADER_BYTES) ctx.addIssue({ code: 'custom', message: `headers take ${bytes} bytes; at most ${MAX_SIP_HEADER_BYTES}` });
    for (const name of names) {
      // Checked here, not as the record's key schema, so the message says what a name may be.
      if (!SIP_HEADER_NAME_RE.test(name)) {
        ctx.addIssue({ code: 'custom', path: [name], message: "must be a SIP header name (letters, digits and -.!%*_+`'~, at most 64)" });
      } else if (RESERVED_SIP_HEADERS.has(name.toLowerCase())) {
        ctx.addIssue({ code: 'custom', path: [name], message: `${name} is set by the SIP stack and cannot be given` });
      }
    }
  });

export const SipTargetSchema = z
  .object({
    kind: z.literal('sip'),
    number: phoneNumber,
    /** Outbound trunk to dial through; default SIP_OUTBOUND_TRUNK_ID. */
    trunkId: z.string().regex(TRUNK_ID_RE, 'must be a trunk id such as ST_abc123').optional(),
    /** Or a trunk given inline (needs a caller ID: an inline trunk has no numbers of its own). */
    trunk: SipTrunkSchema.optional(),
    /** The number Agent B's phone shows (SIP From); default SIP_CALLER_ID, else a number of the trunk. */
    callerId: phoneNumber.optional(),
    /** Display name in the From header; livekit takes it as the content of a quoted string. */
    displayName: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[^"\\\x00-\x1f\x7f]+$/, 'must not contain quotes, backslashes or control characters')
      .optional(),
    headers: sipHeaders.optional(),
    /** Sent once answered (extensions, PINs): digits, * and #, `w` waits half a second. */
    dtmf: z.string().regex(/^[0-9*#w]{1,32}$/, 'must be up to 32 of 0-9, *, # and w (a half-second pause)').optional(),
    ringTimeoutMs: z.number().int().min(SIP_RING_TIMEOUT_MIN_MS).max(SIP_RING_TIMEOUT_MAX_MS).optional(),
  })
  .strict()
  .refine((t) => !(t.trunkId && t.trunk), { message: 'give trunkId or trunk, not both', path: ['trunk'] });
export type SipTarget = z.infer<typeof SipTargetSchema>;
export type SipTargetInput = z.input<typeof SipTargetSchema>;

/** From the configuration (SIP_OUTBOUND_TRUNK_ID, SIP_CALLER_ID, SIP_RING_TIMEOUT_MS). */
export interface SipDefaults {
  outboundTrunkId?: string;
  callerId?: string;
  ringTimeoutMs: number;
}

export type SipRoute =
  | { ok: true; trunkId: string; trunk?: SipTrunk; callerId?: string }
  | { ok: false; detail: string };

/** The trunk and caller ID a target goes out with, or why it cannot go out at all. */
export function resolveSipRoute(target: SipTarget, defaults: SipDefaults): SipRoute {
  const callerId = target.callerId ?? defaults.callerId;
  if (target.trunk) {
    // With no trunk record the server has no number to put in From (it refuses "no numbers on outbound trunk").
    if (!callerId) return { ok: false, detail: 'an inline SIP trunk needs a caller ID: set callerId on the target or SIP_CALLER_ID' };
    return { ok: true, trunkId: '', trunk: target.trunk, callerId };
  }
  const trunkId = target.trunkId ?? defaults.outboundTrunkId;
  if (!trunkId) {
    return { ok: false, detail: 'no outbound SIP trunk: give the target a trunkId or an inline trunk, or set SIP_OUTBOUND_TRUNK_ID' };
  }
  return { ok: true, trunkId, callerId };
}

// ---------------------------------------------------------------------------------------------
// Dialling
// ---------------------------------------------------------------------------------------------

export const SIP_FAILURE_REASONS = ['busy', 'declined', 'no_answer', 'voicemail', 'unreachable', 'not_configured', 'cancelled', 'failed'] as const;
/**
 * Why a phone attempt ended without Agent B. `voicemail` comes from the briefing (the first thing
 * the phone says, see looksLikeVoicemail), never from the dial itself: a machine answers like a person.
 */
export type SipFailureReason = (typeof SIP_FAILURE_REASONS)[number];

/** How a phone attempt that did not connect ends the transfer attempt. */
export function outcomeOfSipFailure(reason: SipFailureReason): TransferOutcome {
  switch (reason) {
    case 'busy':
    case 'declined':
      return 'declined';
    case 'no_answer':
    case 'voicemail':
      return 'no_answer';
    default:
      return 'failed';
  }
}

export type SipDialResult =
  | { ok: true; identity: string; participantId?: string; sipCallId?: string }
  | { ok: false; reason: SipFailureReason; detail: string; sipStatusCode?: number };

export interface SipDialOptions {
  consultRoom: string;
  /** Participant identity of the phone leg: how the caller of dialAgentB finds (and removes) it. */
  identity: string;
  name?: string;
  /** Ends the attempt; the phone leg may still come up, so the caller removes `identity` afterwards. */
  signal?: AbortSignal;
  defaults: SipDefaults;
  /** Extra participant attributes for the phone leg. */
  attributes?: Record<string, string>;
}

type OutboundTrunkConfig = NonNullable<Parameters<SipClient['createSipParticipant']>[4]>;

/** livekit.SIPTransport wire values. */
const TRANSPORT_WIRE: Record<SipTransport, number> = { auto: 0, udp: 1, tcp: 2, tls: 3 };

function outboundTrunkConfig(trunk: SipTrunk): OutboundTrunkConfig {
  const partial = {
    hostname: trunk.hostname,
    transport: TRANSPORT_WIRE[trunk.transport ?? 'auto'],
    authUsername: trunk.username ?? '',
    authPassword: trunk.password ?? '',
    destinationCountry: trunk.destinationCountry ?? '',
    fromHost: trunk.fromHost ?? '',
  };
  // The SDK builds the protobuf message from this partial; its class is not exported by the SDK.
  return partial as unknown as OutboundTrunkConfig;
}

/**
 * Dial Agent B into the consult room and wait until the phone is answered (or not).
 * Never throws: every way it can end is a SipDialResult.
 */
export async function dialAgentB(
  sipClient: Pick<SipClient, 'createSipParticipant'>,
  target: SipTarget,
  opts: SipDialOptions,
): Promise<SipDialResult> {
  const route = resolveSipRoute(target, opts.defaults);
  if (!route.ok) return { ok: false, reason: 'not_configured', detail: route.detail };
  if (opts.signal?.aborted) return cancelled(opts.signal);
  const ringTimeoutMs = target.ringTimeoutMs ?? opts.defaults.ringTimeoutMs;
  try {
    const dialling = sipClient.createSipParticipant(
      route.trunkId,
      target.number,
      opts.consultRoom,
      {
        fromNumber: route.callerId,
        participantIdentity: opts.identity,
        participantName: opts.name,
        participantAttributes: opts.attributes,
        displayName: target.displayName,
        headers: target.headers,
        dtmf: target.dtmf,
        ringingTimeout: Math.ceil(ringTimeoutMs / 1000),
        waitUntilAnswered: true,
        // Agent B's number and the trunk host would otherwise be attributes the caller's app can read after the move.
        hidePhoneNumber: true,
      },
      route.trunk && outboundTrunkConfig(route.trunk),
    );
    const outcome = await untilAborted(dialling, opts.signal);
    if (outcome.aborted) return cancelled(opts.signal);
    const info = outcome.value;
    return {
      ok: true,
      identity: info.participantIdentity || opts.identity,
      participantId: info.participantId || undefined,
      sipCallId: info.sipCallId || undefined,
    };
  } catch (err) {
    return { ok: false, ...sipFailureFromError(err, ringTimeoutMs) };
  }
}

function cancelled(signal: AbortSignal | undefined): SipDialResult {
  const why = signal?.reason instanceof Error ? signal.reason.message : typeof signal?.reason === 'string' ? signal.reason : '';
  return { ok: false, reason: 'cancelled', detail: why ? `the call was cancelled: ${why}` : 'the call was cancelled' };
}

/** Settles with the promise, or at once when the signal aborts (the promise's own end is then ignored). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<{ aborted: false; value: T } | { aborted: true }> {
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve({ aborted: true });
    signal?.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal?.removeEventListener('abort', onAbort);
        resolve({ aborted: false, value });
      },
      (err: unknown) => {
        signal?.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** What a final SIP response code means for the transfer. */
export function reasonFromSipStatus(code: number): SipFailureReason {
  switch (code) {
    case 486: // Busy Here
    case 600: // Busy Everywhere
      return 'busy';
    case 403: // Forbidden
    case 603: // Decline
    case 607: // Unwanted
    case 608: // Rejected
      return 'declined';
    case 408: // Request Timeout
    case 480: // Temporarily Unavailable
    case 487: // Request Terminated (our CANCEL when the ring timeout ends)
      return 'no_answer';
    case 401:
    case 407: // the trunk's credentials were refused
      return 'not_configured';
    case 404:
    case 410:
    case 484:
    case 485:
    case 604:
      return 'unreachable';
  }
  if (code >= 500 && code < 600) return 'unreachable';
  return 'failed';
}

const REASON_TEXT: Record<SipFailureReason, string> = {
  busy: 'the line is busy',
  declined: 'the call was declined',
  no_answer: 'nobody answered',
  voicemail: 'voicemail answered',
  unreachable: 'the number could not be reached',
  not_configured: 'SIP is not set up for this call',
  cancelled: 'the call was cancelled',
  failed: 'the call failed',
};

/**
 * A failed CreateSIPParticipant as a typed reason. The server passes the callee side's final SIP
 * response on as Twirp metadata (`sip_status_code`, `sip_status`; the SDK's SipCallError); without
 * one, the Twirp code and message tell (ring timeout: `canceled` "sip request timed out").
 */
export function sipFailureFromError(err: unknown, ringTimeoutMs?: number): { reason: SipFailureReason; detail: string; sipStatusCode?: number } {
  const e = (typeof err === 'object' && err !== null ? err : {}) as { name?: unknown; message?: unknown; code?: unknown; metadata?: unknown };
  const meta = (typeof e.metadata === 'object' && e.metadata !== null ? e.metadata : {}) as Record<string, unknown>;
  const message = typeof e.message === 'string' ? e.message : String(err);
  const sipStatusCode = Number(meta.sip_status_code);
  if (Number.isInteger(sipStatusCode) && sipStatusCode >= 300 && sipStatusCode < 700) {
    const reason = reasonFromSipStatus(sipStatusCode);
    const phrase = typeof meta.sip_status === 'string' && meta.sip_status ? ` ${meta.sip_status}` : '';
    return { reason, sipStatusCode, detail: `${REASON_TEXT[reason]} (SIP ${sipStatusCode}${phrase})` };
  }
  const code = typeof e.code === 'string' ? e.code : '';
  const said = (reason: SipFailureReason, extra = '') => ({ reason, detail: `${REASON_TEXT[reason]}${extra}: ${message}` });
  // The SDK gives up (AbortSignal.timeout) 2 s after the ring timeout.
  if (e.name === 'TimeoutError' || e.name === 'AbortError') {
    return said('no_answer', ringTimeoutMs ? ` within ${Math.round(ringTimeoutMs / 1000)} s` : '');
  }
  if (/sip not connected|sip trunk does not exist|no numbers on outbound trunk|missing sip trunk/i.test(message) || code === 'unimplemented' || isNotImplemented(err)) {
    return said('not_configured');
  }
  if (code === 'permission_denied' || code === 'unauthenticated') return said('not_configured', ' (the API key may not place SIP calls)');
  if (code === 'canceled' || code === 'deadline_exceeded' || /timed out/i.test(message)) return said('no_answer');
  if (code === 'resource_exhausted') return said('busy');
  if (code === 'not_found') return said('unreachable');
  return said('failed');
}

// ---------------------------------------------------------------------------------------------
// Can this server move participants?
// ---------------------------------------------------------------------------------------------

export type MoveSupport = { supported: true; message: string } | { supported: false; known: boolean; message: string };

/** A participant that exists and that no server moves: the worker's own (kind AGENT) participant. */
export interface MoveProbe {
  room: string;
  identity: string;
}

const MOVE_REQUIRED = 'phone transfers need a LiveKit server that can move participants (LiveKit Cloud)';
const moveSupportCache = new Map<string, Promise<MoveSupport>>();

/**
 * Whether the server implements MoveParticipant, found out by asking it to move `probe` (the
 * worker's own participant in the caller room) to a room nobody uses. Answers are cached per
 * process (per `cacheKey`); an inconclusive one is not.
 *
 * Why a real participant: open-source livekit-server (1.13.5) sends MoveParticipant straight to
 * the participant's own RPC topic, and only a connected participant's handler answers "not
 * implemented" (at once). For a room or identity that does not exist nobody answers: the server
 * waits out its internal RPC retries (about 15 s) and says "request timed out", which tells nothing.
 * Why the worker's participant: it is kind AGENT, which a server that implements moving refuses
 * to move ("AGENT participants cannot be moved"), so the probe changes nothing there either.
 */
export function probeMoveSupport(
  roomService: Pick<RoomServiceClient, 'moveParticipant'>,
  probe: MoveProbe,
  opts: { timeoutMs?: number; cacheKey?: string } = {},
): Promise<MoveSupport> {
  const key = opts.cacheKey ?? 'default';
  const cached = moveSupportCache.get(key);
  if (cached) return cached;
  const pending = askServer(roomService, probe, opts.timeoutMs ?? 5_000).then((answer) => {
    if (!answer.supported && !answer.known) moveSupportCache.delete(key);
    return answer;
  });
  moveSupportCache.set(key, pending);
  return pending;
}

/** Forget cached probe answers (tests; a worker pointed at another server). */
export function resetMoveSupportCache(): void {
  moveSupportCache.clear();
}

async function askServer(roomService: Pick<RoomServiceClient, 'moveParticipant'>, probe: MoveProbe, timeoutMs: number): Promise<MoveSupport> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const asked = roomService.moveParticipant(probe.room, probe.identity, `${probe.room}-move-probe`).then(
    () => ({ err: undefined, threw: false }),
    (err: unknown) => ({ err, threw: true }),
  );
  try {
    const outcome = await Promise.race([asked, timedOut]);
    if (outcome === 'timeout') {
      return { supported: false, known: false, message: `${MOVE_REQUIRED}; this server did not answer a MoveParticipant probe within ${timeoutMs} ms` };
    }
    if (!outcome.threw) return { supported: true, message: 'MoveParticipant answered ok' };
    const answer = describeError(outcome.err);
    if (isNotImplemented(outcome.err)) {
      return { supported: false, known: true, message: `${MOVE_REQUIRED}; this server answered MoveParticipant with "${answer}"` };
    }
    const e = outcome.err as { status?: unknown; code?: unknown };
    // Only a Twirp answer about the request itself says the method exists; auth or transport errors do not.
    if (typeof e?.status !== 'number' || e.code === 'unauthenticated' || e.code === 'permission_denied') {
      return { supported: false, known: false, message: `${MOVE_REQUIRED}; a MoveParticipant probe failed: ${answer}` };
    }
    return { supported: true, message: `the server implements MoveParticipant (it refused the probe: "${answer}")` };
  } finally {
    clearTimeout(timer);
  }
}

function describeError(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ---------------------------------------------------------------------------------------------
// The phone Agent B
// ---------------------------------------------------------------------------------------------

/** Said to a phone Agent B after the brief. */
export const PHONE_DECISION_PROMPT = 'Press 1 or say connect to take the call, press 2 to decline.';

export type PhoneDecision = 'connect' | 'decline';

/** A keypad digit from the phone Agent B: 1 takes the call, 2 declines, anything else nothing. */
export function decisionFromDtmf(digit: string): PhoneDecision | undefined {
  switch (digit.trim()) {
    case '1':
      return 'connect';
    case '2':
      return 'decline';
    default:
      return undefined;
  }
}

/** Phrases of answering machines and carrier voicemail; one is enough. */
const VOICEMAIL_PATTERNS: readonly RegExp[] = [
  /\bvoice ?mail\b/,
  /\bvoice messag(e|ing)\b/,
  /\bmail ?box\b/,
  /\bmessage bank\b/,
  /\bleave (me |us )?(a |your )?(brief |short |quick |detailed )?(message|voice message|name and number)\b/,
  /\b(after|at) the (tone|beep)\b/,
  /\brecord (your|a) message\b/,
  /(\b(is|are)|'s|'re) (not |un)available\b|\b(isn't|aren't) available\b/,
  /\b(isn't|aren't|is not able to|can't|cannot|can not|unable to) (come to|get to|take|answer) (the|your|this) (phone|call)\b/,
  /\b(person|number|party|subscriber|customer) (you are|you're|you have) (calling|called|dialled|dialed|trying to reach)\b/,
  /\b(i|we) missed your call\b/,
  /\bno one is (available|here) to (take|answer)\b/,
  /\bpress (pound|hash|the pound key|the hash key) when (you are |you're )?(finished|done)\b/,
];

/**
 * Whether the first thing the phone leg says is a voicemail greeting rather than a person
 * ("You've reached Sam, please leave a message after the tone"). English only.
 */
export function looksLikeVoicemail(text: string): boolean {
  const t = text
    .toLowerCase()
    .replace(/[’`]/g, "'")
    .replace(/[^a-z0-9' ]+/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  if (!t) return false;
  return VOICEMAIL_PATTERNS.some((re) => re.test(t));
}
