/**
 * Groq access for the worker: one client per process (per API key and base URL), and a small
 * chat interface that the summarizer uses, with two transports:
 *
 * - `worker` (default for the summarizer): groq-sdk runs in one worker thread per process. The
 *   SDK and Node's fetch spend about 1-4 ms of CPU per request and leave garbage whose collection
 *   pauses the thread; measured on the bench machine, that put 5-18 ms stalls into the event loop
 *   that carries the call's audio. In a worker thread they stall only that thread. The call's
 *   thread builds the prompt, posts it, and parses the reply.
 * - `in-thread`: the SDK client from `getGroqClient()` on the calling thread (what tests and
 *   tools that pass their own client use).
 *
 * Both report failures as `GroqCallError` with a stable `kind`, so callers need not know which
 * transport ran the request.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import Groq from 'groq-sdk';
import type { ChatCompletionCreateParamsNonStreaming } from 'groq-sdk/resources/chat/completions';

export interface GroqClientSettings {
  apiKey: string;
  /** Host root, e.g. https://api.groq.com (the SDK appends /openai/v1/...). */
  baseURL: string;
  /** Per-attempt timeout. */
  requestTimeoutMs: number;
  maxRetries: number;
}

export const DEFAULT_GROQ_BASE_URL = 'https://api.groq.com';

const clients = new Map<string, Groq>();

/** The process's SDK client for these credentials (created on first use, then shared). */
export function getGroqClient(settings: GroqClientSettings): Groq {
  const baseURL = normalizeBaseURL(settings.baseURL);
  // Hash the key so the raw secret is not kept a second time as a map key.
  const key = `${createHash('sha256').update(settings.apiKey).digest('hex')}|${baseURL}`;
  let client = clients.get(key);
  if (!client) {
    client = new Groq({
      apiKey: settings.apiKey,
      baseURL,
      timeout: settings.requestTimeoutMs,
      maxRetries: settings.maxRetries,
    });
    clients.set(key, client);
  }
  return client;
}

/**
 * groq-sdk wants the host root. Accept the OpenAI-style `.../openai/v1` too (the LiveKit plugin
 * needs that form, so operators will paste it) and strip it rather than double it.
 */
export function normalizeBaseURL(url: string): string {
  const trimmed = (url.trim() || DEFAULT_GROQ_BASE_URL).replace(/\/+$/, '');
  return trimmed.replace(/\/openai\/v1$/, '');
}

// --- chat interface ---------------------------------------------------------------------------

export type ChatBody = ChatCompletionCreateParamsNonStreaming;

/** The parts of a chat completion the project uses (all a worker thread sends back). */
export interface ChatResult {
  model: string;
  content: string | null;
  finishReason: string | null;
  totalTokens: number | undefined;
}

export interface ChatCallOptions {
  signal: AbortSignal;
  /** Per attempt. */
  timeoutMs: number;
  maxRetries: number;
}

export interface GroqChat {
  complete(body: ChatBody, opts: ChatCallOptions): Promise<ChatResult>;
}

export type GroqTransport = 'worker' | 'in-thread';

export type GroqFailureKind =
  | 'rate_limited'
  | 'http'
  | 'invalid_json'
  | 'timeout'
  | 'connection_error'
  | 'malformed_response'
  | 'aborted'
  | 'error';

/** A failed request, whichever transport ran it. */
export class GroqCallError extends Error {
  constructor(
    readonly kind: GroqFailureKind,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'GroqCallError';
  }

  /** Short and stable, for logs and fallback reasons: `rate_limited`, `http_503`, `timeout`... */
  get reason(): string {
    return this.kind === 'http' && this.status !== undefined ? `http_${this.status}` : this.kind;
  }
}

/** What is known about an SDK error; also what a worker thread sends across. */
interface ErrorFacts {
  name: string;
  status?: number;
  code?: string;
  message: string;
}

function factsOf(err: unknown): ErrorFacts {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) };
  const facts: ErrorFacts = { name: err.constructor.name, message: err.message };
  if ('status' in err && typeof err.status === 'number') facts.status = err.status;
  // APIError.error is the parsed response body: {"error": {"message", "type", "code"}}.
  const body: unknown = 'error' in err ? err.error : undefined;
  if (typeof body === 'object' && body !== null && 'error' in body) {
    const inner: unknown = body.error;
    if (typeof inner === 'object' && inner !== null && 'code' in inner && typeof inner.code === 'string') facts.code = inner.code;
  }
  return facts;
}

function toCallError(facts: ErrorFacts): GroqCallError {
  const message = facts.message.slice(0, 300);
  if (facts.status === 429) return new GroqCallError('rate_limited', message, 429);
  // Groq answers 400 json_validate_failed when the model's JSON-mode output does not parse.
  if (facts.code === 'json_validate_failed') return new GroqCallError('invalid_json', message, facts.status);
  if (facts.status !== undefined) return new GroqCallError('http', message, facts.status);
  switch (facts.name) {
    case 'APIConnectionTimeoutError':
      return new GroqCallError('timeout', message);
    case 'APIConnectionError':
      return new GroqCallError('connection_error', message);
    case 'APIUserAbortError':
    case 'AbortError':
      return new GroqCallError('aborted', message);
    case 'SyntaxError': // a 200 whose body is not JSON
      return new GroqCallError('malformed_response', message);
    default:
      return new GroqCallError('error', message);
  }
}

// --- in-thread transport ----------------------------------------------------------------------

export function inThreadChat(client: Groq): GroqChat {
  return {
    async complete(body, opts) {
      try {
        const c = await client.chat.completions.create(body, {
          signal: opts.signal,
          timeout: opts.timeoutMs,
          maxRetries: opts.maxRetries,
        });
        const choice = c.choices[0];
        return {
          model: c.model,
          content: choice?.message?.content ?? null,
          finishReason: choice?.finish_reason ?? null,
          totalTokens: c.usage?.total_tokens,
        };
      } catch (err) {
        throw toCallError(factsOf(err));
      }
    },
  };
}

// --- worker-thread transport ------------------------------------------------------------------

/**
 * The worker's source. Plain CommonJS, evaluated (not a file), so it needs no TypeScript loader;
 * it loads the same groq-sdk the project depends on, by absolute path. Its error reporting mirrors
 * `factsOf` above.
 */
function workerSource(sdkPath: string): string {
  return `
const { parentPort } = require('node:worker_threads');
const sdk = require(${JSON.stringify(sdkPath)});
const Groq = sdk.Groq;
const clients = new Map();
const inflight = new Map();
function facts(err) {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) };
  const out = { name: err.constructor.name, message: err.message };
  if (typeof err.status === 'number') out.status = err.status;
  const body = err.error;
  if (body && typeof body === 'object' && body.error && typeof body.error.code === 'string') out.code = body.error.code;
  return out;
}
parentPort.on('message', (msg) => {
  if (msg.type === 'abort') { const c = inflight.get(msg.id); if (c) c.abort(); return; }
  const key = msg.client.apiKey + '|' + msg.client.baseURL;
  let client = clients.get(key);
  if (!client) {
    client = new Groq({ apiKey: msg.client.apiKey, baseURL: msg.client.baseURL, timeout: msg.timeoutMs, maxRetries: msg.maxRetries });
    clients.set(key, client);
  }
  const controller = new AbortController();
  inflight.set(msg.id, controller);
  client.chat.completions
    .create(msg.body, { signal: controller.signal, timeout: msg.timeoutMs, maxRetries: msg.maxRetries })
    .then(
      (c) => {
        const choice = (c.choices && c.choices[0]) || {};
        parentPort.postMessage({ id: msg.id, ok: true, result: {
          model: c.model,
          content: (choice.message && choice.message.content) ?? null,
          finishReason: choice.finish_reason ?? null,
          totalTokens: c.usage ? c.usage.total_tokens : undefined,
        } });
      },
      (err) => parentPort.postMessage({ id: msg.id, ok: false, error: facts(err) }),
    )
    .finally(() => inflight.delete(msg.id));
});
`;
}

type WorkerReply = { id: number; ok: true; result: ChatResult } | { id: number; ok: false; error: ErrorFacts };

interface Pending {
  resolve: (result: ChatResult) => void;
  reject: (err: GroqCallError) => void;
}

/** One worker thread per process, shared by every call; started on first use. */
class WorkerChatHost {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;

  complete(client: { apiKey: string; baseURL: string }, body: ChatBody, opts: ChatCallOptions): Promise<ChatResult> {
    if (opts.signal.aborted) return Promise.reject(new GroqCallError('aborted', 'aborted before sending'));
    const worker = this.ensureWorker();
    const id = this.nextId++;
    return new Promise<ChatResult>((resolve, reject) => {
      const onAbort = () => worker.postMessage({ type: 'abort', id });
      opts.signal.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, {
        resolve: (result) => {
          opts.signal.removeEventListener('abort', onAbort);
          resolve(result);
        },
        reject: (err) => {
          opts.signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      });
      // Keep the process alive while a request is out, not while the worker idles.
      worker.ref();
      worker.postMessage({ type: 'request', id, client, body, timeoutMs: opts.timeoutMs, maxRetries: opts.maxRetries });
    });
  }

  start(): void {
    this.ensureWorker();
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const sdkPath = createRequire(import.meta.url).resolve('groq-sdk');
    const worker = new Worker(workerSource(sdkPath), { eval: true, name: 'groq-chat' });
    worker.on('message', (reply: WorkerReply) => {
      const entry = this.pending.get(reply.id);
      if (!entry) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) worker.unref();
      if (reply.ok) entry.resolve(reply.result);
      else entry.reject(toCallError(reply.error));
    });
    const fail = (message: string) => {
      if (this.worker === worker) this.worker = undefined;
      for (const entry of this.pending.values()) entry.reject(new GroqCallError('connection_error', message));
      this.pending.clear();
    };
    worker.on('error', (err) => fail(`groq worker thread failed: ${err.message}`));
    worker.on('exit', (code) => fail(`groq worker thread exited (${code})`));
    worker.unref();
    this.worker = worker;
    return worker;
  }
}

let workerHost: WorkerChatHost | undefined;

/** Starts the process's Groq worker thread ahead of the first request (e.g. in the worker's prewarm). */
export function prewarmGroqWorker(): void {
  workerHost ??= new WorkerChatHost();
  workerHost.start();
}

/** Chat through the process's Groq worker thread, with these credentials. */
export function workerChat(settings: Pick<GroqClientSettings, 'apiKey' | 'baseURL'>): GroqChat {
  workerHost ??= new WorkerChatHost();
  const host = workerHost;
  const client = { apiKey: settings.apiKey, baseURL: normalizeBaseURL(settings.baseURL) };
  return { complete: (body, opts) => host.complete(client, body, opts) };
}

/** The chat interface for these settings over the chosen transport. */
export function getGroqChat(settings: GroqClientSettings, transport: GroqTransport): GroqChat {
  return transport === 'worker' ? workerChat(settings) : inThreadChat(getGroqClient(settings));
}
