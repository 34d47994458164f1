/**
 * The console contract, version 1: how Agent B consoles (and, later, human Agent A consoles) talk
 * with the worker. LiveKit RPC for requests, text streams for pushed data, participant attributes
 * for presence. Every payload is JSON with a `v` field; the schemas below are the contract, and the
 * README documents them. Anything that does not parse is refused with a clear RPC error.
 */
import { z } from 'zod';
import { SipTargetSchema } from './sip.js';

export const CONTRACT_VERSION = 1 as const;

/** RPC method names. Direction and room are in the comments; the README has the full table. */
export const RPC = {
  /** worker -> console, desk room: an offer of a call. */
  offer: 'warm-transfer.offer',
  /** console -> worker, desk room: accept or decline an offer. */
  answer: 'warm-transfer.answer',
  /** console -> worker, consult room: put me through to the caller. */
  connect: 'warm-transfer.connect',
  /** console -> worker, consult room: decline after (or during) the briefing. */
  decline: 'warm-transfer.decline',
  /** worker -> console, consult room: join the caller room with this token (rejoin strategy). */
  join: 'warm-transfer.join',
  /** human Agent A console -> worker, caller room (assist mode): start a transfer. */
  start: 'warm-transfer.start',
  /** worker -> human Agent A console, caller room: the transfer is done, leave the caller room. */
  leave: 'warm-transfer.leave',
  /** console (Agent A or B) -> worker, consult room: read the spoken brief aloud. */
  readBrief: 'warm-transfer.read-brief',
  /** worker -> AI agent target, caller room: you are on; greet the caller (answers after the greeting). */
  greet: 'warm-transfer.greet',
} as const;

/** Text-stream topics the worker writes to consoles. */
export const TOPIC = {
  /** consult room: the full structured summary, once, as soon as the console is in. */
  summary: 'warm-transfer.summary',
  /** desk and consult rooms: what happened to a transfer (briefing, connecting, completed, cancelled). */
  status: 'warm-transfer.status',
} as const;

/** Participant attributes a console sets on itself in the desk room. */
export const ATTR = {
  /** `agent-b` marks a console that takes transferred calls. */
  role: 'warm-transfer.role',
  /** `true` when the person at the console can take a call now. */
  available: 'warm-transfer.available',
  /** Comma-separated skills, e.g. `billing,returns`. */
  skills: 'warm-transfer.skills',
  /** Milliseconds since the epoch when the console last became available: longest idle is offered first. */
  idleSince: 'warm-transfer.idle_since',
  /** Set by an AI agent target on itself in the caller room: the transfer id it is taking over. */
  handoff: 'warm-transfer.handoff',
} as const;

export const CONSOLE_ROLE = 'agent-b';

/**
 * RPC error codes (application range; LiveKit's own codes are 1xxx). The message says what was
 * wrong; `data` carries the machine-readable reason.
 */
export const RPC_ERROR = {
  badRequest: 2400,
  forbidden: 2403,
  unknownTransfer: 2404,
  wrongState: 2409,
  unsupportedVersion: 2426,
  /** Nobody can take the transfer now (no console, target not configured, server cannot move). */
  unavailable: 2503,
} as const;

const id = z.string().min(1).max(128);
const version = z.literal(CONTRACT_VERSION);

/**
 * Where to go for a consult, with a token of one's own: in an offer (Agent B) and in the `offered`
 * status (a human Agent A, assist mode). `workerIdentity` is the worker's participant there.
 */
export const ConsultPassSchema = z.object({ url: z.string(), room: z.string(), token: z.string(), expiresAt: z.number(), workerIdentity: z.string() });
export type ConsultPass = z.infer<typeof ConsultPassSchema>;

/** A request that only names its transfer (connect, greet, read-brief). */
const TransferRefSchema = z.object({ v: version, transferId: id }).strict();

export const SummaryPreviewSchema = z.object({
  intent: z.string().max(300),
  urgency: z.string().max(40),
  sentiment: z.string().max(40),
  brief: z.string().max(600),
});
export type SummaryPreview = z.infer<typeof SummaryPreviewSchema>;

export const OfferSchema = z.object({
  v: version,
  transferId: id,
  attemptId: id,
  callerRoom: z.string(),
  reason: z.string().max(500),
  /** Agent A's note for Agent B (assist mode). */
  note: z.string().max(1000).optional(),
  skill: z.string().max(64).optional(),
  /** Where to go on accept; `workerIdentity` is the worker's participant there (for connect/decline). */
  consult: ConsultPassSchema,
  preview: SummaryPreviewSchema,
  /** Answer by then (ms since epoch) or the offer counts as not answered. */
  expiresAt: z.number(),
});
export type Offer = z.infer<typeof OfferSchema>;

export const OfferReplySchema = z.object({
  v: version,
  /** `ringing`: shown to the person, who will answer with warm-transfer.answer. `busy`: cannot take it. */
  status: z.enum(['ringing', 'busy']),
});
export type OfferReply = z.infer<typeof OfferReplySchema>;

export const AnswerSchema = z
  .object({
    v: version,
    transferId: id,
    attemptId: id,
    decision: z.enum(['accept', 'decline']),
    reason: z.string().max(500).optional(),
  })
  .strict();
export type Answer = z.infer<typeof AnswerSchema>;

export const ConnectSchema = TransferRefSchema;
export type ConnectRequest = z.infer<typeof ConnectSchema>;

export const DeclineSchema = z.object({ v: version, transferId: id, reason: z.string().max(500).optional() }).strict();
export type DeclineRequest = z.infer<typeof DeclineSchema>;

export const JoinSchema = z.object({
  v: version,
  transferId: id,
  callerRoom: z.string(),
  url: z.string(),
  token: z.string(),
  expiresAt: z.number(),
});
export type JoinRequest = z.infer<typeof JoinSchema>;

export const JoinReplySchema = z.object({ v: version, joined: z.boolean(), error: z.string().optional() });
export type JoinReply = z.infer<typeof JoinReplySchema>;

export const OkReplySchema = z.object({ v: version, ok: z.literal(true) });
export type OkReply = z.infer<typeof OkReplySchema>;

export const STATUS_EVENTS = ['requested', 'offered', 'briefing', 'connecting', 'completed', 'cancelled'] as const;
export const StatusSchema = z.object({
  v: version,
  transferId: id,
  event: z.enum(STATUS_EVENTS),
  /** Who is being reached (console identity, phone number or agent name), when known. */
  target: z.string().optional(),
  /** Assist mode, to Agent A only: where the consult with Agent B takes place. */
  consult: ConsultPassSchema.optional(),
  /** For `cancelled` (and `completed`): the transfer's outcome and why. */
  outcome: z.string().optional(),
  reason: z.string().optional(),
  at: z.number(),
});
export type StatusMessage = z.infer<typeof StatusSchema>;

export const SummaryMessageSchema = z.object({
  v: version,
  transferId: id,
  /** The structured handoff summary (see agent/summary-schema.ts). */
  summary: z.record(z.string(), z.unknown()),
  brief: z.string(),
  source: z.enum(['llm', 'fallback']),
  generatedAt: z.number(),
  /** Agent A's note for Agent B (assist mode). */
  note: z.string().optional(),
});
export type SummaryMessage = z.infer<typeof SummaryMessageSchema>;

/** Who to transfer to. `sip` dials a phone; `agent` dispatches another AI agent by name. */
export const ParticipantTargetSchema = z
  .object({
    kind: z.literal('participant'),
    /** A named console; otherwise any available one (with `skill`, if given). */
    identity: z.string().min(1).max(256).optional(),
    skill: z.string().min(1).max(64).optional(),
  })
  .strict();
export const AgentTargetSchema = z
  .object({
    kind: z.literal('agent'),
    /** The agent name the target worker registered with (explicit dispatch). */
    agentName: z.string().min(1).max(128),
  })
  .strict();
export const TransferTargetSchema = z.discriminatedUnion('kind', [ParticipantTargetSchema, SipTargetSchema, AgentTargetSchema]);
export type TransferTarget = z.infer<typeof TransferTargetSchema>;

/** Agent A's request to start a transfer (assist mode). */
export const StartSchema = z
  .object({
    v: version,
    target: TransferTargetSchema,
    reason: z.string().min(1).max(500).optional(),
    note: z.string().max(1000).optional(),
  })
  .strict();
export type StartRequest = z.infer<typeof StartSchema>;
export const StartReplySchema = z.object({ v: version, transferId: id });
export type StartReply = z.infer<typeof StartReplySchema>;

export const LeaveSchema = z.object({ v: version, transferId: id, reason: z.string() }).strict();
export type LeaveRequest = z.infer<typeof LeaveSchema>;

export const GreetSchema = TransferRefSchema;
export type GreetRequest = z.infer<typeof GreetSchema>;

export const ReadBriefSchema = TransferRefSchema;

/** What an AI agent target gets in its dispatch metadata (job-options `handoff`). */
export const HandoffSchema = z.object({
  transferId: id,
  reason: z.string().max(500),
  note: z.string().max(1000).optional(),
  brief: z.string().max(2000),
  summary: z.record(z.string(), z.unknown()),
  source: z.enum(['llm', 'fallback']),
});
export type Handoff = z.infer<typeof HandoffSchema>;

/** Largest RPC payload the worker reads; LiveKit caps RPC payloads at 15 KiB. */
export const MAX_RPC_PAYLOAD_BYTES = 15 * 1024;

export type ParseResult<T> = { ok: true; value: T } | { ok: false; code: number; message: string };

/**
 * Parse an RPC payload against a schema: JSON first, then the version, then the shape, so the
 * error says which of the three was wrong.
 */
export function parsePayload<T>(schema: z.ZodType<T>, payload: string): ParseResult<T> {
  if (Buffer.byteLength(payload, 'utf8') > MAX_RPC_PAYLOAD_BYTES) {
    return { ok: false, code: RPC_ERROR.badRequest, message: `payload is larger than ${MAX_RPC_PAYLOAD_BYTES} bytes` };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(payload);
  } catch {
    return { ok: false, code: RPC_ERROR.badRequest, message: 'payload is not JSON' };
  }
  if (typeof raw === 'object' && raw !== null && 'v' in raw && (raw as { v: unknown }).v !== CONTRACT_VERSION) {
    return {
      ok: false,
      code: RPC_ERROR.unsupportedVersion,
      message: `contract version ${JSON.stringify((raw as { v: unknown }).v)} is not supported; this worker speaks v${CONTRACT_VERSION}`,
    };
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join('.') || '(payload)'}: ${i.message}`).join('; ');
    return { ok: false, code: RPC_ERROR.badRequest, message: `payload is not valid: ${detail}` };
  }
  return { ok: true, value: parsed.data };
}
