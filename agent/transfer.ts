/**
 * Warm transfer orchestration: one controller per call.
 *
 *   requested -> summarizing -> offering -> briefing -> connecting -> ended(completed)
 *
 * with every other way out ending in a typed outcome (declined, no_answer, agent_b_left,
 * caller_left, cancelled, failed) and a reason. Whatever happens, the `finally` of `#run` takes the
 * caller off hold, closes the briefing, deletes the consult room and writes the outcome: the bugs
 * to avoid are a caller left on hold and a record left open.
 */
import type { voice } from '@livekit/agents';
import { type RemoteParticipant, type Room, RoomEvent } from '@livekit/rtc-node';
import type { RoomServiceClient } from 'livekit-server-sdk';
import { randomBytes } from 'node:crypto';
import type { TransferStore } from '../db/store.js';
import { raceAbort, settledWithin, withTimeout } from './async-utils.js';
import { Briefing, type BriefingDecision } from './briefing.js';
import type { WorkerConfig } from './config.js';
import { CONTRACT_VERSION, type Offer, type StatusMessage, type SummaryMessage } from './contract.js';
import type { ConsoleInfo, Desk } from './desk.js';
import type { CallerHold } from './hold.js';
import { joinAgentB } from './join.js';
import { HEARTBEAT_INTERVAL_MS } from './recovery.js';
import type { Logger } from './log.js';
import type { Summarizer } from './summarizer.js';
import type { SummaryResult } from './summary-schema.js';
import { mintRoomToken } from './tokens.js';
import type { Transcript } from './transcript.js';
import type { TransferOutcome, TransferPhase } from './transfer-state.js';

export interface TransferRequest {
  reason: string;
  skill?: string;
  /** A named Agent B (console identity). */
  agentIdentity?: string;
  initiatedBy: string;
}

export type RequestDecision =
  | { started: true; transferId: string; agentB: ConsoleInfo }
  | { started: false; why: 'already_running' | 'no_console' | 'desk_unreachable' | 'caller_absent'; detail?: string };

export interface TransferResult {
  transferId: string;
  outcome: TransferOutcome;
  reason: string;
  agentBIdentity?: string;
  joinedVia?: 'move' | 'rejoin';
}

export interface TransferDeps {
  config: WorkerConfig;
  callerRoom: Room;
  /** The caller's identity, when known. */
  callerIdentity: () => string | undefined;
  session: voice.AgentSession;
  /** Models for the briefing session (same pipeline as the call). */
  briefingSession: () => voice.AgentSessionOptions;
  textOnly: boolean;
  hold: CallerHold;
  desk: Desk;
  summarizer: Summarizer;
  transcript: Transcript;
  /** Plain-text transcript for Agent B, redacted for speaking. */
  transcriptForAgentB: () => string;
  store?: TransferStore;
  roomService: Pick<RoomServiceClient, 'createRoom' | 'deleteRoom' | 'moveParticipant' | 'removeParticipant'>;
  workerId?: string;
  jobId?: string;
  log: Logger;
  /** Called once Agent B is with the caller and has been introduced: Agent A leaves. */
  onCompleted: (result: TransferResult) => Promise<void>;
}

const TOKEN_TTL_SECONDS = 5 * 60;
const CONSULT_JOIN_TIMEOUT_MS = 20_000;

export function newTransferId(): string {
  return `tr_${Date.now().toString(36)}${randomBytes(5).toString('hex')}`;
}

class Cancelled extends Error {
  constructor(
    readonly outcome: TransferOutcome,
    readonly why: string,
  ) {
    super(why);
  }
}

/** The result of one offer to one console. */
type AttemptResult =
  | { kind: 'completed'; via: 'move' | 'rejoin' }
  | { kind: 'failed'; outcome: TransferOutcome; reason: string };

export class TransferController {
  #active: Promise<TransferResult> | undefined;
  readonly results: TransferResult[] = [];

  constructor(private readonly deps: TransferDeps) {}

  get running(): boolean {
    return this.#active !== undefined;
  }

  /** Resolves with the running transfer's result (for tests and shutdown). */
  get current(): Promise<TransferResult> | undefined {
    return this.#active;
  }

  /**
   * Start a transfer if one can start now. Synchronous checks only, so the agent can tell the
   * caller at once when nobody is available; the transfer itself runs in the background.
   */
  async request(req: TransferRequest): Promise<RequestDecision> {
    if (this.#active) return { started: false, why: 'already_running' };
    // Claim the slot before the first await: two tool calls in one turn must not both start.
    let release!: (r: TransferResult) => void;
    this.#active = new Promise((resolve) => (release = resolve));
    let decision: RequestDecision;
    try {
      decision = await this.#check(req);
    } catch (err) {
      decision = { started: false, why: 'desk_unreachable', detail: (err as Error).message };
    }
    if (!decision.started) {
      const placeholder = this.#active;
      this.#active = undefined;
      release({ transferId: '', outcome: 'cancelled', reason: decision.why });
      void placeholder;
      return decision;
    }
    const transferId = decision.transferId;
    void this.#run(transferId, req, decision.agentB)
      .catch((err: unknown): TransferResult => {
        this.deps.log.error({ err, transferId }, 'transfer crashed');
        return { transferId, outcome: 'failed', reason: `internal error: ${(err as Error).message}` };
      })
      .then((result) => {
        this.results.push(result);
        this.#active = undefined;
        release(result);
      });
    return decision;
  }

  async #check(req: TransferRequest): Promise<RequestDecision> {
    if (!this.deps.callerIdentity()) return { started: false, why: 'caller_absent' };
    await this.deps.desk.connect();
    const agentB = this.deps.desk.pick({ skill: req.skill, identity: req.agentIdentity });
    if (!agentB) {
      const detail = req.agentIdentity ? `${req.agentIdentity} is not available` : req.skill ? `nobody with skill "${req.skill}" is available` : 'nobody is available';
      return { started: false, why: 'no_console', detail };
    }
    return { started: true, transferId: newTransferId(), agentB };
  }

  async #run(transferId: string, req: TransferRequest, firstCandidate: ConsoleInfo): Promise<TransferResult> {
    const d = this.deps;
    const log = d.log.child({ transferId });
    const callerRoomName = d.callerRoom.name!;
    const callerIdentity = d.callerIdentity();
    const abort = new AbortController();
    const record = (phase: TransferPhase, detail?: Record<string, string | number | boolean | null>) => {
      log.info({ phase, ...detail }, `transfer ${phase}`);
      // createTransfer and finish write the `requested` and `ended` events themselves.
      if (phase !== 'requested' && phase !== 'ended') void d.store?.recordEvent(transferId, phase, detail ? { detail } : undefined);
    };

    void d.store?.createTransfer({
      id: transferId,
      callerRoom: callerRoomName,
      callerIdentity: callerIdentity ?? null,
      agentAIdentity: d.callerRoom.localParticipant?.identity ?? null,
      mode: 'frontline',
      initiatedBy: req.initiatedBy,
      targetKind: 'participant',
      // textOnly lets a recovery agent, sent after a crash, talk to the caller the same way.
      target: { skill: req.skill, identity: req.agentIdentity, textOnly: d.textOnly },
      reason: req.reason,
      workerId: d.workerId ?? null,
      jobId: d.jobId ?? null,
    });
    record('requested', { reason: req.reason, skill: req.skill ?? null });

    // A caller who hangs up cancels everything, wherever the transfer is.
    const onParticipantLeft = (p: RemoteParticipant) => {
      if (p.identity === callerIdentity) abort.abort(new Cancelled('caller_left', 'the caller hung up'));
    };
    d.callerRoom.on(RoomEvent.ParticipantDisconnected, onParticipantLeft);
    const onRoomGone = () => abort.abort(new Cancelled('failed', 'the worker lost the caller room'));
    d.callerRoom.on(RoomEvent.Disconnected, onRoomGone);

    // Proof of life for crash recovery: a transfer whose heartbeat stops is ended by someone else.
    const heartbeat = setInterval(() => void d.store?.touch(transferId, { ownerWorkerId: d.workerId }), HEARTBEAT_INTERVAL_MS);
    heartbeat.unref();

    let outcome: TransferOutcome = 'failed';
    let reason = 'transfer did not finish';
    let agentBIdentity: string | undefined;
    let joinedVia: 'move' | 'rejoin' | undefined;
    const holding = d.hold.start().catch((err: unknown) => log.warn({ err }, 'could not put the caller on hold'));

    try {
      record('summarizing');
      // The rolling summary is ready now; the tail refinement runs while Agent B is reached.
      const initial = d.summarizer.current();
      const refined = d.summarizer.forTransfer({ signal: abort.signal, transferId }).catch(() => initial);
      void refined.then((s) =>
        d.store?.setSummary(transferId, { summary: s.summary, brief: s.brief, source: s.source, model: s.model ?? null }),
      );

      const tried = new Set<string>();
      let candidate: ConsoleInfo | undefined = firstCandidate;
      let last: AttemptResult = { kind: 'failed', outcome: 'no_answer', reason: 'nobody was available' };
      for (let attempt = 1; attempt <= d.config.transfer.maxAttempts && candidate; attempt += 1) {
        throwIfAborted(abort.signal);
        tried.add(candidate.identity);
        agentBIdentity = candidate.identity;
        void d.store?.setAgentB(transferId, { identity: candidate.identity, kind: 'participant' });
        last = await this.#attempt(transferId, attempt, candidate, req, initial, refined, abort.signal, record, log);
        if (last.kind === 'completed') break;
        log.info({ attempt, agentB: candidate.identity, outcome: last.outcome, reason: last.reason }, 'attempt did not connect');
        candidate = d.desk.pick({ skill: req.skill, identity: req.agentIdentity, exclude: tried });
      }

      if (last.kind === 'completed') {
        joinedVia = last.via;
        outcome = 'completed';
        reason = `Agent B joined the caller by ${last.via}`;
      } else {
        outcome = last.outcome;
        reason = last.reason;
      }
    } catch (err) {
      if (err instanceof Cancelled) {
        outcome = err.outcome;
        reason = err.why;
      } else {
        outcome = 'failed';
        reason = `internal error: ${(err as Error).message}`;
        log.error({ err }, 'transfer failed');
      }
    } finally {
      clearInterval(heartbeat);
      d.callerRoom.off(RoomEvent.ParticipantDisconnected, onParticipantLeft);
      d.callerRoom.off(RoomEvent.Disconnected, onRoomGone);
      abort.abort(new Cancelled(outcome, reason)); // stops the summary tail and anything still waiting
      await holding;
      await d.hold.stop();
    }

    record('ended', { outcome, reason });
    void d.store?.finish(transferId, outcome, reason);
    const result: TransferResult = { transferId, outcome, reason, agentBIdentity, joinedVia };

    if (outcome === 'completed') {
      await d.onCompleted(result);
    } else if (outcome !== 'caller_left') {
      // Back to the caller: the AI explains and carries on.
      d.session.generateReply({
        instructions:
          `The transfer to a colleague did not work out (${describeOutcome(outcome)}). ` +
          'Apologise briefly, tell the caller you are still here to help, and continue helping them yourself.',
      });
    }
    return result;
  }

  /** One offer to one console, through to the caller or to a typed failure. Cleans up after itself. */
  async #attempt(
    transferId: string,
    attempt: number,
    agentB: ConsoleInfo,
    req: TransferRequest,
    initial: SummaryResult,
    refined: Promise<SummaryResult>,
    signal: AbortSignal,
    record: (phase: TransferPhase, detail?: Record<string, string | number | boolean | null>) => void,
    log: Logger,
  ): Promise<AttemptResult> {
    const d = this.deps;
    const { apiKey, apiSecret } = d.config.livekit;
    const callerRoomName = d.callerRoom.name!;
    const consultRoomName = `${callerRoomName}-consult-${transferId}-${attempt}`;
    const attemptId = `${transferId}-${attempt}`;
    const briefIdentity = `wt-brief-${transferId}`;
    let briefing: Briefing | undefined;
    const status = (event: StatusMessage['event'], extra: Partial<StatusMessage> = {}): StatusMessage => ({
      v: CONTRACT_VERSION,
      transferId,
      event,
      at: Date.now(),
      ...extra,
    });

    try {
      record('offering', { attempt, agentB: agentB.identity });
      void d.store?.setConsultRoom(transferId, consultRoomName);
      await d.roomService.createRoom({ name: consultRoomName, emptyTimeout: 60, departureTimeout: 10, maxParticipants: 4 });
      const workerToken = await mintRoomToken({
        apiKey,
        apiSecret,
        room: consultRoomName,
        identity: briefIdentity,
        name: 'Transfer assistant',
        kind: 'agent',
        ttlSeconds: TOKEN_TTL_SECONDS,
      });
      const consoleToken = await mintRoomToken({
        apiKey,
        apiSecret,
        room: consultRoomName,
        identity: agentB.identity,
        name: agentB.name,
        ttlSeconds: TOKEN_TTL_SECONDS,
      });

      const summaryNow = await settledWithin(refined, 0, initial);
      briefing = new Briefing({
        url: d.config.livekit.url,
        token: workerToken.token,
        transferId,
        agentBIdentity: agentB.identity,
        summaryMessage: summaryMessage(transferId, summaryNow),
        spokenBrief: summaryNow.spokenBrief,
        transcriptText: d.transcriptForAgentB(),
        session: d.briefingSession(),
        textOnly: d.textOnly,
        log,
      });
      // Join the consult room while the offer rings: the room exists, and Agent B may arrive first.
      const opening = briefing.open();
      opening.catch(() => undefined); // awaited below; never an unhandled rejection

      const offer: Offer = {
        v: CONTRACT_VERSION,
        transferId,
        attemptId,
        callerRoom: callerRoomName,
        reason: req.reason,
        skill: req.skill,
        consult: { url: d.config.transfer.consoleUrl, room: consultRoomName, token: consoleToken.token, expiresAt: consoleToken.expiresAt, workerIdentity: briefIdentity },
        preview: {
          intent: summaryNow.summary.intent,
          urgency: summaryNow.summary.urgency,
          sentiment: summaryNow.summary.sentiment,
          brief: summaryNow.brief.slice(0, 600),
        },
        expiresAt: Date.now() + d.config.transfer.offerTimeoutMs,
      };
      const answer = await d.desk.offer(agentB.identity, offer, signal);
      throwIfAborted(signal);
      if (answer.kind === 'declined') return { kind: 'failed', outcome: 'declined', reason: `${agentB.identity} declined: ${answer.reason}` };
      if (answer.kind === 'no_answer') return { kind: 'failed', outcome: 'no_answer', reason: `${agentB.identity}: ${answer.reason}` };

      // Accepted: Agent B comes to the consult room.
      await raceAbort(opening, signal);
      await raceAbort(
        withTimeout(briefing.agentBArrived, CONSULT_JOIN_TIMEOUT_MS, `${agentB.identity} accepted but did not join the consult room within ${CONSULT_JOIN_TIMEOUT_MS} ms`),
        signal,
      ).catch((err: unknown) => {
        if (err instanceof Cancelled) throw err;
        throw new AttemptFailed('agent_b_left', (err as Error).message);
      });

      record('briefing', { attempt, agentB: agentB.identity });
      // Use the refined summary if it is in by now; never wait for it.
      const summary = await settledWithin(refined, 0, summaryNow);
      if (summary !== summaryNow) briefing.useSummary(summaryMessage(transferId, summary), summary.spokenBrief);
      await briefing.start();
      void briefing.sendStatus(status('briefing'));

      const decision = await raceAbort(
        withTimeout(briefing.decision, d.config.transfer.briefingTimeoutMs, 'timeout'),
        signal,
      ).catch((err: unknown): BriefingDecision => {
        if (err instanceof Cancelled) throw err;
        return { kind: 'decline', reason: `no decision within ${d.config.transfer.briefingTimeoutMs} ms of briefing` };
      });
      if (decision.kind === 'left') return { kind: 'failed', outcome: 'agent_b_left', reason: `${agentB.identity} left the consult room during the briefing` };
      if (decision.kind === 'decline') return { kind: 'failed', outcome: 'declined', reason: `${agentB.identity} declined after the briefing: ${decision.reason}` };

      record('connecting', { attempt, agentB: agentB.identity, via: decision.via });
      void briefing.sendStatus(status('connecting'));
      const joined = await joinAgentB(d.config.transfer.joinStrategy, transferId, agentB.identity, {
        roomService: d.roomService,
        consultRoom: briefing.room,
        consultRoomName,
        callerRoomName,
        consoleUrl: d.config.transfer.consoleUrl,
        log,
        callerRoomToken: (identity) =>
          mintRoomToken({ apiKey, apiSecret, room: callerRoomName, identity, name: agentB.name, ttlSeconds: TOKEN_TTL_SECONDS }),
        waitInCallerRoom: (identity, timeoutMs) => waitForParticipant(d.callerRoom, identity, timeoutMs),
      });
      throwIfAborted(signal);
      if (!joined.ok) return { kind: 'failed', outcome: 'failed', reason: joined.reason };
      return { kind: 'completed', via: joined.via };
    } catch (err) {
      if (err instanceof AttemptFailed) return { kind: 'failed', outcome: err.outcome, reason: err.message };
      if (err instanceof Cancelled && err.outcome === 'caller_left' && briefing) {
        // Tell a briefed Agent B that the caller is gone before the room goes away.
        await briefing.sendStatus(status('cancelled', { outcome: 'caller_left', reason: err.why }));
        await briefing.tell('The caller has hung up, so there is nobody to connect. Thank you, this transfer is cancelled.');
      }
      if (err instanceof Cancelled) throw err;
      if (signal.aborted && signal.reason instanceof Cancelled) throw signal.reason;
      log.warn({ err, attempt }, 'attempt failed');
      return { kind: 'failed', outcome: 'failed', reason: `attempt ${attempt} failed: ${(err as Error).message}` };
    } finally {
      await briefing?.close();
      await d.roomService.deleteRoom(consultRoomName).catch((err: unknown) => log.debug({ err }, 'consult room already gone'));
    }
  }
}

class AttemptFailed extends Error {
  constructor(
    readonly outcome: TransferOutcome,
    message: string,
  ) {
    super(message);
  }
}

function summaryMessage(transferId: string, s: SummaryResult): SummaryMessage {
  return {
    v: CONTRACT_VERSION,
    transferId,
    summary: { ...s.summary, pendingTurns: s.pendingTurns.map((t) => ({ speaker: t.speaker, text: t.text, at: t.at })) },
    brief: s.brief,
    source: s.source,
    generatedAt: s.generatedAt,
  };
}

export function describeOutcome(outcome: TransferOutcome): string {
  switch (outcome) {
    case 'declined':
      return 'the colleagues we reached could not take the call';
    case 'no_answer':
      return 'no colleague answered in time';
    case 'agent_b_left':
      return 'the colleague dropped off before taking the call';
    case 'caller_left':
      return 'the caller hung up';
    case 'cancelled':
      return 'the transfer was cancelled';
    case 'failed':
      return 'a technical problem stopped the transfer';
    case 'completed':
      return 'the transfer completed';
  }
}

function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw signal.reason instanceof Cancelled ? signal.reason : new Cancelled('cancelled', 'transfer aborted');
}

/** Resolves when `identity` is in `room` (already or later); rejects after `timeoutMs`. */
export function waitForParticipant(room: Room, identity: string, timeoutMs: number): Promise<void> {
  if (room.remoteParticipants.has(identity)) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const onJoin = (p: RemoteParticipant) => {
      if (p.identity !== identity) return;
      cleanup();
      resolve();
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${identity} did not join ${room.name} within ${timeoutMs} ms`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      room.off(RoomEvent.ParticipantConnected, onJoin);
    };
    room.on(RoomEvent.ParticipantConnected, onJoin);
  });
}
