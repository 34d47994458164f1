/**
 * Faults end to end (issue 7): the real worker, server, caller and console, with Groq broken at
 * the HTTP boundary. Fault 4: Groq is unavailable for the whole call.
 *
 * "Unavailable for the whole call" cannot include the frontline model: without it the AI never
 * calls the transfer tool, so there is no transfer to test. Everything else the worker asks Groq
 * for during the call fails: the rolling summary, the transfer-time summary refinement and the
 * briefing agent's answers to Agent B. A transfer must never wait on, or fail because of, the
 * model: it completes, with the rule-based summary marked `fallback`.
 */
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ReferenceConsole } from '../support/console.js';
import type { ChatRequestInfo, ChatStep, RecordedRequest } from '../support/groq-standin.js';
import type { TestParticipant } from '../support/participants.js';
import { type Rig, TRANSFER_PHRASE, scriptedResponder, startRig } from '../support/transfer-rig.js';
import { eventually } from '../support/wait.js';

const server = inject('livekit');
const WAIT_MS = 20_000;
/** Short, so the hang variant sees the deadline pass well before Agent B is put through. */
const SUMMARY_DEADLINE_MS = 1_500;
let rig: Rig;

beforeAll(async () => {
  rig = await startRig(server, {
    // Rolling updates start soon after each caller turn, so the summary model is asked (and
    // fails) during the conversation, not only at transfer time.
    SUMMARY_DEBOUNCE_MS: '200',
    SUMMARY_MIN_INTERVAL_MS: '0',
    SUMMARY_DEADLINE_MS: String(SUMMARY_DEADLINE_MS),
    // A loaded two-core host can take a few seconds to deliver an offer; this file is not about timeouts.
    TRANSFER_OFFER_TIMEOUT_MS: '20000',
  });
});
afterEach(async () => rig.cleanupTest());
afterAll(async () => rig?.close());

// The same request shapes the rig's script tells apart (it does not export its predicates).
function isSummaryBody(body: unknown): boolean {
  return typeof body === 'object' && body !== null && 'response_format' in body;
}
function isBriefingBody(body: unknown): boolean {
  const messages = (body as { messages?: unknown[] } | undefined)?.messages;
  return JSON.stringify(messages?.[0] ?? '').includes('briefing a human colleague');
}
const isSummaryRequest = (r: RecordedRequest) => r.route === 'chat' && isSummaryBody(r.body);
const isBriefingRequest = (r: RecordedRequest) => r.route === 'chat' && isBriefingBody(r.body);

/** The frontline model works; the summary and briefing models answer `broken` every time. */
function groqDownExceptFrontline(broken: ChatStep): (req: ChatRequestInfo) => ChatStep {
  const frontline = scriptedResponder();
  return (req) => (isSummaryBody(req.body) || isBriefingBody(req.body) ? broken : frontline(req));
}

async function recordOf(transferId: string, done: (t: NonNullable<Awaited<ReturnType<Rig['store']['getTransfer']>>>) => boolean, what: string) {
  return eventually(
    async () => {
      const t = await rig.store.getTransfer(transferId);
      return t && done(t) ? t : undefined;
    },
    { timeoutMs: WAIT_MS, what },
  );
}

/** A few turns with the AI first, so there is something to summarise (and rolling updates fire). */
async function converse(caller: TestParticipant): Promise<void> {
  // The reply to the first turn says what the greeting said: wait past the greeting for it, or the
  // second turn goes out while the first is being answered.
  const greeted = caller.mark();
  await caller.say('Hi, my name is Dana Reyes.');
  await caller.waitForAgentText((t) => t.includes('help desk'), WAIT_MS, 'a reply to the first turn', greeted);
  await caller.say('My order 4471 arrived damaged and I want a refund.');
  await caller.waitForAgentText((t) => t.includes('I see order 4471'), WAIT_MS, 'a reply about order 4471');
}

/** Agent B is in the caller room, Agent A has left, and the record says completed. */
async function expectCompleted(agentB: ReferenceConsole, caller: TestParticipant, agentIdentity: string, transferId: string) {
  await agentB.connect();
  await agentB.inCallerRoom(WAIT_MS, transferId);
  await caller.waitForAgentText((t) => t.includes('is with us now'), WAIT_MS, 'the introduction');
  await caller.left.waitFor((id) => id === agentIdentity, WAIT_MS, 'Agent A to leave the caller room');
  expect(caller.remoteIdentities()).toContain(agentB.identity);
  // The summary is recorded when the refinement gives up (deadline, failure, or the transfer ending).
  const record = await recordOf(
    transferId,
    (t) => t.transfer.outcome !== null && t.transfer.summarySource !== null,
    `transfer ${transferId} to end with a summary recorded`,
  );
  expect(record.transfer.outcome).toBe('completed');
  expect(record.transfer.summarySource).toBe('fallback');
  expect(JSON.stringify(record.transfer.summary)).toContain('4471');
  return record;
}

/** The summary on Agent B's screen is the rule-based one, and it carries what the caller said. */
function expectFallbackSummary(summary: Awaited<ReturnType<ReferenceConsole['summaries']['waitFor']>>) {
  expect(summary.value.source).toBe('fallback');
  const s = summary.value.summary as { intent?: string; keyFacts?: { label: string; value: string }[]; caller?: { name?: string } };
  expect(s.keyFacts?.map((f) => f.value)).toContain('4471');
  expect(s.intent).toContain('4471');
  expect(s.caller?.name).toBe('Dana Reyes');
  expect(summary.value.brief).toContain('4471');
}

describe('fault 4: Groq unavailable for the whole call (all but the frontline model)', () => {
  it('summary and briefing models answer 500: the transfer completes with the fallback summary', async () => {
    const agentB = await rig.addConsole({ identity: 'console-g500', name: 'Ana' });
    const { caller, agentIdentity } = await rig.startCall('groq-500', groqDownExceptFrontline({ error: { status: 500 } }));
    await converse(caller);
    // The rolling summary was tried during the call (and failed): the fallback is not just "never asked".
    await rig.groq.waitForRequest(isSummaryRequest, WAIT_MS);

    await caller.say(`I want to ${TRANSFER_PHRASE}.`);
    await caller.waitForAgentText((t) => t.includes('Please hold'), WAIT_MS, 'the hold message');
    const offered = await agentB.offers.waitFor(() => true, WAIT_MS, 'the offer');
    const transferId = offered.offer.transferId;
    expect(offered.offer.preview.intent).toContain('4471');

    await agentB.inConsultRoom(WAIT_MS, transferId);
    expectFallbackSummary(await agentB.summaries.waitFor(() => true, WAIT_MS, 'the summary on the console'));
    // The brief is spoken without the model.
    await agentB.briefingTexts.waitFor((m) => m.text.includes('4471'), WAIT_MS, 'the spoken brief');

    // Agent B asks a question; the briefing model fails. The briefing must survive it.
    const questionsBefore = rig.groq.requests.filter(isBriefingRequest).length;
    await agentB.ask('What does the caller want?');
    await eventually(() => rig.groq.requests.filter(isBriefingRequest).length > questionsBefore, {
      timeoutMs: WAIT_MS,
      what: 'the briefing model to be asked (and fail)',
    });

    const record = await expectCompleted(agentB, caller, agentIdentity, transferId);
    expect(record.events.map((e) => e.phase)).toEqual(['requested', 'summarizing', 'offering', 'briefing', 'connecting', 'ended']);
    // Every summary request the worker made failed; none of them was answered with a summary.
    expect(rig.groq.requests.filter(isSummaryRequest).length).toBeGreaterThan(0);
  });

  it('summary and briefing models hang: the deadline passes, the transfer completes with the fallback summary', async () => {
    const agentB = await rig.addConsole({ identity: 'console-ghang', name: 'Ana' });
    const { caller, agentIdentity } = await rig.startCall('groq-hang', groqDownExceptFrontline({ hang: true }));
    await converse(caller);
    await rig.groq.waitForRequest(isSummaryRequest, WAIT_MS);

    await caller.say(`I want to ${TRANSFER_PHRASE}.`);
    const offered = await agentB.offers.waitFor(() => true, WAIT_MS, 'the offer');
    const transferId = offered.offer.transferId;
    await agentB.inConsultRoom(WAIT_MS, transferId);
    expectFallbackSummary(await agentB.summaries.waitFor(() => true, WAIT_MS, 'the summary on the console'));

    // The worker gave up on the hanging model at its deadline and went on with what it had.
    const gaveUp = await rig.worker.waitForLog(
      (line) => line.includes(transferId) && line.includes('handoff summary not refined'),
      WAIT_MS,
      'the summarizer to give up on the hanging model',
    );
    expect(JSON.parse(gaveUp)).toMatchObject({ reason: 'deadline', source: 'fallback' });

    // A question to the briefing agent hangs on the model; connecting must not wait for it.
    await agentB.ask('Has the caller been verified?');
    await rig.groq.waitForRequest(isBriefingRequest, WAIT_MS);

    await expectCompleted(agentB, caller, agentIdentity, transferId);
  });
});
