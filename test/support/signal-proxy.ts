/**
 * A LiveKit signalling proxy that can make one connection deaf to one participant's arrival.
 *
 * The worker is pointed at this proxy (LIVEKIT_URL) while consoles use the real server. HTTP (the
 * server API) and every WebSocket (the worker's registration, each room's signalling) pass through
 * unchanged, except on connections a rule picks: there, the server's news of the muted participant
 * (their entry in the join response and in participant updates) is taken out before it reaches
 * the client. That is what a connection that "missed" someone sees (agent/presence.ts): the server
 * has them in the room, the connection never hears of them. Media and data go directly between the
 * client and the server's RTC ports, not through here, so they are untouched.
 */
import { SignalResponse } from '@livekit/protocol';
import { type IncomingMessage, type Server, createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { decodeBearer } from './twirp-recorder.js';
import { Inbox } from './wait.js';

/** Who a signalling connection is, from its access token. */
export interface ConnectionInfo {
  room: string;
  identity: string;
}

/** Picks the connections to make deaf, and whose arrival they must not hear of. */
export type MuteRule = (conn: ConnectionInfo) => string | undefined;

export interface MutedNews {
  /** The deaf connection. */
  conn: ConnectionInfo;
  /** The participant whose news was taken out. */
  muted: string;
  /** Which server message it was taken out of. */
  message: 'join' | 'update';
}

export interface SignalProxy {
  /** ws:// URL to give the worker. */
  url: string;
  /** Every piece of news the proxy took out. */
  muted: Inbox<MutedNews>;
  /** Signalling connections seen, in order. */
  connections: ConnectionInfo[];
  close(): Promise<void>;
}

/** Who a connection is, from its token (the query's access_token, or a bearer header). */
function connectionOf(token: string | null | undefined): ConnectionInfo | undefined {
  const claims = decodeBearer(token ? `Bearer ${token}` : undefined)?.claims;
  const room = claims?.video?.room;
  return claims?.sub && typeof room === 'string' ? { identity: claims.sub, room } : undefined;
}

/** The server's message with `muted` taken out, or undefined to drop it whole; the same bytes when untouched. */
function filterServerMessage(data: Buffer, muted: string, onMuted: (message: MutedNews['message']) => void): Buffer | undefined {
  let msg: SignalResponse;
  try {
    msg = SignalResponse.fromBinary(data);
  } catch {
    return data; // not protobuf (or not ours to judge): pass it on
  }
  if (msg.message.case === 'join') {
    const others = msg.message.value.otherParticipants;
    const kept = others.filter((p) => p.identity !== muted);
    if (kept.length === others.length) return data;
    msg.message.value.otherParticipants = kept;
    onMuted('join');
    return Buffer.from(msg.toBinary());
  }
  if (msg.message.case === 'update') {
    const all = msg.message.value.participants;
    const kept = all.filter((p) => p.identity !== muted);
    if (kept.length === all.length) return data;
    onMuted('update');
    if (kept.length === 0) return undefined;
    msg.message.value.participants = kept;
    return Buffer.from(msg.toBinary());
  }
  return data;
}

export async function startSignalProxy(upstream: { url: string; httpUrl: string }, rule: MuteRule): Promise<SignalProxy> {
  const up = new URL(upstream.httpUrl);
  const muted = new Inbox<MutedNews>();
  const connections: ConnectionInfo[] = [];
  const sockets = new Set<WebSocket>();
  const wss = new WebSocketServer({ noServer: true });

  const server: Server = createServer((req, res) => {
    // The server API and anything else over plain HTTP: passed on as it is.
    const fwd = httpRequest(
      { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: { ...req.headers, host: up.host } },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    fwd.on('error', (err) => {
      res.writeHead(502);
      res.end(String(err));
    });
    req.pipe(fwd);
  });

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = req.url ?? '/';
    const conn = connectionOf(new URL(path, 'http://proxy').searchParams.get('access_token') ?? req.headers.authorization?.replace(/^Bearer /i, ''));
    if (conn) connections.push(conn);
    const mute = conn ? rule(conn) : undefined;
    const target = new WebSocket(`${upstream.url.replace(/\/$/, '')}${path}`, { headers: req.headers.authorization ? { authorization: req.headers.authorization } : {} });
    sockets.add(target);
    // What the server says before the client side is upgraded is held, in order.
    const pending: Array<{ data: Buffer; binary: boolean }> = [];
    let client: WebSocket | undefined;
    target.on('message', (data: Buffer, binary) => {
      const out = mute && binary ? filterServerMessage(data, mute, (message) => muted.push({ conn: conn!, muted: mute, message })) : data;
      if (!out) return;
      if (client) client.send(out, { binary });
      else pending.push({ data: out, binary });
    });
    target.on('error', () => socket.destroy());
    target.on('unexpected-response', (_r, res) => {
      // Refused upstream (a bad token, say): the client gets the same status.
      socket.end(`HTTP/1.1 ${res.statusCode ?? 502} ${res.statusMessage ?? ''}\r\n\r\n`);
    });
    target.on('open', () => {
      wss.handleUpgrade(req, socket, head, (ws) => {
        sockets.add(ws);
        ws.on('message', (data: Buffer, binary) => target.send(data, { binary }));
        ws.on('close', () => target.close());
        ws.on('error', () => target.terminate());
        target.on('close', () => ws.close());
        for (const m of pending.splice(0)) ws.send(m.data, { binary: m.binary });
        client = ws;
      });
    });
  });

  await new Promise<void>((resolve) => server.listen(0, up.hostname, resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `ws://${up.hostname}:${port}`,
    muted,
    connections,
    async close() {
      for (const s of sockets) s.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
