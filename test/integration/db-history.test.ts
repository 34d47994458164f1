/**
 * The history command as operators run it: a real process (tsx db/history.ts, what
 * `npm run transfers --` runs), its output, JSON shape and exit codes.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runHistory } from '../../db/history.js';
import { openTransferStore, type StoreLogger } from '../../db/store.js';
import { startHranaServer, type HranaTestServer } from '../support/hrana-server.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const HISTORY = path.join(ROOT, 'db', 'history.ts');
const quiet: StoreLogger = { info() {}, warn() {}, error() {}, child: () => quiet };

const tmp = mkdtempSync(path.join(tmpdir(), 'db-history-'));
const dbFile = path.join(tmp, 'history.db');
const DB_URL = `file:${dbFile}`;
let server: HranaTestServer;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The command in its own process: `node --import tsx db/history.ts` (what `npm run transfers` runs via tsx). */
function transfers(args: string[], env: Record<string, string> = {}, viaNpm = false): Promise<Run> {
  const [file, argv] = viaNpm
    ? ['npm', ['run', '--silent', '--prefix', ROOT, 'transfers', '--', ...args]]
    : [process.execPath, ['--import', 'tsx', HISTORY, ...args]];
  return new Promise((resolve) => {
    execFile(
      file,
      argv,
      { cwd: ROOT, env: { ...process.env, DATABASE_URL: DB_URL, DATABASE_AUTH_TOKEN: '', ...env } },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

/** The same command in this process, for the many variations (same code, no process start-up). */
async function inProcess(args: string[], env: Record<string, string> = {}): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await runHistory(args, { DATABASE_URL: DB_URL, ...env }, {
    out: (t) => (stdout += `${t}\n`),
    err: (t) => (stderr += `${t}\n`),
  });
  return { code, stdout, stderr };
}

const now = Date.now();

beforeAll(async () => {
  const store = await openTransferStore({ url: DB_URL, log: quiet });
  const t0 = now - 30 * 60_000;
  await store.createTransfer({
    id: 'tr_done',
    callerRoom: 'room-1',
    callerIdentity: 'caller-1',
    agentAIdentity: 'agent-a',
    mode: 'frontline',
    initiatedBy: 'caller',
    targetKind: 'participant',
    target: { skill: 'billing' },
    reason: 'refund',
    requestedAt: t0,
  });
  await store.recordEvent('tr_done', 'summarizing', { at: t0 + 1_200 });
  await store.setSummary('tr_done', { summary: { intent: 'refund' }, brief: 'Refund for order 42.', source: 'llm', model: 'm1' }, t0 + 2_000);
  await store.recordEvent('tr_done', 'offering', { at: t0 + 2_000, detail: { candidate: 'agent-b' } });
  await store.setAgentB('tr_done', { identity: 'agent-b', kind: 'participant' });
  await store.recordEvent('tr_done', 'briefing', { at: t0 + 5_000 });
  await store.recordEvent('tr_done', 'connecting', { at: t0 + 35_000 });
  await store.finish('tr_done', 'completed', 'agent b joined', t0 + 37_500);
  await store.createTransfer({
    id: 'tr_open',
    callerRoom: 'room-2',
    mode: 'assist',
    targetKind: 'sip',
    target: { phone: '+15550100' },
    requestedAt: now - 60_000,
  });
  await store.recordEvent('tr_open', 'offering', { at: now - 50_000 });
  await store.createTransfer({ id: 'tr_old', callerRoom: 'room-1', mode: 'frontline', targetKind: 'agent', requestedAt: now - 5 * 86_400_000 });
  await store.finish('tr_old', 'no_answer', 'nobody', now - 5 * 86_400_000 + 30_000);
  await store.close();
  server = await startHranaServer({ dbPath: dbFile, authToken: 'history-token' });
});
afterAll(async () => {
  await server.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('transfers list', () => {
  it('prints a table, newest first', async () => {
    const run = await transfers(['list']);
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+REQUESTED\s+STATUS\s+ROOM/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual(['tr_open', 'tr_done', 'tr_old']);
    expect(run.stdout).toMatch(/tr_done .*completed\s+room-1\s+agent-a -> agent-b\s+participant:billing\s+37\.5s/);
    expect(run.stdout).toMatch(/tr_open .*open \(offering\)\s+room-2/);
  });

  it('prints JSON (through npm run transfers)', async () => {
    const run = await transfers(['list', '--status', 'open', '--json'], {}, true);
    expect(run.code).toBe(0);
    const page = JSON.parse(run.stdout) as { items: { id: string }[]; nextCursor: string | null };
    expect(page.items.map((t) => t.id)).toEqual(['tr_open']);
    expect(page.items[0]).toMatchObject({ id: 'tr_open', outcome: null, phase: 'offering', targetKind: 'sip', target: { phone: '+15550100' } });
    expect(page.nextCursor).toBeNull();
  });

  it('filters by since and outcome, and pages with the cursor it prints', async () => {
    const parse = (run: Run): { items: { id: string }[]; nextCursor: string | null } => {
      expect(run.code).toBe(0);
      return JSON.parse(run.stdout) as { items: { id: string }[]; nextCursor: string | null };
    };
    expect(parse(await inProcess(['list', '--since', '2h', '--json'])).items.map((t) => t.id)).toEqual(['tr_open', 'tr_done']);
    expect(parse(await inProcess(['list', '--status=no_answer', '--json'])).items.map((t) => t.id)).toEqual(['tr_old']);
    expect(parse(await inProcess(['list', '--room', 'room-1', '--json'])).items.map((t) => t.id)).toEqual(['tr_done', 'tr_old']);
    const first = parse(await inProcess(['list', '--limit', '1', '--json']));
    expect(first.items.map((t) => t.id)).toEqual(['tr_open']);
    const second = parse(await inProcess(['list', '--limit', '1', '--cursor', first.nextCursor!, '--json']));
    expect(second.items.map((t) => t.id)).toEqual(['tr_done']);
    const text = await inProcess(['list', '--limit', '2']);
    expect(text.stdout).toMatch(/More: add --cursor \S+/);
  });

  it('reads a remote database with --db and DATABASE_AUTH_TOKEN', async () => {
    const run = await transfers(['list', '--db', server.url, '--json'], { DATABASE_AUTH_TOKEN: 'history-token' });
    expect(run.code).toBe(0);
    expect((JSON.parse(run.stdout) as { items: unknown[] }).items).toHaveLength(3);
  });

  it('says there are no transfers for a missing database, and does not create it', async () => {
    const missing = path.join(tmp, 'nowhere', 'none.db');
    const text = await transfers(['list'], { DATABASE_URL: `file:${missing}` });
    expect(text).toMatchObject({ code: 0, stdout: 'No transfers.\n' });
    const json = await inProcess(['list', '--json', '--db', `file:${missing}`]);
    expect(JSON.parse(json.stdout)).toEqual({ items: [], nextCursor: null });
    const show = await inProcess(['show', 'tr_done', '--db', `file:${missing}`]);
    expect(show.code).toBe(1);
    expect(show.stderr).toMatch(/no transfers recorded/);
    expect(existsSync(path.dirname(missing))).toBe(false);
  });
});

describe('transfers show', () => {
  it('prints the timeline with the time spent in each phase', async () => {
    const run = await transfers(['show', 'tr_done']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Transfer tr_done: completed \(agent b joined\)/);
    expect(run.stdout).toMatch(/agent B\s+agent-b \(participant\)/);
    expect(run.stdout).toMatch(/summary\s+llm \(m1\)/);
    expect(run.stdout).toMatch(/\+0\.000s\s+requested\s+1\.20s/);
    expect(run.stdout).toMatch(/\+2\.000s\s+offering\s+3\.00s\s+\{"candidate":"agent-b"\}/);
    expect(run.stdout).toMatch(/\+5\.000s\s+briefing\s+30\.0s/);
    expect(run.stdout).toMatch(/\+37\.500s\s+ended\s+\{"outcome":"completed","reason":"agent b joined"\}/);
    expect(run.stdout).toMatch(/Total: 37\.5s/);
  });

  it('prints JSON with per-event durations', async () => {
    const run = await transfers(['show', 'tr_done', '--json']);
    expect(run.code).toBe(0);
    const body = JSON.parse(run.stdout) as {
      transfer: { id: string; outcome: string };
      events: { seq: number; phase: string; durationMs: number | null; offsetMs: number }[];
      phaseTotalsMs: Record<string, number>;
      totalMs: number;
    };
    expect(body.transfer).toMatchObject({ id: 'tr_done', outcome: 'completed' });
    expect(body.events.map((e) => [e.phase, e.offsetMs, e.durationMs])).toEqual([
      ['requested', 0, 1_200],
      ['summarizing', 1_200, 800],
      ['offering', 2_000, 3_000],
      ['briefing', 5_000, 30_000],
      ['connecting', 35_000, 2_500],
      ['ended', 37_500, null],
    ]);
    expect(body.phaseTotalsMs).toEqual({ requested: 1_200, summarizing: 800, offering: 3_000, briefing: 30_000, connecting: 2_500 });
    expect(body.totalMs).toBe(37_500);
  });

  it('shows an open transfer with its current phase so far', async () => {
    const run = await inProcess(['show', 'tr_open']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Transfer tr_open: open, offering/);
    expect(run.stdout).toMatch(/offering\s+\S+ so far/);
  });

  it('exits non-zero for an unknown id and for bad arguments', async () => {
    // (the other argument errors are covered in-process by test/unit/db-history-args.test.ts)
    const [unknown, badStatus] = await Promise.all([transfers(['show', 'tr_nope']), transfers(['list', '--status', 'happy'])]);
    expect(unknown).toMatchObject({ code: 1, stdout: '' });
    expect(unknown.stderr).toMatch(/no transfer with id "tr_nope"/);
    expect(badStatus.code).toBe(2);
    expect(badStatus.stderr).toMatch(/--status: expected one of open, ended, completed/);
    expect(badStatus.stderr).toMatch(/Usage:/);
  });
});
