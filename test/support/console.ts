/**
 * The reference Agent B console: a real `@livekit/rtc-node` participant that does what a human's
 * WebRTC console does under the console contract v1 (agent/contract.ts), scripted for tests and
 * the demo.
 *
 * - Presence: it waits in the desk room with the `ATTR.*` attributes (role, availability, skills,
 *   idle-since) and can change its availability.
 * - Offers: it answers `RPC.offer` at once with `ringing` (or `busy`), then, per its policy, calls
 *   `RPC.answer` on the worker that made the offer. On accept it goes unavailable and joins the
 *   consult room with the offer's token.
 * - Briefing: in the consult room it collects the summary, status messages and what the briefing
 *   agent says (`lk.transcription`); it can ask (`lk.chat`), connect (`RPC.connect`) or decline.
 * - Handover: either the worker asks it to join the caller room (`RPC.join`, rejoin strategy), or
 *   the server moves its consult connection there (`RoomEvent.Moved`, move strategy).
 *
 * Everything it sees is in `Inbox`es so tests can wait on it with deadlines; `callWorker` sends
 * raw RPCs so tests can also break the contract on purpose.
 */
import {
  type Participant,
  ParticipantKind,
  Room,
  RoomEvent,
  RpcError,
  type RpcInvocationData,
  type TextStreamReader,
} from '@livekit/rtc-node';
import { AccessToken } from 'livekit-server-sdk';
import type { ZodType } from 'zod';
import {
  ATTR,
  type Answer,
  CONSOLE_ROLE,
  CONTRACT_VERSION,
  type ConnectRequest,
  type DeclineRequest,
  type JoinReply,
  type JoinRequest,
  JoinSchema,
  type Offer,
  type OfferReply,
  OfferSchema,
  RPC,
  RPC_ERROR,
  type StatusMessage,
  StatusSchema,
  type SummaryMessage,
  SummaryMessageSchema,
  TOPIC,
  parsePayload,
} from '../../agent/contract.js';
import { type ServerInfo, type TextMessage, onAgentSessionStreams } from './participants.js';
import { Inbox, nextEvent, withDeadline } from './wait.js';

/** Which of its rooms a console connection is in. A moved consult connection becomes `caller`. */
export type RoomRole = 'desk' | 'consult' | 'caller';

export type OfferDecision = 'accept' | 'decline' | 'ignore';
/** What the person at the console does with an offer: always the same, or decided per offer. */
export type OfferPolicy = OfferDecision | ((offer: Offer) => OfferDecision | Promise<OfferDecision>);

export interface ConsoleOptions {
  deskRoom: string;
  identity: string;
  name?: string;
  skills?: string[];
  /** Default true. */
  available?: boolean;
  /** Default `accept`. `ignore` never answers (the offer rings until it expires or is cancelled). */
  policy?: OfferPolicy;
  /** How long the person takes to answer after the offer starts ringing. Default 0. */
  answerDelayMs?: number;
  /** The reason sent with a `decline` answer. */
  declineReason?: string;
}

export interface ReceivedOffer {
  offer: Offer;
  /** The worker participant that made the offer, in the desk room. */
  from: string;
  reply: OfferReply['status'];
  at: number;
}

/** A contract message the console received, with where and from whom. */
export interface Received<T> {
  room: RoomRole;
  from: string;
  value: T;
  at: number;
}

export type RpcOutcome = { ok: true; payload: string; json: unknown } | { ok: false; error: RpcError };

/** An RPC from `room`; `payload` is sent as is when a string, else as JSON. Never throws for an RPC error: returns it. */
export async function callRpc(room: Room, destination: string, method: string, payload: object | string, responseTimeoutMs?: number): Promise<RpcOutcome> {
  try {
    const response = await room.localParticipant!.performRpc({
      destinationIdentity: destination,
      method,
      payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
      responseTimeout: responseTimeoutMs,
    });
    return { ok: true, payload: response, json: parseJson(response) };
  } catch (err) {
    if (err instanceof RpcError) return { ok: false, error: err };
    throw err;
  }
}

export interface SentAnswer {
  answer: Answer;
  to: string;
  outcome: RpcOutcome;
  at: number;
}

export interface JoinHandled extends Received<JoinRequest> {
  reply: JoinReply;
}

export interface ConsoleEvent {
  kind: 'consult-joined' | 'consult-left' | 'caller-joined' | 'caller-left' | 'moved';
  /** The room's name when it happened. */
  room: string;
  transferId?: string;
  /** For `caller-joined`: which join strategy brought the console in. */
  via?: 'rejoin' | 'move';
  at: number;
}

/** What the console knows about the offer it is ringing for, or has accepted. */
interface OfferInHand {
  offer: Offer;
  from: string;
}

const ROOM_OPTIONS = { autoSubscribe: true, dynacast: false };
const LEAVE_TIMEOUT_MS = 10_000;

/** Desk-room token. Unlike `mintToken`, it may update its own attributes (availability changes). */
async function mintDeskToken(server: ServerInfo, opts: ConsoleOptions, attributes: Record<string, string>): Promise<string> {
  const token = new AccessToken(server.apiKey, server.apiSecret, { identity: opts.identity, name: opts.name, attributes, ttl: '30m' });
  token.addGrant({
    room: opts.deskRoom,
    roomJoin: true,
    canPublish: true,
    canSubscribe: true,
    canPublishData: true,
    canUpdateOwnMetadata: true,
  });
  token.kind = 'standard';
  return token.toJwt();
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class ReferenceConsole {
  /** Every well-formed offer, with the reply the console gave. */
  readonly offers = new Inbox<ReceivedOffer>();
  /** Every `answer` the console sent, with the worker's reply. */
  readonly answers = new Inbox<SentAnswer>();
  /** `TOPIC.status` messages from any of its rooms. */
  readonly statuses = new Inbox<Received<StatusMessage>>();
  readonly summaries = new Inbox<Received<SummaryMessage>>();
  /** What the briefing agent said in the consult room (`lk.transcription`). */
  readonly briefingTexts = new Inbox<TextMessage>();
  /** `lk.transcription` in the caller room, once the console is there. */
  readonly callerRoomTexts = new Inbox<TextMessage>();
  /** `RPC.join` requests the console handled, with its reply. */
  readonly joinRequests = new Inbox<JoinHandled>();
  /** Room comings and goings. */
  readonly events = new Inbox<ConsoleEvent>();
  /**
   * Byte streams on the agents framework's `lk.agent.session` channel, by sender: the worker
   * closes that channel (agent/session-channel.ts), so a console should never get one.
   */
  readonly agentSessionStreams = new Inbox<{ room: RoomRole; from: string; kind: string }>();
  /** Contract breaches by the other side, and failures of the console's own steps. */
  readonly errors = new Inbox<string>();
  /** The console's own steps with their times, for the report of a failed test. */
  readonly trace: string[] = [];

  readonly desk = new Room();
  #consult?: Room;
  #caller?: Room;
  /** The role of each Room this console made; a moved consult Room changes role. */
  readonly #roles = new Map<Room, RoomRole>();
  #available: boolean;
  #idleSince = Date.now();
  #ringing?: OfferInHand & { expiry: NodeJS.Timeout };
  #accepted?: OfferInHand;
  #closed = false;
  readonly #timers = new Set<NodeJS.Timeout>();

  private constructor(
    readonly identity: string,
    private readonly opts: ConsoleOptions,
  ) {
    this.#available = opts.available ?? true;
    this.#listen(this.desk, 'desk');
  }

  static async join(server: ServerInfo, opts: ConsoleOptions): Promise<ReferenceConsole> {
    const c = new ReferenceConsole(opts.identity, opts);
    const token = await mintDeskToken(server, opts, c.#attributes());
    await c.desk.connect(server.url, token, ROOM_OPTIONS);
    c.desk.localParticipant!.registerRpcMethod(RPC.offer, (data) => c.#onOffer(data));
    return c;
  }

  get available(): boolean {
    return this.#available;
  }

  /** The consult room connection, while it is one (a moved connection is the caller room). */
  get consultRoom(): Room | undefined {
    return this.#consult;
  }

  get callerRoom(): Room | undefined {
    return this.#caller;
  }

  /** The offer the console accepted last. */
  get acceptedOffer(): Offer | undefined {
    return this.#accepted?.offer;
  }

  /** Change availability (participant attributes); becoming available resets idle-since to now. */
  async setAvailable(available: boolean): Promise<void> {
    this.#available = available;
    if (available) this.#idleSince = Date.now();
    await this.desk.localParticipant!.setAttributes(this.#attributes());
  }

  /** Resolves once the console is in the consult room of `transferId` (default: the accepted offer). */
  async inConsultRoom(timeoutMs: number, transferId?: string): Promise<Room> {
    await this.events.waitFor(
      (e) => e.kind === 'consult-joined' && (transferId === undefined || e.transferId === transferId),
      timeoutMs,
      `${this.identity} to join the consult room`,
    );
    const room = this.#consult ?? this.#caller;
    if (!room) throw new Error(`${this.identity} joined the consult room but is no longer connected to it`);
    return room;
  }

  /** Resolves once the console is in the caller room, whichever join strategy brought it there. */
  async inCallerRoom(timeoutMs: number, transferId?: string): Promise<Room> {
    await this.events.waitFor(
      (e) => e.kind === 'caller-joined' && (transferId === undefined || e.transferId === transferId),
      timeoutMs,
      `${this.identity} to be in the caller room`,
    );
    if (!this.#caller) throw new Error(`${this.identity} reached the caller room but is no longer connected to it`);
    return this.#caller;
  }

  /** `RPC.connect` for the accepted transfer: put me through to the caller. Throws the RpcError. */
  async connect(): Promise<unknown> {
    const request: ConnectRequest = { v: CONTRACT_VERSION, transferId: this.#requireAccepted().offer.transferId };
    return ReferenceConsole.#expectOk(await this.callWorker(RPC.connect, request, { room: 'consult' }));
  }

  /** `RPC.decline` for the accepted transfer, during the briefing. Throws the RpcError. */
  async decline(reason?: string): Promise<unknown> {
    const request: DeclineRequest = { v: CONTRACT_VERSION, transferId: this.#requireAccepted().offer.transferId, reason };
    return ReferenceConsole.#expectOk(await this.callWorker(RPC.decline, request, { room: 'consult' }));
  }

  /** Ask the briefing agent a question about the call, as a chat UI does. */
  async ask(text: string): Promise<void> {
    const room = this.#consult;
    if (!room?.localParticipant) throw new Error(`${this.identity} is not in a consult room`);
    await room.localParticipant.sendText(text, { topic: 'lk.chat' });
  }

  /**
   * A raw RPC to the worker. `payload` is sent as is when a string (so tests can send anything),
   * else as JSON. The destination defaults to the worker that made the last offer (desk room) or
   * the worker's participant in the consult room. Never throws for an RPC error: returns it.
   */
  async callWorker(
    method: string,
    payload: string | object,
    opts: { room: RoomRole; destination?: string; responseTimeoutMs?: number },
  ): Promise<RpcOutcome> {
    const room = this.#roomFor(opts.room);
    return callRpc(room, opts.destination ?? this.#defaultDestination(opts.room, room), method, payload, opts.responseTimeoutMs);
  }

  /** Disconnect from every room. Safe to call more than once. */
  async leave(): Promise<void> {
    this.#closed = true;
    this.#stopRinging();
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await Promise.all([this.desk, this.#consult, this.#caller].map((room) => (room ? disconnect(room) : undefined)));
  }

  // --- offers -------------------------------------------------------------------------------

  async #onOffer(data: RpcInvocationData): Promise<string> {
    const parsed = parsePayload(OfferSchema, data.payload);
    if (!parsed.ok) {
      this.errors.push(`offer from ${data.callerIdentity} refused (${parsed.code}): ${parsed.message}`);
      throw new RpcError(parsed.code, parsed.message);
    }
    const offer = parsed.value;
    const busy = this.#closed || !this.#available || this.#ringing !== undefined;
    const status: OfferReply['status'] = busy ? 'busy' : 'ringing';
    this.offers.push({ offer, from: data.callerIdentity, reply: status, at: Date.now() });
    this.#step(`offer ${offer.attemptId} from ${data.callerIdentity}: ${status}`);
    if (!busy) this.#ring({ offer, from: data.callerIdentity });
    const reply: OfferReply = { v: CONTRACT_VERSION, status };
    return JSON.stringify(reply);
  }

  #ring(inHand: OfferInHand): void {
    // A real console stops ringing when the offer expires; so the console is free again after `ignore`.
    const expiry = setTimeout(() => this.#stopRinging(inHand.offer.attemptId), Math.max(0, inHand.offer.expiresAt - Date.now()));
    this.#ringing = { ...inHand, expiry };
    // Decide on the next turn of the event loop, after the `ringing` reply has been sent: the worker
    // hears "ringing" before it hears the answer.
    this.#later(0, () => {
      this.#decide(inHand).catch((err: unknown) => this.errors.push(`answering offer ${inHand.offer.attemptId} failed: ${errorMessage(err)}`));
    });
  }

  /** Stop ringing (for one attempt, or whatever rings). */
  #stopRinging(attemptId?: string): void {
    if (!this.#ringing || (attemptId !== undefined && this.#ringing.offer.attemptId !== attemptId)) return;
    clearTimeout(this.#ringing.expiry);
    this.#ringing = undefined;
  }

  #isRinging(attemptId: string): boolean {
    return !this.#closed && this.#ringing?.offer.attemptId === attemptId;
  }

  async #decide(inHand: OfferInHand): Promise<void> {
    const { policy = 'accept', answerDelayMs = 0 } = this.opts;
    const decision = typeof policy === 'function' ? await policy(inHand.offer) : policy;
    if (decision === 'ignore') return;
    if (answerDelayMs > 0) await new Promise<void>((resolve) => this.#later(answerDelayMs, resolve));
    // The offer may have expired, been cancelled by the worker, or the console may have left.
    if (!this.#isRinging(inHand.offer.attemptId)) return;
    this.#stopRinging();

    if (decision === 'decline') {
      await this.#answer(inHand, 'decline', this.opts.declineReason ?? 'declined by the reference console');
      return;
    }
    // The person clicked accept: the console is busy from now on, unless the worker refuses.
    // Marking itself unavailable does not hold up the answer: the SDK's setAttributes waits for the
    // server's acknowledgement, which now and then never comes (it gives up after 5 s; the change
    // itself is applied), and the offer would expire meanwhile.
    this.#step(`accepting ${inHand.offer.attemptId}`);
    const marked = this.setAvailable(false).then(
      () => this.#step('marked itself unavailable'),
      (err: unknown) => this.#step(`marking itself unavailable failed: ${errorMessage(err)}`),
    );
    const outcome = await this.#answer(inHand, 'accept');
    this.#step(`answer sent: ${outcome.ok ? 'ok' : outcome.error.message}`);
    if (!outcome.ok) {
      await marked;
      if (!this.#closed) await this.setAvailable(true);
      return;
    }
    this.#accepted = inHand;
    await this.#joinConsult(inHand.offer);
  }

  async #answer(inHand: OfferInHand, decision: Answer['decision'], reason?: string): Promise<RpcOutcome> {
    const answer: Answer = { v: CONTRACT_VERSION, transferId: inHand.offer.transferId, attemptId: inHand.offer.attemptId, decision };
    if (reason !== undefined) answer.reason = reason;
    const outcome = await this.callWorker(RPC.answer, answer, { room: 'desk', destination: inHand.from });
    this.answers.push({ answer, to: inHand.from, outcome, at: Date.now() });
    if (!outcome.ok) {
      this.errors.push(`worker refused answer ${decision} for ${answer.attemptId}: ${outcome.error.code} ${outcome.error.message}`);
    }
    return outcome;
  }

  // --- consult and caller rooms -------------------------------------------------------------

  async #joinConsult(offer: Offer): Promise<void> {
    const room = new Room();
    this.#listen(room, 'consult');
    room.on(RoomEvent.Moved, () => this.#onMoved(room, offer.transferId));
    room.on(RoomEvent.Disconnected, () => {
      const role = this.#roles.get(room);
      if (this.#consult === room) this.#consult = undefined;
      if (this.#caller === room) this.#caller = undefined;
      this.#event(role === 'caller' ? 'caller-left' : 'consult-left', room, offer.transferId);
    });
    try {
      this.#step(`connecting to consult room ${offer.consult.room}`);
      await room.connect(offer.consult.url, offer.consult.token, ROOM_OPTIONS);
      this.#step('connected to the consult room');
    } catch (err) {
      this.errors.push(`could not join consult room ${offer.consult.room}: ${errorMessage(err)}`);
      return;
    }
    if (this.#closed) {
      await disconnect(room);
      return;
    }
    room.localParticipant!.registerRpcMethod(RPC.join, (data) => this.#onJoin(data));
    this.#consult = room;
    this.#event('consult-joined', room, offer.transferId);
    // Announce ourselves: an attribute change reaches the worker at once, a bare join only on the
    // server's next 3 s tick (this console publishes no track).
    room.localParticipant!.setAttributes({ [ATTR.role]: CONSOLE_ROLE }).catch((err: unknown) => {
      this.errors.push(`could not announce itself in the consult room: ${errorMessage(err)}`);
    });
  }

  /** Move strategy: the server moved the consult connection into the caller room. */
  #onMoved(room: Room, transferId: string): void {
    this.#roles.set(room, 'caller');
    if (this.#consult === room) this.#consult = undefined;
    this.#caller = room;
    this.#event('moved', room, transferId);
    this.#event('caller-joined', room, transferId, 'move');
  }

  /** Rejoin strategy: connect a fresh Room to the caller room with the worker's token, then reply. */
  async #onJoin(data: RpcInvocationData): Promise<string> {
    const parsed = parsePayload(JoinSchema, data.payload);
    if (!parsed.ok) {
      this.errors.push(`join from ${data.callerIdentity} refused (${parsed.code}): ${parsed.message}`);
      throw new RpcError(parsed.code, parsed.message);
    }
    const request = parsed.value;
    if (request.transferId !== this.#accepted?.offer.transferId) {
      this.errors.push(`join for unknown transfer ${request.transferId} from ${data.callerIdentity}`);
      throw new RpcError(RPC_ERROR.unknownTransfer, `this console has not accepted transfer ${request.transferId}`);
    }
    let reply: JoinReply;
    if (this.#caller?.isConnected) {
      reply = { v: CONTRACT_VERSION, joined: true }; // a retried join: already there
    } else {
      try {
        await this.#joinCaller(request);
        reply = { v: CONTRACT_VERSION, joined: true };
      } catch (err) {
        reply = { v: CONTRACT_VERSION, joined: false, error: errorMessage(err) };
        this.errors.push(`could not join caller room ${request.callerRoom}: ${errorMessage(err)}`);
      }
    }
    this.joinRequests.push({ room: 'consult', from: data.callerIdentity, value: request, reply, at: Date.now() });
    return JSON.stringify(reply);
  }

  async #joinCaller(request: JoinRequest): Promise<void> {
    const room = new Room();
    this.#listen(room, 'caller');
    room.on(RoomEvent.Disconnected, () => {
      if (this.#caller === room) this.#caller = undefined;
      this.#event('caller-left', room, request.transferId);
    });
    await room.connect(request.url, request.token, ROOM_OPTIONS);
    if (room.name !== request.callerRoom) {
      this.errors.push(`join token was for room ${room.name ?? '?'}, the request said ${request.callerRoom}`);
    }
    this.#caller = room;
    this.#event('caller-joined', room, request.transferId, 'rejoin');
  }

  // --- text streams -------------------------------------------------------------------------

  /** Collect the worker's text streams on `room`, routed by the room's role when they arrive. */
  #listen(room: Room, role: RoomRole): void {
    this.#roles.set(room, role);
    onAgentSessionStreams(
      room,
      (from, kind) => this.agentSessionStreams.push({ room: this.#roleOf(room), from, kind }),
      (from, err) => this.errors.push(`reading lk.agent.session from ${from} failed: ${errorMessage(err)}`),
    );
    const read = (topic: string, onText: (text: string, from: string, reader: TextStreamReader) => void) => {
      room.registerTextStreamHandler(topic, (reader: TextStreamReader, info: { identity: string }) => {
        // In the trace a failure report prints: what reached this console, and where.
        if (topic !== 'lk.transcription') this.#step(`${this.#roleOf(room)} room: ${topic} stream from ${info.identity}`);
        reader.readAll().then(
          (text) => onText(text, info.identity, reader),
          (err: unknown) => this.errors.push(`reading ${topic} from ${info.identity} failed: ${errorMessage(err)}`),
        );
      });
    };
    read(TOPIC.status, (text, from) => {
      const status = this.#parseMessage(StatusSchema, text, TOPIC.status, from);
      if (!status) return;
      this.statuses.push({ room: this.#roleOf(room), from, value: status, at: Date.now() });
      // A withdrawn offer stops ringing, as it would on a real console.
      if (status.event === 'cancelled' && this.#ringing?.offer.transferId === status.transferId) this.#stopRinging();
    });
    read(TOPIC.summary, (text, from) => {
      const summary = this.#parseMessage(SummaryMessageSchema, text, TOPIC.summary, from);
      if (summary) this.summaries.push({ room: this.#roleOf(room), from, value: summary, at: Date.now() });
    });
    read('lk.transcription', (text, from, reader) => {
      const message: TextMessage = { topic: 'lk.transcription', from, text, attributes: reader.info.attributes ?? {}, at: Date.now() };
      const current = this.#roleOf(room);
      if (current === 'consult') this.briefingTexts.push(message);
      else if (current === 'caller') this.callerRoomTexts.push(message);
    });
  }

  #parseMessage<T>(schema: ZodType<T>, text: string, topic: string, from: string): T | undefined {
    const parsed = parsePayload(schema, text);
    if (parsed.ok) return parsed.value;
    this.errors.push(`bad ${topic} message from ${from}: ${parsed.message}`);
    return undefined;
  }

  // --- helpers ------------------------------------------------------------------------------

  #attributes(): Record<string, string> {
    return {
      [ATTR.role]: CONSOLE_ROLE,
      [ATTR.available]: String(this.#available),
      [ATTR.skills]: (this.opts.skills ?? []).join(','),
      [ATTR.idleSince]: String(this.#idleSince),
    };
  }

  #roleOf(room: Room): RoomRole {
    return this.#roles.get(room) ?? 'desk';
  }

  #roomFor(role: RoomRole): Room {
    const room = role === 'desk' ? this.desk : role === 'consult' ? this.#consult : this.#caller;
    if (!room?.isConnected || !room.localParticipant) throw new Error(`${this.identity} is not connected to a ${role} room`);
    return room;
  }

  /**
   * Desk: the worker that made the last offer. Consult: the worker participant the accepted offer
   * names. Otherwise the only candidate: an AGENT-kind participant, else the only other one.
   */
  #defaultDestination(role: RoomRole, room: Room): string {
    if (role === 'desk') {
      const from = this.offers.items.at(-1)?.from;
      if (!from) throw new Error('no offer yet: give callWorker a destination');
      return from;
    }
    const named = role === 'consult' ? this.#accepted?.offer.consult.workerIdentity : undefined;
    if (named) return named;
    const others: Participant[] = [...room.remoteParticipants.values()];
    const pick = (list: Participant[]) => (list.length === 1 ? list[0]!.identity : undefined);
    const found =
      pick(others.filter((p) => p.kind === ParticipantKind.AGENT)) ??
      pick(others.filter((p) => p.identity.startsWith('wt-brief-'))) ??
      pick(others);
    if (!found) {
      throw new Error(`cannot tell the worker among [${others.map((p) => p.identity).join(', ')}] in the ${role} room: give a destination`);
    }
    return found;
  }

  #requireAccepted(): OfferInHand {
    if (!this.#accepted) throw new Error(`${this.identity} has not accepted an offer`);
    return this.#accepted;
  }

  #step(what: string): void {
    this.trace.push(`${new Date().toISOString()} ${what}`);
  }

  #event(kind: ConsoleEvent['kind'], room: Room, transferId?: string, via?: ConsoleEvent['via']): void {
    this.events.push({ kind, room: room.name ?? '?', transferId, via, at: Date.now() });
  }

  #later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      fn();
    }, ms);
    this.#timers.add(t);
  }

  static #expectOk(outcome: RpcOutcome): unknown {
    if (!outcome.ok) throw outcome.error;
    return outcome.json;
  }
}

async function disconnect(room: Room): Promise<void> {
  if (!room.isConnected) return;
  const gone = nextEvent(room, RoomEvent.Disconnected, { timeoutMs: LEAVE_TIMEOUT_MS, what: 'a console room to disconnect' }).catch(() => undefined);
  await withDeadline(room.disconnect(), LEAVE_TIMEOUT_MS, 'a console room to disconnect').catch(() => undefined);
  await gone;
}
