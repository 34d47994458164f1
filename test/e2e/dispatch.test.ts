/**
 * The foundation, end to end: the real worker process registers with a real livekit-server, is
 * dispatched into a room by its agent name, and converses with a real caller over text streams.
 * Groq is the stand-in, at the HTTP boundary.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { type GroqStandIn, startGroqStandIn } from '../support/groq-standin.js';
import { TestParticipant, agentParticipants, serverApi, uniqueRoom, waitForAgentIn } from '../support/participants.js';
import { type WorkerProcess, startWorker } from '../support/worker-process.js';

const server = inject('livekit');
const AGENT_NAME = `wt-e2e-${process.pid}`;

let groq: GroqStandIn;
let worker: WorkerProcess;
const participants: TestParticipant[] = [];

async function joinCaller(room: string, identity = 'caller'): Promise<TestParticipant> {
  const p = await TestParticipant.join(server, room, identity);
  participants.push(p);
  return p;
}

beforeAll(async () => {
  groq = await startGroqStandIn({ apiKey: 'gsk_test_key' });
  worker = await startWorker({
    echo: process.env.WT_ECHO_WORKER === '1',
    env: {
      LIVEKIT_URL: server.url,
      LIVEKIT_API_KEY: server.apiKey,
      LIVEKIT_API_SECRET: server.apiSecret,
      GROQ_API_KEY: 'gsk_test_key',
      GROQ_BASE_URL: groq.url,
      AGENT_NAME,
      DATABASE_URL: `file:${join(mkdtempSync(join(tmpdir(), 'wt-e2e-')), 'transfers.db')}`,
    },
  });
});

afterEach(async () => {
  await Promise.all(participants.splice(0).map((p) => p.leave()));
  groq.reset();
});

afterAll(async () => {
  await worker?.stop();
  await groq?.close();
});

describe('worker against a real livekit-server', () => {
  it('runs against the real open-source server binary', async () => {
    expect(server.version).toMatch(/^livekit-server version 1\.13\.5$/);
    const res = await fetch(server.httpUrl);
    expect(await res.text()).toBe('OK');
  });

  it('registers with the server under its agent name', async () => {
    const info = (await (await fetch(`${worker.healthUrl}/worker`)).json()) as { agent_name: string };
    expect(info.agent_name).toBe(AGENT_NAME);
    await worker.waitForLog(/registered worker/, 5_000);
  });

  it('is dispatched into a room by name, greets the caller, and answers over lk.transcription', async () => {
    groq.setChatResponder((req) => {
      if (req.lastUserText.includes('order 4471')) return { content: 'I am sorry your order 4471 is late. Let me check that for you.' };
      return { content: 'Hello, this is the help desk assistant. How can I help you today?' };
    });
    const room = uniqueRoom('hello');
    const caller = await joinCaller(room);
    await serverApi(server).dispatch.createDispatch(room, AGENT_NAME, { metadata: JSON.stringify({ textOnly: true }) });

    const agentIdentity = await caller.waitForParticipant((id) => id.startsWith('agent-'), 30_000, 'the agent to join the room');
    const greeting = await caller.waitForAgentText((t) => t.includes('help desk'), 30_000, 'the greeting');
    expect(greeting.from).toBe(agentIdentity);

    await caller.say('Hi, my order 4471 has not arrived.');
    const reply = await caller.waitForAgentText((t) => t.includes('order 4471 is late'), 30_000, 'the reply');
    expect(reply.from).toBe(agentIdentity);

    // The model saw the caller's words and the support-desk instructions.
    const chat = groq.chatRequests().at(-1)!;
    const body = chat.body as { model: string; messages: { role: string; content: unknown }[] };
    expect(body.model).toBe('openai/gpt-oss-120b');
    expect(JSON.stringify(body.messages)).toContain('my order 4471 has not arrived');
    expect(JSON.stringify(body.messages[0])).toContain('first-line support agent');
    expect(chat.headers.authorization).toBe('Bearer gsk_test_key');
  });

  it('is not dispatched into a room that did not ask for it by name', async () => {
    const { dispatch } = serverApi(server);
    // Room X: a caller, and a dispatch for some other agent name. Our worker must not come.
    const roomX = uniqueRoom('not-ours');
    await joinCaller(roomX, 'caller-x');
    await dispatch.createDispatch(roomX, 'some-other-agent');

    // Room Y, asked for after X: once our agent is in Y, the server has already offered X's jobs.
    const roomY = uniqueRoom('ours');
    await joinCaller(roomY, 'caller-y');
    await dispatch.createDispatch(roomY, AGENT_NAME, { metadata: JSON.stringify({ textOnly: true }) });
    await waitForAgentIn(server, roomY, 30_000);

    expect(await agentParticipants(server, roomX)).toEqual([]);
    const jobsInX = worker.records().filter((r) => JSON.stringify(r).includes(roomX));
    expect(jobsInX).toEqual([]);
  });

  it('goes on with defaults when the dispatch metadata is malformed, and says why in the log', async () => {
    groq.setChatResponder(() => ({ content: 'Hello, this is the help desk assistant.' }));
    const room = uniqueRoom('bad-meta');
    const caller = await joinCaller(room);
    await serverApi(server).dispatch.createDispatch(room, AGENT_NAME, { metadata: '{"mode": "sideways"' });
    await caller.waitForParticipant((id) => id.startsWith('agent-'), 30_000, 'the agent to join despite bad metadata');
    await worker.waitForLog((l) => l.includes('ignoring bad dispatch metadata') && l.includes(room), 15_000);
  });
});
