/**
 * Groq stand-in: a local HTTP server that speaks the part of Groq's OpenAI-compatible API this
 * project uses, so tests can run the real `groq-sdk` client and the real
 * `@livekit/agents-plugin-openai` classes against scripted answers. It is the only stand-in in the
 * project: everything on the client side of the HTTP boundary stays real.
 *
 * Routes (under `/openai/v1`, and also without that prefix):
 *   GET  /models, GET /models/:id        the OpenAI plugin lists models to prewarm a session
 *   POST /chat/completions               JSON or SSE (`stream: true`), text and tool calls
 *   POST /audio/transcriptions           multipart upload, answers json / text / verbose_json
 *   POST /audio/speech                   `pcm` (raw s16le 24 kHz mono) or `wav` (48 kHz default)
 *
 * Run standalone for manual development:
 *   npx tsx test/support/groq-standin.ts --port 8899 [--host 127.0.0.1] [--api-key KEY] [--quiet]
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

export type ChatStep =
  | { content: string; release?: Promise<unknown> } // assistant text; with `release`, sent once it settles
  | { toolCalls: { name: string; arguments: unknown | string; id?: string }[]; content?: string }
  | { error: { status: number; retryAfterSec?: number; message?: string } } // e.g. 429 with retry-after header, 500
  | { hang: true } // accept the request, never answer (until closed / client aborts)
  | { malformed: true }; // 200 with a body that is not valid JSON / broken SSE

/** Tokens are counted as ~4 characters. Applies to streaming and non-streaming chat. */
export interface Latency {
  firstTokenMs: number;
  tokensPerSec: number;
}

/** Which endpoint a request was routed to (an addition to the brief's fields; handy in predicates). */
export type RouteKind = 'models' | 'model' | 'chat' | 'transcription' | 'speech' | 'unknown';

export interface RecordedRequest {
  method: string;
  /** The path as received, without the query string, e.g. `/openai/v1/chat/completions`. */
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON; for multipart, an object of its fields (files as {@link MultipartFile}). */
  body: unknown;
  /** Date.now() when the request arrived. */
  at: number;
  route: RouteKind;
}

/** A file field of a multipart request, as recorded in {@link RecordedRequest.body}. */
export interface MultipartFile {
  filename: string;
  contentType: string;
  size: number;
  data: Buffer;
  /** Present when the file is a PCM WAV (what the OpenAI plugin's STT uploads). */
  wav?: WavInfo;
}

export interface WavInfo {
  sampleRate: number;
  channels: number;
  bitsPerSample: number;
  durationMs: number;
}

export interface ChatRequestInfo {
  // The request is whatever the client sent; responders read it ad hoc (`req.body.tools[0]...`)
  // the way a test would, so it is deliberately untyped.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  messages: { role: string; content: unknown }[];
  /** Text of the last `user` message (text parts joined when the content is an array). */
  lastUserText: string;
  hasTools: boolean;
  responseFormat?: unknown;
  stream: boolean;
}

export interface GroqStandIn {
  /** `http://HOST:PORT`: the groq-sdk baseURL (the SDK adds `/openai/v1/...`). */
  readonly url: string;
  /** `url + '/openai/v1'`: the baseURL for `@livekit/agents-plugin-openai`. */
  readonly openaiBaseURL: string;
  /** Every request received, in arrival order (recorded once its body has been read). */
  readonly requests: RecordedRequest[];
  /** FIFO, one step per chat request. */
  enqueueChat(...steps: ChatStep[]): void;
  /** Used when the chat queue is empty; `null` restores the default responder. */
  setChatResponder(fn: ((req: ChatRequestInfo) => ChatStep) | null): void;
  /** FIFO, one text per transcription request; else the responder, else ''. */
  enqueueTranscription(...texts: string[]): void;
  setTranscriptionResponder(fn: ((req: RecordedRequest) => string) | null): void;
  /** Chat latency; `null` answers at once. */
  setLatency(l: Latency | null): void;
  /**
   * One-shot fault for the next request on that path, taking precedence over the queues (so
   * `failNext('chat', 429)` + `enqueueChat(reply)` answers the retry with the reply). Calls stack
   * in FIFO order. On transcription, `{content}` answers that text; on speech, content and
   * tool-call steps are answered normally.
   */
  failNext(path: 'chat' | 'transcription' | 'speech', step: ChatStep): void;
  /**
   * Resolves with the first recorded request matching `pred`, looking at requests already
   * recorded first (so there is no race with a request that beat the call), then at new ones.
   * Rejects with a message listing what was seen when `timeoutMs` passes.
   */
  waitForRequest(pred: (r: RecordedRequest) => boolean, timeoutMs: number): Promise<RecordedRequest>;
  chatRequests(): RecordedRequest[];
  /** Clears queues, faults, latency, responders and recorded requests (in-flight requests go on). */
  reset(): void;
  /** Stops listening and ends every open connection, hanging requests included. */
  close(): Promise<void>;
}

export interface StartOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (any free port). */
  port?: number;
  /** When set, requests without `Authorization: Bearer <apiKey>` get 401. */
  apiKey?: string;
  /** One line per request on stderr. */
  log?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Constants and small helpers
// ---------------------------------------------------------------------------------------------

const API_PREFIX = '/openai/v1';
const CHARS_PER_TOKEN = 4;
/** Groq's upload limit is 25 MB (free tier); leave head-room but refuse absurd bodies. */
const MAX_BODY_BYTES = 100 * 1024 * 1024;
/** The OpenAI plugin's TTS decodes `pcm` as 24 kHz mono s16le (OPENAI_TTS_SAMPLE_RATE). */
const PCM_SAMPLE_RATE = 24_000;
/** Groq's Orpheus answers WAV at 48 kHz unless `sample_rate` says otherwise. */
const DEFAULT_WAV_SAMPLE_RATE = 48_000;
const SPEECH_MS_PER_CHAR = 60;
const SPEECH_MIN_MS = 100;
/**
 * Capped because the agents' AudioByteStream copies its whole buffer once per frame (quadratic),
 * and tests never need long clips.
 */
const SPEECH_MAX_MS = 10_000;
/**
 * The plugin's TTS never flushes its AudioByteStream, so a trailing partial 100 ms frame would be
 * dropped: clips are whole multiples of 100 ms.
 */
const SPEECH_FRAME_MS = 100;

/** Models the real API lists; ids are not validated on chat (tests may use any model name). */
const MODELS = [
  { id: 'openai/gpt-oss-120b', owned_by: 'OpenAI', context_window: 131072, max_completion_tokens: 65536 },
  { id: 'openai/gpt-oss-20b', owned_by: 'OpenAI', context_window: 131072, max_completion_tokens: 65536 },
  { id: 'llama-3.3-70b-versatile', owned_by: 'Meta', context_window: 131072, max_completion_tokens: 32768 },
  { id: 'llama-3.1-8b-instant', owned_by: 'Meta', context_window: 131072, max_completion_tokens: 131072 },
  { id: 'whisper-large-v3-turbo', owned_by: 'OpenAI', context_window: 448, max_completion_tokens: 448 },
  { id: 'whisper-large-v3', owned_by: 'OpenAI', context_window: 448, max_completion_tokens: 448 },
  { id: 'canopylabs/orpheus-v1-english', owned_by: 'Canopy Labs', context_window: 4000, max_completion_tokens: 50000 },
].map((m) => ({ object: 'model', created: 1_700_000_000, active: true, public_apps: null, ...m }));

function hexId(bytes = 12): string {
  return randomBytes(bytes).toString('hex');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function tokenCount(text: string): number {
  return Math.ceil(text.length / CHARS_PER_TOKEN);
}

/** Splits text into ~token-sized pieces by code point, so a surrogate pair is never cut. */
function tokenPieces(text: string): string[] {
  const chars = Array.from(text);
  const pieces: string[] = [];
  for (let i = 0; i < chars.length; i += CHARS_PER_TOKEN) pieces.push(chars.slice(i, i + CHARS_PER_TOKEN).join(''));
  return pieces;
}

/**
 * Sleeps until `deadline` (performance.now() time) or until `signal` aborts; false when aborted.
 * Re-checks the clock after each timer because Node timers may fire a fraction of a millisecond
 * early, and tests assert latency lower bounds.
 */
async function sleepUntil(deadline: number, signal: AbortSignal): Promise<boolean> {
  while (!signal.aborted) {
    const remaining = deadline - performance.now();
    if (remaining <= 0) return true;
    await new Promise<void>((resolve) => {
      const onAbort = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, Math.ceil(remaining));
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
  return false;
}

function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

function routeOf(method: string, path: string): { route: RouteKind; modelId?: string } {
  let p = path === API_PREFIX || path.startsWith(`${API_PREFIX}/`) ? path.slice(API_PREFIX.length) : path;
  p = p.replace(/\/+$/, '') || '/';
  if (method === 'GET' && p === '/models') return { route: 'models' };
  if (method === 'GET' && p.startsWith('/models/')) {
    // The SDKs percent-encode the id ("openai%2Fgpt-oss-120b"); accept it raw too.
    return { route: 'model', modelId: decodeURIComponent(p.slice('/models/'.length)) };
  }
  if (method === 'POST' && p === '/chat/completions') return { route: 'chat' };
  if (method === 'POST' && p === '/audio/transcriptions') return { route: 'transcription' };
  if (method === 'POST' && p === '/audio/speech') return { route: 'speech' };
  return { route: 'unknown' };
}

// ---------------------------------------------------------------------------------------------
// Groq's error shape
// ---------------------------------------------------------------------------------------------

interface GroqErrorBody {
  error: { message: string; type: string; code?: string; failed_generation?: string };
}

/** Type/code pairs as Groq's API uses them, so SDK error classes and `err.error` look real. */
function groqError(status: number, message?: string, code?: string): GroqErrorBody {
  const known: Record<number, { type: string; code?: string; message: string }> = {
    400: { type: 'invalid_request_error', message: 'Bad request' },
    401: { type: 'invalid_request_error', code: 'invalid_api_key', message: 'Invalid API Key' },
    403: { type: 'permissions_error', code: 'permission_denied', message: 'Forbidden' },
    404: { type: 'invalid_request_error', code: 'unknown_url', message: 'Not found' },
    413: { type: 'invalid_request_error', code: 'request_too_large', message: 'Request Entity Too Large' },
    429: {
      type: 'tokens',
      code: 'rate_limit_exceeded',
      message:
        'Rate limit reached for model in organization `org_standin` on tokens per minute (TPM). Please try again later.',
    },
    500: { type: 'internal_server_error', code: 'internal_server_error', message: 'Internal Server Error' },
    502: { type: 'internal_server_error', code: 'bad_gateway', message: 'Bad Gateway' },
    503: { type: 'internal_server_error', code: 'service_unavailable', message: 'Service Unavailable' },
  };
  const k = known[status] ?? { type: status >= 500 ? 'internal_server_error' : 'invalid_request_error', message: `HTTP ${status}` };
  const c = code ?? k.code;
  return { error: { message: message ?? k.message, type: k.type, ...(c ? { code: c } : {}) } };
}

// ---------------------------------------------------------------------------------------------
// Audio helpers
// ---------------------------------------------------------------------------------------------

/** Reads the format of a PCM WAV; undefined when the buffer is not one. */
function wavInfo(buf: Buffer): WavInfo | undefined {
  if (buf.length < 12 || buf.toString('ascii', 0, 4) !== 'RIFF' || buf.toString('ascii', 8, 12) !== 'WAVE') return undefined;
  let offset = 12;
  let fmt: { channels: number; sampleRate: number; bitsPerSample: number } | undefined;
  while (offset + 8 <= buf.length) {
    const id = buf.toString('ascii', offset, offset + 4);
    const size = buf.readUInt32LE(offset + 4);
    const body = offset + 8;
    if (id === 'fmt ' && body + 16 <= buf.length) {
      fmt = { channels: buf.readUInt16LE(body + 2), sampleRate: buf.readUInt32LE(body + 4), bitsPerSample: buf.readUInt16LE(body + 14) };
    } else if (id === 'data' && fmt) {
      // Trust the smaller of the declared size and what was sent: the OpenAI plugin appends the
      // frame's whole backing ArrayBuffer, which can be longer than the declared data size.
      const bytes = Math.min(size, buf.length - body);
      const bytesPerSec = fmt.sampleRate * fmt.channels * (fmt.bitsPerSample / 8);
      return { ...fmt, durationMs: bytesPerSec > 0 ? Math.round((bytes / bytesPerSec) * 1000) : 0 };
    }
    offset = body + size + (size % 2);
  }
  return undefined;
}

/** A quiet 440 Hz tone (about -30 dBFS) with short fades: audible in checks, not speech to a VAD. */
function tonePcm(sampleRate: number, durationMs: number): Buffer {
  const samples = Math.round((sampleRate * durationMs) / 1000);
  const out = Buffer.alloc(samples * 2);
  const fade = Math.min(Math.round(sampleRate * 0.005), Math.floor(samples / 2));
  for (let i = 0; i < samples; i++) {
    const env = fade > 0 ? Math.min(1, i / fade, (samples - 1 - i) / fade) : 1;
    out.writeInt16LE(Math.round(1000 * env * Math.sin((2 * Math.PI * 440 * i) / sampleRate)), i * 2);
  }
  return out;
}

/** 16-bit mono PCM in a WAV container (what the speech endpoint answers; tests write files with it too). */
export function wavFile(pcm: Buffer, sampleRate: number): Buffer {
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'ascii');
  header.writeUInt32LE(36 + pcm.length, 4);
  header.write('WAVE', 8, 'ascii');
  header.write('fmt ', 12, 'ascii');
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(sampleRate, 24);
  header.writeUInt32LE(sampleRate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36, 'ascii');
  header.writeUInt32LE(pcm.length, 40);
  return Buffer.concat([header, pcm]);
}

function speechDurationMs(text: string, speed: unknown): number {
  const s = typeof speed === 'number' && speed > 0 ? speed : 1;
  const raw = Math.min(SPEECH_MAX_MS, Math.max(SPEECH_MIN_MS, (text.length * SPEECH_MS_PER_CHAR) / s));
  return Math.ceil(raw / SPEECH_FRAME_MS) * SPEECH_FRAME_MS;
}

// ---------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------

/** The body, or why there is none to answer: too large, or the client left before sending it all. */
function readBody(req: IncomingMessage): Promise<Buffer | 'too-large' | 'gone'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(tooLarge ? 'too-large' : Buffer.concat(chunks)));
    // A client that aborts mid-upload is normal (timeouts); resolving twice is harmless.
    req.on('error', () => resolve('gone'));
    req.on('close', () => {
      if (!req.complete) resolve('gone');
    });
  });
}

type ParsedBody = { ok: true; value: unknown } | { ok: false; value: unknown; message: string };

async function parseBody(raw: Buffer, contentType: string): Promise<ParsedBody> {
  if (raw.length === 0) return { ok: true, value: undefined };
  const mediaType = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  if (mediaType === 'multipart/form-data') {
    try {
      // undici's multipart parser (Node's fetch) saves a dependency on busboy/formidable.
      const form = await new Response(raw, { headers: { 'content-type': contentType } }).formData();
      const fields: Record<string, unknown> = {};
      for (const [name, value] of form.entries()) {
        let v: unknown;
        if (typeof value === 'string') {
          v = value;
        } else {
          const data = Buffer.from(await value.arrayBuffer());
          const file: MultipartFile = { filename: value.name, contentType: value.type, size: data.length, data };
          const info = wavInfo(data);
          if (info) file.wav = info;
          v = file;
        }
        // Repeated fields (e.g. `timestamp_granularities[]`) keep every value.
        const prev = fields[name];
        fields[name] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
      }
      return { ok: true, value: fields };
    } catch (err) {
      return { ok: false, value: raw.toString('latin1'), message: `could not parse multipart body: ${String(err)}` };
    }
  }
  const text = raw.toString('utf8');
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return {
      ok: false,
      value: text,
      message: 'We could not parse the JSON body of your request. Please check that it is valid JSON.',
    };
  }
}

function chatInfo(body: Record<string, unknown>): ChatRequestInfo {
  const messages = (Array.isArray(body.messages) ? body.messages : []).map((m: unknown) => ({
    role: isRecord(m) && typeof m.role === 'string' ? m.role : '',
    content: isRecord(m) ? m.content : undefined,
  }));
  const lastUser = [...messages].reverse().find((m) => m.role === 'user');
  return {
    body,
    messages,
    lastUserText: lastUser ? textOf(lastUser.content) : '',
    hasTools: Array.isArray(body.tools) && body.tools.length > 0,
    responseFormat: body.response_format ?? undefined,
    stream: body.stream === true,
  };
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((p: unknown) => (isRecord(p) && p.type === 'text' && typeof p.text === 'string' ? p.text : ''))
      .filter(Boolean)
      .join(' ');
  }
  return '';
}

function jsonFormatType(format: unknown): 'json_object' | 'json_schema' | undefined {
  if (isRecord(format) && (format.type === 'json_object' || format.type === 'json_schema')) return format.type;
  return undefined;
}

function defaultChatStep(info: ChatRequestInfo): ChatStep {
  if (jsonFormatType(info.responseFormat)) return { content: '{}' };
  return { content: `(stand-in) You said: ${info.lastUserText}` };
}

/**
 * Groq checks JSON-mode output and answers 400 `json_validate_failed` (with the text in
 * `failed_generation`) instead of returning content that does not parse; the stand-in does the
 * same, so callers meet the error they will meet in production.
 */
function jsonModeViolation(format: unknown, content: string): boolean {
  const type = jsonFormatType(format);
  if (!type) return false;
  try {
    const parsed: unknown = JSON.parse(content);
    return type === 'json_object' && !isRecord(parsed);
  } catch {
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

interface Exchange {
  res: ServerResponse;
  /** Aborts when the client goes away or the stand-in closes. */
  signal: AbortSignal;
  arrivedPerf: number;
  latency: Latency | null;
}

/** A normal chat answer, with tool-call ids and argument strings resolved. */
interface Reply {
  content: string | undefined;
  toolCalls: { id: string; name: string; arguments: string }[];
}

interface Waiter {
  pred: (r: RecordedRequest) => boolean;
  resolve: (r: RecordedRequest) => void;
  reject: (err: Error) => void;
}

export async function startGroqStandIn(opts: StartOptions = {}): Promise<GroqStandIn> {
  const host = opts.host ?? '127.0.0.1';
  const requests: RecordedRequest[] = [];
  const waiters = new Set<Waiter>();
  const inFlight = new Set<AbortController>();
  let chatQueue: ChatStep[] = [];
  let transcriptionQueue: string[] = [];
  let chatResponder: ((req: ChatRequestInfo) => ChatStep) | null = null;
  let transcriptionResponder: ((req: RecordedRequest) => string) | null = null;
  let latency: Latency | null = null;
  let faults: Record<'chat' | 'transcription' | 'speech', ChatStep[]> = { chat: [], transcription: [], speech: [] };
  let closing = false;

  const record = (r: RecordedRequest): void => {
    requests.push(r);
    for (const w of [...waiters]) {
      let hit: boolean;
      try {
        hit = w.pred(r);
      } catch (err) {
        waiters.delete(w);
        w.reject(err instanceof Error ? err : new Error(String(err)));
        continue;
      }
      if (hit) {
        waiters.delete(w);
        w.resolve(r);
      }
    }
  };

  const sendJson = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    if (res.destroyed) return;
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  };

  const sendError = (res: ServerResponse, status: number, message?: string, extra: Partial<GroqErrorBody['error']> = {}, retryAfterSec?: number): void => {
    const body = groqError(status, message, extra.code);
    Object.assign(body.error, extra);
    // Fractional seconds are allowed so tests can keep retries fast; groq-sdk parses them with parseFloat.
    sendJson(res, status, body, retryAfterSec !== undefined ? { 'retry-after': String(retryAfterSec) } : {});
  };

  /** Answers a step that is not a normal reply; returns false when the step is a normal reply. */
  const answerFault = async (ex: Exchange, step: ChatStep, malformed: () => void): Promise<boolean> => {
    if ('error' in step) {
      sendError(ex.res, step.error.status, step.error.message, {}, step.error.retryAfterSec);
      return true;
    }
    if ('hang' in step) {
      await untilAborted(ex.signal);
      ex.res.destroy();
      return true;
    }
    if ('malformed' in step) {
      malformed();
      return true;
    }
    return false;
  };

  // --- chat ---------------------------------------------------------------------------------

  const handleChat = async (ex: Exchange, body: unknown): Promise<void> => {
    if (!isRecord(body)) return sendError(ex.res, 400, 'request body must be a JSON object');
    if (typeof body.model !== 'string' || body.model === '') return sendError(ex.res, 400, "'model' : property 'model' is missing");
    if (!Array.isArray(body.messages) || body.messages.length === 0) {
      return sendError(ex.res, 400, "'messages' : minimum number of items is 1");
    }
    const info = chatInfo(body);
    let step: ChatStep | undefined = faults.chat.shift() ?? chatQueue.shift();
    if (!step && chatResponder) {
      try {
        step = chatResponder(info);
      } catch (err) {
        process.stderr.write(`[groq-standin] chat responder threw: ${String(err)}\n`);
        return sendError(ex.res, 500, `stand-in chat responder threw: ${String(err)}`);
      }
    }
    step ??= defaultChatStep(info);
    const model = body.model;
    if (await answerFault(ex, step, () => (info.stream ? malformedStream(ex, model) : malformedJson(ex)))) return;
    if (!('content' in step) && !('toolCalls' in step)) return; // unreachable: faults answered above
    if ('release' in step && step.release) {
      // Held back until the test lets it go (or the client gives up).
      await Promise.race([step.release.catch(() => undefined), untilAborted(ex.signal)]);
      if (ex.signal.aborted) return;
    }
    const content = step.content;
    const toolCalls = 'toolCalls' in step ? step.toolCalls : [];
    if (toolCalls.length === 0 && content !== undefined && jsonModeViolation(info.responseFormat, content)) {
      return sendError(ex.res, 400, "Failed to generate JSON. Please adjust your prompt. See 'failed_generation' for more details.", {
        code: 'json_validate_failed',
        failed_generation: content,
      });
    }
    const reply: Reply = {
      content,
      toolCalls: toolCalls.map((c) => ({
        id: c.id ?? `call_${hexId()}`,
        name: c.name,
        arguments: typeof c.arguments === 'string' ? c.arguments : JSON.stringify(c.arguments ?? {}),
      })),
    };
    const promptTokens = tokenCount(JSON.stringify(body.messages));
    if (info.stream) {
      const includeUsage = isRecord(body.stream_options) && body.stream_options.include_usage === true;
      await streamReply(ex, model, reply, promptTokens, includeUsage);
    } else {
      await jsonReply(ex, model, reply, promptTokens);
    }
  };

  const usageOf = (promptTokens: number, completionTokens: number, seconds: number) => ({
    queue_time: 0.0001,
    prompt_tokens: promptTokens,
    prompt_time: 0.001,
    completion_tokens: completionTokens,
    completion_time: seconds,
    total_tokens: promptTokens + completionTokens,
    total_time: seconds + 0.001,
  });

  const completionTokensOf = (reply: Reply): number =>
    tokenCount(reply.content ?? '') + reply.toolCalls.reduce((n, c) => n + tokenCount(c.name) + tokenCount(c.arguments), 0);

  const msPerToken = (l: Latency | null): number => (l && l.tokensPerSec > 0 ? 1000 / l.tokensPerSec : 0);

  const jsonReply = async (ex: Exchange, model: string, reply: Reply, promptTokens: number): Promise<void> => {
    const completionTokens = completionTokensOf(reply);
    if (ex.latency) {
      const due = ex.arrivedPerf + ex.latency.firstTokenMs + completionTokens * msPerToken(ex.latency);
      if (!(await sleepUntil(due, ex.signal))) return;
    }
    const hasTools = reply.toolCalls.length > 0;
    sendJson(ex.res, 200, {
      id: `chatcmpl-${hexId()}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model,
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: reply.content ?? (hasTools ? null : ''),
            ...(hasTools
              ? { tool_calls: reply.toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } })) }
              : {}),
          },
          logprobs: null,
          finish_reason: hasTools ? 'tool_calls' : 'stop',
        },
      ],
      usage: usageOf(promptTokens, completionTokens, (performance.now() - ex.arrivedPerf) / 1000),
      system_fingerprint: 'fp_standin',
      x_groq: { id: `req_${hexId()}` },
    });
  };

  /**
   * Streams the way OpenAI does: a role chunk, content pieces, then per tool call one chunk with
   * index/id/name and empty arguments followed by argument pieces, a finish chunk with an empty
   * delta (the plugin only flushes its last tool call on a chunk that has a delta), the usage
   * chunk with no choices when asked for, then `[DONE]`. Each piece is one token on the clock.
   */
  const streamReply = async (ex: Exchange, model: string, reply: Reply, promptTokens: number, includeUsage: boolean): Promise<void> => {
    const id = `chatcmpl-${hexId()}`;
    const groqId = `req_${hexId()}`;
    const created = Math.floor(Date.now() / 1000);
    const chunk = (delta: Record<string, unknown>, finishReason: string | null = null, extra: Record<string, unknown> = {}) => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      system_fingerprint: 'fp_standin',
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      ...extra,
    });
    // `tokens` = how many tokens precede this chunk on the clock.
    const plan: { data: unknown; tokensBefore: number }[] = [];
    let tokens = 0;
    plan.push({ data: chunk({ role: 'assistant', content: '' }, null, { x_groq: { id: groqId } }), tokensBefore: 0 });
    for (const piece of tokenPieces(reply.content ?? '')) {
      plan.push({ data: chunk({ content: piece }), tokensBefore: tokens });
      tokens += 1;
    }
    reply.toolCalls.forEach((call, index) => {
      plan.push({
        data: chunk({ tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.name, arguments: '' } }] }),
        tokensBefore: tokens,
      });
      tokens += tokenCount(call.name);
      for (const piece of tokenPieces(call.arguments)) {
        plan.push({ data: chunk({ tool_calls: [{ index, function: { arguments: piece } }] }), tokensBefore: tokens });
        tokens += 1;
      }
    });
    const finishReason = reply.toolCalls.length > 0 ? 'tool_calls' : 'stop';
    const completionTokens = completionTokensOf(reply);
    // Usage is computed when the finish chunk is written, so its timings reflect the latency.
    const finishChunk = () =>
      chunk({}, finishReason, { x_groq: { id: groqId, usage: usageOf(promptTokens, completionTokens, (performance.now() - ex.arrivedPerf) / 1000) } });
    const usageChunk = () => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      system_fingerprint: 'fp_standin',
      choices: [],
      usage: usageOf(promptTokens, completionTokens, (performance.now() - ex.arrivedPerf) / 1000),
    });

    const { res, signal } = ex;
    const write = (data: unknown): void => {
      if (!res.headersSent) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      }
      res.write(`data: ${JSON.stringify(data)}\n\n`);
    };
    const step = msPerToken(ex.latency);
    for (const item of plan) {
      // Headers go out with the first chunk, so a slow first token is also a slow response to
      // clients whose timeout only covers the wait for headers (both SDKs).
      if (ex.latency && !(await sleepUntil(ex.arrivedPerf + ex.latency.firstTokenMs + item.tokensBefore * step, signal))) return;
      if (signal.aborted || res.destroyed) return;
      write(item.data);
    }
    if (ex.latency && !(await sleepUntil(ex.arrivedPerf + ex.latency.firstTokenMs + tokens * step, signal))) return;
    if (signal.aborted || res.destroyed) return;
    write(finishChunk());
    if (includeUsage) write(usageChunk());
    res.end('data: [DONE]\n\n');
  };

  const malformedJson = (ex: Exchange): void => {
    if (ex.res.destroyed) return;
    // Truncated mid-object: valid content-type, unparseable body.
    ex.res.writeHead(200, { 'content-type': 'application/json' });
    ex.res.end('{"id":"chatcmpl-broken","object":"chat.completion","choices":[{"index":0,"message":{"role":"assist');
  };

  const malformedStream = (ex: Exchange, model: string): void => {
    if (ex.res.destroyed) return;
    // One good chunk (so the client has started consuming), then an event that is not JSON and
    // an end without `[DONE]`.
    ex.res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const good = {
      id: 'chatcmpl-broken',
      object: 'chat.completion.chunk',
      created: Math.floor(Date.now() / 1000),
      model,
      choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }],
    };
    ex.res.write(`data: ${JSON.stringify(good)}\n\n`);
    ex.res.end('data: {"id":"chatcmpl-broken","choices":[{"delta":{"content":"tru\n\n');
  };

  // --- transcription ------------------------------------------------------------------------

  const handleTranscription = async (ex: Exchange, rec: RecordedRequest, contentType: string): Promise<void> => {
    if (!contentType.toLowerCase().startsWith('multipart/form-data') || !isRecord(rec.body)) {
      return sendError(ex.res, 400, 'request must be multipart/form-data');
    }
    const fields = rec.body;
    if (typeof fields.model !== 'string' || fields.model === '') return sendError(ex.res, 400, "'model' : property 'model' is missing");
    if (!isRecord(fields.file) && typeof fields.url !== 'string') return sendError(ex.res, 400, 'either file or url must be provided');

    let text: string | undefined;
    const fault = faults.transcription.shift();
    if (fault) {
      const malformed = (): void => {
        if (ex.res.destroyed) return;
        ex.res.writeHead(200, { 'content-type': 'application/json' });
        ex.res.end('{"text":"trunc');
      };
      if (await answerFault(ex, fault, malformed)) return;
      if ('content' in fault) text = fault.content;
    }
    if (text === undefined) text = transcriptionQueue.shift();
    if (text === undefined && transcriptionResponder) {
      try {
        text = transcriptionResponder(rec);
      } catch (err) {
        process.stderr.write(`[groq-standin] transcription responder threw: ${String(err)}\n`);
        return sendError(ex.res, 500, `stand-in transcription responder threw: ${String(err)}`);
      }
    }
    text ??= '';

    const xGroq = { id: `req_${hexId()}` };
    const format = typeof fields.response_format === 'string' ? fields.response_format : 'json';
    if (format === 'text') {
      if (ex.res.destroyed) return;
      ex.res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      ex.res.end(text);
      return;
    }
    if (format === 'verbose_json') {
      const durationSec = isRecord(fields.file) && isRecord(fields.file.wav) && typeof fields.file.wav.durationMs === 'number' ? fields.file.wav.durationMs / 1000 : 0;
      return sendJson(ex.res, 200, {
        task: 'transcribe',
        language: typeof fields.language === 'string' ? fields.language : 'English',
        duration: durationSec,
        text,
        segments: text
          ? [
              {
                id: 0,
                seek: 0,
                start: 0,
                end: durationSec,
                text: ` ${text}`,
                tokens: [],
                temperature: 0,
                avg_logprob: -0.1,
                compression_ratio: 1,
                no_speech_prob: 0.01,
              },
            ]
          : [],
        x_groq: xGroq,
      });
    }
    if (format !== 'json') return sendError(ex.res, 400, `response_format must be one of json, text, verbose_json; got ${format}`);
    sendJson(ex.res, 200, { text, x_groq: xGroq });
  };

  // --- speech -------------------------------------------------------------------------------

  const handleSpeech = async (ex: Exchange, body: unknown): Promise<void> => {
    if (!isRecord(body)) return sendError(ex.res, 400, 'request body must be a JSON object');
    if (typeof body.model !== 'string' || body.model === '') return sendError(ex.res, 400, "'model' : property 'model' is missing");
    if (typeof body.input !== 'string' || body.input === '') return sendError(ex.res, 400, "'input' : property 'input' is missing");
    const fault = faults.speech.shift();
    if (fault) {
      const malformed = (): void => {
        if (ex.res.destroyed) return;
        // Too short to hold one sample, and not a WAV either.
        ex.res.writeHead(200, { 'content-type': 'application/octet-stream' });
        ex.res.end(Buffer.from([0x7b]));
      };
      if (await answerFault(ex, fault, malformed)) return;
    }
    const format = typeof body.response_format === 'string' ? body.response_format : 'wav';
    const durationMs = speechDurationMs(body.input, body.speed);
    if (format === 'pcm') {
      const pcm = tonePcm(PCM_SAMPLE_RATE, durationMs);
      ex.res.writeHead(200, { 'content-type': 'audio/pcm', 'content-length': pcm.length });
      ex.res.end(pcm);
      return;
    }
    if (format === 'wav') {
      const rate = typeof body.sample_rate === 'number' && body.sample_rate > 0 ? body.sample_rate : DEFAULT_WAV_SAMPLE_RATE;
      const wav = wavFile(tonePcm(rate, durationMs), rate);
      ex.res.writeHead(200, { 'content-type': 'audio/wav', 'content-length': wav.length });
      ex.res.end(wav);
      return;
    }
    // Encoded formats (mp3, flac, ogg, mulaw...) would need an encoder; no test here needs one.
    sendError(ex.res, 400, `response_format "${format}" is not supported by the Groq stand-in (use "wav" or "pcm")`);
  };

  // --- dispatch -----------------------------------------------------------------------------

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const at = Date.now();
    const arrivedPerf = performance.now();
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'http://stand-in').pathname;
    const { route, modelId } = routeOf(method, path);
    const ctl = new AbortController();
    inFlight.add(ctl);
    res.on('close', () => {
      ctl.abort();
      inFlight.delete(ctl);
    });
    if (closing) ctl.abort();
    res.setHeader('x-request-id', `req_${hexId()}`);
    if (opts.log) {
      res.on('close', () => {
        const status = res.writableFinished ? String(res.statusCode) : 'aborted';
        process.stderr.write(`[groq-standin] ${status} ${method} ${path} ${Math.round(performance.now() - arrivedPerf)}ms\n`);
      });
    }

    const raw = await readBody(req);
    if (raw === 'gone') return;
    const contentType = String(req.headers['content-type'] ?? '');
    const parsed = raw === 'too-large' ? ({ ok: false, value: undefined, message: 'too large' } as const) : await parseBody(raw, contentType);
    const rec: RecordedRequest = { method, path, headers: req.headers, body: parsed.value, at, route };
    record(rec);

    if (opts.apiKey !== undefined && req.headers.authorization !== `Bearer ${opts.apiKey}`) return sendError(res, 401);
    if (raw === 'too-large') return sendError(res, 413);
    if (!parsed.ok) return sendError(res, 400, parsed.message);

    const ex: Exchange = { res, signal: ctl.signal, arrivedPerf, latency };
    switch (route) {
      case 'models':
        return sendJson(res, 200, { object: 'list', data: MODELS });
      case 'model': {
        const model = MODELS.find((m) => m.id === modelId);
        if (!model) {
          return sendError(res, 404, `The model \`${modelId}\` does not exist or you do not have access to it.`, { code: 'model_not_found' });
        }
        return sendJson(res, 200, model);
      }
      case 'chat':
        return handleChat(ex, parsed.value);
      case 'transcription':
        return handleTranscription(ex, rec, contentType);
      case 'speech':
        return handleSpeech(ex, parsed.value);
      case 'unknown':
        return sendError(res, 404, `Unknown request URL: ${method} ${path}. Please check the URL for typos, or see the docs at https://console.groq.com/docs/`, {
          code: 'unknown_url',
        });
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      process.stderr.write(`[groq-standin] internal error on ${req.method} ${req.url}: ${err instanceof Error ? err.stack : String(err)}\n`);
      if (!res.headersSent) sendError(res, 500, `stand-in internal error: ${String(err)}`);
      else res.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

  const describeSeen = (): string =>
    requests.length === 0 ? 'no requests at all' : requests.map((r) => `${r.method} ${r.path}`).join(', ');

  return {
    url,
    openaiBaseURL: `${url}${API_PREFIX}`,
    requests,
    enqueueChat(...steps) {
      chatQueue.push(...steps);
    },
    setChatResponder(fn) {
      chatResponder = fn;
    },
    enqueueTranscription(...texts) {
      transcriptionQueue.push(...texts);
    },
    setTranscriptionResponder(fn) {
      transcriptionResponder = fn;
    },
    setLatency(l) {
      latency = l;
    },
    failNext(path, step) {
      faults[path].push(step);
    },
    waitForRequest(pred, timeoutMs) {
      let seen: RecordedRequest | undefined;
      try {
        seen = requests.find(pred);
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
      if (seen) return Promise.resolve(seen);
      return new Promise<RecordedRequest>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(
            new Error(
              `groq stand-in: no request matching ${pred.toString().slice(0, 200)} within ${timeoutMs} ms; saw ${describeSeen()}`,
            ),
          );
        }, timeoutMs);
        const waiter: Waiter = {
          pred,
          resolve: (r) => {
            clearTimeout(timer);
            resolve(r);
          },
          reject: (err) => {
            clearTimeout(timer);
            reject(err);
          },
        };
        waiters.add(waiter);
      });
    },
    chatRequests() {
      return requests.filter((r) => r.route === 'chat');
    },
    reset() {
      chatQueue = [];
      transcriptionQueue = [];
      chatResponder = null;
      transcriptionResponder = null;
      latency = null;
      faults = { chat: [], transcription: [], speech: [] };
      // In place, so arrays handed out earlier (`standIn.requests`) stay live.
      requests.length = 0;
    },
    async close() {
      if (closing) return;
      closing = true;
      for (const ctl of inFlight) ctl.abort();
      for (const w of waiters) w.reject(new Error('groq stand-in closed while waiting for a request'));
      waiters.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Idle keep-alive sockets and hanging requests would otherwise hold close() open.
      server.closeAllConnections();
      await closed;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Standalone: `npx tsx test/support/groq-standin.ts --port 8899`
// ---------------------------------------------------------------------------------------------

function isMainModule(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

async function main(argv: string[]): Promise<void> {
  const arg = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const portArg = arg('--port');
  const port = portArg === undefined ? 0 : Number(portArg);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be an integer 0-65535, got ${portArg}`);
  const standIn = await startGroqStandIn({ port, host: arg('--host'), apiKey: arg('--api-key'), log: !argv.includes('--quiet') });
  process.stdout.write(`Groq stand-in listening on ${standIn.url}\n`);
  process.stdout.write(`  groq-sdk baseURL:      ${standIn.url}\n`);
  process.stdout.write(`  agents plugin baseURL: ${standIn.openaiBaseURL}\n`);
  const stop = (): void => {
    void standIn.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (isMainModule()) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
