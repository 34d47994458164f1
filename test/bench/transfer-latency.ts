/**
 * `npm run bench:transfer [-- --runs 10] [-- --json]`: time from the transfer tool call to Agent B
 * in the caller room, against the real livekit-server and worker, with an instantly-accepting
 * console (it connects the moment the summary is on its screen) and a zero-latency Groq stand-in.
 * Split by phase. Runs inside the test network namespace (the npm script sees to it).
 */
import { parseArgs } from 'node:util';
import { startLiveKitServer } from '../../scripts/livekit-dev-server.js';
import { TRANSFER_PHRASE, startRig } from '../support/transfer-rig.js';
import { eventually } from '../support/wait.js';
import { median, p95 } from './stats.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '10' }, json: { type: 'boolean', default: false } } });
const runs = Number(values.runs);

const PHASES = ['tool_to_requested', 'summary_wait', 'offer', 'consult_join', 'agent_b_seen', 'briefing_start', 'connect', 'join', 'handover'] as const;
type Phase = (typeof PHASES)[number];

const server = await startLiveKitServer({ bindAddress: '127.0.0.1', nodeIp: process.env.WT_TEST_NODE_IP, httpPort: 7970, rtcTcpPort: 7971, rtcUdpPort: 7972 });
const rig = await startRig(server);
const totals: number[] = [];
const phases: Record<Phase, number[]> = Object.fromEntries(PHASES.map((p) => [p, []])) as unknown as Record<Phase, number[]>;

try {
  for (let i = 0; i < runs; i += 1) {
    const agentB = await rig.addConsole({ identity: `console-bench-${i}`, name: 'Ana' });
    const { caller, agentIdentity } = await rig.startCall(`bench-${i}`);
    await caller.say(`I want to ${TRANSFER_PHRASE}.`);
    const offer = await agentB.offers.waitFor(() => true, 30_000, 'the offer');
    const summary = await agentB.summaries.waitFor(() => true, 30_000, 'the summary');
    await agentB.connect();
    await agentB.inCallerRoom(30_000);
    await caller.left.waitFor((id) => id === agentIdentity, 30_000, 'Agent A to leave');
    const leftAt = Date.now();

    // The frontline request the stand-in answered with the tool call (later requests also quote the phrase).
    const toolCall = rig.groq.chatRequests().find((r) => JSON.stringify(r.body).includes('transfer_to_human') && JSON.stringify(r.body).includes(TRANSFER_PHRASE))!.at;
    const record = await eventually(async () => (await rig.store.getTransfer(offer.offer.transferId))?.transfer, {
      timeoutMs: 20_000,
      what: 'the record',
    });
    const consultJoined = agentB.events.items.find((e) => e.kind === 'consult-joined')!.at;
    const callerJoined = agentB.events.items.find((e) => e.kind === 'caller-joined')!.at;
    const t = {
      tool_to_requested: record.requestedAt! - toolCall,
      summary_wait: record.offeringAt! - record.summarizingAt!,
      offer: offer.at - record.offeringAt!,
      consult_join: consultJoined - offer.at,
      agent_b_seen: record.briefingAt! - consultJoined,
      briefing_start: summary.at - record.briefingAt!,
      connect: record.connectingAt! - summary.at,
      join: callerJoined - record.connectingAt!,
      handover: leftAt - callerJoined,
    } satisfies Record<Phase, number>;
    for (const p of PHASES) phases[p].push(t[p]);
    totals.push(callerJoined - toolCall);
    if (!values.json) process.stderr.write(`run ${i + 1}/${runs}: ${callerJoined - toolCall} ms\n`);
    await rig.cleanupTest();
  }
} finally {
  await rig.close();
  await server.stop();
}

const result = {
  runs,
  totalMs: { p50: median(totals), p95: p95(totals) },
  phasesP50Ms: Object.fromEntries(PHASES.map((p) => [p, median(phases[p])])),
  note: 'total = transfer tool call (stand-in answer) to Agent B in the caller room; handover (introduction, Agent A leaving) comes after and is not in the total',
};
if (values.json) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
} else {
  process.stdout.write(`\nTransfer latency over ${runs} runs (zero-latency Groq stand-in, instantly accepting console)\n`);
  process.stdout.write(`| measure | p50 ms | p95 ms |\n| --- | --- | --- |\n| tool call -> Agent B in caller room | ${result.totalMs.p50} | ${result.totalMs.p95} |\n`);
  for (const p of PHASES) process.stdout.write(`| ${p} | ${median(phases[p])} | ${p95(phases[p])} |\n`);
}
