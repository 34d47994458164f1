/**
 * A worker connection that never hears that Agent B arrived, though the server has them in the
 * room (seen for real in 1 of 28 two-node runs: the consult-room connection missed the
 * console for good and the transfer failed). The worker reaches the server through a signalling
 * proxy (test/support/signal-proxy.ts) that takes Agent B's arrival out of what one of its
 * connections hears; consoles and the caller use the server directly.
 */
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { type ConnectionInfo, type SignalProxy, startSignalProxy } from '../support/signal-proxy.js';
import { type Rig, TRANSFER_PHRASE, startRig } from '../support/transfer-rig.js';

const server = inject('livekit');
let rig: Rig;
let proxy: SignalProxy;
/** Which worker connection goes deaf, to whom; set by each test. */
let rule: (conn: ConnectionInfo) => string | undefined = () => undefined;

beforeAll(async () => {
  proxy = await startSignalProxy(server, (conn) => rule(conn));
  rig = await startRig(server, { LIVEKIT_URL: proxy.url, CONSOLE_LIVEKIT_URL: server.url });
});
afterEach(async () => {
  rule = () => undefined;
  await rig.cleanupTest();
});
afterAll(async () => {
  await rig?.close();
  await proxy?.close();
});

describe('a worker connection that misses Agent B arriving', () => {
  it("consult room: the server lists Agent B, the worker's connection does not; it connects again and the transfer completes", async () => {
    const deafened = new Set<string>();
    // The first connection of the worker's briefing participant to each consult room never hears of Cara.
    rule = (conn) => {
      if (!conn.identity.startsWith('wt-brief-') || deafened.has(conn.room)) return undefined;
      deafened.add(conn.room);
      return 'console-cara';
    };
    const agentB = await rig.addConsole({ identity: 'console-cara', name: 'Cara', skills: ['billing'] });
    const { room, caller, agentIdentity } = await rig.startCall('deaf-consult');
    await caller.say(`My order 4471 arrived damaged. I want to ${TRANSFER_PHRASE}.`);
    const offered = await agentB.offers.waitFor(() => true, 20_000, 'an offer');
    const transferId = offered.offer.transferId;
    await agentB.inConsultRoom(20_000, transferId);

    // The summary still reaches Cara: the worker noticed, connected again, and briefed her.
    await agentB.summaries.waitFor(() => true, 20_000, 'the summary on the console');
    const muted = proxy.muted.items.filter((m) => m.conn.room === offered.offer.consult.room);
    expect(muted.length, "the proxy took Cara's arrival out of what the first connection heard").toBeGreaterThan(0);
    expect(muted.every((m) => m.conn.identity.startsWith('wt-brief-') && m.muted === 'console-cara')).toBe(true);
    const briefConnections = proxy.connections.filter((c) => c.room === offered.offer.consult.room);
    expect(briefConnections.length, 'the worker connected to the consult room twice').toBe(2);
    const lines = rig.worker.records().filter((r) => r.transferId === transferId).map((r) => r.msg);
    expect(lines).toContain("the worker's consult-room connection never heard that Agent B joined, though the server lists them in the room; connecting it again");
    expect(lines).toContain('the new consult-room connection sees Agent B');

    await agentB.connect();
    await agentB.inCallerRoom(20_000, transferId);
    await caller.waitForAgentText((t) => t.includes('Cara is with us now'), 20_000, 'the introduction');
    await caller.left.waitFor((id) => id === agentIdentity, 20_000, 'Agent A to leave the caller room');
    expect(agentB.errors.items).toEqual([]);
    const record = await rig.ended(transferId, 'completed');
    expect(record.transfer).toMatchObject({ callerRoom: room, agentBIdentity: 'console-cara', phase: 'ended' });
  });

  it("caller room: Agent B rejoins, only the server sees it; the worker takes the server's word, introduces Agent B and leaves", async () => {
    // The job's connection to the caller room (named deaf-caller-...) never hears of Dev.
    rule = (conn) => (conn.room.startsWith('deaf-caller') && conn.identity.startsWith('agent-') ? 'console-dev' : undefined);
    const agentB = await rig.addConsole({ identity: 'console-dev', name: 'Dev', skills: ['billing'] });
    const call = await rig.startCall('deaf-caller');
    expect(proxy.connections.some((c) => c.room === call.room && c.identity === call.agentIdentity), "the job's caller-room connection went through the proxy").toBe(true);
    await call.caller.say(`My order 4471 arrived damaged. I want to ${TRANSFER_PHRASE}.`);
    const offered = await agentB.offers.waitFor(() => true, 20_000, 'an offer');
    const transferId = offered.offer.transferId;
    await agentB.inConsultRoom(20_000, transferId);
    await agentB.summaries.waitFor(() => true, 20_000, 'the summary on the console');
    await agentB.connect();
    await agentB.inCallerRoom(20_000, transferId);
    await call.caller.waitForAgentText((t) => t.includes('Dev is with us now'), 20_000, 'the introduction');
    await call.caller.left.waitFor((id) => id === call.agentIdentity, 20_000, 'Agent A to leave the caller room');
    const record = await rig.ended(transferId, 'completed');
    expect(record.transfer.reason).toContain('rejoin');
    expect(proxy.muted.items.some((m) => m.conn.room === call.room && m.muted === 'console-dev')).toBe(true);
    const lines = rig.worker.records().filter((r) => r.transferId === transferId).map((r) => r.msg);
    expect(lines).toContain("the caller-room connection never heard that Agent B joined, though the server lists them in the room; going on");
  });
});
