/**
 * `npm run demo`: one full warm transfer on this machine, narrated.
 *
 * Starts a local livekit-server and the worker, puts a scripted caller in a room and a scripted
 * Agent B console (the reference console from test support) in the desk, has the caller ask for a
 * person, and lets the console accept, read the summary, ask a question and connect. Then prints
 * the timeline and the stored record. With GROQ_API_KEY set it talks to Groq; without it, it uses
 * the local Groq stand-in and says so.
 */
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadEnvFiles } from '../agent/env-file.js';
import { runHistory } from '../db/history.js';
import { type TransferStore, openTransferStore } from '../db/store.js';
import { ReferenceConsole } from '../test/support/console.js';
import { type GroqStandIn, startGroqStandIn } from '../test/support/groq-standin.js';
import { TestParticipant, serverApi } from '../test/support/participants.js';
import { TRANSFER_PHRASE, scriptedResponder } from '../test/support/transfer-rig.js';
import { eventually } from '../test/support/wait.js';
import { type WorkerProcess, startWorker } from '../test/support/worker-process.js';
import { type RunningLiveKitServer, startLiveKitServer } from './livekit-dev-server.js';

loadEnvFiles();
const started = Date.now();
const say = (line: string) => process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(2).padStart(6)}s] ${line}\n`);

const STEP_TIMEOUT_MS = Number(process.env.DEMO_STEP_TIMEOUT_MS ?? 60_000);
const repoRoot = fileURLToPath(new URL('..', import.meta.url));

let server: RunningLiveKitServer | undefined;
let groq: GroqStandIn | undefined;
let worker: WorkerProcess | undefined;
let store: TransferStore | undefined;
const people: { leave(): Promise<void> }[] = [];

async function main(): Promise<void> {
  const httpPort = Number(process.env.DEMO_LIVEKIT_PORT ?? 7880);
  say(`starting livekit-server on 127.0.0.1:${httpPort}...`);
  server = await startLiveKitServer({
    bindAddress: '127.0.0.1',
    // Inside the test network namespace (CI), advertise its test address to WebRTC clients.
    nodeIp: process.env.WT_TEST_NODE_IP,
    httpPort,
    rtcTcpPort: httpPort + 1,
    rtcUdpPort: httpPort + 2,
  });
  say(`${server.version} is up at ${server.url}`);

  let groqEnv: Record<string, string>;
  const realKey = process.env.GROQ_API_KEY?.trim();
  if (realKey) {
    say('GROQ_API_KEY is set: the agent, the summary and the briefing use Groq.');
    groqEnv = { GROQ_API_KEY: realKey, ...(process.env.GROQ_BASE_URL ? { GROQ_BASE_URL: process.env.GROQ_BASE_URL } : {}) };
  } else {
    groq = await startGroqStandIn({ apiKey: 'gsk_demo_standin', log: false });
    groq.setChatResponder(scriptedResponder({ skill: 'billing' }));
    say(`No GROQ_API_KEY: using the local Groq STAND-IN at ${groq.url} (scripted replies, no real model).`);
    groqEnv = { GROQ_API_KEY: 'gsk_demo_standin', GROQ_BASE_URL: groq.url };
  }

  const databaseUrl = process.env.DATABASE_URL?.trim() || 'file:data/transfers.db';
  if (databaseUrl.startsWith('file:')) mkdirSync(`${repoRoot}/data`, { recursive: true });
  const agentName = 'warm-transfer-demo';
  const deskRoom = 'warm-transfer-demo-desk';
  say('starting the worker...');
  worker = await startWorker({
    echo: process.env.DEMO_VERBOSE === '1',
    env: {
      LIVEKIT_URL: server.url,
      LIVEKIT_API_KEY: server.apiKey,
      LIVEKIT_API_SECRET: server.apiSecret,
      AGENT_NAME: agentName,
      DESK_ROOM: deskRoom,
      DATABASE_URL: databaseUrl,
      ...(process.env.DATABASE_AUTH_TOKEN ? { DATABASE_AUTH_TOKEN: process.env.DATABASE_AUTH_TOKEN } : {}),
      AGENT_TEXT_ONLY: 'true',
      ...groqEnv,
    },
  });
  say(`worker registered as "${agentName}" (its log: DEMO_VERBOSE=1 npm run demo)`);
  store = await openTransferStore({ url: databaseUrl, authToken: process.env.DATABASE_AUTH_TOKEN });

  const agentB = await ReferenceConsole.join(server, { deskRoom, identity: 'console-ana', name: 'Ana', skills: ['billing', 'returns'] });
  people.push(agentB);
  say('Agent B (Ana) is at her console in the desk room, available, skills billing and returns');

  const room = `demo-call-${Date.now().toString(36)}`;
  const caller = await TestParticipant.join(server, room, 'caller', { name: 'Dana Reyes' });
  people.push(caller);
  say(`caller Dana joined room ${room}; dispatching the agent by name`);
  await serverApi(server).dispatch.createDispatch(room, agentName, { metadata: JSON.stringify({ textOnly: true }) });
  const greeting = await caller.waitForAgentText(() => true, STEP_TIMEOUT_MS, 'the greeting');
  say(`Agent A: "${greeting.text}"`);

  const ask = `Hi, my order 4471 arrived damaged and I want a refund. I'd like to ${TRANSFER_PHRASE}.`;
  say(`caller: "${ask}"`);
  await caller.say(ask);
  const hold = await caller.waitForAgentText((t) => t !== greeting.text, STEP_TIMEOUT_MS, 'the hold message');
  say(`Agent A: "${hold.text}" (hold music plays; the AI stops listening)`);

  const offer = await agentB.offers.waitFor(() => true, STEP_TIMEOUT_MS, 'the offer');
  say(`Ana's console rings: "${offer.offer.preview.intent}" (urgency ${offer.offer.preview.urgency}); she accepts`);
  await agentB.inConsultRoom(STEP_TIMEOUT_MS);
  const summary = await agentB.summaries.waitFor(() => true, STEP_TIMEOUT_MS, 'the summary');
  say(`Ana is in the private consult room; the summary is on her screen (source: ${summary.value.source})`);
  const brief = await agentB.briefingTexts.waitFor(() => true, STEP_TIMEOUT_MS, 'the brief');
  say(`briefing: "${brief.text}"`);
  const seen = agentB.briefingTexts.items.length;
  await agentB.ask('What does the caller want?');
  const answer = await agentB.briefingTexts.waitFor((m) => agentB.briefingTexts.items.indexOf(m) >= seen, STEP_TIMEOUT_MS, 'an answer');
  say(`Ana: "What does the caller want?"  briefing: "${answer.text}"`);
  say('Ana: "Put her through."');
  await agentB.connect();
  await agentB.inCallerRoom(STEP_TIMEOUT_MS);
  const via = agentB.events.items.find((e) => e.kind === 'caller-joined')?.via;
  say(`Ana is in the caller's room (joined by ${via})`);
  const intro = await caller.waitForAgentText((t) => t.includes('with us now'), STEP_TIMEOUT_MS, 'the introduction');
  say(`Agent A: "${intro.text}"`);
  await caller.left.waitFor((id) => id.startsWith('agent-'), STEP_TIMEOUT_MS, 'Agent A to leave');
  say(`Agent A left. In the call now: ${caller.remoteIdentities().join(', ')} and the caller.`);

  const transferId = offer.offer.transferId;
  await eventually(async () => (await store!.getTransfer(transferId))?.transfer.outcome, { timeoutMs: STEP_TIMEOUT_MS, what: 'the record' });
  process.stdout.write(`\nTransfer ${transferId}: timeline and stored record (npm run transfers -- show ${transferId})\n\n`);
  await runHistory(['show', transferId, '--db', databaseUrl], process.env, {
    out: (s: string) => process.stdout.write(`${s}\n`),
    err: (s: string) => process.stderr.write(`${s}\n`),
  });
  const record = await store.getTransfer(transferId);
  process.stdout.write(`\n${JSON.stringify(record?.transfer, null, 2)}\n`);
  if (record?.transfer.outcome !== 'completed') throw new Error(`the transfer ended as ${record?.transfer.outcome}: ${record?.transfer.reason}`);
  say(`demo complete: transfer ${transferId} completed${groq ? ' (with the Groq stand-in)' : ''}`);
}

// Once: Ctrl-C reaches npm and this process together, and npm then sends SIGTERM as well.
let stopping: Promise<void> | undefined;
function shutdown(): Promise<void> {
  stopping ??= (async () => {
    await Promise.all(people.map((p) => p.leave().catch(() => undefined)));
    await worker?.stop();
    await store?.close();
    await groq?.close();
    await server?.stop();
  })();
  return stopping;
}

// Ctrl-C (or a closed pipe) must not leave the server and worker running.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => void shutdown().finally(() => process.exit(130)));
}
process.stdout.on('error', () => void shutdown().finally(() => process.exit(1)));

try {
  await main();
  await shutdown();
  process.exit(0);
} catch (err) {
  process.stderr.write(`demo failed: ${(err as Error).message}\n`);
  if (worker) process.stderr.write(`worker log tail:\n${worker.output().slice(-3000)}\n`);
  await shutdown();
  process.exit(1);
}
