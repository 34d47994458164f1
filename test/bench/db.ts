/**
 * Transfer-record benchmark: 50 concurrent transfers writing ~1000 events to a file database,
 * with the store as built (database thread + batched retry queue) and with a plain
 * @libsql/client used on the main thread, in the same run. For each: events per second, and the
 * event loop's largest and p99 stall while the writes ran.
 *
 *   npm run bench:db                 table
 *   npm run bench:db -- --json       {"runs":[{"store":"as-built"|"main-thread","eventsPerSec","maxStallMs","p99StallMs","maxWallStallMs","p99WallStallMs"}],"samples":[...every run]}
 *   npm run bench:db -- --runs 9     repeat (default 7); the table shows medians and pooled p99s
 *
 * Stalls are measured with the probe all benchmarks share (agent/stall-probe.ts): a 1 ms
 * timer; a stall is the time the loop was busy between two ticks beyond the 1 ms (the wall-clock
 * gaps, with the OS's scheduling of this shared machine in them, are shown beside). Unlike
 * perf_hooks.monitorEventLoopDelay, it also sees a stall that lasts until the end of the
 * measurement (the plain client on the main thread can keep the loop in one long run of promise
 * callbacks in which no timer fires). A run lasts a tenth of a second, so the table's max is the
 * median of the runs' maxima and its p99 is over the ticks of all runs together (default 7 runs).
 * The table also shows an idle baseline: the same probe with no database work, i.e. what the
 * machine itself adds.
 *
 * The baseline uses the same schema, SQL and file settings (WAL, synchronous=NORMAL, busy
 * timeout), one awaited transaction per call: the difference is where the work runs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createClient, type Client } from '@libsql/client';
import type { TransferPhase } from '../../agent/transfer-state.js';
import { migrate } from '../../db/migrate.js';
import { statementsFor } from '../../db/statements.js';
import { openTransferStore, type StoreLogger } from '../../db/store.js';
import type { NewTransfer, WriteOp } from '../../db/types.js';
import { type StallStats, StallProbe, pooledP99 } from '../../agent/stall-probe.js';

const TRANSFERS = 50;
const EVENTS_PER_TRANSFER = 19; // + "requested" and "ended": 21 events each, 1050 in all
const PHASES: TransferPhase[] = ['summarizing', 'offering', 'briefing', 'connecting'];

type StoreKind = 'as-built' | 'main-thread';

interface RunResult {
  store: StoreKind;
  eventsPerSec: number;
  maxStallMs: number;
  p99StallMs: number;
  /** The same by the wall clock, with what the OS's scheduling of this shared machine adds. */
  maxWallStallMs: number;
  p99WallStallMs: number;
}

type Stalls = Pick<RunResult, 'maxStallMs' | 'p99StallMs' | 'maxWallStallMs' | 'p99WallStallMs'>;

function stallsOf(s: StallStats): Stalls {
  return { maxStallMs: s.maxStallMs, p99StallMs: s.p99StallMs, maxWallStallMs: s.maxWallStallMs, p99WallStallMs: s.p99WallStallMs };
}

/** Every run's probe, by store: the table's p99 is taken over all their ticks together. */
const probes = new Map<StoreKind | 'idle', StallProbe[]>();
function probeFor(kind: StoreKind | 'idle'): StallProbe {
  const probe = new StallProbe();
  probes.set(kind, [...(probes.get(kind) ?? []), probe]);
  return probe;
}

/** Not in the JSON: the share of the run the main thread was busy. */
const loopBusy = new Map<RunResult, number>();

/** The calls one transfer makes, whichever way they are written. */
interface Writer {
  create(t: NewTransfer): Promise<unknown>;
  event(id: string, phase: TransferPhase, detail: { step: number }): Promise<unknown>;
  finish(id: string): Promise<unknown>;
  drain(): Promise<void>;
  countEvents(): Promise<number>;
  close(): Promise<void>;
}

const quiet: StoreLogger = { info() {}, warn() {}, error() {}, child: () => quiet };

async function asBuilt(url: string): Promise<Writer> {
  const store = await openTransferStore({ url, log: quiet });
  return {
    create: (t) => store.createTransfer(t),
    event: (id, phase, detail) => store.recordEvent(id, phase, { detail }),
    finish: (id) => store.finish(id, 'completed', 'bench'),
    drain: async () => {
      await store.flush(60_000);
    },
    countEvents: async () => {
      let count = 0;
      let cursor: string | undefined;
      do {
        const page = await store.listTransfers({ limit: 500, ...(cursor ? { cursor } : {}) });
        for (const t of page.items) count += (await store.getTransfer(t.id))?.events.length ?? 0;
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
      return count;
    },
    close: () => store.close(),
  };
}

async function mainThread(url: string): Promise<Writer> {
  const client: Client = createClient({ url, timeout: 5_000 });
  await client.execute('PRAGMA journal_mode = WAL');
  await client.execute('PRAGMA synchronous = NORMAL');
  await migrate(client);
  let key = 0;
  const write = (op: WriteOp): Promise<unknown> => client.batch(statementsFor(op), 'write');
  return {
    create: (t) => write({ kind: 'create', key: `m${key++}`, at: Date.now(), transfer: { ...t, requestedAt: Date.now() } }),
    event: (id, phase, detail) => write({ kind: 'event', key: `m${key++}`, at: Date.now(), id, phase, detail }),
    finish: (id) => write({ kind: 'finish', key: `m${key++}`, at: Date.now(), id, outcome: 'completed', reason: 'bench' }),
    drain: async () => {},
    countEvents: async () => Number((await client.execute('SELECT COUNT(*) AS n FROM transfer_events')).rows[0]?.n),
    close: async () => client.close(),
  };
}

async function transfer(w: Writer, i: number): Promise<void> {
  const id = `tr_bench_${i}`;
  await w.create({ id, callerRoom: `room-${i}`, mode: 'frontline', targetKind: 'participant', target: { skill: 'bench' } });
  for (let step = 0; step < EVENTS_PER_TRANSFER; step++) {
    await w.event(id, PHASES[step % PHASES.length]!, { step });
  }
  await w.finish(id);
}

async function runOnce(kind: StoreKind, dir: string): Promise<RunResult> {
  const url = `file:${path.join(dir, `${kind}.db`)}`;
  const writer = kind === 'as-built' ? await asBuilt(url) : await mainThread(url);
  try {
    // let start-up work (thread boot, migrations) settle before measuring
    await new Promise((resolve) => setTimeout(resolve, 100));
    const meter = probeFor(kind);
    meter.start();
    const elu = performance.eventLoopUtilization();
    const started = performance.now();
    await Promise.all(Array.from({ length: TRANSFERS }, (_, i) => transfer(writer, i)));
    await writer.drain();
    const elapsedMs = performance.now() - started;
    const stalls = stallsOf(meter.stop());
    const busy = performance.eventLoopUtilization(elu).utilization;
    const events = await writer.countEvents();
    const expected = TRANSFERS * (EVENTS_PER_TRANSFER + 2);
    if (events !== expected) throw new Error(`${kind}: stored ${events} events, expected ${expected}`);
    const result: RunResult = { store: kind, eventsPerSec: Math.round(events / (elapsedMs / 1_000)), ...stalls };
    loopBusy.set(result, busy);
    return result;
  } finally {
    await writer.close();
  }
}

/** The meter alone, for as long as a run takes: the stalls the machine causes by itself. */
async function idleBaseline(eventsPerSec: number): Promise<Stalls> {
  const meter = probeFor('idle');
  meter.start();
  await new Promise((resolve) => setTimeout(resolve, Math.min(5_000, (TRANSFERS * (EVENTS_PER_TRANSFER + 2) * 1_000) / eventsPerSec)));
  return stallsOf(meter.stop());
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : round((sorted[mid - 1]! + sorted[mid]!) / 2);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { json: { type: 'boolean' }, runs: { type: 'string' } },
  });
  const repeat = Number(values.runs ?? 7);
  if (!Number.isInteger(repeat) || repeat < 1) throw new Error(`--runs: expected a positive whole number, got ${values.runs}`);

  const dir = mkdtempSync(path.join(tmpdir(), 'bench-db-'));
  const runs: RunResult[] = [];
  const idle: Stalls[] = [];
  try {
    for (let r = 0; r < repeat; r++) {
      // alternate the order so neither store always runs on a warmer process
      const order: StoreKind[] = r % 2 === 0 ? ['as-built', 'main-thread'] : ['main-thread', 'as-built'];
      const runDir = mkdtempSync(path.join(dir, `run-${r}-`));
      for (const kind of order) runs.push(await runOnce(kind, runDir));
      idle.push(await idleBaseline(runs.find((x) => x.store === 'as-built')?.eventsPerSec ?? 1_000));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const rows = (['as-built', 'main-thread'] as const).map((kind) => {
    const mine = runs.filter((r) => r.store === kind);
    return {
      store: kind,
      eventsPerSec: median(mine.map((r) => r.eventsPerSec)),
      maxStallMs: median(mine.map((r) => r.maxStallMs)),
      p99StallMs: pooledP99(probes.get(kind) ?? []),
      maxWallStallMs: median(mine.map((r) => r.maxWallStallMs)),
      p99WallStallMs: pooledP99(probes.get(kind) ?? [], 'wall'),
      busy: median(mine.map((r) => loopBusy.get(r) ?? 0)),
    };
  });
  if (values.json) {
    // `runs`: one summary per store (medians, pooled p99); `samples`: every run as measured.
    const summary = rows.map(({ busy: _busy, ...row }) => row);
    process.stdout.write(`${JSON.stringify({ runs: summary, repeat, samples: runs })}\n`);
    return;
  }
  const header = ['store', 'events/s', 'max stall ms', 'p99 stall ms', 'wall max ms', 'wall p99 ms', 'main thread busy'];
  const table = [
    header,
    ...rows.map((r) => [
      r.store,
      String(r.eventsPerSec),
      r.maxStallMs.toFixed(2),
      r.p99StallMs.toFixed(2),
      r.maxWallStallMs.toFixed(2),
      r.p99WallStallMs.toFixed(2),
      `${Math.round(r.busy * 100)}%`,
    ]),
    [
      '(idle loop)',
      '-',
      median(idle.map((i) => i.maxStallMs)).toFixed(2),
      pooledP99(probes.get('idle') ?? []).toFixed(2),
      median(idle.map((i) => i.maxWallStallMs)).toFixed(2),
      pooledP99(probes.get('idle') ?? [], 'wall').toFixed(2),
      '-',
    ],
  ];
  const widths = header.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
  const lines = table.map((row) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '));
  const built = rows[0]!;
  console.log(
    `${TRANSFERS} concurrent transfers, ${TRANSFERS * (EVENTS_PER_TRANSFER + 2)} events per store per run` +
      `${repeat > 1 ? `, median of ${repeat} runs` : ''}\n\n${lines.join('\n')}\n\n` +
      `target for as-built (max stall < 5 ms, p99 < 2 ms): ${built.maxStallMs < 5 && built.p99StallMs < 2 ? 'met' : 'NOT met'}`,
  );
}

await main();
