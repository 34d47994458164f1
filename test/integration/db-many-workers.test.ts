/**
 * Several worker processes on one host write one database file at the same time, each through its
 * own store (its own database thread), starting together on a fresh file so that their migrations
 * race too. Nothing may be lost, no write may fail, and every transfer's events keep their order.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createClient } from '@libsql/client';
import { afterAll, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PROCESSES = 4;
const TRANSFERS_PER_PROCESS = 25;
const PHASES = ['summarizing', 'offering', 'briefing', 'connecting'] as const;

const tmp = mkdtempSync(path.join(tmpdir(), 'db-many-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// The child: one worker process running transfers concurrently, reporting its store's stats and
// every warning or error its store logged.
const WRITER = `
import { openTransferStore } from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'db', 'store.ts')).href)};
const [url, worker, count] = process.argv.slice(2);
const problems = [];
const log = {
  info() {},
  warn(obj, msg) { problems.push({ level: 'warn', msg, err: String(obj.err ?? '') }); },
  error(obj, msg) { problems.push({ level: 'error', msg, err: String(obj.err ?? '') }); },
  child() { return log; },
};
const store = await openTransferStore({ url, log, busyTimeoutMs: 10000 });
// barrier: every process has opened (and migrated) before any writes, so the writes overlap
process.stdout.write('ready\\n');
await new Promise((resolve) => process.stdin.once('data', resolve));
const writeStart = Date.now();
const phases = ${JSON.stringify(PHASES)};
async function transfer(i) {
  const id = 'tr_' + worker + '_' + i;
  const calls = [store.createTransfer({ id, callerRoom: 'room-' + i, mode: 'frontline', targetKind: 'participant', workerId: worker })];
  for (const [step, phase] of phases.entries()) {
    calls.push(store.recordEvent(id, phase, { detail: { worker, i, step } }));
    await new Promise((r) => setTimeout(r, Math.random() * 40));
  }
  calls.push(store.setAgentB(id, { identity: 'agent-b-' + worker, kind: 'participant' }));
  calls.push(store.finish(id, 'completed', 'ok'));
  return Promise.all(calls);
}
const outcomes = (await Promise.all(Array.from({ length: Number(count) }, (_, i) => transfer(i)))).flat();
await store.close(30000);
const writeEnd = Date.now();
process.stdout.write(JSON.stringify({ worker, stats: store.stats(), outcomes: [...new Set(outcomes)], problems, writeStart, writeEnd }));
process.stdin.destroy();
`;

interface ChildReport {
  worker: string;
  stats: { pending: number; stored: number; failedAttempts: number; rejected: number };
  outcomes: string[];
  problems: unknown[];
  writeStart: number;
  writeEnd: number;
}

interface Writer {
  ready: Promise<void>;
  go: () => void;
  done: Promise<{ code: number | null; report: ChildReport; stderr: string }>;
}

function startWriter(script: string, url: string, worker: string): Writer {
  // node --import tsx: one process per worker (the tsx CLI would start two)
  const child = spawn(process.execPath, ['--import', 'tsx', script, url, worker, String(TRANSFERS_PER_PROCESS)], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let markReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    if (stdout.startsWith('ready\n')) markReady();
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; report: ChildReport; stderr: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      markReady();
      try {
        resolve({ code, report: JSON.parse(stdout.replace(/^ready\n/, '')) as ChildReport, stderr });
      } catch {
        reject(new Error(`worker ${worker} exited ${code}: ${stdout}\n${stderr}`));
      }
    });
  });
  done.catch(() => {}); // awaited later; a failure must not count as unhandled meanwhile
  return { ready, go: () => child.stdin.write('go\n'), done };
}

it(`${PROCESSES} worker processes write one file concurrently without losing anything`, async () => {
  const script = path.join(tmp, 'writer.mts');
  writeFileSync(script, WRITER);
  const url = `file:${path.join(tmp, 'shared', 'transfers.db')}`;

  // all open the fresh file at once (their migrations race), then all write at once
  const writers = Array.from({ length: PROCESSES }, (_, w) => startWriter(script, url, `w${w}`));
  await Promise.all(writers.map((w) => w.ready));
  for (const w of writers) w.go();
  const results = await Promise.all(writers.map((w) => w.done));
  // the writing periods really overlapped
  const latestStart = Math.max(...results.map((r) => r.report.writeStart));
  const earliestEnd = Math.min(...results.map((r) => r.report.writeEnd));
  expect(latestStart).toBeLessThan(earliestEnd);

  const perProcessWrites = TRANSFERS_PER_PROCESS * (PHASES.length + 3);
  for (const { code, report, stderr } of results) {
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(report.problems).toEqual([]);
    // 'queued' only means an attempt took longer than the caller's wait (a loaded machine): not an error
    expect(report.outcomes.filter((o) => o !== 'stored' && o !== 'queued')).toEqual([]);
    expect(report.stats).toEqual({ pending: 0, stored: perProcessWrites, failedAttempts: 0, rejected: 0 });
  }

  const client = createClient({ url });
  try {
    const transfers = (await client.execute('SELECT COUNT(*) AS n FROM transfers')).rows[0]?.n;
    expect(transfers).toBe(PROCESSES * TRANSFERS_PER_PROCESS);
    const events = (await client.execute('SELECT transfer_id, seq, phase, detail_json FROM transfer_events ORDER BY transfer_id, seq')).rows;
    expect(events).toHaveLength(PROCESSES * TRANSFERS_PER_PROCESS * (PHASES.length + 2));
    const byTransfer = new Map<string, { seq: number; phase: string; step: number | undefined }[]>();
    for (const row of events) {
      const list = byTransfer.get(String(row.transfer_id)) ?? [];
      const detail = row.detail_json === null ? undefined : (JSON.parse(String(row.detail_json)) as { step?: number });
      list.push({ seq: Number(row.seq), phase: String(row.phase), step: detail?.step });
      byTransfer.set(String(row.transfer_id), list);
    }
    expect(byTransfer.size).toBe(PROCESSES * TRANSFERS_PER_PROCESS);
    for (const list of byTransfer.values()) {
      expect(list.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(list.map((e) => e.phase)).toEqual(['requested', ...PHASES, 'ended']);
      expect(list.slice(1, 5).map((e) => e.step)).toEqual([0, 1, 2, 3]);
    }
    const finished = (await client.execute("SELECT COUNT(*) AS n FROM transfers WHERE outcome = 'completed' AND agent_b_identity IS NOT NULL")).rows[0]?.n;
    expect(finished).toBe(PROCESSES * TRANSFERS_PER_PROCESS);
    const migrations = (await client.execute('SELECT COUNT(*) AS n FROM schema_migrations')).rows[0]?.n;
    expect(migrations).toBe(1);
  } finally {
    client.close();
  }
}, 60_000);
