/**
 * Scale-out, end to end: two open-source livekit-server nodes sharing one Redis (multi-node
 * routing), one worker process registered with each node (same agent name, same desk room, same
 * record database), and several warm transfers where the caller, Agent B's console and the worker
 * are on different nodes. Every transfer must complete, the calls must be spread over both
 * workers, and every record must land in the one database.
 *
 * Node A advertises the namespace's first test address (WT_TEST_NODE_IP), node B the second one
 * (198.18.0.2, the other end of the veth pair scripts/in-test-netns.sh makes), so media to a room
 * really goes to the address of the node that hosts it.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { type TransferRecord, type TransferStore, openTransferStore } from '../../db/store.js';
import { type RunningLiveKitServer, startLiveKitServer } from '../../scripts/livekit-dev-server.js';
import { ReferenceConsole } from '../support/console.js';
import { type GroqStandIn, startGroqStandIn } from '../support/groq-standin.js';
import { TestParticipant, serverApi, uniqueRoom } from '../support/participants.js';
import { type RunningRedis, redisCommand, startRedisServer } from '../support/redis-server.js';
import { GROQ_KEY, TRANSFER_PHRASE, scriptedResponder } from '../support/transfer-rig.js';
import { snapshotProcessGroup } from '../support/process-snapshot.js';
import { eventually } from '../support/wait.js';
import { type WorkerProcess, compactLogLine, freePort, startWorker } from '../support/worker-process.js';

/** How many calls (in pairs that run at the same time). */
const CALLS = 6;
const SECOND_NODE_IP = '198.18.0.2';

interface Node {
  label: 'A' | 'B';
  server: RunningLiveKitServer;
  nodeIp: string;
  /** The id the node registered under in Redis (from its "starting LiveKit server" log line). */
  nodeId: string;
}

interface Worker {
  label: 'A' | 'B';
  node: Node;
  process: WorkerProcess;
  /** The worker id the server gave it ("registered worker"); transfer records carry it. */
  workerId: string;
}

interface CallResult {
  index: number;
  callerRoom: string;
  callerNode: Node;
  consoleNode: Node;
  /** Node that hosts the caller room (Redis room_node_map), read while the call was up. */
  roomNode: string;
  /** The worker that received the job (its log), before any record is read. */
  worker: Worker;
  transferId: string;
  consultUrl: string;
  /** ms from the dispatch to the greeting, to the offer, and to Agent B in the caller room. */
  timings: { greeting: number; offer: number; joined: number };
}

let redis: RunningRedis | undefined;
const nodes: Node[] = [];
const workers: Worker[] = [];
let groq: GroqStandIn | undefined;
let store: TransferStore | undefined;
let agentName: string;
let deskRoom: string;
const people: { leave(): Promise<void> }[] = [];

function hasLocalAddress(ip: string): boolean {
  return Object.values(networkInterfaces()).some((list) => list?.some((a) => a.address === ip));
}

async function logOf(server: RunningLiveKitServer, match: RegExp, what: string): Promise<string> {
  // The server's output reaches its log file through a pipe: wait for the line, don't assume it is there.
  return eventually(() => readFileSync(server.logFile, 'utf8').split('\n').find((l) => match.test(l)), { timeoutMs: 10_000, what });
}

/** Ports no other node of this run uses (both nodes share the namespace's addresses). */
const usedPorts = new Set<number>();
async function unusedPort(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (!usedPorts.has(port)) {
      usedPorts.add(port);
      return port;
    }
  }
}

async function startNode(label: Node['label'], nodeIp: string, redisAddress: string): Promise<Node> {
  // Each node needs its own RTC ports: the ICE TCP port listens on every address, and the UDP port
  // on every local address, not only the node's own.
  const [httpPort, rtcTcpPort, rtcUdpPort] = [await unusedPort(), await unusedPort(), await unusedPort()];
  const server = await startLiveKitServer({ bindAddress: '127.0.0.1', nodeIp, httpPort, rtcTcpPort, rtcUdpPort, redisAddress });
  const started = await logOf(server, /starting LiveKit server/, `node ${label} to log its start`);
  const nodeId = /"nodeID":\s*"([^"]+)"/.exec(started)?.[1];
  if (!nodeId) throw new Error(`node ${label}: no nodeID in its start line: ${started}`);
  process.stderr.write(`[multinode] node ${label} ${server.version} pid ${server.pid} ${nodeId} at ${server.url}, RTC on ${nodeIp}; log ${server.logFile}\n`);
  return { label, server, nodeIp, nodeId };
}

beforeAll(async () => {
  if (process.env.WT_IN_TEST_NETNS !== '1') {
    throw new Error('The multi-node test must run inside the test network namespace: `npm test`, or scripts/in-test-netns.sh npx vitest run --project e2e-multinode');
  }
  const firstIp = process.env.WT_TEST_NODE_IP;
  if (!firstIp) throw new Error('WT_TEST_NODE_IP is not set; scripts/in-test-netns.sh sets it');
  for (const ip of [firstIp, SECOND_NODE_IP]) {
    if (!hasLocalAddress(ip)) throw new Error(`test address ${ip} is not on any interface here; scripts/in-test-netns.sh configures it`);
  }

  redis = await startRedisServer({ host: '127.0.0.1' });
  process.stderr.write(`[multinode] redis pid ${redis.pid} at ${redis.address}\n`);
  nodes.push(await startNode('A', firstIp, redis.address), await startNode('B', SECOND_NODE_IP, redis.address));

  groq = await startGroqStandIn({ apiKey: GROQ_KEY });
  // Each caller names the skill of "their" console, so concurrent calls go to the console meant for them.
  groq.setChatResponder(
    scriptedResponder({
      frontline: (req) => {
        const skill = /desk skill (\S+)/.exec(req.lastUserText)?.[1];
        if (!req.hasTools || !req.lastUserText.includes(TRANSFER_PHRASE) || !skill) return undefined;
        return { toolCalls: [{ name: 'transfer_to_human', arguments: { reason: 'The caller asked for a person', skill } }] };
      },
    }),
  );

  agentName = `wt-multinode-${process.pid}`;
  deskRoom = `desk-multinode-${process.pid}-${Date.now().toString(36)}`;
  const dbUrl = `file:${join(mkdtempSync(join(tmpdir(), 'wt-multinode-')), 'transfers.db')}`;
  await Promise.all(
    nodes.map(async (node) => {
      const proc = await startWorker({
        echo: process.env.WT_ECHO_WORKER === '1',
        env: {
          LIVEKIT_URL: node.server.url,
          LIVEKIT_API_KEY: node.server.apiKey,
          LIVEKIT_API_SECRET: node.server.apiSecret,
          GROQ_API_KEY: GROQ_KEY,
          GROQ_BASE_URL: groq!.url,
          AGENT_NAME: agentName,
          DESK_ROOM: deskRoom,
          DATABASE_URL: dbUrl,
          AGENT_TEXT_ONLY: 'true',
          // One call at a time per worker: a worker with a call reports itself full to LiveKit.
          WORKER_MAX_JOBS: '1',
          WORKER_LOAD_THRESHOLD: '1',
        },
      });
      const worker: Worker = { label: node.label, node, process: proc, workerId: '' };
      workers.push(worker); // stopped in afterAll, whatever happens next
      const registered = proc.records().find((r) => r.msg === 'registered worker');
      if (typeof registered?.id !== 'string') {
        throw new Error(`worker on node ${node.label}: no "registered worker" line with an id:\n${proc.output().slice(-2000)}`);
      }
      worker.workerId = registered.id;
      process.stderr.write(`[multinode] worker ${node.label} pid ${proc.pid} ${worker.workerId} registered with node ${node.label}\n`);
    }),
  );
  store = await openTransferStore({ url: dbUrl });
}, 240_000);

afterAll(async () => {
  await Promise.all(people.splice(0).map((p) => p.leave().catch(() => undefined)));
  await Promise.all(workers.map((w) => w.process.stop()));
  // For hunting rare failures: both workers' whole output, passed runs too (see README, Tests).
  const keep = process.env.WT_WORKER_LOG_DIR;
  if (keep) for (const w of workers) writeFileSync(join(keep, `${agentName}-${w.label}-${Date.now().toString(36)}.log`), w.process.output());
  await store?.close();
  await groq?.close();
  await Promise.all(nodes.map((n) => n.server.stop()));
  await redis?.stop();
}, 60_000);

/**
 * A failed test prints what both workers said, what each console saw, and both workers' process
 * states, with the failure last: CI keeps only the tail of its log and no other trace of the run.
 */
function explainIfFailed(): void {
  const marks = new Map(workers.map((w) => [w, w.process.lines.items.length]));
  onTestFailed(async (ctx) => {
    const failure = (ctx.task.result?.errors ?? []).map((e) => e.message.split('\n').slice(0, 6).join('\n'));
    // The pair that was running: the last two consoles.
    const consoles = people.filter((p): p is ReferenceConsole => p instanceof ReferenceConsole).slice(-2);
    const parts: string[] = [];
    for (const w of workers) {
      parts.push(`--- worker ${w.label}'s processes at the failure ---`, await snapshotProcessGroup(w.process.pid, new Set()).catch((err: unknown) => `(no snapshot: ${String(err)})`));
    }
    for (const c of consoles) parts.push(`--- ${c.identity} steps; errors: ${JSON.stringify(c.errors.items)} ---`, ...c.trace);
    for (const w of workers) {
      const lines = w.process.lines.items.slice(marks.get(w)).map(compactLogLine).filter((l) => l !== undefined);
      parts.push(`--- worker ${w.label} (pid ${w.process.pid}): info and above during the test (${lines.length} lines, last 45) ---`, ...lines.slice(-45));
    }
    parts.push(`--- ${ctx.task.name}: failed with ---`, ...failure);
    const text = parts.join('\n');
    console.error(text);
    // npm test prints these again after the summary, where a CI log's tail keeps them.
    const dir = process.env.WT_FAILURE_LOG_DIR;
    if (dir) writeFileSync(join(dir, `multinode-${Date.now().toString(36)}.log`), `${text}\n`);
  });
}

interface LiveCall {
  index: number;
  callerRoom: string;
  callerNode: Node;
  consoleNode: Node;
  roomNode: string;
  caller: TestParticipant;
  agentB: ReferenceConsole;
  agentIdentity: string;
  /** The worker whose job is Agent A in this call. */
  worker: Worker;
  t0: number;
  greeting: number;
}

/** Which worker runs a job: the one that logged receiving it. */
function workerOfJob(jobId: string): Worker {
  const found = workers.filter((w) => w.process.records().some((l) => l.msg === 'received job request' && l.jobId === jobId));
  if (found.length !== 1) throw new Error(`job ${jobId} was received by ${found.length} workers`);
  return found[0]!;
}

/** Waits for the first line of the worker's output at or after line `from` that matches; its index. */
async function logAfter(w: Worker, from: number, match: RegExp, timeoutMs: number, what: string): Promise<number> {
  const { lines } = w.process;
  const line = await lines.waitFor((l) => match.test(l) && lines.items.lastIndexOf(l) >= from, timeoutMs, `worker ${w.label}: ${what}`);
  return lines.items.lastIndexOf(line);
}

/** A console for this call on one node, the caller on the other, Agent A dispatched and greeting. */
async function startCall(index: number): Promise<LiveCall> {
  const callerNode = nodes[index % 2]!;
  const consoleNode = nodes[(index + 1) % 2]!;
  const agentB = await ReferenceConsole.join(consoleNode.server, {
    deskRoom,
    identity: `console-mn-${index}`,
    name: `Agent${index}`,
    skills: [`mn${index}`],
  });
  people.push(agentB);

  const callerRoom = uniqueRoom(`mn${index}`);
  const caller = await TestParticipant.join(callerNode.server, callerRoom, 'caller', { name: 'Dana Reyes' });
  people.push(caller);
  const t0 = Date.now();
  // Dispatch through the API of the node the caller is not on: the server API routes to the room's node.
  await serverApi(consoleNode.server).dispatch.createDispatch(callerRoom, agentName, { metadata: JSON.stringify({ textOnly: true }) });
  const agentIdentity = await caller.waitForParticipant((id) => id.startsWith('agent-'), 40_000, `call ${index}: the agent to join`);
  await caller.waitForAgentText((t) => t.includes('help desk'), 40_000, `call ${index}: the greeting`);
  const greeting = Date.now() - t0;
  const roomNode = await redisCommand(redis!.address, ['HGET', 'room_node_map', callerRoom]);
  if (typeof roomNode !== 'string') throw new Error(`call ${index}: Redis has no node for room ${callerRoom} (got ${String(roomNode)})`);
  // The agents framework names a job's participant agent-<job id>.
  const worker = workerOfJob(agentIdentity.slice('agent-'.length));
  return { index, callerRoom, callerNode, consoleNode, roomNode, caller, agentB, agentIdentity, worker, t0, greeting };
}

/** The caller asks for a person; their console takes the call; Agent A hands over and leaves. */
async function transferCall(call: LiveCall): Promise<CallResult> {
  const { index, caller, agentB, t0 } = call;
  const name = `Agent${index}`;
  await caller.say(`My order 4471 arrived damaged. I want to ${TRANSFER_PHRASE}, desk skill mn${index}`);
  const offered = await agentB.offers.waitFor(() => true, 30_000, `call ${index}: the offer`);
  const offer = Date.now() - t0;
  expect(offered.offer.callerRoom).toBe(call.callerRoom);
  const transferId = offered.offer.transferId;
  await agentB.inConsultRoom(30_000, transferId);
  await agentB.summaries.waitFor(() => true, 30_000, `call ${index}: the summary on the console`);
  await agentB.connect();
  await agentB.inCallerRoom(30_000, transferId);
  const joined = Date.now() - t0;
  await caller.waitForAgentText((t) => t.includes(`${name} is with us now`), 30_000, `call ${index}: the introduction`);
  await caller.left.waitFor((id) => id === call.agentIdentity, 30_000, `call ${index}: Agent A to leave the caller room`);
  expect(caller.room.isConnected).toBe(true);
  expect(caller.remoteIdentities()).toContain(agentB.identity);
  expect(agentB.errors.items).toEqual([]);
  return {
    index,
    callerRoom: call.callerRoom,
    callerNode: call.callerNode,
    consoleNode: call.consoleNode,
    roomNode: call.roomNode,
    worker: call.worker,
    transferId,
    consultUrl: offered.offer.consult.url,
    timings: { greeting: call.greeting, offer, joined },
  };
}

describe('two LiveKit nodes sharing Redis, one worker on each', () => {
  it('both nodes run multi-node routing through the one Redis', async () => {
    for (const node of nodes) {
      const line = await logOf(node.server, /connecting to redis/, `node ${node.label} to connect to Redis`);
      expect(line).toContain(redis!.address);
      expect(readFileSync(node.server.logFile, 'utf8')).not.toContain('using single-node routing');
    }
    const registered = await redisCommand(redis!.address, ['HKEYS', 'nodes']);
    expect(Array.isArray(registered) ? [...registered].sort() : registered).toEqual(nodes.map((n) => n.nodeId).sort());
    expect(new Set(workers.map((w) => w.workerId)).size).toBe(2);
  });

  it(`${CALLS} warm transfers across nodes all complete, spread over both workers, recorded in one database`, async () => {
    explainIfFailed();
    const results: CallResult[] = [];
    // Calls go in pairs that run at the same time. Each worker takes one call at a time
    // (WORKER_MAX_JOBS=1), so a worker with a call tells LiveKit it is full, and the second call
    // of a pair must be dispatched, across Redis, to the worker on the other node.
    for (let i = 0; i < CALLS; i += 2) {
      const marks = new Map(workers.map((w) => [w, w.process.lines.items.length]));
      const first = await startCall(i);
      await logAfter(first.worker, marks.get(first.worker)!, /at full capacity/, 15_000, `full with call ${i}`);
      const second = await startCall(i + 1);
      expect(second.worker, `call ${i + 1} went to the worker that is not full`).not.toBe(first.worker);
      results.push(...(await Promise.all([transferCall(first), transferCall(second)])));
      // Each job ends with its transfer; both workers are available again before the next pair.
      await Promise.all(
        workers.map(async (w) => {
          const full = await logAfter(w, marks.get(w)!, /at full capacity/, 15_000, `full during pair ${i / 2}`);
          await logAfter(w, full, /below capacity, marking as available/, 30_000, `available again after pair ${i / 2}`);
        }),
      );
    }

    // Every record is in the one database, completed, each written by the worker that ran the call.
    const records: TransferRecord[] = [];
    for (const r of results) {
      const rec = await eventually(
        async () => {
          const t = await store!.getTransfer(r.transferId);
          return t?.transfer.outcome === 'completed' ? t : undefined;
        },
        { timeoutMs: 20_000, what: `call ${r.index}: transfer ${r.transferId} recorded as completed` },
      );
      expect(rec.transfer).toMatchObject({ callerRoom: r.callerRoom, agentBIdentity: `console-mn-${r.index}`, phase: 'ended' });
      expect(rec.events.map((e) => e.phase)).toEqual(['requested', 'summarizing', 'offering', 'briefing', 'connecting', 'ended']);
      records.push(rec.transfer);
    }
    const listed = (await store!.listTransfers({ limit: 500 })).items;
    expect(listed.map((t) => t.id).sort()).toEqual(results.map((r) => r.transferId).sort());

    // Each record names the worker and job that ran the call: the worker whose log received that job.
    const summary: string[] = [];
    for (const [i, r] of results.entries()) {
      const rec = records[i]!;
      const worker = r.worker;
      expect(rec.workerId, `call ${r.index}: worker id in the record`).toBe(worker.workerId);
      const jobs = worker.process.records().filter((l) => l.msg === 'received job request').map((l) => l.jobId);
      expect(jobs).toContain(rec.jobId);
      // The worker hands consoles its own node's URL: the consult room is reached through the worker's node.
      expect(r.consultUrl).toBe(worker.node.server.url);
      const roomNode = nodes.find((n) => n.nodeId === r.roomNode)?.label ?? r.roomNode;
      summary.push(
        `call ${r.index}: caller via ${r.callerNode.label}, console via ${r.consoleNode.label}, room on ${roomNode}, job on worker ${worker.label}; ` +
          `greeting ${r.timings.greeting} ms, offer ${r.timings.offer} ms, Agent B in ${r.timings.joined} ms`,
      );
    }
    process.stderr.write(`[multinode]\n  ${summary.join('\n  ')}\n`);

    const jobsPerWorker = workers.map((w) => records.filter((t) => t.workerId === w.workerId).length);
    expect(jobsPerWorker.every((n) => n >= 1), `jobs per worker ${jobsPerWorker.join('/')}`).toBe(true);
  });
});
