/**
 * The worker's configuration: read from the environment once, validated, typed.
 *
 * Every variable is declared in one table (`CONFIG_VARS`) with its description, default and
 * whether it is secret. The table drives parsing, the error messages a user sees, and the README's
 * configuration table (a unit test keeps the README in step), so the three cannot drift.
 */

import { existsSync } from 'node:fs';
import { PHONE_NUMBER_RE, SIP_RING_TIMEOUT_MAX_MS, SIP_RING_TIMEOUT_MIN_MS, type SipDefaults, TRUNK_ID_RE, normalizePhoneNumber } from './sip.js';
import { SUMMARIZER_ENV, type SummarizerSettings, summarizerSettingsFromEnv } from './summarizer.js';

export class ConfigError extends Error {
  constructor(readonly problems: readonly ConfigProblem[]) {
    super(formatProblems(problems));
    this.name = 'ConfigError';
  }
}

export interface ConfigProblem {
  variable: string;
  message: string;
}

type Env = Record<string, string | undefined>;

interface VarSpec<T> {
  name: string;
  description: string;
  /** What a valid value looks like, shown in error messages. */
  expected: string;
  /** Shown in the README; `undefined` means required. */
  defaultText?: string;
  secret?: boolean;
  parse(raw: string | undefined, env: Env): T;
}

/** Thrown by a parser; turned into a ConfigProblem naming the variable. */
class Invalid extends Error {}

const GROQ_DEFAULT_BASE_URL = 'https://api.groq.com';

function required(raw: string | undefined): string {
  const value = raw?.trim();
  if (!value) throw new Invalid('is not set');
  return value;
}

function optional(raw: string | undefined, fallback: string): string {
  const value = raw?.trim();
  return value ? value : fallback;
}

function url(raw: string, protocols: readonly string[]): string {
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new Invalid(`is not a URL (got "${raw}")`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new Invalid(`has protocol "${parsed.protocol}" (got "${raw}")`);
  }
  return raw.replace(/\/+$/, '');
}

function integer(raw: string | undefined, fallback: number, min: number, max: number): number {
  const value = raw?.trim();
  if (!value) return fallback;
  if (!/^-?\d+$/.test(value)) throw new Invalid(`is not a whole number (got "${value}")`);
  const n = Number(value);
  if (n < min || n > max) throw new Invalid(`is out of range (got ${n})`);
  return n;
}

function boolean(raw: string | undefined, fallback: boolean): boolean {
  const value = raw?.trim().toLowerCase();
  if (!value) return fallback;
  if (['1', 'true', 'yes', 'on'].includes(value)) return true;
  if (['0', 'false', 'no', 'off'].includes(value)) return false;
  throw new Invalid(`is not a boolean (got "${raw}")`);
}

function oneOf<T extends string>(raw: string | undefined, fallback: T, values: readonly T[]): T {
  const value = raw?.trim();
  if (!value) return fallback;
  if (!(values as readonly string[]).includes(value)) throw new Invalid(`is not one of the allowed values (got "${value}")`);
  return value as T;
}

/** LIVEKIT_URL for settings that default to it; '' when it is missing or bad (reported under its own name). */
function derivedFromLivekitUrl(env: Env): string {
  try {
    return url(required(env.LIVEKIT_URL), ['ws:', 'wss:', 'http:', 'https:']);
  } catch {
    return '';
  }
}

function groqBase(env: Env): string {
  return url(optional(env.GROQ_BASE_URL, GROQ_DEFAULT_BASE_URL), ['http:', 'https:']);
}

export const JOIN_STRATEGIES = ['auto', 'move', 'rejoin'] as const;
export type JoinStrategy = (typeof JOIN_STRATEGIES)[number];

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;

/** The table of every variable the worker reads. Order is the README's order. */
export const CONFIG_VARS = {
  livekitUrl: {
    name: 'LIVEKIT_URL',
    description: 'LiveKit server URL the worker registers with.',
    expected: 'a ws://, wss://, http:// or https:// URL, e.g. wss://my-project.livekit.cloud or ws://127.0.0.1:7880',
    parse: (raw) => url(required(raw), ['ws:', 'wss:', 'http:', 'https:']),
  } satisfies VarSpec<string>,
  livekitApiKey: {
    name: 'LIVEKIT_API_KEY',
    description: 'LiveKit API key.',
    expected: 'the API key of your LiveKit project or server (`devkey` for `livekit-server --dev`)',
    parse: (raw) => required(raw),
  } satisfies VarSpec<string>,
  livekitApiSecret: {
    name: 'LIVEKIT_API_SECRET',
    description: 'LiveKit API secret.',
    expected: 'the API secret paired with LIVEKIT_API_KEY (`secret` for `livekit-server --dev`)',
    secret: true,
    parse: (raw) => required(raw),
  } satisfies VarSpec<string>,
  livekitApiUrl: {
    name: 'LIVEKIT_API_URL',
    description: 'URL of the LiveKit server API (RoomService), when it is reached at another address than LIVEKIT_URL.',
    expected: 'an http:// or https:// URL',
    defaultText: 'LIVEKIT_URL as http(s)',
    parse: (raw, env) => {
      if (!raw?.trim()) return derivedFromLivekitUrl(env).replace(/^ws/, 'http');
      return url(raw.trim(), ['ws:', 'wss:', 'http:', 'https:']).replace(/^ws/, 'http');
    },
  } satisfies VarSpec<string>,
  agentName: {
    name: 'AGENT_NAME',
    description: 'Agent name for explicit dispatch; the worker only joins rooms that dispatch this name.',
    expected: 'letters, digits, "-", "_" or "." (1-64 characters)',
    defaultText: 'warm-transfer',
    parse: (raw) => {
      const value = optional(raw, 'warm-transfer');
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(value)) throw new Invalid(`has characters that are not allowed (got "${value}")`);
      return value;
    },
  } satisfies VarSpec<string>,
  workerHost: {
    name: 'WORKER_HOST',
    description: 'Address the health server binds (GET / is health, GET /worker is JSON). Use 0.0.0.0 in a container.',
    expected: 'an IP address such as 127.0.0.1 or 0.0.0.0',
    defaultText: '127.0.0.1',
    parse: (raw) => {
      const value = optional(raw, '127.0.0.1');
      if (!/^[0-9a-fA-F.:]+$/.test(value)) throw new Invalid(`is not an IP address (got "${value}")`);
      return value;
    },
  } satisfies VarSpec<string>,
  workerPort: {
    name: 'WORKER_PORT',
    description: 'Port of the health server (0 picks a free port).',
    expected: 'a port number from 0 to 65535',
    defaultText: '8081',
    parse: (raw) => integer(raw, 8081, 0, 65535),
  } satisfies VarSpec<number>,
  workerIdleProcesses: {
    name: 'WORKER_IDLE_PROCESSES',
    description: 'Job processes kept warm (VAD loaded) so a call starts at once. Each costs memory.',
    expected: 'a whole number from 0 to 32',
    defaultText: '2',
    parse: (raw) => integer(raw, 2, 0, 32),
  } satisfies VarSpec<number>,
  loopBlockWarnMs: {
    name: 'LIVEKIT_AGENTS_LOOP_BLOCK_WARN_MS',
    description:
      "The agents runtime's own event-loop monitor, in the worker and in every job process (warm spares too), logs stalls at least this long (ms). It ticks every fifth of it (20-50 ms) on the loop and on a watchdog thread, and that is not free: 2-5% of a core per process at the runtime's 100, about half at 250. 0 turns it off; each call's `job stats` line still reports its loop's largest delay.",
    expected: 'a whole number of milliseconds from 0 to 60000',
    defaultText: '250',
    parse: (raw) => integer(raw, 250, 0, 60_000),
  } satisfies VarSpec<number>,
  workerMaxJobs: {
    name: 'WORKER_MAX_JOBS',
    description:
      'Calls one worker takes at most. When set, the load reported to LiveKit is active calls / this number (steady, unlike CPU on a shared host); 0 reports CPU use.',
    expected: 'a whole number from 0 to 10000',
    defaultText: '0',
    parse: (raw) => integer(raw, 0, 0, 10_000),
  } satisfies VarSpec<number>,
  workerLoadThreshold: {
    name: 'WORKER_LOAD_THRESHOLD',
    description: 'CPU load (0-1) above which the worker tells LiveKit it is full and takes no new calls; `off` never does.',
    expected: 'a number greater than 0 and at most 1, or off',
    defaultText: '0.7',
    parse: (raw) => {
      const value = raw?.trim().toLowerCase();
      if (!value) return 0.7;
      if (value === 'off') return Number.POSITIVE_INFINITY;
      const n = Number(value);
      if (!Number.isFinite(n) || n <= 0 || n > 1) throw new Invalid(`is not a number in (0, 1] or off (got "${value}")`);
      return n;
    },
  } satisfies VarSpec<number>,
  groqApiKey: {
    name: 'GROQ_API_KEY',
    description: 'Groq API key, used for speech-to-text, the agent LLM, the handoff summary and (by default) TTS.',
    expected: 'a Groq API key (starts with "gsk_"); create one at console.groq.com/keys',
    secret: true,
    parse: (raw) => required(raw),
  } satisfies VarSpec<string>,
  groqBaseUrl: {
    name: 'GROQ_BASE_URL',
    description: 'Groq API host root (the OpenAI-compatible API lives under /openai/v1).',
    expected: 'an http:// or https:// URL without the /openai/v1 suffix',
    defaultText: GROQ_DEFAULT_BASE_URL,
    parse: (_raw, env) => {
      const base = groqBase(env);
      if (/\/openai\/v1$/.test(base)) throw new Invalid(`must be the host root, without /openai/v1 (got "${base}")`);
      return base;
    },
  } satisfies VarSpec<string>,
  llmModel: {
    name: 'GROQ_LLM_MODEL',
    description: 'Model the voice agent talks with (must support tool calls).',
    expected: 'a Groq chat model id',
    defaultText: 'openai/gpt-oss-120b',
    parse: (raw) => optional(raw, 'openai/gpt-oss-120b'),
  } satisfies VarSpec<string>,
  sttModel: {
    name: 'GROQ_STT_MODEL',
    description: 'Speech-to-text model.',
    expected: 'a Groq transcription model id',
    defaultText: 'whisper-large-v3-turbo',
    parse: (raw) => optional(raw, 'whisper-large-v3-turbo'),
  } satisfies VarSpec<string>,
  ttsBaseUrl: {
    name: 'TTS_BASE_URL',
    description: 'OpenAI-compatible speech API base URL.',
    expected: 'an http:// or https:// URL ending in the API version path, e.g. https://api.groq.com/openai/v1',
    defaultText: 'GROQ_BASE_URL + /openai/v1',
    parse: (raw, env) => url(optional(raw, `${groqBase(env)}/openai/v1`), ['http:', 'https:']),
  } satisfies VarSpec<string>,
  ttsApiKey: {
    name: 'TTS_API_KEY',
    description: 'API key for the speech API.',
    expected: 'an API key for TTS_BASE_URL',
    defaultText: 'GROQ_API_KEY',
    secret: true,
    parse: (raw, env) => optional(raw, env.GROQ_API_KEY?.trim() ?? ''),
  } satisfies VarSpec<string>,
  ttsModel: {
    name: 'TTS_MODEL',
    description: 'Text-to-speech model.',
    expected: 'a speech model id of TTS_BASE_URL',
    defaultText: 'canopylabs/orpheus-v1-english',
    parse: (raw) => optional(raw, 'canopylabs/orpheus-v1-english'),
  } satisfies VarSpec<string>,
  ttsVoice: {
    name: 'TTS_VOICE',
    description: 'Voice of the text-to-speech model.',
    expected: 'a voice of TTS_MODEL (Orpheus English: autumn, diana, hannah, austin, daniel, troy)',
    defaultText: 'autumn',
    parse: (raw) => optional(raw, 'autumn'),
  } satisfies VarSpec<string>,
  helperThreadNice: {
    name: 'JOB_HELPER_THREAD_NICE',
    description:
      "Nice value for the threads Node.js runs beside a call process's JavaScript thread (V8's compiler and GC helpers, libuv's pool, the database and Groq worker threads), so the thread carrying the call goes first when CPU runs short; libwebrtc's audio threads keep their priority. 0 leaves them at the process's own. Linux only; needs no privilege. See agent/thread-priority.ts for why 10 and not 19.",
    expected: 'a whole number from 0 to 19',
    defaultText: '10',
    parse: (raw) => integer(raw, 10, 0, 19),
  } satisfies VarSpec<number>,
  jobStallProbe: {
    name: 'JOB_STALL_PROBE',
    description:
      "Measure each call's event-loop stalls with a 5 ms probe (it costs about 1.5% of a core per call) and report them in the `job stats` log line: the largest, split into time on a CPU, waiting for a CPU and blocked; the one that held a CPU longest; the largest from the moment the call room is connected (`inCall`: audio can flow) and while the caller is on hold; each with the time it ended, to find it in the log. For diagnosis and benchmarks.",
    expected: 'true or false',
    defaultText: 'false',
    parse: (raw) => boolean(raw, false),
  } satisfies VarSpec<boolean>,
  textOnly: {
    name: 'AGENT_TEXT_ONLY',
    description: 'Talk over text (lk.chat in, lk.transcription out) instead of audio. Dispatch metadata `{"textOnly": true}` chooses it per call.',
    expected: 'true or false',
    defaultText: 'false',
    parse: (raw) => boolean(raw, false),
  } satisfies VarSpec<boolean>,
  consoleLivekitUrl: {
    name: 'CONSOLE_LIVEKIT_URL',
    description: 'LiveKit URL handed to consoles in offers and join tokens, when they reach LiveKit by another address than the worker does.',
    expected: 'a ws:// or wss:// URL',
    defaultText: 'LIVEKIT_URL',
    parse: (raw, env) => {
      if (!raw?.trim()) return derivedFromLivekitUrl(env).replace(/^http/, 'ws');
      return url(raw.trim(), ['ws:', 'wss:', 'http:', 'https:']).replace(/^http/, 'ws');
    },
  } satisfies VarSpec<string>,
  deskRoom: {
    name: 'DESK_ROOM',
    description: 'Room where Agent B consoles wait for offers, announcing themselves with participant attributes.',
    expected: 'a LiveKit room name',
    defaultText: 'warm-transfer-desk',
    parse: (raw) => optional(raw, 'warm-transfer-desk'),
  } satisfies VarSpec<string>,
  joinStrategy: {
    name: 'TRANSFER_JOIN_STRATEGY',
    description:
      'How Agent B reaches the caller: `move` (MoveParticipant; LiveKit Cloud), `rejoin` (the console joins the caller room with a token; any server), `auto` (move, else rejoin).',
    expected: 'auto, move or rejoin',
    defaultText: 'auto',
    parse: (raw) => oneOf(raw, 'auto', JOIN_STRATEGIES),
  } satisfies VarSpec<(typeof JOIN_STRATEGIES)[number]>,
  offerTimeoutMs: {
    name: 'TRANSFER_OFFER_TIMEOUT_MS',
    description: 'How long a console has to accept an offer before it counts as not answered.',
    expected: 'milliseconds, 1000 to 300000',
    defaultText: '20000',
    parse: (raw) => integer(raw, 20_000, 1_000, 300_000),
  } satisfies VarSpec<number>,
  agentJoinTimeoutMs: {
    name: 'TRANSFER_AGENT_JOIN_TIMEOUT_MS',
    description: 'How long an AI agent transfer target has to join the caller room after its dispatch before the attempt counts as not answered.',
    expected: 'milliseconds, 1000 to 300000',
    defaultText: '30000',
    parse: (raw) => integer(raw, 30_000, 1_000, 300_000),
  } satisfies VarSpec<number>,
  maxAttempts: {
    name: 'TRANSFER_MAX_ATTEMPTS',
    description: 'Consoles offered the call, one after another, before the caller goes back to the AI.',
    expected: 'a whole number from 1 to 20',
    defaultText: '3',
    parse: (raw) => integer(raw, 3, 1, 20),
  } satisfies VarSpec<number>,
  briefingTimeoutMs: {
    name: 'TRANSFER_BRIEFING_TIMEOUT_MS',
    description: 'How long Agent B may stay in the consult room before connecting; then the attempt ends.',
    expected: 'milliseconds, 5000 to 1800000',
    defaultText: '180000',
    parse: (raw) => integer(raw, 180_000, 5_000, 1_800_000),
  } satisfies VarSpec<number>,
  holdMessage: {
    name: 'HOLD_MESSAGE',
    description: 'What the caller hears (or reads) before the hold music.',
    expected: 'a sentence',
    defaultText: 'Please hold for a moment while I connect you with a colleague.',
    parse: (raw) => optional(raw, 'Please hold for a moment while I connect you with a colleague.'),
  } satisfies VarSpec<string>,
  holdMusicFile: {
    name: 'HOLD_MUSIC_FILE',
    description: 'Audio file played to the held caller (any format ffmpeg reads); empty uses the built-in hold music.',
    expected: 'a path to a readable audio file',
    defaultText: '(built-in)',
    parse: (raw) => {
      const value = raw?.trim();
      if (!value) return undefined;
      if (!existsSync(value)) throw new Invalid(`is not a file that exists (got "${value}")`);
      return value;
    },
  } satisfies VarSpec<string | undefined>,
  sipOutboundTrunkId: {
    name: 'SIP_OUTBOUND_TRUNK_ID',
    description: 'Outbound SIP trunk that phone transfer targets are dialled through, unless the target names its own trunk. Phone transfers need a server that can move participants (LiveKit Cloud).',
    expected: 'a LiveKit outbound trunk id such as ST_abc123 (letters, digits, _ and -)',
    defaultText: '(none)',
    parse: (raw) => {
      const value = raw?.trim();
      if (!value) return undefined;
      if (!TRUNK_ID_RE.test(value)) throw new Invalid(`is not a trunk id (got "${value}")`);
      return value;
    },
  } satisfies VarSpec<string | undefined>,
  sipCallerId: {
    name: 'SIP_CALLER_ID',
    description: 'Number phone transfer targets see as the caller (the SIP From number); empty uses a number of the trunk.',
    expected: 'a phone number: E.164 such as +15551234567, or 3 to 15 digits',
    defaultText: "(the trunk's number)",
    parse: (raw) => {
      const value = raw?.trim();
      if (!value) return undefined;
      const number = normalizePhoneNumber(value);
      if (!PHONE_NUMBER_RE.test(number)) throw new Invalid(`is not a phone number (got "${value}")`);
      return number;
    },
  } satisfies VarSpec<string | undefined>,
  sipRingTimeoutMs: {
    name: 'SIP_RING_TIMEOUT_MS',
    description: 'How long a phone transfer target rings before the attempt counts as not answered.',
    expected: `milliseconds, ${SIP_RING_TIMEOUT_MIN_MS} to ${SIP_RING_TIMEOUT_MAX_MS}`,
    defaultText: '30000',
    parse: (raw) => integer(raw, 30_000, SIP_RING_TIMEOUT_MIN_MS, SIP_RING_TIMEOUT_MAX_MS),
  } satisfies VarSpec<number>,
  databaseUrl: {
    name: 'DATABASE_URL',
    description: 'Where transfer records go: file: (local SQLite), :memory:, or libsql:// / https:// / http:// (Turso, sqld).',
    expected: 'file:path/to.db, :memory:, libsql://..., https://... or http://...',
    defaultText: 'file:data/transfers.db',
    parse: (raw) => {
      const value = optional(raw, 'file:data/transfers.db');
      if (value === ':memory:' || value.startsWith('file:')) return value;
      return url(value, ['libsql:', 'https:', 'http:', 'ws:', 'wss:']);
    },
  } satisfies VarSpec<string>,
  databaseAuthToken: {
    name: 'DATABASE_AUTH_TOKEN',
    description: 'Auth token for a remote libsql database (Turso, sqld).',
    expected: 'a libsql auth token',
    defaultText: '(none)',
    secret: true,
    parse: (raw) => raw?.trim() || undefined,
  } satisfies VarSpec<string | undefined>,
  databaseSpoolDir: {
    name: 'DATABASE_SPOOL_DIR',
    description:
      'Where records the database could not take are kept on disk until any worker process on this host can write them (replayed at start and every 30 s).',
    expected: 'a directory path',
    defaultText: '<db file>.spool/ (file:), data/spool/ (remote)',
    parse: (raw) => raw?.trim() || undefined,
  } satisfies VarSpec<string | undefined>,
  logLevel: {
    name: 'LOG_LEVEL',
    description: 'Log level of the worker and its jobs.',
    expected: LOG_LEVELS.join(', '),
    defaultText: 'info',
    parse: (raw) => oneOf(raw, 'info', LOG_LEVELS),
  } satisfies VarSpec<(typeof LOG_LEVELS)[number]>,
  nativeLogFilter: {
    name: 'RUST_LOG',
    description:
      "What the native WebRTC core of @livekit/rtc-node prints to stderr, in its own plain-text format (env_logger filters, e.g. `livekit=info` or `warn`). Off by default: it reports every routine disconnect as an error, and its lines are not the worker's JSON.",
    expected: 'an env_logger filter: off, error, warn, info, debug, trace, or target=level pairs joined by commas',
    defaultText: 'off',
    parse: (raw) => optional(raw, 'off'),
  } satisfies VarSpec<string>,
} as const;

type Specs = typeof CONFIG_VARS;
type Values = { [K in keyof Specs]: ReturnType<Specs[K]['parse']> };

export interface WorkerConfig {
  livekit: { url: string; apiUrl: string; apiKey: string; apiSecret: string };
  agentName: string;
  worker: {
    host: string;
    port: number;
    idleProcesses: number;
    loadThreshold: number;
    maxJobs: number;
    stallProbe: boolean;
    loopBlockWarnMs: number;
    /** Nice value for a job process's threads other than its JavaScript one (agent/thread-priority.ts); 0: off. */
    helperThreadNice: number;
  };
  groq: { apiKey: string; baseURL: string; openaiBaseURL: string; llmModel: string; sttModel: string };
  tts: { baseURL: string; apiKey: string; model: string; voice: string };
  textOnly: boolean;
  transfer: {
    consoleUrl: string;
    deskRoom: string;
    joinStrategy: JoinStrategy;
    offerTimeoutMs: number;
    /** How long an AI agent target has to arrive in the caller room. */
    agentJoinTimeoutMs: number;
    maxAttempts: number;
    briefingTimeoutMs: number;
    holdMessage: string;
    holdMusicFile?: string;
  };
  database: { url: string; authToken?: string; spoolDir?: string };
  /** Defaults for phone (SIP) transfer targets. */
  sip: SipDefaults;
  /** The handoff summarizer's settings (SUMMARY_* and GROQ_SUMMARY_MODEL; see SUMMARY_VAR_DOCS). */
  summary: SummarizerSettings;
  logLevel: string;
  /** RUST_LOG for the native core, passed on to every job process. */
  nativeLogFilter: string;
}

/** The summarizer's variables, for the README (parsed by summarizerSettingsFromEnv). */
export const SUMMARY_VAR_DOCS: readonly { name: string; defaultText: string; description: string }[] = [
  { name: SUMMARIZER_ENV.model, defaultText: 'openai/gpt-oss-120b', description: 'Model that writes the handoff summary.' },
  { name: SUMMARIZER_ENV.responseFormat, defaultText: 'auto', description: 'auto, json_schema or json_object: how structured output is asked for (auto picks by model).' },
  { name: SUMMARIZER_ENV.transport, defaultText: 'worker', description: 'worker: Groq requests run in a worker thread so JSON work never stalls the call; in-thread: on the call thread.' },
  { name: SUMMARIZER_ENV.rolling, defaultText: 'true', description: 'Keep a summary current during the call, so a transfer never waits for one.' },
  { name: SUMMARIZER_ENV.debounceMs, defaultText: '1500', description: 'Quiet time after a caller turn before a rolling update starts.' },
  { name: SUMMARIZER_ENV.minIntervalMs, defaultText: '15000', description: 'Minimum time between two rolling updates (doubles after failures, up to 8x).' },
  { name: SUMMARIZER_ENV.maxTokensBudget, defaultText: '60000', description: 'Tokens rolling updates may spend per call.' },
  { name: SUMMARIZER_ENV.requestTimeoutMs, defaultText: '10000', description: 'Timeout of one request attempt.' },
  { name: SUMMARIZER_ENV.maxRetries, defaultText: '2', description: 'Retries of a failed request (429, 5xx, connection errors).' },
  { name: SUMMARIZER_ENV.transferDeadlineMs, defaultText: '4000', description: 'How long the refinement at transfer time may take before the latest summary is used as is.' },
  { name: SUMMARIZER_ENV.maxCompletionTokens, defaultText: '2048', description: 'Completion cap per request.' },
  { name: SUMMARIZER_ENV.maxInputChars, defaultText: '48000', description: 'Transcript characters sent in one request at most.' },
  { name: SUMMARIZER_ENV.redactStored, defaultText: 'all', description: 'Redacted in what is stored and shown: all, none, or cards,national_ids,emails,phones.' },
  { name: SUMMARIZER_ENV.redactSpoken, defaultText: 'cards,national_ids', description: 'Redacted in what is spoken to Agent B.' },
  { name: SUMMARIZER_ENV.redactModelInput, defaultText: 'cards,national_ids', description: 'Redacted in what is sent to the model.' },
];

/**
 * Parse the environment into a WorkerConfig. Collects every problem before throwing so a user
 * fixes them all in one go.
 */
export function loadConfig(env: Env = process.env): WorkerConfig {
  const problems: ConfigProblem[] = [];
  const values: Partial<Record<keyof Specs, unknown>> = {};
  for (const [key, spec] of Object.entries(CONFIG_VARS) as [keyof Specs, VarSpec<unknown>][]) {
    try {
      values[key] = spec.parse(env[spec.name], env);
    } catch (err) {
      if (!(err instanceof Invalid)) throw err;
      // Never echo a secret's value back into a message that may be logged.
      const message = spec.secret ? err.message.replace(/\(got .*\)$/, '').trim() : err.message;
      problems.push({ variable: spec.name, message: `${message}; expected ${spec.expected}` });
    }
  }
  let summary: SummarizerSettings | undefined;
  try {
    summary = summarizerSettingsFromEnv(env);
  } catch (err) {
    // The summarizer names the variable first: "NAME: what is wrong".
    const [variable, ...rest] = (err as Error).message.split(': ');
    problems.push({ variable: variable ?? 'SUMMARY_*', message: rest.join(': ') || (err as Error).message });
  }
  if (problems.length > 0 || !summary) throw new ConfigError(problems);
  const v = values as Values;
  return {
    livekit: { url: v.livekitUrl, apiUrl: v.livekitApiUrl || v.livekitUrl.replace(/^ws/, 'http'), apiKey: v.livekitApiKey, apiSecret: v.livekitApiSecret },
    agentName: v.agentName,
    worker: {
      host: v.workerHost,
      port: v.workerPort,
      idleProcesses: v.workerIdleProcesses,
      loadThreshold: v.workerLoadThreshold,
      maxJobs: v.workerMaxJobs,
      stallProbe: v.jobStallProbe,
      loopBlockWarnMs: v.loopBlockWarnMs,
      helperThreadNice: v.helperThreadNice,
    },
    groq: {
      apiKey: v.groqApiKey,
      baseURL: v.groqBaseUrl,
      openaiBaseURL: `${v.groqBaseUrl}/openai/v1`,
      llmModel: v.llmModel,
      sttModel: v.sttModel,
    },
    tts: { baseURL: v.ttsBaseUrl, apiKey: v.ttsApiKey, model: v.ttsModel, voice: v.ttsVoice },
    textOnly: v.textOnly,
    transfer: {
      consoleUrl: v.consoleLivekitUrl || v.livekitUrl.replace(/^http/, 'ws'),
      deskRoom: v.deskRoom,
      joinStrategy: v.joinStrategy,
      offerTimeoutMs: v.offerTimeoutMs,
      agentJoinTimeoutMs: v.agentJoinTimeoutMs,
      maxAttempts: v.maxAttempts,
      briefingTimeoutMs: v.briefingTimeoutMs,
      holdMessage: v.holdMessage,
      holdMusicFile: v.holdMusicFile,
    },
    database: { url: v.databaseUrl, authToken: v.databaseAuthToken, spoolDir: v.databaseSpoolDir },
    sip: { outboundTrunkId: v.sipOutboundTrunkId, callerId: v.sipCallerId, ringTimeoutMs: v.sipRingTimeoutMs },
    summary,
    logLevel: v.logLevel,
    nativeLogFilter: v.nativeLogFilter,
  };
}

function formatProblems(problems: readonly ConfigProblem[]): string {
  const lines = problems.map((p) => `  - ${p.variable} ${p.message}`);
  return [
    `Configuration is not valid (${problems.length} problem${problems.length === 1 ? '' : 's'}):`,
    ...lines,
    'Set these in the environment or in .env.local (see .env.example and the README configuration table).',
  ].join('\n');
}

/** The configuration table as Markdown, for the README (kept in step by a unit test). */
export function configTableMarkdown(): string {
  const rows = Object.values(CONFIG_VARS).map((spec: VarSpec<unknown>) => {
    const def = spec.defaultText === undefined ? '**required**' : `\`${spec.defaultText}\``;
    return `| \`${spec.name}\` | ${def} | ${spec.description}${spec.secret ? ' Secret: never logged.' : ''} |`;
  });
  const summaryRows = SUMMARY_VAR_DOCS.map((d) => `| \`${d.name}\` | \`${d.defaultText}\` | ${d.description} |`);
  return ['| Variable | Default | Meaning |', '| --- | --- | --- |', ...rows, ...summaryRows].join('\n');
}

/** A copy of the config safe to log: secrets replaced by their presence. */
export function redactedConfig(config: WorkerConfig): Record<string, unknown> {
  return {
    ...config,
    livekit: { ...config.livekit, apiSecret: '[set]' },
    groq: { ...config.groq, apiKey: '[set]' },
    tts: { ...config.tts, apiKey: config.tts.apiKey ? '[set]' : '[empty]' },
    database: { ...config.database, authToken: config.database.authToken ? '[set]' : undefined },
    summary: { ...config.summary, apiKey: config.summary.apiKey ? '[set]' : '[empty]' },
  };
}
