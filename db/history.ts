/**
 * Transfer history for operators:
 *
 *   npm run transfers -- list [--status S] [--since 2h] [--room R] [--agent A] [--limit N] [--cursor C] [--json]
 *   npm run transfers -- show <id> [--json]
 *
 * Reads DATABASE_URL / DATABASE_AUTH_TOKEN (or --db URL). Only reads: it never creates the
 * database file, switches its journal mode or migrates it. Exit codes: 0 ok, 1 unknown transfer or
 * database error, 2 bad arguments.
 */
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { TRANSFER_OUTCOMES } from '../agent/transfer-state.js';
import { databaseEnv, describeTarget, resolveDatabaseTarget, type DatabaseTarget } from './config.js';
import { RecordDb } from './record-db.js';
import { decodeCursor, MAX_PAGE_SIZE } from './statements.js';
import { buildTimeline, formatDuration } from './timeline.js';
import type { TransferFilter, TransferPage, TransferRecord, TransferStatusFilter, TransferWithEvents } from './types.js';

export interface HistoryIo {
  out: (text: string) => void;
  err: (text: string) => void;
  now?: () => number;
}

const USAGE = `Usage:
  transfers list [--status S] [--since DURATION|DATE] [--room ROOM] [--agent IDENTITY]
                 [--limit N] [--cursor CURSOR] [--json] [--db URL]
  transfers show <id> [--json] [--db URL]

  --status   open, ended, or an outcome: ${TRANSFER_OUTCOMES.join(', ')}
  --since    a duration back from now (30m, 2h, 7d) or a date (2026-12-01, 2026-12-01T10:00:00Z)
  --db       database URL (default: $DATABASE_URL, else file:data/transfers.db);
             the token comes from $DATABASE_AUTH_TOKEN`;

class UsageError extends Error {}

type Command =
  | { kind: 'help' }
  | { kind: 'list'; filter: TransferFilter; json: boolean; db: string | undefined }
  | { kind: 'show'; id: string; json: boolean; db: string | undefined };

const DURATION_UNITS_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const STATUSES: readonly string[] = ['open', 'ended', ...TRANSFER_OUTCOMES];

export function parseSince(text: string, now: number): number {
  const duration = /^(\d+(?:\.\d+)?)\s*([smhdw])$/i.exec(text.trim());
  if (duration) {
    const unit = DURATION_UNITS_MS[duration[2]!.toLowerCase()]!;
    return Math.round(now - Number(duration[1]) * unit);
  }
  if (/^\d{4}-\d{2}-\d{2}/.test(text)) {
    const at = Date.parse(text);
    if (Number.isFinite(at)) return at;
  }
  throw new UsageError(`--since: expected a duration like 30m, 2h, 7d or a date like 2026-12-01, got "${text}"`);
}

export function parseCommand(argv: string[], now: number): Command {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        status: { type: 'string' },
        since: { type: 'string' },
        room: { type: 'string' },
        agent: { type: 'string' },
        limit: { type: 'string' },
        cursor: { type: 'string' },
        json: { type: 'boolean' },
        db: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const { values, positionals } = parsed;
  if (values.help) return { kind: 'help' };
  const [sub, ...rest] = positionals;
  const json = values.json === true;
  if (values.db !== undefined && values.db.trim() === '') throw new UsageError('--db: empty URL');

  if (sub === 'list') {
    if (rest.length > 0) throw new UsageError(`list takes no arguments, got "${rest.join(' ')}"`);
    const filter: TransferFilter = {};
    if (values.status !== undefined) {
      if (!STATUSES.includes(values.status)) {
        throw new UsageError(`--status: expected one of ${STATUSES.join(', ')}, got "${values.status}"`);
      }
      filter.status = values.status as TransferStatusFilter;
    }
    if (values.since !== undefined) filter.since = parseSince(values.since, now);
    if (values.room !== undefined) filter.room = values.room;
    if (values.agent !== undefined) filter.agent = values.agent;
    if (values.limit !== undefined) {
      const limit = Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
        throw new UsageError(`--limit: expected a whole number from 1 to ${MAX_PAGE_SIZE}, got "${values.limit}"`);
      }
      filter.limit = limit;
    }
    if (values.cursor !== undefined) {
      try {
        decodeCursor(values.cursor);
      } catch {
        throw new UsageError(`--cursor: not a cursor printed by "list": "${values.cursor}"`);
      }
      filter.cursor = values.cursor;
    }
    return { kind: 'list', filter, json, db: values.db };
  }
  if (sub === 'show') {
    for (const listOnly of ['status', 'since', 'room', 'agent', 'limit', 'cursor'] as const) {
      if (values[listOnly] !== undefined) throw new UsageError(`--${listOnly} applies to list, not show`);
    }
    const [id, ...extra] = rest;
    if (id === undefined || id.trim() === '') throw new UsageError('show needs a transfer id');
    if (extra.length > 0) throw new UsageError(`show takes one transfer id, got "${rest.join(' ')}"`);
    return { kind: 'show', id, json, db: values.db };
  }
  if (sub === undefined) throw new UsageError('missing command: list or show');
  throw new UsageError(`unknown command "${sub}": expected list or show`);
}

/** Runs the command; returns the exit code. */
export async function runHistory(
  argv: string[],
  env: NodeJS.ProcessEnv,
  io: HistoryIo,
): Promise<number> {
  const now = io.now?.() ?? Date.now();
  let command: Command;
  let target: DatabaseTarget;
  try {
    command = parseCommand(argv, now);
    if (command.kind === 'help') {
      io.out(USAGE);
      return 0;
    }
    const fromEnv = databaseEnv(env);
    target = resolveDatabaseTarget(command.db ?? fromEnv.url, fromEnv.authToken);
  } catch (err) {
    io.err(`transfers: ${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
    return 2;
  }

  // An absent database has no transfers; opening it would create it.
  let db: RecordDb | undefined;
  try {
    if (target.kind !== 'memory' && !(target.kind === 'file' && !existsSync(target.path))) {
      const opened = await RecordDb.open({
        target,
        busyTimeoutMs: 5_000,
        setup: false,
        ...(target.kind === 'remote' && target.authToken !== undefined ? { authToken: target.authToken } : {}),
      });
      db = opened.db;
      if (!(await db.hasSchema())) {
        db.close();
        db = undefined;
      }
    }
    if (command.kind === 'list') {
      const page: TransferPage = db ? await db.listTransfers(command.filter) : { items: [], nextCursor: null };
      io.out(command.json ? JSON.stringify(page) : formatList(page, command.filter, now));
      return 0;
    }
    const found = db ? await db.getTransfer(command.id) : null;
    if (found === null) {
      const where = db ? '' : ` (no transfers recorded in ${describeTarget(target)})`;
      io.err(`transfers: no transfer with id "${command.id}"${where}`);
      return 1;
    }
    io.out(command.json ? JSON.stringify(showJson(found, now)) : formatShow(found, now));
    return 0;
  } catch (err) {
    io.err(`transfers: cannot read ${describeTarget(target)}: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  } finally {
    db?.close();
  }
}

function showJson(found: TransferWithEvents, now: number): unknown {
  const timeline = buildTimeline(found, now);
  return {
    transfer: found.transfer,
    events: timeline.entries,
    phaseTotalsMs: timeline.phaseTotalsMs,
    totalMs: timeline.totalMs,
  };
}

// ---- text output ------------------------------------------------------------------------------

function formatTime(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function status(t: TransferRecord): string {
  return t.outcome ?? `open (${t.phase})`;
}

function targetText(t: TransferRecord): string {
  const target = t.target;
  if (target !== null && typeof target === 'object' && !Array.isArray(target)) {
    const wanted = target.identity ?? target.skill ?? target.phone ?? target.agentName;
    if (typeof wanted === 'string') return `${t.targetKind}:${wanted}`;
  }
  return t.targetKind;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((r) => (r[col] ?? '').length)));
  return rows.map((r) => r.map((cell, col) => cell.padEnd(widths[col]!)).join('  ').trimEnd()).join('\n');
}

function formatList(page: TransferPage, filter: TransferFilter, now: number): string {
  if (page.items.length === 0) {
    return filter.cursor !== undefined ? 'No more transfers.' : 'No transfers.';
  }
  const rows = [['ID', 'REQUESTED', 'STATUS', 'ROOM', 'AGENT A -> AGENT B', 'TARGET', 'DURATION']];
  for (const t of page.items) {
    rows.push([
      t.id,
      formatTime(t.requestedAt),
      status(t),
      t.callerRoom,
      `${t.agentAIdentity ?? '-'} -> ${t.agentBIdentity ?? '-'}`,
      targetText(t),
      formatDuration((t.endedAt ?? now) - t.requestedAt),
    ]);
  }
  let text = table(rows);
  if (page.nextCursor !== null) text += `\n\nMore: add --cursor ${page.nextCursor}`;
  return text;
}

function formatShow(found: TransferWithEvents, now: number): string {
  const t = found.transfer;
  const timeline = buildTimeline(found, now);
  const lines: string[] = [];
  lines.push(`Transfer ${t.id}: ${t.outcome ? `${t.outcome}${t.reason ? ` (${t.reason})` : ''}` : `open, ${t.phase}`}`);
  const field = (name: string, value: string | null | undefined): void => {
    if (value !== null && value !== undefined && value !== '') lines.push(`  ${name.padEnd(12)}${value}`);
  };
  field('requested', `${formatTime(t.requestedAt)}${t.initiatedBy ? ` by ${t.initiatedBy}` : ''}`);
  field('why', t.requestReason);
  field('mode', t.mode);
  field('caller', `${t.callerIdentity ?? '?'} in ${t.callerRoom}`);
  field('agent A', t.agentAIdentity);
  field('target', `${t.targetKind}${t.target !== null ? ` ${JSON.stringify(t.target)}` : ''}`);
  field('agent B', t.agentBIdentity ? `${t.agentBIdentity} (${t.agentBKind ?? '?'})` : null);
  field('consult', t.consultRoom);
  field('summary', t.summarySource ? `${t.summarySource}${t.summaryModel ? ` (${t.summaryModel})` : ''}` : null);
  field('brief', t.brief);
  field('worker', [t.workerId, t.jobId].filter(Boolean).join(' / ') || null);
  if (t.outcome === null && t.heartbeatAt !== null) {
    field('heartbeat', `${formatDuration(now - t.heartbeatAt)} ago${t.ownerWorkerId ? ` from ${t.ownerWorkerId}` : ''}`);
  }
  lines.push('', 'Timeline');
  if (timeline.entries.length === 0) lines.push('  (no events)');
  const rows = timeline.entries.map((e) => [
    `  +${(e.offsetMs / 1_000).toFixed(3)}s`,
    e.phase,
    e.durationMs === null ? '' : `${formatDuration(e.durationMs)}${e.ongoing ? ' so far' : ''}`,
    e.detail === null ? '' : JSON.stringify(e.detail),
  ]);
  if (rows.length > 0) lines.push(table(rows));
  const totals = Object.entries(timeline.phaseTotalsMs).map(([phase, ms]) => `${phase} ${formatDuration(ms)}`);
  if (totals.length > 0) lines.push('', `Time per phase: ${totals.join(', ')}`);
  if (timeline.totalMs !== null) lines.push(`Total: ${formatDuration(timeline.totalMs)}${t.outcome ? '' : ' so far'}`);
  return lines.join('\n');
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const code = await runHistory(process.argv.slice(2), process.env, {
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
  });
  process.exitCode = code;
}
