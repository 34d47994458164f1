/**
 * A recording LiveKit server API (Twirp) for tests of the `move` join strategy.
 *
 * The open-source livekit-server refuses `RoomService.MoveParticipant` ("not implemented", wrapped
 * as a Twirp `unknown` error with HTTP 500; see OSS_NOT_IMPLEMENTED), so the only way to exercise the worker's `move` path (and to check the exact request it makes)
 * is to point its RoomService at this server. It speaks what `livekit-server-sdk`'s TwirpRpc sends:
 * `POST /twirp/livekit.<Service>/<Method>` with a JSON body (`Content-Type:
 * application/json;charset=UTF-8`) and `Authorization: Bearer <HS256 JWT>`.
 *
 * Every exchange is recorded (request, decoded token claims, and the reply). Each method answers
 * according to a behaviour: MoveParticipant answers `{}` by default; every other method is proxied
 * to the real server given as `upstream` (or refused as unimplemented when there is none), so the
 * worker still sees real rooms. `livekit.SIP/CreateSIPParticipant` is scripted with
 * `setBehaviour('CreateSIPParticipant', ...)` and the SIP replies below (`sipParticipantReply`,
 * `sipStatusReply`, `SIP_RING_TIMEOUT_REPLY`).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Inbox } from './wait.js';

/** The Twirp error body (https://twitchtv.github.io/twirp/docs/spec_v7.html#error-codes). */
export interface TwirpErrorBody {
  code: string;
  msg: string;
  meta?: Record<string, string>;
}

/** HTTP status of each Twirp error code, as the Twirp spec (and livekit-server) maps them. */
export const TWIRP_HTTP_STATUS: Record<string, number> = {
  canceled: 408,
  unknown: 500,
  invalid_argument: 400,
  malformed: 400,
  deadline_exceeded: 408,
  not_found: 404,
  bad_route: 404,
  already_exists: 409,
  permission_denied: 403,
  unauthenticated: 401,
  resource_exhausted: 429,
  failed_precondition: 412,
  aborted: 409,
  out_of_range: 400,
  unimplemented: 501,
  internal: 500,
  unavailable: 503,
  dataloss: 500,
};

/** What one method call is answered with. */
export type TwirpReply =
  | { kind: 'ok'; body?: unknown }
  | { kind: 'error'; error: TwirpErrorBody; status?: number }
  | { kind: 'proxy' };

/**
 * How a method answers:
 * - `ok`: `{}`;
 * - `oss-not-implemented`: exactly what open-source livekit-server 1.13.5 answers to MoveParticipant
 *   (and ForwardParticipant) for a connected participant: HTTP 500, Twirp code `unknown`, message
 *   `twirp error unknown: not implemented` (checked against the real server in test/e2e/console.test.ts);
 * - `unimplemented`: the Twirp-spec way of saying it (code `unimplemented`, HTTP 501);
 * - `error`: Twirp `internal`, HTTP 500;
 * - `proxy`: to the upstream;
 * - a function of the request for anything else (it may delay, to test timeouts).
 */
export type Behaviour =
  | 'ok'
  | 'oss-not-implemented'
  | 'unimplemented'
  | 'error'
  | 'proxy'
  | ((req: RecordedRequest) => TwirpReply | Promise<TwirpReply>);

/** The reply of open-source livekit-server 1.13.5 to MoveParticipant (it wraps the error as `unknown`). */
export const OSS_NOT_IMPLEMENTED: TwirpReply = {
  kind: 'error',
  status: 500,
  error: { code: 'unknown', msg: 'twirp error unknown: not implemented' },
};

/**
 * SIP responses as livekit-server passes them on to a CreateSIPParticipant caller: the Twirp code
 * comes from the SIP code (livekit's SIP-to-gRPC table, the codes tests use; others by class), and
 * the metadata carries `sip_status_code` and `sip_status` (what the SDK's SipCallError reads).
 */
const SIP_TWIRP_CODE: Record<number, string> = {
  401: 'permission_denied',
  403: 'permission_denied',
  404: 'not_found',
  407: 'unauthenticated',
  408: 'deadline_exceeded',
  480: 'resource_exhausted',
  484: 'invalid_argument',
  486: 'resource_exhausted',
  487: 'aborted',
  503: 'failed_precondition',
  600: 'resource_exhausted',
  603: 'permission_denied',
  604: 'not_found',
};

/**
 * A dial that ended with a final SIP response, as livekit-server (and its cmd/test-server mock)
 * answers it: e.g. 486 gives `resource_exhausted` / HTTP 429, message
 * `twirp error unknown: sip status: 486: Busy Here`, meta `{sip_status_code: "486", sip_status: "Busy Here"}`.
 * (The server also adds `error_details`, a protobuf status the SDK ignores; left out here.)
 */
export function sipStatusReply(code: number, status: string): TwirpReply {
  const twirpCode = SIP_TWIRP_CODE[code] ?? (code >= 500 && code < 600 ? 'failed_precondition' : 'invalid_argument');
  return {
    kind: 'error',
    error: { code: twirpCode, msg: `twirp error unknown: sip status: ${code}: ${status}`, meta: { sip_status_code: String(code), sip_status: status } },
  };
}

/** The ring timeout ran out: livekit's SIP service cancels the INVITE and answers psrpc `canceled` (HTTP 408). */
export const SIP_RING_TIMEOUT_REPLY: TwirpReply = {
  kind: 'error',
  error: { code: 'canceled', msg: 'twirp error unknown: sip request timed out' },
};

/** A CreateSIPParticipant that was answered: the server's SIPParticipantInfo (ids are placeholders). */
export function sipParticipantReply(req: RecordedRequest): TwirpReply {
  const body = (req.body ?? {}) as { participantIdentity?: string; roomName?: string };
  return {
    kind: 'ok',
    body: { participantId: 'PA_recorded', participantIdentity: body.participantIdentity ?? '', roomName: body.roomName ?? '', sipCallId: 'SCL_recorded' },
  };
}

export interface JwtClaims {
  iss?: string;
  sub?: string;
  exp?: number;
  nbf?: number;
  /** The video grant: `roomAdmin`, `room`, `destinationRoom`, ... */
  video?: Record<string, unknown>;
  [claim: string]: unknown;
}

export interface RecordedAuth {
  token: string;
  header: Record<string, unknown>;
  claims: JwtClaims;
  /** Whether the HS256 signature checks out with `apiSecret` (undefined when no secret was given). */
  signatureValid?: boolean;
}

export interface RecordedRequest {
  /** e.g. `livekit.RoomService` */
  service: string;
  /** e.g. `MoveParticipant` */
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** Parsed JSON body; undefined when the body is not JSON (e.g. protobuf). */
  body: unknown;
  rawBody: Buffer;
  /** Decoded bearer token, when there is one. */
  auth?: RecordedAuth;
  at: number;
}

export interface RecordedResponse {
  status: number;
  /** Parsed JSON reply (a Twirp error body for errors). */
  body: unknown;
  /** True when the reply came from the upstream server. */
  proxied: boolean;
}

export interface RecordedExchange extends RecordedRequest {
  response: RecordedResponse;
}

export interface TwirpRecorderOptions {
  /** A real LiveKit server (http(s):// or ws(s)://) to proxy to. */
  upstream?: string;
  /** When given, token signatures are checked and the result recorded in `auth.signatureValid`. */
  apiSecret?: string;
}

export interface TwirpRecorder {
  /** http:// URL to give to `RoomServiceClient` (or the worker's LIVEKIT_API_URL-like setting). */
  url: string;
  /** Every completed exchange, in the order the replies were sent. */
  requests: Inbox<RecordedExchange>;
  /** Shorthand for `setBehaviour('MoveParticipant', b)`. MoveParticipant answers `ok` until told otherwise. */
  setMoveBehaviour(behaviour: Behaviour): void;
  /** How `method` answers from now on. */
  setBehaviour(method: string, behaviour: Behaviour): void;
  /** One-shot behaviours for the next MoveParticipant calls, used in order before the standing one. */
  queueMoveBehaviours(...behaviours: Behaviour[]): void;
  /** The first exchange (already recorded or still to come) matching `match`. */
  waitForRequest(match: (req: RecordedExchange) => boolean, timeoutMs: number, what?: string): Promise<RecordedExchange>;
  /** Recorded exchanges of one method. */
  calls(method: string): RecordedExchange[];
  close(): Promise<void>;
}

const TWIRP_PATH = /^\/twirp\/([\w.]+)\/(\w+)$/;

export async function startTwirpRecorder(opts: TwirpRecorderOptions = {}): Promise<TwirpRecorder> {
  const upstream = opts.upstream?.replace(/^ws(s?):\/\//, 'http$1://');
  const requests = new Inbox<RecordedExchange>();
  const behaviours = new Map<string, Behaviour>([['MoveParticipant', 'ok']]);
  const moveQueue: Behaviour[] = [];

  function behaviourFor(method: string): Behaviour {
    if (method === 'MoveParticipant' && moveQueue.length > 0) return moveQueue.shift()!;
    return behaviours.get(method) ?? 'proxy';
  }

  async function resolveReply(behaviour: Behaviour, req: RecordedRequest): Promise<TwirpReply> {
    switch (behaviour) {
      case 'ok':
        return { kind: 'ok' };
      case 'oss-not-implemented':
        return OSS_NOT_IMPLEMENTED;
      case 'unimplemented':
        return { kind: 'error', error: { code: 'unimplemented', msg: 'not implemented' } };
      case 'error':
        return { kind: 'error', error: { code: 'internal', msg: 'recorder: scripted internal error' } };
      case 'proxy':
        return { kind: 'proxy' };
      default:
        return behaviour(req);
    }
  }

  async function proxy(req: RecordedRequest, res: ServerResponse): Promise<RecordedResponse> {
    if (!upstream) {
      return sendJson(res, 501, { code: 'unimplemented', msg: `twirp recorder: no upstream to proxy ${req.method} to` });
    }
    const headers: Record<string, string> = {};
    for (const name of ['authorization', 'content-type', 'user-agent', 'x-livekit-request-id']) {
      const value = req.headers[name];
      if (typeof value === 'string') headers[name] = value;
    }
    let upstreamRes: Response;
    try {
      upstreamRes = await fetch(new URL(req.path, upstream), { method: 'POST', headers, body: req.rawBody });
    } catch (err) {
      return sendJson(res, 503, { code: 'unavailable', msg: `twirp recorder: upstream unreachable: ${String(err)}` });
    }
    const text = await upstreamRes.text();
    // Pass the reply through unchanged: the SDK reads Twirp errors only when the content type is
    // exactly `application/json`, so the header must survive the proxy.
    res.writeHead(upstreamRes.status, upstreamRes.statusText, {
      'content-type': upstreamRes.headers.get('content-type') ?? 'application/json',
    });
    res.end(text);
    return { status: upstreamRes.status, body: parseJson(text) ?? text, proxied: true };
  }

  async function handle(httpReq: IncomingMessage, res: ServerResponse): Promise<void> {
    const rawBody = await readBody(httpReq);
    const path = new URL(httpReq.url ?? '/', 'http://recorder').pathname;
    const route = TWIRP_PATH.exec(path);
    const req: RecordedRequest = {
      service: route?.[1] ?? '',
      method: route?.[2] ?? '',
      path,
      headers: httpReq.headers,
      body: parseJson(rawBody.toString('utf8')),
      rawBody,
      auth: decodeBearer(httpReq.headers.authorization, opts.apiSecret),
      at: Date.now(),
    };
    let response: RecordedResponse;
    if (httpReq.method !== 'POST' || !route) {
      response = sendJson(res, 404, { code: 'bad_route', msg: `no handler for ${httpReq.method} ${path}` });
    } else {
      let reply: TwirpReply;
      try {
        reply = await resolveReply(behaviourFor(req.method), req);
      } catch (err) {
        reply = { kind: 'error', error: { code: 'internal', msg: `recorder behaviour threw: ${String(err)}` } };
      }
      if (reply.kind === 'proxy') response = await proxy(req, res);
      else if (reply.kind === 'ok') response = sendJson(res, 200, reply.body ?? {});
      else response = sendJson(res, reply.status ?? TWIRP_HTTP_STATUS[reply.error.code] ?? 500, reply.error);
    }
    requests.push({ ...req, response });
  }

  const server: Server = createServer((httpReq, res) => {
    handle(httpReq, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { code: 'internal', msg: `twirp recorder failed: ${String(err)}` });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    setMoveBehaviour: (b) => behaviours.set('MoveParticipant', b),
    setBehaviour: (method, b) => behaviours.set(method, b),
    queueMoveBehaviours: (...b) => moveQueue.push(...b),
    waitForRequest: (match, timeoutMs, what = 'a matching twirp request') => requests.waitFor(match, timeoutMs, what),
    calls: (method) => requests.items.filter((r) => r.method === method),
    close: () =>
      new Promise<void>((resolve) => {
        // Keep-alive connections from fetch would hold close() open.
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown): RecordedResponse {
  // Exactly `application/json`: the SDK's toTwirpError parses the error body only for that value.
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
  return { status, body, proxied: false };
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** Decode (not trust) a bearer JWT; check its HS256 signature when the secret is known. */
export function decodeBearer(authorization: string | undefined, apiSecret?: string): RecordedAuth | undefined {
  const token = /^Bearer (.+)$/i.exec(authorization ?? '')?.[1];
  if (!token) return undefined;
  const [headerPart, payloadPart, signaturePart] = token.split('.');
  if (headerPart === undefined || payloadPart === undefined || signaturePart === undefined) return undefined;
  const decode = (part: string): Record<string, unknown> => {
    const parsed = parseJson(Buffer.from(part, 'base64url').toString('utf8'));
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : {};
  };
  const auth: RecordedAuth = { token, header: decode(headerPart), claims: decode(payloadPart) as JwtClaims };
  if (apiSecret !== undefined) {
    const expected = createHmac('sha256', apiSecret).update(`${headerPart}.${payloadPart}`).digest();
    const actual = Buffer.from(signaturePart, 'base64url');
    auth.signatureValid = auth.header.alg === 'HS256' && actual.length === expected.length && timingSafeEqual(actual, expected);
  }
  return auth;
}
