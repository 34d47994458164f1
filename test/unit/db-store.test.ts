import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTransferStore, type TransferStore } from '../../db/store.js';
import type { NewTransfer } from '../../db/types.js';
import { captureLog, type LogLine } from '../support/capture-log.js';

let seq = 0;
function newId(): string {
  return `tr_${Date.now().toString(36)}_${(seq++).toString(36)}`;
}

function transfer(overrides: Partial<NewTransfer> = {}): NewTransfer {
  return {
    id: newId(),
    callerRoom: 'room-caller-1',
    callerIdentity: 'caller-1',
    agentAIdentity: 'agent-a-1',
    mode: 'frontline',
    initiatedBy: 'caller',
    targetKind: 'participant',
    target: { skill: 'billing' },
    reason: 'caller wants a refund',
    workerId: 'worker-1',
    jobId: 'job-1',
    ...overrides,
  };
}

const tmp = mkdtempSync(path.join(tmpdir(), 'db-store-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.each([
  { engine: ':memory:', url: ':memory:' },
  { engine: 'file', url: `file:${path.join(tmp, 'nested', 'dir', 'transfers.db')}` },
])('transfer store ($engine)', ({ url }) => {
  let store: TransferStore;
  let lines: LogLine[];

  beforeAll(async () => {
    const captured = captureLog();
    lines = captured.lines;
    // a generous caller wait: these tests assert 'stored', which a loaded machine must not turn into 'queued'
    store = await openTransferStore({ url, log: captured.log, ackTimeoutMs: 15_000 });
  });
  afterAll(async () => {
    await store.close();
  });

  it('creates a transfer with a first "requested" event', async () => {
    const rec = transfer({ requestedAt: 1_000_000 });
    expect(await store.createTransfer(rec)).toBe('stored');
    const got = await store.getTransfer(rec.id);
    expect(got).not.toBeNull();
    expect(got!.transfer).toMatchObject({
      id: rec.id,
      callerRoom: 'room-caller-1',
      callerIdentity: 'caller-1',
      agentAIdentity: 'agent-a-1',
      mode: 'frontline',
      initiatedBy: 'caller',
      targetKind: 'participant',
      target: { skill: 'billing' },
      requestReason: 'caller wants a refund',
      phase: 'requested',
      outcome: null,
      requestedAt: 1_000_000,
      workerId: 'worker-1',
      jobId: 'job-1',
      ownerWorkerId: 'worker-1',
    });
    expect(got!.transfer.createdAt).toBeGreaterThan(0);
    expect(got!.events).toEqual([{ seq: 1, phase: 'requested', at: 1_000_000, detail: null }]);
  });

  it('keeps the first record when a transfer is created twice', async () => {
    const rec = transfer();
    await store.createTransfer(rec);
    await store.createTransfer({ ...rec, callerRoom: 'other-room' });
    const got = await store.getTransfer(rec.id);
    expect(got!.transfer.callerRoom).toBe('room-caller-1');
    expect(got!.events).toHaveLength(1);
  });

  it('records phases in order with per-phase timestamps and the current phase', async () => {
    const rec = transfer({ requestedAt: 10_000 });
    await store.createTransfer(rec);
    const detail: { candidate: string; attempt?: number } = { candidate: 'agent-b-1' };
    await store.recordEvent(rec.id, 'summarizing', { at: 10_100 });
    const offered = store.recordEvent(rec.id, 'offering', { at: 10_200, detail });
    detail.candidate = 'mutated after the call'; // the record keeps what was passed
    await offered;
    await store.recordEvent(rec.id, 'offering', { at: 10_300, detail: { candidate: 'agent-b-2' } });
    await store.recordEvent(rec.id, 'briefing', { at: 10_400 });
    await store.recordEvent(rec.id, 'connecting', { at: 10_500 });
    const got = await store.getTransfer(rec.id);
    expect(got!.transfer).toMatchObject({
      phase: 'connecting',
      summarizingAt: 10_100,
      offeringAt: 10_200, // the first offer
      briefingAt: 10_400,
      connectingAt: 10_500,
      endedAt: null,
    });
    expect(got!.events.map((e) => [e.seq, e.phase, e.at])).toEqual([
      [1, 'requested', 10_000],
      [2, 'summarizing', 10_100],
      [3, 'offering', 10_200],
      [4, 'offering', 10_300],
      [5, 'briefing', 10_400],
      [6, 'connecting', 10_500],
    ]);
    expect(got!.events[2]!.detail).toEqual({ candidate: 'agent-b-1' });
  });

  it('sets the consult room, Agent B and the summary', async () => {
    const rec = transfer();
    await store.createTransfer(rec);
    await store.setConsultRoom(rec.id, 'consult-1');
    await store.setAgentB(rec.id, { identity: '+15550100', kind: 'sip' });
    await store.setSummary(rec.id, {
      summary: { intent: 'refund', facts: ['order 123'] },
      brief: 'Caller wants a refund for order 123.',
      source: 'llm',
      model: 'openai/gpt-oss-120b',
    });
    const got = await store.getTransfer(rec.id);
    expect(got!.transfer).toMatchObject({
      consultRoom: 'consult-1',
      agentBIdentity: '+15550100',
      agentBKind: 'sip',
      summary: { intent: 'refund', facts: ['order 123'] },
      brief: 'Caller wants a refund for order 123.',
      summarySource: 'llm',
      summaryModel: 'openai/gpt-oss-120b',
    });
  });

  it('finishes once: the first outcome wins, and later events do not reopen it', async () => {
    const rec = transfer({ requestedAt: 50_000 });
    await store.createTransfer(rec);
    await store.recordEvent(rec.id, 'offering', { at: 50_100 });
    expect(await store.finish(rec.id, 'declined', 'agent b declined', 50_200)).toBe('stored');
    expect(await store.finish(rec.id, 'failed', 'second finish', 50_300)).toBe('stored');
    await store.recordEvent(rec.id, 'connecting', { at: 50_400, detail: { cleanup: true } });
    const got = await store.getTransfer(rec.id);
    expect(got!.transfer).toMatchObject({ outcome: 'declined', reason: 'agent b declined', phase: 'ended', endedAt: 50_200 });
    expect(got!.events.map((e) => e.phase)).toEqual(['requested', 'offering', 'ended', 'connecting']);
    expect(got!.events[2]!.detail).toEqual({ outcome: 'declined', reason: 'agent b declined' });
  });

  it('applies fire-and-forget writes of one transfer in call order', async () => {
    const rec = transfer();
    void store.createTransfer(rec);
    const calls = [];
    for (let i = 0; i < 120; i++) {
      calls.push(store.recordEvent(rec.id, i % 2 === 0 ? 'offering' : 'briefing', { detail: { i } }));
    }
    void store.finish(rec.id, 'completed', 'done');
    const outcomes = await Promise.all(calls);
    expect(outcomes.every((o) => o === 'stored')).toBe(true);
    expect(await store.flush(5_000)).toBe(0);
    const got = await store.getTransfer(rec.id);
    expect(got!.events).toHaveLength(122);
    expect(got!.events.slice(1, 121).map((e) => (e.detail as { i: number }).i)).toEqual([...Array(120).keys()]);
    expect(got!.events.map((e) => e.seq)).toEqual([...Array(122).keys()].map((i) => i + 1));
    expect(got!.events.at(-1)!.phase).toBe('ended');
  });

  it('tracks owner heartbeats and lists open transfers whose owner went quiet', async () => {
    const stale = transfer({ workerId: 'worker-gone' });
    const alive = transfer({ workerId: 'worker-alive' });
    const done = transfer({ workerId: 'worker-gone' });
    await Promise.all([store.createTransfer(stale), store.createTransfer(alive), store.createTransfer(done)]);
    const now = Date.now();
    await store.touch(stale.id, { at: now - 120_000 }); // never moves back: still its create time
    await store.finish(done.id, 'completed', 'ok');
    await store.touch(alive.id, { at: now + 60_000, ownerWorkerId: 'worker-alive-2' });
    const open = await store.listOpenTransfers({ staleBeforeMs: now + 30_000 });
    const ids = open.map((t) => t.id);
    expect(ids).toContain(stale.id);
    expect(ids).not.toContain(alive.id);
    expect(ids).not.toContain(done.id);
    const aliveNow = await store.getTransfer(alive.id);
    expect(aliveNow!.transfer).toMatchObject({ ownerWorkerId: 'worker-alive-2', heartbeatAt: now + 60_000 });
  });

  it('never throws on bad calls: they are refused and logged whole', async () => {
    const before = lines.length;
    // deliberately wrong values, as a JavaScript caller or a bug could pass them
    expect(await store.recordEvent('', 'offering')).toBe('rejected');
    expect(await store.recordEvent('tr_x', 'teleporting' as never)).toBe('rejected');
    expect(await store.finish('tr_x', 'exploded' as never, 'boom')).toBe('rejected');
    expect(await store.createTransfer(null as never)).toBe('rejected');
    expect(await store.setAgentB('tr_x', { identity: 'b', kind: 'robot' as never })).toBe('rejected');
    const logged = lines.slice(before);
    expect(logged).toHaveLength(5);
    expect(logged.every((l) => l.level === 'error' && 'call' in l.obj)).toBe(true);
    expect(logged[1]!.obj.call).toEqual({ recordEvent: { id: 'tr_x', phase: 'teleporting', event: {} } });
  });

  it('logs, and does not retry forever, a write for a transfer that was never created', async () => {
    const before = lines.length;
    expect(await store.recordEvent('tr_never_created', 'offering')).toBe('rejected');
    expect(await store.setAgentB('tr_never_created', { identity: 'b', kind: 'participant' })).toBe('stored');
    const logged = lines.slice(before);
    expect(logged.map((l) => [l.level, l.obj.transferId])).toEqual([
      ['error', 'tr_never_created'],
      ['warn', 'tr_never_created'],
    ]);
    expect(logged[0]!.obj.record).toMatchObject({ kind: 'event', id: 'tr_never_created', phase: 'offering' });
    expect(store.pendingWrites()).toBe(0);
  });

  it('returns null for an unknown transfer', async () => {
    expect(await store.getTransfer('tr_unknown')).toBeNull();
  });
});

describe('listTransfers', () => {
  let store: TransferStore;
  const base = 1_700_000_000_000;
  const ids: string[] = [];

  beforeAll(async () => {
    store = await openTransferStore({ url: ':memory:', log: captureLog().log, ackTimeoutMs: 15_000 });
    // 30 transfers, one a minute; rooms and agents alternate; every third one is still open
    for (let i = 0; i < 30; i++) {
      const id = `tr_list_${String(i).padStart(2, '0')}`;
      ids.push(id);
      void store.createTransfer(
        transfer({
          id,
          requestedAt: base + i * 60_000,
          callerRoom: i % 2 === 0 ? 'room-even' : 'room-odd',
          agentAIdentity: i % 5 === 0 ? 'agent-five' : 'agent-a',
        }),
      );
      if (i % 3 !== 0) void store.finish(id, i % 3 === 1 ? 'completed' : 'no_answer', 'r', base + i * 60_000 + 1_000);
      if (i === 7) void store.setAgentB(id, { identity: 'agent-b-seven', kind: 'participant' });
    }
    // two with the same requestedAt, to check the cursor's tie-break on id
    void store.createTransfer(transfer({ id: 'tr_tie_a', requestedAt: base + 29 * 60_000 }));
    void store.createTransfer(transfer({ id: 'tr_tie_b', requestedAt: base + 29 * 60_000 }));
    expect(await store.flush(5_000)).toBe(0);
  });
  afterAll(async () => {
    await store.close();
  });

  it('lists newest first with a default limit', async () => {
    const page = await store.listTransfers();
    expect(page.items).toHaveLength(32);
    expect(page.nextCursor).toBeNull();
    expect(page.items.slice(0, 4).map((t) => t.id)).toEqual(['tr_tie_b', 'tr_tie_a', 'tr_list_29', 'tr_list_28']);
  });

  it('pages with a cursor through everything exactly once', async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await store.listTransfers({ limit: 7, ...(cursor !== undefined ? { cursor } : {}) });
      seen.push(...page.items.map((t) => t.id));
      cursor = page.nextCursor ?? undefined;
      pages++;
    } while (cursor !== undefined);
    expect(pages).toBe(5);
    expect(seen).toHaveLength(32);
    expect(new Set(seen).size).toBe(32);
    const all = (await store.listTransfers({ limit: 100 })).items.map((t) => t.id);
    expect(seen).toEqual(all);
  });

  it('filters by status and outcome', async () => {
    const open = await store.listTransfers({ status: 'open', limit: 100 });
    expect(open.items.every((t) => t.outcome === null)).toBe(true);
    expect(open.items).toHaveLength(12); // 10 of the 30, plus the two ties
    const ended = await store.listTransfers({ status: 'ended', limit: 100 });
    expect(ended.items).toHaveLength(20);
    const noAnswer = await store.listTransfers({ status: 'no_answer', limit: 100 });
    expect(noAnswer.items.map((t) => t.outcome)).toEqual(Array(10).fill('no_answer'));
  });

  it('filters by since, room and agent (A or B)', async () => {
    const recent = await store.listTransfers({ since: base + 25 * 60_000, limit: 100 });
    expect(recent.items.map((t) => t.id)).toEqual([
      'tr_tie_b',
      'tr_tie_a',
      'tr_list_29',
      'tr_list_28',
      'tr_list_27',
      'tr_list_26',
      'tr_list_25',
    ]);
    const odd = await store.listTransfers({ room: 'room-odd', limit: 100 });
    expect(odd.items).toHaveLength(15);
    expect(odd.items.every((t) => t.callerRoom === 'room-odd')).toBe(true);
    const five = await store.listTransfers({ agent: 'agent-five', limit: 100 });
    expect(five.items.map((t) => t.id)).toEqual(['tr_list_25', 'tr_list_20', 'tr_list_15', 'tr_list_10', 'tr_list_05', 'tr_list_00']);
    const agentB = await store.listTransfers({ agent: 'agent-b-seven' });
    expect(agentB.items.map((t) => t.id)).toEqual(['tr_list_07']);
    const combined = await store.listTransfers({ room: 'room-even', status: 'open', since: base + 10 * 60_000 });
    expect(combined.items.map((t) => t.id)).toEqual(['tr_list_24', 'tr_list_18', 'tr_list_12']);
  });

  it('refuses a cursor it did not make', async () => {
    await expect(store.listTransfers({ cursor: 'not-a-cursor' })).rejects.toThrow(/invalid cursor/);
  });
});

describe('store lifecycle', () => {
  it('flushes on close and refuses (and logs) writes after it', async () => {
    const { log, lines } = captureLog();
    const store = await openTransferStore({ url: ':memory:', log, ackTimeoutMs: 15_000 });
    const rec = transfer();
    void store.createTransfer(rec);
    void store.recordEvent(rec.id, 'summarizing');
    await store.close();
    expect(store.pendingWrites()).toBe(0);
    expect(store.stats()).toMatchObject({ stored: 2, failedAttempts: 0, rejected: 0 });
    expect(await store.recordEvent(rec.id, 'offering')).toBe('rejected');
    expect(lines.at(-1)).toMatchObject({ level: 'error', obj: { record: { kind: 'event', id: rec.id, phase: 'offering' } } });
  });

  it('rejects an unsupported database URL at open', async () => {
    await expect(openTransferStore({ url: 'postgres://localhost/x', log: captureLog().log })).rejects.toThrow(
      /unsupported database URL scheme/,
    );
  });
});
