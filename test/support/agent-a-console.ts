/**
 * A human Agent A's console for assist-mode tests: a real participant in the caller room whose
 * token marks it as an agent. It starts transfers by RPC, follows their progress, goes to the
 * consult room with the pass it is sent, and leaves the caller room when the worker asks.
 */
import { type RemoteParticipant, Room, RoomEvent, type RpcInvocationData, type TextStreamReader } from '@livekit/rtc-node';
import {
  CONTRACT_VERSION,
  type LeaveRequest,
  RPC,
  type StatusMessage,
  StatusSchema,
  type SummaryMessage,
  SummaryMessageSchema,
  TOPIC,
} from '../../agent/contract.js';
import { type RpcOutcome, callRpc } from './console.js';
import { type ServerInfo, type TextMessage, mintToken } from './participants.js';
import { Inbox, nextEvent } from './wait.js';


export interface AgentAOptions {
  /** Go to the consult room when the worker sends a pass. Default true. */
  joinConsult?: boolean;
  /** Leave the caller room when asked. Default true; false plays a console that ignores the request. */
  leaveWhenAsked?: boolean;
}

export class AgentAConsole {
  readonly callerRoom = new Room();
  consultRoom: Room | undefined;
  readonly statuses = new Inbox<{ room: 'caller' | 'consult'; value: StatusMessage }>();
  readonly summaries = new Inbox<SummaryMessage>();
  readonly leaveRequests = new Inbox<LeaveRequest>();
  /** What the caller (and the specialist, and the briefing agent) said, on `lk.transcription`. */
  readonly transcriptions = new Inbox<TextMessage>();
  readonly consultJoined = new Inbox<string>();

  private constructor(
    readonly identity: string,
    private readonly server: ServerInfo,
    private readonly opts: AgentAOptions,
  ) {}

  static async join(server: ServerInfo, room: string, identity: string, opts: AgentAOptions = {}): Promise<AgentAConsole> {
    const c = new AgentAConsole(identity, server, opts);
    c.#listen(c.callerRoom, 'caller');
    const token = await mintToken(server, room, identity, { name: 'Alex (Agent A)', kind: 'agent' });
    await c.callerRoom.connect(server.url, token, { autoSubscribe: true, dynacast: false });
    c.callerRoom.localParticipant!.registerRpcMethod(RPC.leave, (data) => c.#onLeave(data));
    return c;
  }

  /** The worker's participant in the caller room (an agent whose identity starts with `agent-`). */
  workerIdentity(): string {
    const worker = [...this.callerRoom.remoteParticipants.values()].find((p: RemoteParticipant) => p.identity.startsWith('agent-'));
    if (!worker) throw new Error('no worker in the caller room');
    return worker.identity;
  }

  /** `warm-transfer.start`; a string payload is sent as is. Never throws for an RPC error. */
  async start(payload: object | string, destination = this.workerIdentity()): Promise<RpcOutcome> {
    return callRpc(this.callerRoom, destination, RPC.start, payload);
  }

  /** Ask the briefing agent to read the brief aloud (consult room). */
  async readBrief(transferId: string, worker: string): Promise<RpcOutcome> {
    if (!this.consultRoom) throw new Error('Agent A is not in a consult room');
    return callRpc(this.consultRoom, worker, RPC.readBrief, { v: CONTRACT_VERSION, transferId });
  }

  #listen(room: Room, role: 'caller' | 'consult'): void {
    room.registerTextStreamHandler(TOPIC.status, (reader: TextStreamReader) => {
      readText(reader, (text) => {
        const parsed = StatusSchema.safeParse(JSON.parse(text));
        if (!parsed.success) return;
        this.statuses.push({ room: role, value: parsed.data });
        if (role === 'caller' && parsed.data.event === 'offered' && parsed.data.consult && (this.opts.joinConsult ?? true)) {
          void this.#joinConsult(parsed.data.consult.url, parsed.data.consult.token, parsed.data.consult.room);
        }
      });
    });
    room.registerTextStreamHandler(TOPIC.summary, (reader: TextStreamReader) => {
      readText(reader, (text) => {
        const parsed = SummaryMessageSchema.safeParse(JSON.parse(text));
        if (parsed.success) this.summaries.push(parsed.data);
      });
    });
    room.registerTextStreamHandler('lk.transcription', (reader: TextStreamReader, info: { identity: string }) => {
      readText(reader, (text) => {
        this.transcriptions.push({ topic: 'lk.transcription', from: info.identity, text, attributes: reader.info.attributes ?? {}, at: Date.now() });
      });
    });
  }

  async #joinConsult(url: string, token: string, name: string): Promise<void> {
    const room = new Room();
    this.#listen(room, 'consult');
    this.consultRoom = room;
    // The worker's URL is for the server as consoles reach it; in tests that is the same server.
    await room.connect(url || this.server.url, token, { autoSubscribe: true, dynacast: false });
    this.consultJoined.push(name);
  }

  async #onLeave(data: RpcInvocationData): Promise<string> {
    const request = JSON.parse(data.payload) as LeaveRequest;
    this.leaveRequests.push(request);
    if (this.opts.leaveWhenAsked ?? true) {
      // Answer first, then go: the worker is waiting for both.
      setTimeout(() => void this.callerRoom.disconnect(), 50);
    }
    return JSON.stringify({ v: CONTRACT_VERSION, ok: true });
  }

  async leave(): Promise<void> {
    for (const room of [this.callerRoom, this.consultRoom]) {
      if (!room?.isConnected) continue;
      const gone = nextEvent(room, RoomEvent.Disconnected, { timeoutMs: 10_000, what: `${this.identity} to disconnect` }).catch(() => undefined);
      await room.disconnect();
      await gone;
    }
  }
}

/** Reads a whole text stream; one cut off by a disconnect (the test is leaving) is dropped, not an unhandled rejection. */
function readText(reader: TextStreamReader, onText: (text: string) => void): void {
  reader.readAll().then(onText, () => undefined);
}
