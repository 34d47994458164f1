/**
 * SQL for every store operation, kept apart from how and where it is executed (database thread,
 * remote client, benchmark baseline). A write may arrive more than once: retried after an attempt
 * that committed but lost its reply, or replayed from a spool file (db/spool.ts). Arriving again
 * must not change the record:
 * - `create` inserts only a transfer that does not exist yet, and its first event only once;
 * - `event` does nothing when `transfer_events` already holds its key (`op_key`): neither a second
 *   row nor a second move of the phase (a late copy of an old event would move it back);
 * - `finish` only ends a transfer that has no outcome (the first wins);
 * - `touch` moves the heartbeat forward only, and takes the owner from the newest heartbeat;
 * - `consultRoom`, `agentB`, `summary` set their value again. A replay applies one writer's
 *   writes in the order they were made, and a spool file holds every later write of its transfers
 *   that was stored before the file was dropped, so the last value set is still the newest (see
 *   db/spool.ts for the one narrow exception).
 */
import type { InStatement, InValue, Row } from '@libsql/client';
import type { TransferPhase } from '../agent/transfer-state.js';
import type {
  JsonValue,
  OpenTransfersQuery,
  TransferEvent,
  TransferFilter,
  TransferRecord,
  WriteOp,
} from './types.js';

/** Per-phase timestamp column; `null` when a phase has none. A fixed map, never user text. */
const PHASE_COLUMN: Record<TransferPhase, string> = {
  requested: 'requested_at',
  summarizing: 'summarizing_at',
  offering: 'offering_at',
  briefing: 'briefing_at',
  connecting: 'connecting_at',
  ended: 'ended_at',
};

function json(value: JsonValue | null | undefined): string | null {
  return value === undefined || value === null ? null : JSON.stringify(value);
}

/** Appends one event with the next `seq` of its transfer; a second try with the same key is a no-op. */
function insertEvent(
  transferId: string,
  phase: string,
  at: number,
  detail: JsonValue | null,
  key: string,
  onlyIf?: string,
): InStatement {
  return {
    sql: `INSERT INTO transfer_events (transfer_id, seq, phase, at, detail_json, op_key)
          SELECT ?1, COALESCE((SELECT MAX(seq) FROM transfer_events WHERE transfer_id = ?1), 0) + 1, ?2, ?3, ?4, ?5
          WHERE ${onlyIf ?? '1'}
          ON CONFLICT (op_key) DO NOTHING`,
    args: [transferId, phase, at, json(detail), key],
  };
}

/**
 * The statements of one write, to run in order in one transaction. `unmatchedCheckOf` says which
 * of them tell whether the transfer existed. `updated_at` only moves forward: a write set again
 * (a replay) must not make a transfer look older than it is (stale-transfer sweeps read it).
 */
export function statementsFor(op: WriteOp): InStatement[] {
  switch (op.kind) {
    case 'create': {
      const t = op.transfer;
      return [
        {
          sql: `INSERT INTO transfers (id, caller_room, caller_identity, agent_a_identity, mode, initiated_by,
                  target_kind, target_json, request_reason, phase, requested_at, worker_id, job_id,
                  owner_worker_id, heartbeat_at, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'requested', ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (id) DO NOTHING`,
          args: [
            t.id,
            t.callerRoom,
            t.callerIdentity ?? null,
            t.agentAIdentity ?? null,
            t.mode,
            t.initiatedBy ?? null,
            t.targetKind,
            json(t.target),
            t.reason ?? null,
            t.requestedAt,
            t.workerId ?? null,
            t.jobId ?? null,
            t.workerId ?? null,
            op.at,
            op.at,
            op.at,
          ],
        },
        // the timeline starts with `requested`, once, however often create is repeated
        insertEvent(
          t.id,
          'requested',
          t.requestedAt,
          null,
          op.key,
          'NOT EXISTS (SELECT 1 FROM transfer_events WHERE transfer_id = ?1)',
        ),
      ];
    }
    case 'consultRoom':
      return [
        {
          sql: 'UPDATE transfers SET consult_room = ?, updated_at = MAX(updated_at, ?) WHERE id = ?',
          args: [op.consultRoom, op.at, op.id],
        },
      ];
    case 'agentB':
      return [
        {
          sql: 'UPDATE transfers SET agent_b_identity = ?, agent_b_kind = ?, updated_at = MAX(updated_at, ?) WHERE id = ?',
          args: [op.identity, op.agentKind, op.at, op.id],
        },
      ];
    case 'summary':
      return [
        {
          sql: `UPDATE transfers SET summary_json = ?, brief = ?, summary_source = ?, summary_model = ?, updated_at = MAX(updated_at, ?)
                WHERE id = ?`,
          args: [json(op.summary), op.brief, op.source, op.model, op.at, op.id],
        },
      ];
    case 'event': {
      const column = PHASE_COLUMN[op.phase];
      return [
        {
          // Before the insert, so that "its row exists" means "applied before": a replayed old
          // event must not move the phase back. A finished transfer stays `ended`: late events
          // (cleanup after the outcome) are logged in the timeline but do not reopen it. The
          // first time a phase is entered wins.
          sql: `UPDATE transfers
                SET phase = CASE WHEN outcome IS NULL THEN ? ELSE phase END,
                    ${column} = COALESCE(${column}, ?),
                    updated_at = MAX(updated_at, ?)
                WHERE id = ? AND NOT EXISTS (SELECT 1 FROM transfer_events WHERE op_key = ?)`,
          args: [op.phase, op.at, op.at, op.id, op.key],
        },
        insertEvent(op.id, op.phase, op.at, op.detail, op.key),
      ];
    }
    case 'finish':
      return [
        // the first finish wins: its `ended` event and its outcome; later ones change nothing
        insertEvent(
          op.id,
          'ended',
          op.at,
          { outcome: op.outcome, reason: op.reason },
          op.key,
          'EXISTS (SELECT 1 FROM transfers WHERE id = ?1 AND outcome IS NULL)',
        ),
        {
          sql: `UPDATE transfers SET outcome = ?, reason = ?, phase = 'ended', ended_at = ?, updated_at = MAX(updated_at, ?)
                WHERE id = ? AND outcome IS NULL`,
          args: [op.outcome, op.reason, op.at, op.at, op.id],
        },
      ];
    case 'touch':
      return [
        {
          // Both sides see the row as it was: an older heartbeat (a late replay) changes nothing.
          sql: `UPDATE transfers SET heartbeat_at = MAX(COALESCE(heartbeat_at, 0), ?),
                  owner_worker_id = CASE WHEN ? >= COALESCE(heartbeat_at, 0) THEN COALESCE(?, owner_worker_id)
                                         ELSE owner_worker_id END
                WHERE id = ?`,
          args: [op.at, op.at, op.ownerWorkerId, op.id],
        },
      ];
  }
}

/**
 * Which statements of `statementsFor(op)` tell that a write matched no transfer: `update` changed
 * no row, although `fresh` (when given) shows that the write was applied now, not skipped as
 * applied before. Undefined for writes where zero rows is normal (create, finish after finish).
 */
export function unmatchedCheckOf(op: WriteOp): { update: number; fresh?: number } | undefined {
  switch (op.kind) {
    case 'event':
      return { update: 0, fresh: 1 };
    case 'consultRoom':
    case 'agentB':
    case 'summary':
    case 'touch':
      return { update: 0 };
    case 'create':
    case 'finish':
      return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Reads

const TRANSFER_COLUMNS = `id, caller_room, consult_room, caller_identity, agent_a_identity, mode, initiated_by,
  target_kind, target_json, request_reason, agent_b_identity, agent_b_kind, phase, outcome, reason,
  summary_json, brief, summary_source, summary_model, requested_at, summarizing_at, offering_at,
  briefing_at, connecting_at, ended_at, worker_id, job_id, owner_worker_id, heartbeat_at, created_at,
  updated_at`;

export const MAX_PAGE_SIZE = 500;
export const DEFAULT_PAGE_SIZE = 50;

interface Cursor {
  requestedAt: number;
  id: string;
}

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify([c.requestedAt, c.id])).toString('base64url');
}

export class InvalidCursorError extends Error {
  override name = 'InvalidCursorError';
  readonly code = 'INVALID_CURSOR';
}

export function decodeCursor(text: string): Cursor {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
    if (
      Array.isArray(parsed) &&
      parsed.length === 2 &&
      Number.isSafeInteger(parsed[0]) &&
      typeof parsed[1] === 'string'
    ) {
      return { requestedAt: parsed[0] as number, id: parsed[1] };
    }
  } catch {
    // fall through
  }
  throw new InvalidCursorError(`invalid cursor: ${text}`);
}

/** Newest first; pages continue strictly after the cursor's (requested_at, id). */
export function listTransfersStatement(filter: TransferFilter): { stmt: InStatement; limit: number } {
  const where: string[] = [];
  const args: InValue[] = [];
  const status = filter.status;
  if (status === 'open') where.push('outcome IS NULL');
  else if (status === 'ended') where.push('outcome IS NOT NULL');
  else if (status !== undefined) {
    where.push('outcome = ?');
    args.push(status);
  }
  if (filter.since !== undefined) {
    where.push('requested_at >= ?');
    args.push(filter.since);
  }
  if (filter.room !== undefined) {
    where.push('caller_room = ?');
    args.push(filter.room);
  }
  if (filter.agent !== undefined) {
    where.push('(agent_a_identity = ? OR agent_b_identity = ?)');
    args.push(filter.agent, filter.agent);
  }
  if (filter.cursor !== undefined) {
    const c = decodeCursor(filter.cursor);
    where.push('(requested_at < ? OR (requested_at = ? AND id < ?))');
    args.push(c.requestedAt, c.requestedAt, c.id);
  }
  const limit = Math.min(Math.max(Math.trunc(filter.limit ?? DEFAULT_PAGE_SIZE), 1), MAX_PAGE_SIZE);
  // one extra row tells whether another page exists
  args.push(limit + 1);
  const sql = `SELECT ${TRANSFER_COLUMNS} FROM transfers
    ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
    ORDER BY requested_at DESC, id DESC LIMIT ?`;
  return { stmt: { sql, args }, limit };
}

export function getTransferStatements(id: string): [InStatement, InStatement] {
  return [
    { sql: `SELECT ${TRANSFER_COLUMNS} FROM transfers WHERE id = ?`, args: [id] },
    {
      sql: 'SELECT seq, phase, at, detail_json FROM transfer_events WHERE transfer_id = ? ORDER BY seq',
      args: [id],
    },
  ];
}

export function openTransfersStatement(q: OpenTransfersQuery): InStatement {
  const limit = Math.min(Math.max(Math.trunc(q.limit ?? 100), 1), MAX_PAGE_SIZE);
  return {
    sql: `SELECT ${TRANSFER_COLUMNS} FROM transfers
          WHERE outcome IS NULL AND COALESCE(heartbeat_at, updated_at) < ?
          ORDER BY requested_at, id LIMIT ?`,
    args: [q.staleBeforeMs, limit],
  };
}

// Row mapping. Values come back as the driver's `Value` (null, number, string, bigint, ArrayBuffer).

function str(row: Row, col: string): string {
  const v = row[col];
  return typeof v === 'string' ? v : String(v ?? '');
}
function strOrNull(row: Row, col: string): string | null {
  const v = row[col];
  return v === null || v === undefined ? null : typeof v === 'string' ? v : String(v);
}
function num(row: Row, col: string): number {
  return Number(row[col] ?? 0);
}
function numOrNull(row: Row, col: string): number | null {
  const v = row[col];
  return v === null || v === undefined ? null : Number(v);
}
function jsonOrNull(row: Row, col: string): JsonValue | null {
  const text = strOrNull(row, col);
  if (text === null) return null;
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    // a hand-edited row should still be readable: show what is there
    return text;
  }
}

export function transferFromRow(row: Row): TransferRecord {
  return {
    id: str(row, 'id'),
    callerRoom: str(row, 'caller_room'),
    consultRoom: strOrNull(row, 'consult_room'),
    callerIdentity: strOrNull(row, 'caller_identity'),
    agentAIdentity: strOrNull(row, 'agent_a_identity'),
    mode: str(row, 'mode'),
    initiatedBy: strOrNull(row, 'initiated_by'),
    targetKind: str(row, 'target_kind'),
    target: jsonOrNull(row, 'target_json'),
    requestReason: strOrNull(row, 'request_reason'),
    agentBIdentity: strOrNull(row, 'agent_b_identity'),
    agentBKind: strOrNull(row, 'agent_b_kind'),
    phase: str(row, 'phase'),
    outcome: strOrNull(row, 'outcome'),
    reason: strOrNull(row, 'reason'),
    summary: jsonOrNull(row, 'summary_json'),
    brief: strOrNull(row, 'brief'),
    summarySource: strOrNull(row, 'summary_source'),
    summaryModel: strOrNull(row, 'summary_model'),
    requestedAt: num(row, 'requested_at'),
    summarizingAt: numOrNull(row, 'summarizing_at'),
    offeringAt: numOrNull(row, 'offering_at'),
    briefingAt: numOrNull(row, 'briefing_at'),
    connectingAt: numOrNull(row, 'connecting_at'),
    endedAt: numOrNull(row, 'ended_at'),
    workerId: strOrNull(row, 'worker_id'),
    jobId: strOrNull(row, 'job_id'),
    ownerWorkerId: strOrNull(row, 'owner_worker_id'),
    heartbeatAt: numOrNull(row, 'heartbeat_at'),
    createdAt: num(row, 'created_at'),
    updatedAt: num(row, 'updated_at'),
  };
}

export function eventFromRow(row: Row): TransferEvent {
  return {
    seq: num(row, 'seq'),
    phase: str(row, 'phase'),
    at: num(row, 'at'),
    detail: jsonOrNull(row, 'detail_json'),
  };
}
