/**
 * The remote path (Turso / sqld URLs) against a Hrana-over-HTTP test server: the same store code,
 * the real @libsql/client HTTP client, failures injected at the server.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createClient } from '@libsql/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTransferStore, type TransferStore } from '../../db/store.js';
import { startHranaServer, type HranaTestServer } from '../support/hrana-server.js';
import { captureLog } from '../support/capture-log.js';

const TOKEN = 'test-token-123';
const tmp = mkdtempSync(path.join(tmpdir(), 'db-remote-'));
const dbPath = path.join(tmp, 'server.db');
let server: HranaTestServer;

beforeAll(async () => {
  server = await startHranaServer({ dbPath, authToken: TOKEN });
});
afterAll(async () => {
  await server.close();
  rmSync(tmp, { recursive: true, force: true });
});

const retry = { baseMs: 20, maxMs: 150 };

async function runTransfer(store: TransferStore, id: string): Promise<string[]> {
  const outcomes = [
    await store.createTransfer({ id, callerRoom: 'room-r', mode: 'frontline', targetKind: 'participant', target: { skill: 'sales' } }),
    await store.recordEvent(id, 'summarizing', { detail: { tail: 12 } }),
    await store.setSummary(id, { summary: { intent: 'upgrade' }, brief: 'Wants to upgrade.', source: 'fallback' }),
    await store.recordEvent(id, 'offering'),
    await store.setAgentB(id, { identity: 'agent-b-remote', kind: 'participant' }),
    await store.setConsultRoom(id, 'consult-r'),
    await store.recordEvent(id, 'briefing'),
    await store.recordEvent(id, 'connecting'),
    await store.finish(id, 'completed', 'joined'),
  ];
  return outcomes;
}

describe('remote database over Hrana HTTP', () => {
  it('stores and reads transfers through the HTTP client, with migrations applied remotely', async () => {
    const { log, lines } = captureLog();
    const store = await openTransferStore({ url: server.url, authToken: TOKEN, log, retry, ackTimeoutMs: 15_000 });
    try {
      expect(store.location).toBe(server.url);
      expect(await runTransfer(store, 'tr_remote_1')).toEqual(Array(9).fill('stored'));
      const got = await store.getTransfer('tr_remote_1');
      expect(got!.transfer).toMatchObject({
        outcome: 'completed',
        agentBIdentity: 'agent-b-remote',
        consultRoom: 'consult-r',
        summary: { intent: 'upgrade' },
        summarySource: 'fallback',
        target: { skill: 'sales' },
      });
      expect(got!.events.map((e) => e.phase)).toEqual(['requested', 'summarizing', 'offering', 'briefing', 'connecting', 'ended']);
      expect((await store.listTransfers({ room: 'room-r' })).items.map((t) => t.id)).toContain('tr_remote_1');
      expect(await store.listOpenTransfers({ staleBeforeMs: Date.now() + 1_000 })).toEqual([]);
      expect(lines.filter((l) => l.level !== 'info')).toEqual([]);
    } finally {
      await store.close();
    }
    // it really is in the server's file, and nothing was written locally
    const direct = createClient({ url: `file:${dbPath}` });
    try {
      const n = (await direct.execute("SELECT COUNT(*) AS n FROM transfer_events WHERE transfer_id = 'tr_remote_1'")).rows[0]?.n;
      expect(n).toBe(6);
    } finally {
      direct.close();
    }
  });

  it('queues writes while the server answers 503 and stores them in order when it recovers', async () => {
    const { log, lines } = captureLog();
    const store = await openTransferStore({ url: server.url, authToken: TOKEN, log, retry, ackTimeoutMs: 300 });
    try {
      server.failWith('http-503');
      const outcomes = await runTransfer(store, 'tr_remote_503');
      expect(outcomes.every((o) => o === 'queued')).toBe(true);
      expect(store.pendingWrites()).toBe(9);
      expect(lines.find((l) => l.level === 'warn')?.obj.err).toMatchObject({ code: 'SERVER_ERROR' });
      server.failWith(null);
      expect(await store.flush(5_000)).toBe(0);
      const got = await store.getTransfer('tr_remote_503');
      expect(got!.events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(got!.events.map((e) => e.phase)).toEqual(['requested', 'summarizing', 'offering', 'briefing', 'connecting', 'ended']);
      expect(got!.transfer.outcome).toBe('completed');
    } finally {
      server.failWith(null);
      await store.close();
    }
  });

  it('queues writes while the server is unreachable, including at start-up', async () => {
    await server.stop();
    const { log, lines } = captureLog();
    let store: TransferStore | undefined;
    try {
      store = await openTransferStore({ url: server.url, authToken: TOKEN, log, retry, ackTimeoutMs: 300 });
      expect(lines[0]).toMatchObject({ level: 'warn', msg: expect.stringMatching(/unavailable at start-up/) });
      const outcomes = await runTransfer(store, 'tr_remote_down');
      expect(outcomes.every((o) => o === 'queued')).toBe(true);
      await expect(store.getTransfer('tr_remote_down')).rejects.toThrow(/fetch failed/);
      await server.start();
      expect(await store.flush(5_000)).toBe(0);
      const got = await store.getTransfer('tr_remote_down');
      expect(got!.events).toHaveLength(6);
      expect(store.stats()).toMatchObject({ stored: 9, rejected: 0 });
    } finally {
      await server.start();
      await store?.close();
    }
  });

  it('refuses to start with a token the server rejects', async () => {
    await expect(openTransferStore({ url: server.url, authToken: 'wrong', log: captureLog().log })).rejects.toThrow(/401/);
  });

  it('retries a write whose reply was lost without duplicating events', async () => {
    // the server commits, then the client never sees the answer: the retry must be a no-op
    const { log } = captureLog();
    let dropNext = false;
    const store = await openTransferStore({ url: server.url, authToken: TOKEN, log, retry });
    try {
      await store.createTransfer({ id: 'tr_remote_dup', callerRoom: 'r', mode: 'frontline', targetKind: 'agent' });
      const realFetch = globalThis.fetch;
      globalThis.fetch = async (input, init) => {
        const res = await realFetch(input, init);
        if (dropNext) {
          dropNext = false;
          throw new TypeError('fetch failed');
        }
        return res;
      };
      try {
        dropNext = true;
        expect(await store.recordEvent('tr_remote_dup', 'offering', { detail: { once: true } })).toBe('queued');
        expect(await store.flush(5_000)).toBe(0);
      } finally {
        globalThis.fetch = realFetch;
      }
      const got = await store.getTransfer('tr_remote_dup');
      expect(got!.events.map((e) => e.phase)).toEqual(['requested', 'offering']);
    } finally {
      await store.close();
    }
  });
});
