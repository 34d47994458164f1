/**
 * The Groq stand-in, exercised only through the real clients the project uses: `groq-sdk` (the
 * summarizer's client) and `@livekit/agents-plugin-openai` (LLM, STT, TTS of the voice pipeline).
 * If these pass, the stand-in speaks the wire format those clients actually parse.
 */
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import Groq from 'groq-sdk';
import { initializeLogger, llm } from '@livekit/agents';
import * as openai from '@livekit/agents-plugin-openai';
import { AudioFrame } from '@livekit/rtc-node';
import { z } from 'zod';
import { startGroqStandIn, type GroqStandIn, type MultipartFile, type RecordedRequest } from '../support/groq-standin.js';

let standIn: GroqStandIn;

beforeAll(async () => {
  // The agents' LLM/STT/TTS streams call log() internally, which throws before this.
  initializeLogger({ pretty: false, level: 'warn' });
  standIn = await startGroqStandIn();
});

afterAll(async () => {
  await standIn?.close();
});

beforeEach(() => {
  standIn.reset();
});

/** logLevel 'off': the malformed-stream tests would otherwise print the SDK's parse errors. */
function groq(opts: { maxRetries?: number; timeout?: number; apiKey?: string; baseURL?: string } = {}): Groq {
  return new Groq({
    apiKey: opts.apiKey ?? 'test',
    baseURL: opts.baseURL ?? standIn.url,
    maxRetries: opts.maxRetries ?? 0,
    timeout: opts.timeout ?? 5_000,
    logLevel: 'off',
  });
}

const userMessage = (content: string) => [{ role: 'user' as const, content }];

/** Catches a rejection so its fields can be asserted on (expect().rejects hides them). */
async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected the promise to reject');
}

/** Groq's error JSON as the SDK exposes it on APIError.error (the whole response body). */
function groqErrorOf(err: unknown): { message?: string; type?: string; code?: string; failed_generation?: string } | undefined {
  if (!(err instanceof Groq.APIError)) return undefined;
  const body = err.error as { error?: { message?: string; type?: string; code?: string; failed_generation?: string } } | undefined;
  return body?.error;
}

const noRetry = { maxRetry: 0, retryIntervalMs: 0, timeoutMs: 5_000 };

describe('groq-sdk against the stand-in', () => {
  it('answers a non-streaming chat with the queued text, Groq-shaped', async () => {
    standIn.enqueueChat({ content: 'Hello, this is the stand-in.' });
    const res = await groq().chat.completions.create({ model: 'openai/gpt-oss-120b', messages: userMessage('hi') });

    expect(res.object).toBe('chat.completion');
    expect(res.model).toBe('openai/gpt-oss-120b');
    expect(res.choices[0]?.message.content).toBe('Hello, this is the stand-in.');
    expect(res.choices[0]?.finish_reason).toBe('stop');
    expect(res.usage?.completion_tokens).toBeGreaterThan(0);
    expect(res.x_groq?.id).toMatch(/^req_/);

    const [req] = standIn.chatRequests();
    expect(req?.path).toBe('/openai/v1/chat/completions');
    expect(req?.headers.authorization).toBe('Bearer test');
    expect(req?.body).toMatchObject({ model: 'openai/gpt-oss-120b', messages: [{ role: 'user', content: 'hi' }] });
  });

  it('echoes the last user message when nothing is queued', async () => {
    const res = await groq().chat.completions.create({
      model: 'm',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'first' },
        { role: 'assistant', content: 'ok' },
        { role: 'user', content: 'where is my order' },
      ],
    });
    expect(res.choices[0]?.message.content).toBe('(stand-in) You said: where is my order');
  });

  it('streams content in several chunks, then a finish chunk with x_groq usage', async () => {
    const text = 'The caller wants to change the delivery address of order 1234.';
    standIn.enqueueChat({ content: text });
    // groq-sdk 1.6 has no `stream_options`: Groq reports streamed usage in the last chunk's x_groq.
    const stream = await groq().chat.completions.create({ model: 'm', messages: userMessage('summarise'), stream: true });
    let received = '';
    let contentChunks = 0;
    const finishReasons: (string | null | undefined)[] = [];
    let completionTokens: number | undefined;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      const choice = chunk.choices[0];
      if (choice?.delta.content) {
        received += choice.delta.content;
        contentChunks++;
      }
      if (choice?.finish_reason) finishReasons.push(choice.finish_reason);
      completionTokens = chunk.x_groq?.usage?.completion_tokens ?? completionTokens;
    }
    expect(received).toBe(text);
    expect(contentChunks).toBeGreaterThan(1);
    expect(finishReasons).toEqual(['stop']);
    expect(completionTokens).toBe(Math.ceil(text.length / 4));
    // Without include_usage there is no extra usage-only chunk: role + content pieces + finish.
    expect(chunks).toBe(contentChunks + 2);
  });

  it('accepts json_schema, records it, and returns the queued JSON', async () => {
    const schema = {
      type: 'object',
      properties: { intent: { type: 'string' }, urgency: { type: 'string' } },
      required: ['intent', 'urgency'],
    };
    let seenFormat: unknown;
    standIn.setChatResponder((req) => {
      seenFormat = req.responseFormat;
      return { content: JSON.stringify({ intent: 'refund', urgency: 'high' }) };
    });
    const res = await groq().chat.completions.create({
      model: 'm',
      messages: userMessage('summarise as json'),
      response_format: { type: 'json_schema', json_schema: { name: 'summary', schema } },
    });
    expect(JSON.parse(res.choices[0]?.message.content ?? '')).toEqual({ intent: 'refund', urgency: 'high' });
    expect(seenFormat).toEqual({ type: 'json_schema', json_schema: { name: 'summary', schema } });
  });

  it('answers "{}" by default in JSON mode', async () => {
    const res = await groq().chat.completions.create({
      model: 'm',
      messages: userMessage('json please'),
      response_format: { type: 'json_object' },
    });
    expect(res.choices[0]?.message.content).toBe('{}');
  });

  it('rejects non-JSON content in JSON mode the way Groq does (400 json_validate_failed)', async () => {
    standIn.enqueueChat({ content: 'Sure! Here is your summary: ...' });
    const err = await failure(
      groq().chat.completions.create({ model: 'm', messages: userMessage('json'), response_format: { type: 'json_object' } }),
    );
    expect(err).toBeInstanceOf(Groq.BadRequestError);
    expect(groqErrorOf(err)).toMatchObject({ code: 'json_validate_failed', failed_generation: 'Sure! Here is your summary: ...' });
  });

  it('returns tool calls without streaming', async () => {
    standIn.enqueueChat({ toolCalls: [{ name: 'transfer_call', arguments: { target: 'billing', reason: 'refund' } }] });
    const res = await groq().chat.completions.create({
      model: 'm',
      messages: userMessage('put me through to billing'),
      tools: [{ type: 'function', function: { name: 'transfer_call', parameters: { type: 'object', properties: {} } } }],
    });
    const choice = res.choices[0];
    expect(choice?.finish_reason).toBe('tool_calls');
    expect(choice?.message.content).toBeNull();
    const call = choice?.message.tool_calls?.[0];
    expect(call?.id).toMatch(/^call_/);
    expect(call?.function.name).toBe('transfer_call');
    expect(JSON.parse(call?.function.arguments ?? '')).toEqual({ target: 'billing', reason: 'refund' });
  });

  it('streams tool calls as index/id/name followed by argument deltas', async () => {
    standIn.enqueueChat({
      content: 'One moment.',
      toolCalls: [
        { name: 'lookup_order', arguments: { order: '1234' }, id: 'call_fixed' },
        { name: 'transfer_call', arguments: '{"target":"billing"}' },
      ],
    });
    const stream = await groq().chat.completions.create({ model: 'm', messages: userMessage('x'), stream: true });
    const calls: { id?: string; name: string; args: string }[] = [];
    let content = '';
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta;
      content += delta?.content ?? '';
      for (const tc of delta?.tool_calls ?? []) {
        const slot = (calls[tc.index] ??= { name: '', args: '' });
        if (tc.id) slot.id = tc.id;
        if (tc.function?.name) slot.name = tc.function.name;
        slot.args += tc.function?.arguments ?? '';
      }
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(content).toBe('One moment.');
    expect(finish).toBe('tool_calls');
    expect(calls).toHaveLength(2);
    expect(calls[0]).toEqual({ id: 'call_fixed', name: 'lookup_order', args: '{"order":"1234"}' });
    expect(calls[1]?.name).toBe('transfer_call');
    expect(calls[1]?.id).toMatch(/^call_/);
    expect(JSON.parse(calls[1]?.args ?? '')).toEqual({ target: 'billing' });
  });

  it('answers 429 with retry-after, and groq-sdk retries after it and succeeds', async () => {
    standIn.failNext('chat', { error: { status: 429, retryAfterSec: 0.05 } });
    standIn.enqueueChat({ content: 'after the retry' });
    const res = await groq({ maxRetries: 2 }).chat.completions.create({ model: 'm', messages: userMessage('x') });

    expect(res.choices[0]?.message.content).toBe('after the retry');
    const [first, second] = standIn.chatRequests();
    expect(standIn.chatRequests()).toHaveLength(2);
    expect(second?.headers['x-stainless-retry-count']).toBe('1');
    // Date.now() granularity: a 50 ms wait can show as 49 ms.
    expect((second?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThanOrEqual(49);
  });

  it('surfaces 429 as RateLimitError with the retry-after header and Groq error body', async () => {
    standIn.failNext('chat', { error: { status: 429, retryAfterSec: 7 } });
    const err = await failure(groq().chat.completions.create({ model: 'm', messages: userMessage('x') }));
    expect(err).toBeInstanceOf(Groq.RateLimitError);
    expect((err as InstanceType<typeof Groq.RateLimitError>).headers?.get('retry-after')).toBe('7');
    expect(groqErrorOf(err)).toMatchObject({ type: 'tokens', code: 'rate_limit_exceeded' });
  });

  it('surfaces 500 as InternalServerError when retries are off', async () => {
    standIn.enqueueChat({ error: { status: 500, message: 'boom' } });
    const err = await failure(groq({ maxRetries: 0 }).chat.completions.create({ model: 'm', messages: userMessage('x') }));
    expect(err).toBeInstanceOf(Groq.InternalServerError);
    expect(groqErrorOf(err)?.message).toBe('boom');
  });

  it('hangs until the client times out (APIConnectionTimeoutError)', async () => {
    standIn.enqueueChat({ hang: true });
    const err = await failure(groq({ timeout: 300 }).chat.completions.create({ model: 'm', messages: userMessage('x') }));
    expect(err).toBeInstanceOf(Groq.APIConnectionTimeoutError);
  });

  it('sends a malformed JSON body that the SDK cannot parse', async () => {
    standIn.enqueueChat({ malformed: true });
    await expect(groq().chat.completions.create({ model: 'm', messages: userMessage('x') })).rejects.toThrow();
  });

  it('sends a broken SSE stream that fails mid-iteration', async () => {
    standIn.enqueueChat({ malformed: true });
    const stream = await groq().chat.completions.create({ model: 'm', messages: userMessage('x'), stream: true });
    const consume = async (): Promise<void> => {
      for await (const _chunk of stream) {
        // draining is the point
      }
    };
    await expect(consume()).rejects.toThrow();
  });

  it('serves many concurrent requests, each with its own answer', async () => {
    standIn.setChatResponder((req) => ({ content: `answer to ${req.lastUserText}` }));
    standIn.setLatency({ firstTokenMs: 20, tokensPerSec: 2000 });
    const client = groq();
    const replies = await Promise.all(
      Array.from({ length: 25 }, (_, i) =>
        client.chat.completions.create({ model: 'm', messages: userMessage(`q${i}`) }).then((r) => r.choices[0]?.message.content),
      ),
    );
    expect(replies).toEqual(Array.from({ length: 25 }, (_, i) => `answer to q${i}`));
  });

  it('transcribes a multipart upload as json, verbose_json and text', async () => {
    standIn.enqueueTranscription('I want a refund', 'second one', 'third one');
    const client = groq();
    const wav = new File([silentWav(16_000, 500)], 'call.wav', { type: 'audio/wav' });

    const json = await client.audio.transcriptions.create({ file: wav, model: 'whisper-large-v3-turbo' });
    expect(json.text).toBe('I want a refund');

    const verbose = await client.audio.transcriptions.create({ file: wav, model: 'whisper-large-v3', response_format: 'verbose_json' });
    expect(verbose).toMatchObject({ text: 'second one', duration: 0.5 });

    const text = await client.audio.transcriptions.create({ file: wav, model: 'whisper-large-v3', response_format: 'text' });
    expect(text).toBe('third one');

    const [req] = standIn.requests.filter((r) => r.route === 'transcription');
    expect(req?.path).toBe('/openai/v1/audio/transcriptions');
    const file = (req?.body as { file: MultipartFile }).file;
    expect(file).toMatchObject({ filename: 'call.wav', contentType: 'audio/wav', wav: { sampleRate: 16_000, channels: 1, durationMs: 500 } });
  });

  it('speaks WAV (48 kHz by default, as Groq Orpheus does) through groq-sdk', async () => {
    const res = await groq().audio.speech.create({ model: 'canopylabs/orpheus-v1-english', voice: 'autumn', input: 'Hello there', response_format: 'wav' });
    const buf = Buffer.from(await res.arrayBuffer());
    expect(buf.toString('ascii', 0, 4)).toBe('RIFF');
    expect(buf.readUInt32LE(24)).toBe(48_000);
    // 11 characters * 60 ms = 660 ms, rounded up to whole 100 ms frames.
    expect(buf.readUInt32LE(40)).toBe(48_000 * 2 * 0.7);
  });

  it('retrieves a model by id and 404s unknown ones', async () => {
    const model = await groq().models.retrieve('openai/gpt-oss-120b');
    expect(model.id).toBe('openai/gpt-oss-120b');
    const err = await failure(groq().models.retrieve('no-such-model'));
    expect(err).toBeInstanceOf(Groq.NotFoundError);
    expect(groqErrorOf(err)?.code).toBe('model_not_found');
  });
});

describe('latency', () => {
  it('delays the first streamed token by firstTokenMs', async () => {
    standIn.setLatency({ firstTokenMs: 200, tokensPerSec: 1000 });
    standIn.enqueueChat({ content: 'slow first token' });
    const t0 = performance.now();
    const stream = await groq().chat.completions.create({ model: 'm', messages: userMessage('x'), stream: true });
    let firstTokenAt: number | undefined;
    for await (const chunk of stream) {
      if (firstTokenAt === undefined && chunk.choices[0]?.delta.content) firstTokenAt = performance.now();
    }
    expect(firstTokenAt).toBeDefined();
    expect((firstTokenAt ?? 0) - t0).toBeGreaterThanOrEqual(200);
  });

  it('paces streamed tokens at tokensPerSec', async () => {
    // 40 characters = 10 tokens; the last one is due 9 token-intervals after the first.
    standIn.setLatency({ firstTokenMs: 10, tokensPerSec: 50 });
    standIn.enqueueChat({ content: 'x'.repeat(40) });
    const t0 = performance.now();
    const stream = await groq().chat.completions.create({ model: 'm', messages: userMessage('x'), stream: true });
    for await (const _chunk of stream) {
      // drain
    }
    expect(performance.now() - t0).toBeGreaterThanOrEqual(10 + 9 * 20);
  });

  it('makes a non-streaming answer wait firstTokenMs + tokens / tokensPerSec', async () => {
    standIn.setLatency({ firstTokenMs: 100, tokensPerSec: 100 });
    standIn.enqueueChat({ content: 'y'.repeat(40) });
    const t0 = performance.now();
    await groq().chat.completions.create({ model: 'm', messages: userMessage('x') });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(100 + 10 * 10);
  });
});

describe('@livekit/agents-plugin-openai against the stand-in', () => {
  const pluginLLM = () => openai.LLM.withGroq({ baseURL: standIn.openaiBaseURL, apiKey: 'test' });

  it('prewarms with GET /models', async () => {
    const model = pluginLLM();
    model.prewarm();
    const req = await standIn.waitForRequest((r) => r.route === 'models', 5_000);
    expect(req.path).toBe('/openai/v1/models');
    await model.aclose();
  });

  it('streams a chat through LLM.withGroq', async () => {
    standIn.enqueueChat({ content: 'Hi! How can I help you today?' });
    const chatCtx = llm.ChatContext.empty();
    chatCtx.addMessage({ role: 'system', content: 'You are a call-centre agent.' });
    chatCtx.addMessage({ role: 'user', content: 'hello' });

    let text = '';
    let usage: llm.CompletionUsage | undefined;
    for await (const chunk of pluginLLM().chat({ chatCtx, connOptions: noRetry })) {
      text += chunk.delta?.content ?? '';
      usage = chunk.usage ?? usage;
    }
    expect(text).toBe('Hi! How can I help you today?');
    expect(usage?.completionTokens).toBeGreaterThan(0);

    const [req] = standIn.chatRequests();
    expect(req?.path).toBe('/openai/v1/chat/completions');
    expect(req?.body).toMatchObject({
      model: 'openai/gpt-oss-120b',
      stream: true,
      stream_options: { include_usage: true },
      messages: [
        { role: 'system', content: 'You are a call-centre agent.' },
        { role: 'user', content: 'hello' },
      ],
    });
  });

  it('delivers streamed tool calls as FunctionCalls', async () => {
    standIn.enqueueChat({
      toolCalls: [
        { name: 'lookup_order', arguments: { order: '1234' } },
        { name: 'transfer_call', arguments: { target: 'billing' } },
      ],
    });
    const chatCtx = llm.ChatContext.empty();
    chatCtx.addMessage({ role: 'user', content: 'billing please' });
    const toolCtx = {
      lookup_order: llm.tool({ description: 'Look up an order', parameters: z.object({ order: z.string() }), execute: async () => 'ok' }),
      transfer_call: llm.tool({ description: 'Transfer the call', parameters: z.object({ target: z.string() }), execute: async () => 'ok' }),
    };
    const calls: llm.FunctionCall[] = [];
    for await (const chunk of pluginLLM().chat({ chatCtx, toolCtx, connOptions: noRetry })) {
      calls.push(...(chunk.delta?.toolCalls ?? []));
    }
    expect(calls.map((c) => [c.name, JSON.parse(c.args)])).toEqual([
      ['lookup_order', { order: '1234' }],
      ['transfer_call', { target: 'billing' }],
    ]);
    expect(calls.every((c) => c.callId.startsWith('call_'))).toBe(true);

    const body = standIn.chatRequests()[0]?.body as { tools?: { function: { name: string } }[]; parallel_tool_calls?: boolean };
    expect(body.tools?.map((t) => t.function.name)).toEqual(['lookup_order', 'transfer_call']);
    expect(body.parallel_tool_calls).toBe(true);
  });

  it('reports a chat error through the LLM error event', async () => {
    standIn.enqueueChat({ error: { status: 503 } });
    const chatCtx = llm.ChatContext.empty();
    chatCtx.addMessage({ role: 'user', content: 'hello' });
    const model = pluginLLM();
    const errors: { error: unknown; recoverable: boolean }[] = [];
    model.on('error', (e) => errors.push(e));
    let text = '';
    for await (const chunk of model.chat({ chatCtx, connOptions: noRetry })) text += chunk.delta?.content ?? '';
    expect(text).toBe('');
    expect(errors).toHaveLength(1);
    expect(errors[0]?.recoverable).toBe(false);
    expect(String(errors[0]?.error)).toMatch(/503/);
  });

  it('times out a hanging chat with the connection timeout', async () => {
    standIn.enqueueChat({ hang: true });
    const chatCtx = llm.ChatContext.empty();
    chatCtx.addMessage({ role: 'user', content: 'hello' });
    const model = pluginLLM();
    const errors: { error: unknown }[] = [];
    model.on('error', (e) => errors.push(e));
    for await (const _chunk of model.chat({ chatCtx, connOptions: { ...noRetry, timeoutMs: 300 } })) {
      // nothing arrives
    }
    expect(errors).toHaveLength(1);
    expect((errors[0]?.error as Error | undefined)?.name).toBe('APITimeoutError');
  });

  it('recognizes an audio buffer through STT.withGroq', async () => {
    standIn.enqueueTranscription('I would like to speak to billing');
    const stt = openai.STT.withGroq({ baseURL: standIn.openaiBaseURL, apiKey: 'test' });
    const samples = 1_600; // 100 ms at 16 kHz
    const event = await stt.recognize([new AudioFrame(new Int16Array(samples), 16_000, 1, samples)]);
    expect(event.alternatives?.[0]?.text).toBe('I would like to speak to billing');

    const req = await standIn.waitForRequest((r: RecordedRequest) => r.route === 'transcription', 1_000);
    expect(req.path).toBe('/openai/v1/audio/transcriptions');
    expect(req.body).toMatchObject({
      model: 'whisper-large-v3-turbo',
      response_format: 'json',
      language: 'en',
      file: { filename: 'audio.wav', wav: { sampleRate: 16_000, channels: 1 } },
    });
  });

  it('fails an STT recognize on a one-shot transcription fault', async () => {
    standIn.failNext('transcription', { error: { status: 500 } });
    standIn.enqueueTranscription('not reached on the first call');
    const stt = openai.STT.withGroq({ baseURL: standIn.openaiBaseURL, apiKey: 'test' });
    const frame = new AudioFrame(new Int16Array(1_600), 16_000, 1, 1_600);
    await expect(stt.recognize([frame])).rejects.toThrow(/500/);
    const event = await stt.recognize([frame]);
    expect(event.alternatives?.[0]?.text).toBe('not reached on the first call');
  });

  it('synthesizes 24 kHz mono PCM frames through TTS', async () => {
    // The plugin types `voice` as OpenAI's voice names; the stand-in accepts any.
    const tts = new openai.TTS({ baseURL: standIn.openaiBaseURL, apiKey: 'test', model: 'canopylabs/orpheus-v1-english', voice: 'alloy' });
    const frames: AudioFrame[] = [];
    for await (const audio of tts.synthesize('Hello caller')) frames.push(audio.frame);

    expect(frames.length).toBeGreaterThan(0);
    expect(frames.every((f) => f.sampleRate === 24_000 && f.channels === 1)).toBe(true);
    // 12 characters * 60 ms = 720 ms, rounded up to 800 ms: nothing lost to a partial frame.
    const totalSamples = frames.reduce((n, f) => n + f.samplesPerChannel, 0);
    expect(totalSamples).toBe(24_000 * 0.8);
    expect(frames.some((f) => f.data.some((s) => s !== 0))).toBe(true);

    const req = standIn.requests.find((r) => r.route === 'speech');
    expect(req?.path).toBe('/openai/v1/audio/speech');
    expect(req?.body).toMatchObject({ input: 'Hello caller', response_format: 'pcm', voice: 'alloy' });
    await tts.close();
  });
});

describe('stand-in control surface', () => {
  it('waitForRequest resolves on a later request and rejects with a clear message on deadline', async () => {
    const waiting = standIn.waitForRequest((r) => r.route === 'chat', 5_000);
    await groq().chat.completions.create({ model: 'm', messages: userMessage('ping') });
    expect((await waiting).route).toBe('chat');

    await expect(standIn.waitForRequest((r) => r.path === '/never', 30)).rejects.toThrow(/no request matching .* within 30 ms; saw POST \/openai\/v1\/chat\/completions/);
  });

  it('answers unknown URLs with Groq-shaped 404s, without the prefix too', async () => {
    const res = await fetch(`${standIn.url}/openai/v1/embeddingz`, { method: 'POST' });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.json()).toMatchObject({ error: { code: 'unknown_url', type: 'invalid_request_error' } });

    const models = await fetch(`${standIn.url}/models`);
    expect(((await models.json()) as { data: unknown[] }).data.length).toBeGreaterThan(0);
  });

  it('reset clears queues, faults, latency and the record', async () => {
    standIn.enqueueChat({ content: 'queued' });
    standIn.failNext('chat', { error: { status: 500 } });
    standIn.setLatency({ firstTokenMs: 5_000, tokensPerSec: 1 });
    await fetch(`${standIn.url}/openai/v1/models`);
    standIn.reset();
    expect(standIn.requests).toHaveLength(0);
    const res = await groq().chat.completions.create({ model: 'm', messages: userMessage('fresh') });
    expect(res.choices[0]?.message.content).toBe('(stand-in) You said: fresh');
  });

  it('requires the API key when one is configured', async () => {
    const locked = await startGroqStandIn({ apiKey: 'gsk_secret' });
    try {
      const err = await failure(groq({ baseURL: locked.url, apiKey: 'wrong' }).chat.completions.create({ model: 'm', messages: userMessage('x') }));
      expect(err).toBeInstanceOf(Groq.AuthenticationError);
      expect(groqErrorOf(err)).toMatchObject({ code: 'invalid_api_key', type: 'invalid_request_error' });
      const ok = await groq({ baseURL: locked.url, apiKey: 'gsk_secret' }).chat.completions.create({ model: 'm', messages: userMessage('x') });
      expect(ok.choices[0]?.message.content).toContain('(stand-in)');
    } finally {
      await locked.close();
    }
  });

  it('close() ends hanging requests', async () => {
    const own = await startGroqStandIn();
    own.enqueueChat({ hang: true });
    const pending = failure(groq({ baseURL: own.url, timeout: 60_000 }).chat.completions.create({ model: 'm', messages: userMessage('x') }));
    await own.waitForRequest((r) => r.route === 'chat', 5_000);
    await own.close();
    expect(await pending).toBeInstanceOf(Groq.APIConnectionError);
  });
});

/** A silent 16-bit mono WAV. */
function silentWav(sampleRate: number, ms: number): Buffer {
  const data = Buffer.alloc(Math.round((sampleRate * ms) / 1000) * 2);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'ascii');
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVE', 8, 'ascii');
  header.write('fmt ', 12, 'ascii');
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(sampleRate, 24);
  header.writeUInt32LE(sampleRate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36, 'ascii');
  header.writeUInt32LE(data.length, 40);
  return Buffer.concat([header, data]);
}
