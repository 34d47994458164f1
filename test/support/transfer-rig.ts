/**
 * What every warm-transfer end-to-end test needs: a Groq stand-in scripted to play the frontline
 * model (it calls transfer_to_human when the caller asks for a person), the summary model and the
 * briefing model; the real worker; a caller; reference consoles in the desk; and the record store.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTestFailed } from 'vitest';
import { snapshotProcessGroup } from './process-snapshot.js';
import { type TransferStore, openTransferStore } from '../../db/store.js';
import { type AgentAOptions, AgentAConsole } from './agent-a-console.js';
import { type ReferenceConsole, ReferenceConsole as Console, type ConsoleOptions } from './console.js';
import { type ChatRequestInfo, type ChatStep, type GroqStandIn, startGroqStandIn } from './groq-standin.js';
import { type ServerInfo, TestParticipant, serverApi, uniqueRoom } from './participants.js';
import { eventually } from './wait.js';
import { type WorkerProcess, compactLogLine, startWorker } from './worker-process.js';

export const GROQ_KEY = 'gsk_test_transfer';
export const TRANSFER_PHRASE = 'speak to a person';

export const MODEL_SUMMARY = {
  summary: {
    caller: { name: 'Dana Reyes', verified: [], claims: ['says she is the account holder'] },
    intent: 'Wants a refund for order 4471, which arrived damaged',
    keyFacts: [{ label: 'Order number', value: '4471' }],
    stepsTaken: ['Agent A confirmed the order number'],
    sentiment: 'frustrated',
    urgency: 'normal',
    openQuestions: ['Whether a replacement is acceptable'],
    suggestedNextStep: 'Offer a refund or replacement for order 4471',
  },
  brief: 'Dana Reyes is calling about order 4471, which arrived damaged. She wants a refund. Please offer a refund or a replacement.',
};

function isSummaryRequest(req: ChatRequestInfo): boolean {
  return req.responseFormat !== undefined;
}

function isBriefingRequest(req: ChatRequestInfo): boolean {
  return JSON.stringify(req.messages[0] ?? '').includes('briefing a human colleague');
}

/**
 * The default script. Tests override single steps with `groq.enqueueChat` (FIFO, used first) or
 * by passing `frontline` to change what the frontline model does with a caller turn.
 */
export function scriptedResponder(opts: { skill?: string; frontline?: (req: ChatRequestInfo) => ChatStep | undefined } = {}) {
  return (req: ChatRequestInfo): ChatStep => {
    if (isSummaryRequest(req)) return { content: JSON.stringify(MODEL_SUMMARY) };
    if (isBriefingRequest(req)) {
      if (/put (her|him|them) through|connect/i.test(req.lastUserText)) return { toolCalls: [{ name: 'connect_to_caller', arguments: {} }] };
      return { content: 'The caller is Dana Reyes; her order 4471 arrived damaged and she wants a refund.' };
    }
    if (JSON.stringify(req.messages).includes('briefly interrupted')) {
      return { content: 'I am so sorry, we were cut off for a moment. I am back with you now.' };
    }
    if (JSON.stringify(req.messages).includes('did not work out')) {
      return { content: 'I am sorry, I could not reach a colleague. I am still here to help you.' };
    }
    if (req.messages.at(-1)?.role === 'tool') {
      // The model's turn after a tool answered (e.g. nobody available): speak, do not call again.
      return { content: 'I am sorry, no colleague is free right now. I can keep helping you myself.' };
    }
    const custom = opts.frontline?.(req);
    if (custom) return custom;
    if (req.hasTools && req.lastUserText.includes(TRANSFER_PHRASE)) {
      return { toolCalls: [{ name: 'transfer_to_human', arguments: { reason: 'The caller asked for a person', ...(opts.skill ? { skill: opts.skill } : {}) } }] };
    }
    if (req.lastUserText.includes('4471')) return { content: 'I see order 4471. I am sorry it arrived damaged.' };
    return { content: 'Hello, this is the help desk assistant. How can I help you today?' };
  };
}

export interface Rig {
  server: ServerInfo;
  groq: GroqStandIn;
  worker: WorkerProcess;
  agentName: string;
  deskRoom: string;
  dbUrl: string;
  store: TransferStore;
  consoles: ReferenceConsole[];
  participants: TestParticipant[];
  addConsole(opts: Omit<ConsoleOptions, 'deskRoom'>): Promise<ReferenceConsole>;
  /** The transfer's record once it has ended (with `outcome`, when given), with its events. */
  ended(transferId: string, outcome?: string, timeoutMs?: number): Promise<NonNullable<Awaited<ReturnType<TransferStore['getTransfer']>>>>;
  /** A text-only caller in a fresh room with the agent dispatched and the greeting received. */
  startCall(prefix?: string, script?: (req: ChatRequestInfo) => ChatStep): Promise<{ room: string; caller: TestParticipant; agentIdentity: string }>;
  /**
   * Assist mode: a caller and a human Agent A (`agent-a-alex`) in a fresh room, the worker dispatched
   * to listen, and Agent A's console seeing the worker (it addresses the worker by that participant).
   */
  startAssistedCall(
    prefix: string,
    opts?: { agentA?: AgentAOptions; script?: (req: ChatRequestInfo) => ChatStep },
  ): Promise<{ room: string; caller: TestParticipant; alex: AgentAConsole; workerIdentity: string }>;
  cleanupTest(): Promise<void>;
  /** Another worker with the same settings but these (e.g. a second agent name); stopped by close(). */
  startExtraWorker(env: Record<string, string>): Promise<WorkerProcess>;
  /** Kill the worker's process group hard (a crash) and start a fresh worker with the same settings. */
  crashAndRestartWorker(): Promise<WorkerProcess>;
  close(): Promise<void>;
}

export async function startRig(server: ServerInfo, env: Record<string, string> = {}): Promise<Rig> {
  const groq = await startGroqStandIn({ apiKey: GROQ_KEY });
  const agentName = `wt-transfer-${process.pid}`;
  const deskRoom = `desk-${process.pid}-${Date.now().toString(36)}`;
  const dbUrl = `file:${join(mkdtempSync(join(tmpdir(), 'wt-transfer-')), 'transfers.db')}`;
  const workerEnv: Record<string, string> = {
    LIVEKIT_URL: server.url,
    LIVEKIT_API_KEY: server.apiKey,
    LIVEKIT_API_SECRET: server.apiSecret,
    GROQ_API_KEY: GROQ_KEY,
    GROQ_BASE_URL: groq.url,
    AGENT_NAME: agentName,
    DESK_ROOM: deskRoom,
    DATABASE_URL: dbUrl,
    AGENT_TEXT_ONLY: 'true',
    TRANSFER_OFFER_TIMEOUT_MS: '4000',
    ...env,
  };
  const worker = await startWorker({ echo: process.env.WT_ECHO_WORKER === '1', env: workerEnv });
  // spoolDir false: the test process must never replay the worker's spooled records itself.
  const store = await openTransferStore({ url: dbUrl, spoolDir: false });
  const extraWorkers: WorkerProcess[] = [];
  // A failed e2e test prints what the worker said about its calls: CI keeps no other trace of it.
  // One report per test, covering every call it started.
  let failureReport: { rooms: string[] } | undefined;
  const explainIfFailed = (room: string) => {
    if (failureReport) {
      failureReport.rooms.push(room);
      return;
    }
    const report = { rooms: [room] };
    const from = rig.worker.lines.items.length;
    const worker = rig.worker;
    const consoles = rig.consoles; // this test's (cleanupTest starts a new list before this runs)
    try {
      onTestFailed(async (ctx) => {
        const lines = worker.lines.items.slice(from).filter((l) => !l.includes('"room":') || report.rooms.some((r) => l.includes(r)));
        const errors = consoles.flatMap((c) => c.errors.items.map((e) => `${c.identity}: ${e}`));
        const failure = (ctx.task.result?.errors ?? []).map((e) => e.message.split('\n').slice(0, 6).join('\n'));
        // The callers' job processes (their pids are in the lines about these rooms) get a native stack.
        const callPids = new Set(lines.flatMap((l) => (l.includes('"room":') ? [...l.matchAll(/"pid":(\d+)/g)].map((m) => Number(m[1])) : [])));
        // Most telling last: a CI log keeps the tail.
        const brief = lines.map(compactLogLine).filter((l) => l !== undefined);
        const text = [
          `--- ${ctx.task.name}: worker output since ${room} started, info and above (${brief.length} lines, last 80) ---`,
          ...brief.slice(-80),
          `--- console errors (${errors.length}) ---`,
          ...errors,
          ...consoles.flatMap((c) => [`--- ${c.identity} steps ---`, ...c.trace]),
          `--- the worker's processes at the failure ---`,
          await snapshotProcessGroup(worker.pid, callPids).catch((err: unknown) => `(no snapshot: ${String(err)})`),
          `--- ${ctx.task.name}: failed with ---`,
          ...failure,
        ].join('\n');
        console.error(text);
        // npm test prints these again after the summary, where a CI log's tail keeps them.
        const dir = process.env.WT_FAILURE_LOG_DIR;
        if (dir) writeFileSync(join(dir, `${room}.log`), `${text}\n`);
      });
      failureReport = report;
    } catch {
      // not inside a running test (a hook): nothing to attach to
    }
  };
  const rig: Rig = {
    server,
    groq,
    worker,
    agentName,
    deskRoom,
    dbUrl,
    store,
    consoles: [],
    participants: [],
    async addConsole(opts) {
      const c = await Console.join(server, { deskRoom, ...opts });
      rig.consoles.push(c);
      return c;
    },
    ended(transferId, outcome, timeoutMs = 30_000) {
      return eventually(
        async () => {
          const t = await store.getTransfer(transferId);
          return t && (outcome === undefined ? t.transfer.outcome !== null : t.transfer.outcome === outcome) ? t : undefined;
        },
        { timeoutMs, what: `transfer ${transferId} to be recorded${outcome ? ` as ${outcome}` : ' as ended'}` },
      );
    },
    async startCall(prefix = 'call', script = scriptedResponder()) {
      groq.setChatResponder(script);
      const room = uniqueRoom(prefix);
      explainIfFailed(room);
      const caller = await TestParticipant.join(server, room, 'caller', { name: 'Dana Reyes' });
      rig.participants.push(caller);
      await serverApi(server).dispatch.createDispatch(room, agentName, { metadata: JSON.stringify({ textOnly: true }) });
      const agentIdentity = await caller.waitForParticipant((id) => id.startsWith('agent-'), 30_000, 'the agent to join');
      await caller.waitForAgentText((t) => t.includes('help desk'), 30_000, 'the greeting');
      return { room, caller, agentIdentity };
    },
    async startAssistedCall(prefix, opts = {}) {
      groq.setChatResponder(opts.script ?? scriptedResponder());
      const room = uniqueRoom(prefix);
      explainIfFailed(room);
      const caller = await TestParticipant.join(server, room, 'caller', { name: 'Dana Reyes' });
      rig.participants.push(caller);
      const alex = await AgentAConsole.join(server, room, 'agent-a-alex', opts.agentA);
      rig.participants.push(alex as unknown as TestParticipant);
      await serverApi(server).dispatch.createDispatch(room, agentName, { metadata: JSON.stringify({ mode: 'assist', textOnly: true }) });
      const workerIdentity = await caller.waitForParticipant((id) => id.startsWith('agent-') && id !== alex.identity, 30_000, 'the assisting worker to join');
      await eventually(() => alex.callerRoom.remoteParticipants.has(workerIdentity) || undefined, { timeoutMs: 30_000, what: 'Agent A to see the worker' });
      return { room, caller, alex, workerIdentity };
    },
    async cleanupTest() {
      failureReport = undefined;
      const gone = [...rig.consoles, ...rig.participants];
      rig.consoles = [];
      rig.participants = [];
      await Promise.all(gone.map((p) => p.leave()));
      groq.reset();
    },
    async startExtraWorker(env) {
      const extra = await startWorker({ echo: process.env.WT_ECHO_WORKER === '1', env: { ...workerEnv, ...env } });
      extraWorkers.push(extra);
      return extra;
    },
    async crashAndRestartWorker() {
      await rig.worker.crash();
      rig.worker = await startWorker({ echo: process.env.WT_ECHO_WORKER === '1', env: workerEnv });
      return rig.worker;
    },
    async close() {
      await rig.cleanupTest();
      await Promise.all([rig.worker, ...extraWorkers.splice(0)].map((w) => w.stop()));
      // For hunting rare failures: every run's whole worker output, passed tests too (see README, Tests).
      const keep = process.env.WT_WORKER_LOG_DIR;
      if (keep) writeFileSync(join(keep, `${agentName}-${Date.now().toString(36)}.log`), rig.worker.output());
      await store.close();
      await groq.close();
    },
  };
  return rig;
}
