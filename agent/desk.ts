/**
 * The agent desk: the room where Agent B consoles wait, announcing themselves with participant
 * attributes (contract.ts, ATTR). A call's job keeps one participant there to see who is available
 * and to make offers by RPC; consoles answer by RPC to that participant.
 */
import { type RemoteParticipant, Room, RoomEvent, RpcError, type RpcInvocationData } from '@livekit/rtc-node';
import {
  ATTR,
  AnswerSchema,
  CONSOLE_ROLE,
  CONTRACT_VERSION,
  type Offer,
  OfferReplySchema,
  RPC,
  RPC_ERROR,
  parsePayload,
} from './contract.js';
import type { Logger } from './log.js';

export interface ConsoleInfo {
  identity: string;
  name: string;
  available: boolean;
  skills: string[];
  idleSince: number;
}

/** What became of an offer. */
export type OfferOutcome =
  | { kind: 'accepted' }
  | { kind: 'declined'; reason: string }
  | { kind: 'no_answer'; reason: string };

export interface CandidateQuery {
  skill?: string;
  identity?: string;
  exclude?: ReadonlySet<string>;
}

export function consoleFromAttributes(identity: string, name: string | undefined, attrs: Record<string, string>): ConsoleInfo | undefined {
  if (attrs[ATTR.role] !== CONSOLE_ROLE) return undefined;
  const idle = Number(attrs[ATTR.idleSince]);
  return {
    identity,
    name: name || identity,
    available: attrs[ATTR.available] === 'true',
    skills: (attrs[ATTR.skills] ?? '')
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean),
    idleSince: Number.isFinite(idle) ? idle : Number.MAX_SAFE_INTEGER,
  };
}

/**
 * Pick the console to offer: the named identity if asked for, else an available console with the
 * skill, longest idle first (the usual contact-centre rule: fair without shared state, since every
 * worker reads the same attributes). Ties are broken at random so two workers rarely collide.
 */
export function pickConsole(consoles: readonly ConsoleInfo[], q: CandidateQuery, random: () => number = Math.random): ConsoleInfo | undefined {
  const eligible = consoles.filter(
    (c) =>
      c.available &&
      !q.exclude?.has(c.identity) &&
      (q.identity ? c.identity === q.identity : !q.skill || c.skills.includes(q.skill.trim().toLowerCase())),
  );
  if (eligible.length === 0) return undefined;
  const oldest = Math.min(...eligible.map((c) => c.idleSince));
  const longestIdle = eligible.filter((c) => c.idleSince === oldest);
  return longestIdle[Math.floor(random() * longestIdle.length)];
}

interface PendingOffer {
  transferId: string;
  attemptId: string;
  identity: string;
  settle: (outcome: OfferOutcome) => void;
}

export class Desk {
  readonly room = new Room();
  #pending = new Map<string, PendingOffer>();
  #connected: Promise<void> | undefined;

  constructor(
    private readonly opts: { url: string; token: string; roomName: string; log: Logger },
  ) {}

  /** Connect once; later calls share the same attempt. Safe to call early and in the background. */
  connect(): Promise<void> {
    this.#connected ??= (async () => {
      this.room.on(RoomEvent.ParticipantDisconnected, (p: RemoteParticipant) => {
        for (const offer of this.#pending.values()) {
          if (offer.identity === p.identity) offer.settle({ kind: 'no_answer', reason: 'the console left the desk' });
        }
      });
      await this.room.connect(this.opts.url, this.opts.token, { autoSubscribe: false, dynacast: false });
      this.room.localParticipant!.registerRpcMethod(RPC.answer, (data) => this.#onAnswer(data));
    })().catch((err: unknown) => {
      this.#connected = undefined; // let a later call try again
      throw err;
    });
    return this.#connected;
  }

  consoles(): ConsoleInfo[] {
    return [...this.room.remoteParticipants.values()].flatMap((p) => {
      const c = consoleFromAttributes(p.identity, p.name, p.attributes);
      return c ? [c] : [];
    });
  }

  pick(q: CandidateQuery): ConsoleInfo | undefined {
    const offered = new Set([...this.#pending.values()].map((o) => o.identity));
    return pickConsole(this.consoles(), { ...q, exclude: new Set([...(q.exclude ?? []), ...offered]) });
  }

  /**
   * Offer a call to one console and wait for its answer, at most until the offer expires or
   * `signal` aborts. Never throws: an unreachable console is a `no_answer`.
   */
  async offer(identity: string, offer: Offer, signal: AbortSignal): Promise<OfferOutcome> {
    let settle!: (o: OfferOutcome) => void;
    const outcome = new Promise<OfferOutcome>((resolve) => (settle = resolve));
    const pending: PendingOffer = { transferId: offer.transferId, attemptId: offer.attemptId, identity, settle };
    this.#pending.set(offer.attemptId, pending);
    const remaining = Math.max(0, offer.expiresAt - Date.now());
    const timer = setTimeout(() => settle({ kind: 'no_answer', reason: `no answer within ${remaining} ms` }), remaining);
    const onAbort = () => settle({ kind: 'no_answer', reason: 'offer withdrawn' });
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const reply = await this.room.localParticipant!.performRpc({
        destinationIdentity: identity,
        method: RPC.offer,
        payload: JSON.stringify(offer),
        responseTimeout: Math.min(remaining, 10_000),
      });
      const parsed = parsePayload(OfferReplySchema, reply);
      if (!parsed.ok) settle({ kind: 'no_answer', reason: `console answered the offer with ${parsed.message}` });
      else if (parsed.value.status === 'busy') settle({ kind: 'declined', reason: 'console is busy' });
    } catch (err) {
      settle({ kind: 'no_answer', reason: `offer could not be delivered: ${(err as Error).message}` });
    }
    try {
      return await outcome;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      this.#pending.delete(offer.attemptId);
    }
  }

  async #onAnswer(data: RpcInvocationData): Promise<string> {
    const parsed = parsePayload(AnswerSchema, data.payload);
    if (!parsed.ok) throw new RpcError(parsed.code, parsed.message);
    const answer = parsed.value;
    const pending = this.#pending.get(answer.attemptId);
    if (!pending || pending.transferId !== answer.transferId) {
      throw new RpcError(RPC_ERROR.unknownTransfer, `no open offer ${answer.attemptId} for transfer ${answer.transferId}`);
    }
    if (data.callerIdentity !== pending.identity) {
      this.opts.log.warn({ transferId: answer.transferId, from: data.callerIdentity }, 'refused an answer from a console the offer was not made to');
      throw new RpcError(RPC_ERROR.forbidden, 'this offer was made to another console');
    }
    pending.settle(
      answer.decision === 'accept' ? { kind: 'accepted' } : { kind: 'declined', reason: answer.reason ?? 'declined by Agent B' },
    );
    return JSON.stringify({ v: CONTRACT_VERSION, ok: true });
  }

  /** Push a status message to one console in the desk room (best effort). */
  async sendStatus(identity: string, message: object): Promise<void> {
    await this.room.localParticipant
      ?.sendText(JSON.stringify(message), { topic: 'warm-transfer.status', destinationIdentities: [identity] })
      .catch((err: unknown) => this.opts.log.debug({ err }, 'could not send status to console'));
  }

  async close(): Promise<void> {
    for (const offer of this.#pending.values()) offer.settle({ kind: 'no_answer', reason: 'worker is leaving' });
    await this.room.disconnect().catch(() => undefined);
  }
}
