/**
 * Record types of the transfer store: what callers hand in, what readers get back, and the write
 * operations that travel through the retry queue (and, in file mode, to the database thread).
 * Everything here is plain data so it survives structured cloning and JSON logging unchanged.
 */
import type {
  AgentMode,
  TargetKind,
  TransferOutcome,
  TransferPhase,
} from '../agent/transfer-state.js';

/** A JSON value as stored in the *_json columns. */
export type JsonValue =
  | string
  | number
  | boolean
  | null
  | JsonValue[]
  | { [key: string]: JsonValue | undefined };

/** What was asked for when the transfer started (any of these may be absent). */
export interface TransferTarget {
  skill?: string;
  identity?: string;
  phone?: string;
  agentName?: string;
  [key: string]: JsonValue | undefined;
}

/** Where the handoff summary came from. */
export const SUMMARY_SOURCES = ['llm', 'rolling', 'fallback'] as const;
export type SummarySource = (typeof SUMMARY_SOURCES)[number];

/** Input of `createTransfer`. Times are integer ms since the epoch. */
export interface NewTransfer {
  /** Caller-chosen id, e.g. `tr_<random>`. */
  id: string;
  callerRoom: string;
  callerIdentity?: string | null;
  agentAIdentity?: string | null;
  mode: AgentMode;
  /** Who started it: e.g. `caller`, `agent_a`, `llm`, an identity. */
  initiatedBy?: string | null;
  targetKind: TargetKind;
  target?: TransferTarget | null;
  /** Why the transfer was requested (the outcome's reason is set by `finish`). */
  reason?: string | null;
  workerId?: string | null;
  jobId?: string | null;
  /** Defaults to now. */
  requestedAt?: number;
}

export interface AgentBInput {
  identity: string;
  kind: TargetKind;
}

export interface SummaryInput {
  summary: JsonValue;
  brief: string;
  source: SummarySource;
  model?: string | null;
}

export interface EventInput {
  /** Defaults to now. */
  at?: number;
  detail?: JsonValue;
}

/** One row of `transfers`, camel-cased, JSON columns parsed. */
export interface TransferRecord {
  id: string;
  callerRoom: string;
  consultRoom: string | null;
  callerIdentity: string | null;
  agentAIdentity: string | null;
  mode: string;
  initiatedBy: string | null;
  targetKind: string;
  target: JsonValue | null;
  requestReason: string | null;
  agentBIdentity: string | null;
  agentBKind: string | null;
  /** Current phase. */
  phase: string;
  /** Null while the transfer is open. */
  outcome: string | null;
  /** The outcome's reason. */
  reason: string | null;
  summary: JsonValue | null;
  brief: string | null;
  summarySource: string | null;
  summaryModel: string | null;
  requestedAt: number;
  summarizingAt: number | null;
  offeringAt: number | null;
  briefingAt: number | null;
  connectingAt: number | null;
  endedAt: number | null;
  workerId: string | null;
  jobId: string | null;
  ownerWorkerId: string | null;
  heartbeatAt: number | null;
  createdAt: number;
  updatedAt: number;
}

/** One row of `transfer_events`. Read types are `string` rather than the vocabulary unions: a row
 * written by a newer worker may carry a phase this build does not know. */
export interface TransferEvent {
  seq: number;
  phase: string;
  at: number;
  detail: JsonValue | null;
}

export interface TransferWithEvents {
  transfer: TransferRecord;
  /** In `seq` order. */
  events: TransferEvent[];
}

/** `open`: no outcome yet; `ended`: any outcome; or one outcome. */
export type TransferStatusFilter = 'open' | 'ended' | TransferOutcome;

export interface TransferFilter {
  status?: TransferStatusFilter;
  /** Only transfers requested at or after this time (ms since epoch). */
  since?: number;
  /** Caller room. */
  room?: string;
  /** Agent A or Agent B identity. */
  agent?: string;
  /** 1..500, default 50. */
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: string;
}

export interface TransferPage {
  items: TransferRecord[];
  /** Present when more items may follow. */
  nextCursor: string | null;
}

export interface OpenTransfersQuery {
  /** Open transfers whose last heartbeat (or, without one, last update) is older than this time,
   * in ms since the epoch: e.g. `Date.now() - 30_000`. */
  staleBeforeMs: number;
  limit?: number;
}

/**
 * A write as queued. `key` is unique per operation: inserts of events use it to stay idempotent,
 * so an attempt that committed but whose reply was lost can be retried without duplicating rows.
 */
export type WriteOp =
  | { kind: 'create'; key: string; at: number; transfer: NewTransfer & { requestedAt: number } }
  | { kind: 'consultRoom'; key: string; at: number; id: string; consultRoom: string }
  | { kind: 'agentB'; key: string; at: number; id: string; identity: string; agentKind: TargetKind }
  | {
      kind: 'summary';
      key: string;
      at: number;
      id: string;
      summary: JsonValue;
      brief: string;
      source: SummarySource;
      model: string | null;
    }
  | { kind: 'event'; key: string; at: number; id: string; phase: TransferPhase; detail: JsonValue | null }
  | { kind: 'finish'; key: string; at: number; id: string; outcome: TransferOutcome; reason: string }
  | { kind: 'touch'; key: string; at: number; id: string; ownerWorkerId: string | null };

/** The transfer a write belongs to. */
export function transferIdOf(op: WriteOp): string {
  return op.kind === 'create' ? op.transfer.id : op.id;
}

/** What `write` reports back: keys of updates that matched no transfer row (worth a warning). */
export interface WriteResult {
  unmatched: string[];
}
