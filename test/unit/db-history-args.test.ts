import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCommand, parseSince, runHistory } from '../../db/history.js';
import { buildTimeline, formatDuration } from '../../db/timeline.js';
import type { TransferRecord } from '../../db/types.js';

const NOW = Date.UTC(2026, 11, 1, 12, 0, 0);
const tmp = mkdtempSync(path.join(tmpdir(), 'db-history-args-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function run(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runHistory(argv, env, { out: (t) => (out += `${t}\n`), err: (t) => (err += `${t}\n`), now: () => NOW });
  return { code, out, err };
}

describe('history arguments', () => {
  it('parses list filters', () => {
    expect(parseCommand(['list', '--status', 'open', '--since', '2h', '--room', 'r', '--agent', 'a', '--limit', '5', '--json'], NOW)).toEqual({
      kind: 'list',
      filter: { status: 'open', since: NOW - 2 * 3_600_000, room: 'r', agent: 'a', limit: 5 },
      json: true,
      db: undefined,
    });
    expect(parseCommand(['show', 'tr_1', '--db', 'file:x.db'], NOW)).toEqual({ kind: 'show', id: 'tr_1', json: false, db: 'file:x.db' });
  });

  it('reads --since as a duration or a date', () => {
    expect(parseSince('30m', NOW)).toBe(NOW - 30 * 60_000);
    expect(parseSince('7d', NOW)).toBe(NOW - 7 * 86_400_000);
    expect(parseSince('1.5h', NOW)).toBe(NOW - 5_400_000);
    expect(parseSince('2026-11-30T00:00:00Z', NOW)).toBe(Date.UTC(2026, 10, 30));
    expect(() => parseSince('soon', NOW)).toThrow(/--since/);
    expect(() => parseSince('12', NOW)).toThrow(/--since/);
  });

  it.each([
    [[], /missing command/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['list', 'extra'], /list takes no arguments/],
    [['list', '--status', 'happy'], /--status: expected one of/],
    [['list', '--since', 'yesterday'], /--since: expected a duration/],
    [['list', '--limit', '0'], /--limit: expected a whole number from 1 to 500/],
    [['list', '--limit', 'ten'], /--limit/],
    [['list', '--cursor', 'zzz'], /--cursor: not a cursor/],
    [['list', '--colour'], /Unknown option '--colour'/],
    [['show'], /show needs a transfer id/],
    [['show', 'a', 'b'], /show takes one transfer id/],
    [['show', 'a', '--status', 'open'], /--status applies to list/],
    [['list', '--db', 'postgres://x'], /unsupported database URL scheme/],
  ])('refuses %j with exit code 2', async (argv, message) => {
    const result = await run(argv as string[]);
    expect(result.code).toBe(2);
    expect(result.out).toBe('');
    expect(result.err).toMatch(message);
    expect(result.err).toMatch(/Usage:/);
  });

  it('prints help', async () => {
    const result = await run(['--help']);
    expect(result).toMatchObject({ code: 0, err: '' });
    expect(result.out).toMatch(/transfers list/);
  });

  it('treats a database file without the schema as empty, and leaves it alone', async () => {
    const empty = path.join(tmp, 'empty.db');
    writeFileSync(empty, '');
    const list = await run(['list'], { DATABASE_URL: `file:${empty}` });
    expect(list).toMatchObject({ code: 0, out: 'No transfers.\n' });
    const show = await run(['show', 'tr_1', '--json'], { DATABASE_URL: `file:${empty}` });
    expect(show.code).toBe(1);
    expect(existsSync(`${empty}-wal`)).toBe(false);
  });

  it('treats :memory: as empty', async () => {
    expect(await run(['list', '--json', '--db', ':memory:'])).toMatchObject({ code: 0, out: '{"items":[],"nextCursor":null}\n' });
  });
});

describe('timeline', () => {
  const base: TransferRecord = {
    id: 'tr_t',
    callerRoom: 'r',
    consultRoom: null,
    callerIdentity: null,
    agentAIdentity: null,
    mode: 'frontline',
    initiatedBy: null,
    targetKind: 'participant',
    target: null,
    requestReason: null,
    agentBIdentity: null,
    agentBKind: null,
    phase: 'offering',
    outcome: null,
    reason: null,
    summary: null,
    brief: null,
    summarySource: null,
    summaryModel: null,
    requestedAt: 1_000,
    summarizingAt: null,
    offeringAt: null,
    briefingAt: null,
    connectingAt: null,
    endedAt: null,
    workerId: null,
    jobId: null,
    ownerWorkerId: null,
    heartbeatAt: null,
    createdAt: 1_000,
    updatedAt: 1_000,
  };
  const events = [
    { seq: 1, phase: 'requested', at: 1_000, detail: null },
    { seq: 2, phase: 'offering', at: 1_500, detail: null },
    { seq: 3, phase: 'offering', at: 4_500, detail: { candidate: 2 } },
  ];

  it('sums repeated phases and counts an open transfer up to now', () => {
    const t = buildTimeline({ transfer: base, events }, 10_000);
    expect(t.entries.map((e) => [e.phase, e.offsetMs, e.durationMs, e.ongoing])).toEqual([
      ['requested', 0, 500, false],
      ['offering', 500, 3_000, false],
      ['offering', 3_500, 5_500, true],
    ]);
    expect(t.phaseTotalsMs).toEqual({ requested: 500, offering: 8_500 });
    expect(t.totalMs).toBe(9_000);
  });

  it('stops at the end of a finished transfer', () => {
    const ended = [...events, { seq: 4, phase: 'ended', at: 6_000, detail: { outcome: 'declined' } }];
    const t = buildTimeline({ transfer: { ...base, outcome: 'declined', endedAt: 6_000 }, events: ended }, 99_000);
    expect(t.entries.at(-1)).toMatchObject({ phase: 'ended', durationMs: null, ongoing: false });
    expect(t.totalMs).toBe(5_000);
  });

  it('formats durations for people', () => {
    expect([950, 2_310, 37_500, 125_000, 7_260_000].map(formatDuration)).toEqual(['950ms', '2.31s', '37.5s', '2m05s', '2h01m']);
  });
});
