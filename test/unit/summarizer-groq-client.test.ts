import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GroqCallError, getGroqClient, normalizeBaseURL, workerChat } from '../../agent/groq-client.js';
import { startGroqStandIn, type GroqStandIn } from '../support/groq-standin.js';

describe('groq client', () => {
  it('takes the host root, also when given the OpenAI-style /openai/v1 URL', () => {
    expect(normalizeBaseURL('https://api.groq.com/openai/v1/')).toBe('https://api.groq.com');
    expect(normalizeBaseURL('http://127.0.0.1:9000/')).toBe('http://127.0.0.1:9000');
    expect(normalizeBaseURL('  ')).toBe('https://api.groq.com');
  });

  it('keeps one client per API key and base URL, with timeout and retries from settings', () => {
    const settings = { apiKey: 'gsk_a', baseURL: 'http://127.0.0.1:9', requestTimeoutMs: 1234, maxRetries: 5 };
    const a = getGroqClient(settings);
    expect(getGroqClient({ ...settings, baseURL: 'http://127.0.0.1:9/openai/v1' })).toBe(a);
    expect(getGroqClient({ ...settings, apiKey: 'gsk_b' })).not.toBe(a);
    expect(a.timeout).toBe(1234);
    expect(a.maxRetries).toBe(5);
  });

  it('names failures the same way whichever transport ran them', () => {
    expect(new GroqCallError('http', 'x', 503).reason).toBe('http_503');
    expect(new GroqCallError('rate_limited', 'x', 429).reason).toBe('rate_limited');
  });
});

describe('worker-thread transport', () => {
  let standin: GroqStandIn;
  beforeAll(async () => {
    standin = await startGroqStandIn({ apiKey: 'gsk_worker' });
  });
  afterAll(async () => {
    await standin.close();
  });

  const body = { model: 'openai/gpt-oss-20b', messages: [{ role: 'user' as const, content: 'hello' }] };
  const opts = () => ({ signal: new AbortController().signal, timeoutMs: 2_000, maxRetries: 0 });

  it('returns the completion fields the project uses, with the API key sent', async () => {
    standin.enqueueChat({ content: 'hi there' });
    const result = await workerChat({ apiKey: 'gsk_worker', baseURL: standin.url }).complete(body, opts());
    expect(result).toMatchObject({ model: 'openai/gpt-oss-20b', content: 'hi there', finishReason: 'stop' });
    expect(result.totalTokens).toBeGreaterThan(0);
  });

  it('reports an authentication failure as an HTTP error', async () => {
    const err = await workerChat({ apiKey: 'gsk_wrong', baseURL: standin.url }).complete(body, opts()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GroqCallError);
    expect((err as GroqCallError).reason).toBe('http_401');
  });

  it('reports a connection failure', async () => {
    const err = await workerChat({ apiKey: 'gsk_worker', baseURL: 'http://127.0.0.1:9' }).complete(body, opts()).catch((e: unknown) => e);
    expect((err as GroqCallError).kind).toBe('connection_error');
  });

  it('aborts a request in the worker', async () => {
    standin.enqueueChat({ hang: true });
    const controller = new AbortController();
    const pending = workerChat({ apiKey: 'gsk_worker', baseURL: standin.url }).complete(body, { ...opts(), signal: controller.signal });
    await standin.waitForRequest((r) => r.route === 'chat' && JSON.stringify(r.body).includes('hello'), 2_000);
    controller.abort();
    const err = await pending.catch((e: unknown) => e);
    expect((err as GroqCallError).kind).toBe('aborted');
  });
});
