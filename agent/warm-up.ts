/**
 * First-use costs, paid in the prewarm instead of in the call.
 *
 * Profiles of a job process (V8's CPU profiler over a whole call) showed the longest stretches of
 * the call thread never going idle were work done once per process, the first time a call needed
 * it, while the caller was listening:
 *
 * - Node.js loads its HTTP client (undici) the first time `fetch` or `Headers` is touched (the
 *   first model request, the first server API call), and compiles undici's HTTP parser
 *   (WebAssembly) on its first connection: 80-90 ms at call start. The server SDK builds the
 *   protobuf decoding of each answer's type on first use: 20-50 ms for the consult room.
 * - Node's web streams build a "released" error the first time any reader or writer lets go of a
 *   stream (every text stream to a caller or console does), and read its stack, which with source
 *   maps on (tsx) parses the source maps of every file in it: 20-30 ms.
 * - The model clients (the OpenAI client has dozens of lazily compiled resource classes) are first
 *   built for the briefing session at transfer time, on hold: ~45 ms.
 * - @livekit/rtc-node talks to its native core in protobuf messages, and protobuf-es works out each
 *   message type's fields the first time one is sent or read: the FFI request, response and event
 *   trees took 10-15 ms of the call thread in the first moments of a call, and more types (hold
 *   music's track, text streams) at transfer time. Doing all 415 once takes about 20 ms.
 *
 * Each step here is local to the process: the HTTP round trip goes to a server on 127.0.0.1 that
 * lives for this call only.
 */
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { RoomServiceClient } from 'livekit-server-sdk';

/** Run every warm-up step; a step that fails is reported and skipped (the call pays for it instead). */
export async function warmUpProcess(steps: { buildModelClients?: () => unknown; onError?: (step: string, err: unknown) => void } = {}): Promise<void> {
  const run = async (name: string, step: () => unknown) => {
    try {
      await step();
    } catch (err) {
      steps.onError?.(name, err);
    }
  };
  await run('web streams', warmWebStreams);
  await run('FFI message types', warmFfiMessageTypes);
  await run('server API client', warmHttpClient);
  if (steps.buildModelClients) await run('model clients', steps.buildModelClients);
}

/** Make Node create (and cache) the errors it gives pending reads and writes of a released stream. */
export async function warmWebStreams(): Promise<void> {
  const writer = new WritableStream<string>().getWriter();
  writer.releaseLock();
  const reader = new ReadableStream<string>().getReader();
  reader.releaseLock();
}

/** The field list protobuf-es builds for a message type on its first use. */
interface LazyFieldList {
  list(): unknown[];
  byNumber(): unknown[];
  byMember(): unknown[];
  findJsonName(name: string): unknown;
}

/**
 * Work out the fields of every protobuf message type of @livekit/rtc-node's native interface, in
 * the copy of the bindings rtc-node itself loads. Returns how many types it warmed.
 */
export function warmFfiMessageTypes(): number {
  const fromRtcNode = createRequire(createRequire(import.meta.url).resolve('@livekit/rtc-node'));
  const bindings = fromRtcNode('@livekit/rtc-ffi-bindings') as Record<string, unknown>;
  let warmed = 0;
  for (const value of Object.values(bindings)) {
    const fields = (value as { fields?: Partial<LazyFieldList> } | undefined)?.fields;
    if (typeof value !== 'function' || typeof fields?.list !== 'function') continue;
    const list = fields as LazyFieldList;
    list.list();
    list.byNumber();
    list.byMember();
    list.findJsonName('');
    warmed++;
  }
  return warmed;
}

/** What the warm-up server answers for each server API method (Twirp over JSON, as livekit-server does). */
const WARM_UP_ANSWERS: Record<string, { status: number; body: unknown }> = {
  CreateRoom: { status: 200, body: { sid: 'RM_warmup', name: 'warm-up', emptyTimeout: 300, maxParticipants: 4, creationTime: '1', metadata: '' } },
  // What the open-source server says to a move: the join strategy falls back to rejoin on it.
  MoveParticipant: { status: 501, body: { code: 'unimplemented', msg: 'not implemented' } },
  RemoveParticipant: { status: 200, body: {} },
  DeleteRoom: { status: 200, body: {} },
};

/**
 * The server API calls a transfer makes (create the consult room, try a move, remove, delete),
 * made once against a throwaway server on loopback that answers as livekit-server does: loads
 * undici and compiles its parser, signs a token, and decodes each answer (the protobuf JSON
 * decoding of a message type is built on its first use: 20-50 ms for a Room).
 */
export async function warmHttpClient(): Promise<void> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const answer = WARM_UP_ANSWERS[req.url?.split('/').pop() ?? ''] ?? { status: 404, body: { code: 'bad_route', msg: 'no such method' } };
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  try {
    const api = new RoomServiceClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, 'warm-up', 'warm-up-secret-not-used-anywhere');
    await api.createRoom({ name: 'warm-up', emptyTimeout: 300 });
    await api.moveParticipant('warm-up', 'nobody', 'elsewhere').catch(() => undefined);
    await api.removeParticipant('warm-up', 'nobody');
    await api.deleteRoom('warm-up');
  } finally {
    // Keep-alive sockets would hold the server open: drop them with it.
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
