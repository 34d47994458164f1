/**
 * Real `@livekit/rtc-node` participants for end-to-end tests: a caller that types on `lk.chat` and
 * reads the agent's `lk.transcription`, and the server API (rooms, dispatches) around them.
 */
import { AgentSession as pb } from '@livekit/protocol';
import { type ByteStreamReader, type RemoteParticipant, Room, RoomEvent, type TextStreamReader } from '@livekit/rtc-node';
import { AccessToken, AgentDispatchClient, RoomServiceClient } from 'livekit-server-sdk';
import { Inbox, eventually, nextEvent } from './wait.js';

export interface ServerInfo {
  url: string;
  httpUrl: string;
  apiKey: string;
  apiSecret: string;
}

export interface TextMessage {
  topic: string;
  from: string;
  text: string;
  attributes: Record<string, string>;
  at: number;
}

export interface JoinOptions {
  name?: string;
  kind?: 'standard' | 'sip' | 'agent';
  attributes?: Record<string, string>;
  metadata?: string;
  /** Topics whose text streams are collected into `texts`. */
  topics?: string[];
}

export async function mintToken(
  server: ServerInfo,
  room: string,
  identity: string,
  opts: Pick<JoinOptions, 'name' | 'kind' | 'attributes' | 'metadata'> = {},
): Promise<string> {
  const token = new AccessToken(server.apiKey, server.apiSecret, {
    identity,
    name: opts.name,
    metadata: opts.metadata,
    attributes: opts.attributes,
    ttl: '10m',
  });
  token.addGrant({ room, roomJoin: true, canPublish: true, canSubscribe: true, canPublishData: true });
  if (opts.kind) token.kind = opts.kind;
  return token.toJwt();
}

export class TestParticipant {
  readonly room = new Room();
  readonly texts = new Inbox<TextMessage>();
  readonly joined = new Inbox<string>();
  readonly left = new Inbox<string>();
  /** What reached this participant on the agents framework's `lk.agent.session` channel (`agentSessionMessageKind`). */
  readonly agentSessionStreams = new Inbox<{ from: string; kind: string }>();

  constructor(readonly identity: string) {
    this.room.on(RoomEvent.ParticipantConnected, (p: RemoteParticipant) => this.joined.push(p.identity));
    this.room.on(RoomEvent.ParticipantDisconnected, (p: RemoteParticipant) => this.left.push(p.identity));
  }

  static async join(server: ServerInfo, roomName: string, identity: string, opts: JoinOptions = {}): Promise<TestParticipant> {
    const p = new TestParticipant(identity);
    for (const topic of opts.topics ?? ['lk.transcription', 'lk.chat']) {
      p.room.registerTextStreamHandler(topic, (reader: TextStreamReader, info: { identity: string }) => {
        // A stream cut off by a disconnect (the test is leaving) is not a failure of the test.
        reader.readAll().then(
          (text) => p.texts.push({ topic, from: info.identity, text, attributes: reader.info.attributes ?? {}, at: Date.now() }),
          () => undefined,
        );
      });
    }
    onAgentSessionStreams(p.room, (from, kind) => p.agentSessionStreams.push({ from, kind }));
    const token = await mintToken(server, roomName, identity, opts);
    await p.room.connect(server.url, token, { autoSubscribe: true, dynacast: false });
    for (const remote of p.room.remoteParticipants.keys()) p.joined.push(remote);
    return p;
  }

  /** Type a message to the agent, the way a chat UI does. */
  async say(text: string): Promise<void> {
    await this.room.localParticipant!.sendText(text, { topic: 'lk.chat' });
  }

  /** Where the text received so far ends: `waitForAgentText(..., since)` looks only past it. */
  mark(): number {
    return this.texts.items.length;
  }

  /**
   * An agent transcription segment (text mode: the whole reply) matching `match`, already received
   * or yet to come; with `since` (a `mark()`), only one received after that mark, so that a reply
   * is not mistaken for an earlier one that says the same.
   */
  waitForAgentText(match: (text: string) => boolean, timeoutMs = 20_000, what = 'agent transcription', since = 0): Promise<TextMessage> {
    return this.texts.waitFor((m) => m.topic === 'lk.transcription' && m.from !== this.identity && match(m.text), timeoutMs, what, since);
  }

  remoteIdentities(): string[] {
    return [...this.room.remoteParticipants.keys()];
  }

  async waitForParticipant(match: (identity: string) => boolean, timeoutMs: number, what: string): Promise<string> {
    return this.joined.waitFor((id) => match(id) && this.room.remoteParticipants.has(id), timeoutMs, what);
  }

  async leave(): Promise<void> {
    if (this.room.isConnected) {
      const gone = nextEvent(this.room, RoomEvent.Disconnected, { timeoutMs: 10_000, what: `${this.identity} to disconnect` }).catch(() => undefined);
      await this.room.disconnect();
      await gone;
    }
  }
}

export function serverApi(server: ServerInfo) {
  return {
    rooms: new RoomServiceClient(server.httpUrl, server.apiKey, server.apiSecret),
    dispatch: new AgentDispatchClient(server.httpUrl, server.apiKey, server.apiSecret),
  };
}

/** Identities of the agent participants (kind AGENT) in a room, as the server sees them. */
export async function agentParticipants(server: ServerInfo, room: string): Promise<string[]> {
  const { rooms } = serverApi(server);
  const list = await rooms.listParticipants(room);
  // ParticipantInfo_Kind.AGENT = 4
  return list.filter((p) => Number(p.kind) === 4).map((p) => p.identity);
}

export async function waitForAgentIn(server: ServerInfo, room: string, timeoutMs: number): Promise<string> {
  return eventually(async () => (await agentParticipants(server, room))[0], { timeoutMs, what: `an agent to join room ${room}` });
}

let counter = 0;
/** A room name unique to this test run. */
export function uniqueRoom(prefix: string): string {
  counter += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}

/** The agents framework's remote-session channel, which the worker closes (agent/session-channel.ts). */
export const AGENT_SESSION_TOPIC = 'lk.agent.session';

/**
 * The only messages a session sends there before the worker closes the channel: its own start (the
 * agent taking over, its state). Anything else (conversation, tool calls, answers) is a leak.
 */
export const SESSION_START_KINDS = ['event:conversationItemAdded:agentHandoff', 'event:agentStateChanged'];

/**
 * Collect what arrives on `room`'s `lk.agent.session` channel: each message's sender and kind.
 * A stream that cannot be read (cut off by a disconnect) goes to `onError`, or is dropped.
 */
export function onAgentSessionStreams(room: Room, onMessage: (from: string, kind: string) => void, onError?: (from: string, err: unknown) => void): void {
  room.registerByteStreamHandler(AGENT_SESSION_TOPIC, (reader: ByteStreamReader, info: { identity: string }) => {
    reader.readAll().then(
      (chunks) => onMessage(info.identity, agentSessionMessageKind(Buffer.concat(chunks))),
      (err: unknown) => onError?.(info.identity, err),
    );
  });
}

/** What an `lk.agent.session` message carries: `event:<kind>[:<item kind>]`, or the message's own case. */
export function agentSessionMessageKind(bytes: Uint8Array): string {
  try {
    const msg = pb.AgentSessionMessage.fromBinary(bytes).message;
    if (msg.case !== 'event') return msg.case ?? '?';
    const ev = msg.value.event;
    return ev.case === 'conversationItemAdded' ? `event:conversationItemAdded:${ev.value.item?.item.case ?? '?'}` : `event:${ev.case ?? '?'}`;
  } catch {
    return 'undecodable';
  }
}
