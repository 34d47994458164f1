/**
 * Warm transfer orchestration: one controller per call, whoever Agent A is (the worker's AI in
 * frontline mode, a human in assist mode) and whatever Agent B is (a console, a phone, an AI agent).
 *
 *   requested -> summarizing -> offering -> briefing -> connecting -> ended(completed)
 *
 * (an AI agent target skips the consult room: offering is its dispatch, connecting its arrival)
 * with every other way out ending in a typed outcome (declined, no_answer, agent_b_left,
 * caller_left, cancelled, failed) and a reason. Whatever happens, the `finally` of `#run` takes the
 * caller off hold, closes the briefing, deletes the consult room and writes the outcome: the bugs
 * to avoid are a caller left on hold and a record left open.
 */
import type { voice } from '@livekit/agents';
import { type Participant, ParticipantKind, type RemoteParticipant, type Room, RoomEvent } from '@livekit/rtc-node';
import type { AgentDispatchClient, RoomServiceClient, SipClient } from 'livekit-server-sdk';
import { randomBytes } from 'node:crypto';
import type { TransferStore } from '../db/store.js';
import { atMost, raceAbort, settledWithin, withTimeout } from './async-utils.js';
import { Briefing, type BriefingDecision } from './briefing.js';
import type { WorkerConfig } from './config.js';
import {
  ATTR,
  CONTRACT_VERSION,
  type ConsultPass,
  type Handoff,
  type Offer,
  RPC,
  type StatusMessage,
  type SummaryMessage,
  TOPIC,
  type TransferTarget,
} from './contract.js';
import type { ConsoleInfo, Desk } from './desk.js';
import type { Hold } from './hold.js';
import { joinAgentB } from './join.js';
import { serverPresence, waitForArrival, waitForRemote } from './presence.js';
import { HEARTBEAT_INTERVAL_MS } from './recovery.js';
import type { Logger } from './log.js';
import type { Summarizer } from './summarizer.js';
import type { SummaryResult } from './summary-schema.js';
import { mintRoomToken } from './tokens.js';
import type { Transcript } from './transcript.js';
import { type SipDefaults, type SipDialResult, type SipTarget, dialAgentB, outcomeOfSipFailure, probeMoveSupport } from './sip.js';
import type { AgentMode, TransferOutcome, TransferPhase } from './transfer-state.js';

export interface TransferRequest {
  reason: string;
  target: TransferTarget;
  /** Agent A's note for Agent B (assist mode). */
  note?: string;
  /** Who asked: `agent_a` (the AI) or the identity of a human Agent A. */
  initiatedBy: string;
}

export type RequestRefusal = 'already_running' | 'no_console' | 'desk_unreachable' | 'caller_absent' | 'unsupported';

export type RequestDecision =
  | { started: true; transferId: string; target: string }
  | { started: false; why: RequestRefusal; detail?: string };

export type JoinedVia = 'move' | 'rejoin' | 'dispatch';

export interface TransferResult {
  transferId: string;
  outcome: TransferOutcome;
  reason: string;
  agentBIdentity?: string;
  /** What to call Agent B when introducing them to the caller. */
  agentBName?: string;
  joinedVia?: JoinedVia;
}

export interface TransferDeps {
  config: WorkerConfig;
  mode: AgentMode;
  callerRoom: Room;
  /** The caller's identity, when known. */
  callerIdentity: () => string | undefined;
  /** Assist mode: the human Agent A in the caller room, who gets progress and a consult pass. */
  agentAIdentity?: () => string | undefined;
  /** Models for the briefing session (same pipeline as the call). */
  briefingSession: () => voice.AgentSessionOptions;
  textOnly: boolean;
  hold: Hold;
  desk: Desk;
  summarizer: Summarizer;
  transcript: Transcript;
  /** Plain-text transcript for Agent B, redacted for speaking. */
  transcriptForAgentB: () => string;
  store?: TransferStore;
  roomService: Pick<RoomServiceClient, 'createRoom' | 'deleteRoom' | 'getParticipant' | 'moveParticipant' | 'removeParticipant'>;
  dispatch?: Pick<AgentDispatchClient, 'createDispatch' | 'deleteDispatch'>;
  sip?: Pick<SipClient, 'createSipParticipant'>;
  workerId?: string;
  jobId?: string;
  log: Logger;
  /** Agent B is with the caller: introduce them (frontline AI speaks; a human Agent A does it themselves). */
  introduce: (agentBName: string) => Promise<void>;
  /** Called once Agent B is with the caller and has been introduced: Agent A leaves. */
  onCompleted: (result: TransferResult) => Promise<void>;
  /** The transfer ended without Agent B and the caller is still here: Agent A takes the call back. */
  onNotCompleted: (result: TransferResult) => void;
}

const TOKEN_TTL_SECONDS = 5 * 60;
/** The hold's start (message up to 10 s, music up to 10 s more) and its end, at most. */
const HOLD_SETTLE_MS = 25_000;
const CONSULT_JOIN_TIMEOUT_MS = 20_000;
const AGENT_TARGET_GREET_TIMEOUT_MS = 20_000;

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

/** Who Agent B is for one attempt through the consult room. */
type Leg =
  | { kind: 'console'; identity: string; name: string; console: ConsoleInfo }
  | { kind: 'sip'; identity: string; name: string; target: SipTarget };

/** The result of one attempt to reach one Agent B. */
type AttemptResult =
  | { kind: 'completed'; via: JoinedVia }
  | { kind: 'failed'; outcome: TransferOutcome; reason: string };

type RecordPhase = (phase: TransferPhase, detail?: Record<string, string | number | boolean | null>) => void;

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
   * Start a transfer if one can start now. Quick checks only, so Agent A hears at once when nobody
   * is available; the transfer itself runs in the background.
   */
  async request(req: TransferRequest): Promise<RequestDecision> {
    if (this.#active) return { started: false, why: 'already_running' };
    // Claim the slot before the first await: two tool calls in one turn must not both start.
    let release!: (r: TransferResult) => void;
    this.#active = new Promise((resolve) => (release = resolve));
    let decision: RequestDecision;
    let firstLeg: Leg | undefined;
    try {
      ({ decision, firstLeg } = await this.#check(req));
    } catch (err) {
      decision = { started: false, why: 'desk_unreachable', detail: (err as Error).message };
    }
    if (!decision.started) {
      this.#active = undefined;
      release({ transferId: '', outcome: 'cancelled', reason: decision.why });
      return decision;
    }
    const transferId = decision.transferId;
    void this.#run(transferId, req, firstLeg)
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

  async #check(req: TransferRequest): Promise<{ decision: RequestDecision; firstLeg?: Leg }> {
    const d = this.deps;
    if (!d.callerIdentity()) return { decision: { started: false, why: 'caller_absent' } };
    const target = req.target;
    if (target.kind === 'agent') {
      if (!d.dispatch) return { decision: { started: false, why: 'unsupported', detail: 'this worker has no agent dispatch client' } };
      return { decision: { started: true, transferId: newTransferId(), target: `agent ${target.agentName}` } };
    }
    if (target.kind === 'sip') {
      if (!d.sip) return { decision: { started: false, why: 'unsupported', detail: 'this worker has no SIP client' } };
      // A phone leg can only reach the caller by MoveParticipant: find out before anyone's phone rings.
      // The probe asks the server to move the worker's own (agent) participant, which no server moves.
      const move = await probeMoveSupport(d.roomService, { room: d.callerRoom.name!, identity: d.callerRoom.localParticipant!.identity });
      if (!move.supported) return { decision: { started: false, why: 'unsupported', detail: move.message } };
      const leg: Leg = { kind: 'sip', identity: `sip-${target.number.replace(/[^0-9+]/g, '')}`, name: target.displayName ?? target.number, target };
      return { decision: { started: true, transferId: newTransferId(), target: target.number }, firstLeg: leg };
    }
    await d.desk.connect();
    const agentB = d.desk.pick({ skill: target.skill, identity: target.identity });
    if (!agentB) {
      const detail = target.identity ? `${target.identity} is not available` : target.skill ? `nobody with skill "${target.skill}" is available` : 'nobody is available';
      return { decision: { started: false, why: 'no_console', detail } };
    }
    return {
      decision: { started: true, transferId: newTransferId(), target: agentB.identity },
      firstLeg: { kind: 'console', identity: agentB.identity, name: agentB.name, console: agentB },
    };
  }

  /** Assist mode: progress for the human Agent A's console, in the caller room (best effort). */
  async #tellAgentA(message: StatusMessage): Promise<void> {
    const agentA = this.deps.agentAIdentity?.();
    if (!agentA) return;
    await this.deps.callerRoom.localParticipant
      ?.sendText(JSON.stringify(message), { topic: TOPIC.status, destinationIdentities: [agentA] })
      .catch((err: unknown) => this.deps.log.debug({ err }, 'could not send status to Agent A'));
  }

  /**
   * Agent B accepted: wait until they are in the consult room. If the server lists them there but
   * our connection has not heard of them (see presence.ts), that connection is replaced: a fresh
   * join lists everyone already in the room, and the briefing needs a connection that sees Agent B.
   */
  async #agentBInConsultRoom(briefing: Briefing, consultRoomName: string, identity: string, log: Logger, signal: AbortSignal): Promise<void> {
    const started = Date.now();
    const timeoutMessage = `${identity} accepted but did not join the consult room within ${CONSULT_JOIN_TIMEOUT_MS} ms`;
    const arrival = await waitForArrival(briefing.room, identity, CONSULT_JOIN_TIMEOUT_MS, timeoutMessage, {
      roomName: consultRoomName,
      server: serverPresence(this.deps.roomService),
      seen: briefing.agentBArrived,
      signal,
    });
    if (arrival === 'seen') return;
    log.warn(
      { agentB: identity, seen: [...briefing.room.remoteParticipants.keys()] },
      "the worker's consult-room connection never heard that Agent B joined, though the server lists them in the room; connecting it again",
    );
    const left = Math.max(1_000, CONSULT_JOIN_TIMEOUT_MS - (Date.now() - started));
    await withTimeout(briefing.reconnect(), left, `the worker could not connect to the consult room again within ${left} ms`);
    await withTimeout(briefing.agentBArrived, left, `${identity} is not in the consult room the worker connected to again`);
    log.info({ agentB: identity }, 'the new consult-room connection sees Agent B');
  }

  /**
   * Agent B is coming into the caller room (moved, or rejoining with our token). The job's own
   * connection to the caller room cannot be replaced, so when only the server has seen Agent B
   * arrive, the server's word is taken, and the log says so.
   */
  async #agentBInCallerRoom(identity: string, timeoutMs: number, log: Logger): Promise<void> {
    const room = this.deps.callerRoom;
    const roomName = room.name!;
    const arrival = await waitForArrival(room, identity, timeoutMs, `${identity} did not join ${roomName} within ${timeoutMs} ms`, {
      roomName,
      server: serverPresence(this.deps.roomService),
    });
    if (arrival === 'server') {
      log.warn({ agentB: identity }, "the caller-room connection never heard that Agent B joined, though the server lists them in the room; going on");
    }
  }

  async #run(transferId: string, req: TransferRequest, firstLeg: Leg | undefined): Promise<TransferResult> {
    const d = this.deps;
    const log = d.log.child({ transferId });
    const callerRoomName = d.callerRoom.name!;
    const callerIdentity = d.callerIdentity();
    const abort = new AbortController();
    const record: RecordPhase = (phase, detail) => {
      log.info({ phase, ...detail }, `transfer ${phase}`);
      // createTransfer and finish write the `requested` and `ended` events themselves.
      if (phase !== 'requested' && phase !== 'ended') void d.store?.recordEvent(transferId, phase, detail ? { detail } : undefined);
    };

    void d.store?.createTransfer({
      id: transferId,
      callerRoom: callerRoomName,
      callerIdentity: callerIdentity ?? null,
      agentAIdentity: d.agentAIdentity?.() ?? d.callerRoom.localParticipant?.identity ?? null,
      mode: d.mode,
      initiatedBy: req.initiatedBy,
      targetKind: req.target.kind,
      // textOnly lets a recovery agent, sent after a crash, talk to the caller the same way.
      target: { ...targetForRecord(req.target), textOnly: d.textOnly },
      reason: req.reason,
      workerId: d.workerId ?? null,
      jobId: d.jobId ?? null,
    });
    record('requested', { reason: req.reason, target: req.target.kind });
    void this.#tellAgentA(statusOf(transferId, 'requested'));

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
    let agentBName: string | undefined;
    let joinedVia: JoinedVia | undefined;
    const holding = d.hold.start().catch((err: unknown) => log.warn({ err }, 'could not put the caller on hold'));

    try {
      record('summarizing');
      // The rolling summary is ready now; the tail refinement runs while Agent B is reached.
      const initial = d.summarizer.current();
      const refined = d.summarizer.forTransfer({ signal: abort.signal, transferId }).catch(() => initial);
      void refined.then((s) =>
        d.store?.setSummary(transferId, { summary: s.summary, brief: s.brief, source: s.source, model: s.model ?? null }),
      );

      let last: AttemptResult = { kind: 'failed', outcome: 'no_answer', reason: 'nobody was available' };
      const target = req.target;
      if (target.kind === 'agent') {
        agentBName = 'our specialist assistant';
        const handed = await this.#handToAgent(transferId, target.agentName, req, refined, abort.signal, record, log);
        last = handed.result;
        agentBIdentity = handed.identity;
      } else {
        const tried = new Set<string>();
        let leg: Leg | undefined = firstLeg;
        // A phone number is dialled once; consoles are tried in turn, up to maxAttempts.
        const maxAttempts = target.kind === 'sip' ? 1 : d.config.transfer.maxAttempts;
        for (let attempt = 1; attempt <= maxAttempts && leg; attempt += 1) {
          throwIfAborted(abort.signal);
          tried.add(leg.identity);
          agentBIdentity = leg.identity;
          agentBName = leg.name;
          void d.store?.setAgentB(transferId, { identity: leg.identity, kind: leg.kind === 'sip' ? 'sip' : 'participant' });
          last = await this.#attempt(transferId, attempt, leg, req, initial, refined, abort.signal, record, log);
          if (last.kind === 'completed') break;
          log.info({ attempt, agentB: leg.identity, outcome: last.outcome, reason: last.reason }, 'attempt did not connect');
          if (target.kind !== 'participant') break;
          const next = d.desk.pick({ skill: target.skill, identity: target.identity, exclude: tried });
          leg = next ? { kind: 'console', identity: next.identity, name: next.name, console: next } : undefined;
        }
      }

      if (last.kind === 'completed') {
        joinedVia = last.via;
        outcome = 'completed';
        reason = last.via === 'dispatch' ? `agent ${agentBIdentity} took the call` : `Agent B joined the caller by ${last.via}`;
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
      // Both are bounded inside (hold message, publishing the music); bounded here as well, so that
      // nothing the SDKs never answer can keep the outcome from being written.
      const started = await atMost(holding.then(() => true), HOLD_SETTLE_MS);
      if (!started) log.warn({ transferId }, `the hold had not finished starting after ${HOLD_SETTLE_MS} ms; ending it anyway`);
      // Handed over: Agent A must not answer the caller in its last seconds in the room.
      const ended = await atMost(d.hold.stop({ resumeListening: outcome !== 'completed' }).then(() => true), HOLD_SETTLE_MS);
      if (!ended) log.warn({ transferId }, `the hold had not ended after ${HOLD_SETTLE_MS} ms; going on`);
    }

    record('ended', { outcome, reason });
    void d.store?.finish(transferId, outcome, reason);
    void this.#tellAgentA(statusOf(transferId, outcome === 'completed' ? 'completed' : 'cancelled', { outcome, reason }));
    const result: TransferResult = { transferId, outcome, reason, agentBIdentity, agentBName, joinedVia };

    if (outcome === 'completed') {
      // An AI agent target was introduced before it greeted (see #handToAgent).
      if (joinedVia !== 'dispatch') await d.introduce(agentBName ?? 'my colleague');
      await d.onCompleted(result);
    } else if (outcome !== 'caller_left') {
      d.onNotCompleted(result);
    }
    return result;
  }

  /**
   * An AI agent target: dispatched into the caller room with the handoff in its metadata. It marks
   * itself with the transfer id once it is in; then the caller comes off hold, Agent A introduces
   * it, and it greets the caller (it answers the greet request after its greeting has played).
   */
  async #handToAgent(
    transferId: string,
    agentName: string,
    req: TransferRequest,
    refined: Promise<SummaryResult>,
    signal: AbortSignal,
    record: RecordPhase,
    log: Logger,
  ): Promise<{ result: AttemptResult; identity?: string }> {
    const d = this.deps;
    const dispatcher = d.dispatch!;
    const callerRoomName = d.callerRoom.name!;
    // The target takes over the conversation: it gets the refined summary (bounded by its own deadline).
    const summary = await raceAbort(refined, signal);
    const handoff: Handoff = {
      transferId,
      reason: req.reason.slice(0, 500),
      note: req.note,
      brief: summary.brief.slice(0, 2000),
      summary: summary.summary as unknown as Record<string, unknown>,
      source: summary.source,
    };
    record('offering', { agentName });
    const joinTimeoutMs = d.config.transfer.agentJoinTimeoutMs;
    const arrived = waitForHandoffAgent(d.callerRoom, transferId, joinTimeoutMs);
    arrived.catch(() => undefined); // observed below
    let dispatchId: string | undefined;
    try {
      const dispatch = await dispatcher.createDispatch(callerRoomName, agentName, {
        metadata: JSON.stringify({ handoff, callerIdentity: d.callerIdentity(), textOnly: d.textOnly }),
      });
      dispatchId = dispatch.id;
    } catch (err) {
      return { result: { kind: 'failed', outcome: 'failed', reason: `could not dispatch agent ${agentName}: ${(err as Error).message}` } };
    }
    void d.store?.setAgentB(transferId, { identity: agentName, kind: 'agent' });
    let identity: string;
    try {
      identity = await raceAbort(arrived, signal);
    } catch (err) {
      if (err instanceof Cancelled) throw err;
      await dispatcher.deleteDispatch(dispatchId, callerRoomName).catch((e: unknown) => log.debug({ err: e }, 'dispatch already gone'));
      return { result: { kind: 'failed', outcome: 'no_answer', reason: `agent ${agentName} did not join within ${joinTimeoutMs} ms` } };
    }
    void d.store?.setAgentB(transferId, { identity, kind: 'agent' });
    record('connecting', { agentB: identity, via: 'dispatch' });
    await d.hold.stop({ resumeListening: false });
    await d.introduce('our specialist assistant');
    try {
      await d.callerRoom.localParticipant!.performRpc({
        destinationIdentity: identity,
        method: RPC.greet,
        payload: JSON.stringify({ v: CONTRACT_VERSION, transferId }),
        responseTimeout: AGENT_TARGET_GREET_TIMEOUT_MS,
      });
    } catch (err) {
      // It is in the room and will greet on its own; Agent A leaving is still right.
      log.warn({ err, agentB: identity }, 'the agent target did not confirm its greeting');
    }
    throwIfAborted(signal);
    return { result: { kind: 'completed', via: 'dispatch' }, identity };
  }

  /** One attempt to one Agent B through the consult room, to the caller or to a typed failure. Cleans up after itself. */
  async #attempt(
    transferId: string,
    attempt: number,
    leg: Leg,
    req: TransferRequest,
    initial: SummaryResult,
    refined: Promise<SummaryResult>,
    signal: AbortSignal,
    record: RecordPhase,
    log: Logger,
  ): Promise<AttemptResult> {
    const d = this.deps;
    const { apiKey, apiSecret } = d.config.livekit;
    const callerRoomName = d.callerRoom.name!;
    const consultRoomName = `${callerRoomName}-consult-${transferId}-${attempt}`;
    const attemptId = `${transferId}-${attempt}`;
    const briefIdentity = `wt-brief-${transferId}`;
    const agentA = d.agentAIdentity?.();
    let briefing: Briefing | undefined;
    const status = (event: StatusMessage['event'], extra: Partial<StatusMessage> = {}): StatusMessage => statusOf(transferId, event, extra);
    /** Where a console (or Agent A) goes for this attempt, with its own token. */
    const consultPass = (token: { token: string; expiresAt: number }): ConsultPass => ({
      url: d.config.transfer.consoleUrl,
      room: consultRoomName,
      token: token.token,
      expiresAt: token.expiresAt,
      workerIdentity: briefIdentity,
    });

    try {
      record('offering', { attempt, agentB: leg.identity, kind: leg.kind });
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
        // The briefing session publishes its state (lk.agent.state: listening, thinking, speaking)
        // as its own attribute, for the console to show; without this the server refuses each one.
        canUpdateOwnMetadata: true,
      });

      const summaryNow = await settledWithin(refined, 0, initial);
      briefing = new Briefing({
        url: d.config.livekit.url,
        token: workerToken.token,
        transferId,
        agentBIdentity: leg.identity,
        observers: agentA ? [agentA] : [],
        summaryMessage: summaryMessage(transferId, summaryNow, req.note),
        spokenBrief: summaryNow.spokenBrief,
        // A person at a console reads the summary, and in assist mode Agent A briefs them: the AI
        // speaks only when asked. A phone cannot show anything: the brief is read out at once.
        speakBriefOnStart: leg.kind === 'sip' || d.mode === 'frontline',
        phone: leg.kind === 'sip',
        transcriptText: d.transcriptForAgentB(),
        session: d.briefingSession(),
        textOnly: d.textOnly && leg.kind !== 'sip',
        log,
      });
      // Join the consult room while the offer rings: the room exists, and Agent B may arrive first.
      const opening = withTimeout(briefing.open(), CONSULT_JOIN_TIMEOUT_MS, `the worker did not get into the consult room within ${CONSULT_JOIN_TIMEOUT_MS} ms`);
      opening.catch(() => undefined); // awaited below; never an unhandled rejection

      if (agentA) {
        // Agent A meets Agent B in the consult room: a pass for it, with the first progress message.
        const pass = await mintRoomToken({ apiKey, apiSecret, room: consultRoomName, identity: agentA, kind: 'agent', ttlSeconds: TOKEN_TTL_SECONDS });
        void this.#tellAgentA(status('offered', { target: leg.kind === 'sip' ? leg.target.number : leg.identity, consult: consultPass(pass) }));
      }

      if (leg.kind === 'sip') {
        await raceAbort(opening, signal);
        const dialled: SipDialResult = await dialAgentB(d.sip!, leg.target, {
          consultRoom: consultRoomName,
          identity: leg.identity,
          name: leg.name,
          signal,
          defaults: d.config.sip satisfies SipDefaults,
        });
        throwIfAborted(signal);
        if (!dialled.ok) {
          return { kind: 'failed', outcome: outcomeOfSipFailure(dialled.reason), reason: `phone ${leg.target.number}: ${dialled.reason}: ${dialled.detail}` };
        }
      } else {
        const consoleToken = await mintRoomToken({
          apiKey,
          apiSecret,
          room: consultRoomName,
          identity: leg.identity,
          name: leg.name,
          ttlSeconds: TOKEN_TTL_SECONDS,
          // A console that publishes no track is announced to the worker only on the server's 3 s
          // batch tick; setting its own attributes on arrival gets it announced at once.
          canUpdateOwnMetadata: true,
        });
        const offer: Offer = {
          v: CONTRACT_VERSION,
          transferId,
          attemptId,
          callerRoom: callerRoomName,
          reason: req.reason,
          note: req.note,
          skill: req.target.kind === 'participant' ? req.target.skill : undefined,
          consult: consultPass(consoleToken),
          preview: {
            intent: summaryNow.summary.intent,
            urgency: summaryNow.summary.urgency,
            sentiment: summaryNow.summary.sentiment,
            brief: summaryNow.brief.slice(0, 600),
          },
          expiresAt: Date.now() + d.config.transfer.offerTimeoutMs,
        };
        const answer = await d.desk.offer(leg.identity, offer, signal);
        throwIfAborted(signal);
        if (answer.kind === 'declined') return { kind: 'failed', outcome: 'declined', reason: `${leg.identity} declined: ${answer.reason}` };
        if (answer.kind === 'no_answer') return { kind: 'failed', outcome: 'no_answer', reason: `${leg.identity}: ${answer.reason}` };
        // Accepted: Agent B comes to the consult room.
        await raceAbort(opening, signal);
      }

      await raceAbort(this.#agentBInConsultRoom(briefing, consultRoomName, leg.identity, log, signal), signal).catch((err: unknown) => {
        if (err instanceof Cancelled) throw err;
        throw new AttemptFailed('agent_b_left', (err as Error).message);
      });

      record('briefing', { attempt, agentB: leg.identity });
      // Use the refined summary if it is in by now; never wait for it.
      const summary = await settledWithin(refined, 0, summaryNow);
      if (summary !== summaryNow) briefing.useSummary(summaryMessage(transferId, summary, req.note), summary.spokenBrief);
      await briefing.start();
      // Briefed from the rule-based summary (no rolling one yet): the model's replaces it on
      // Agent B's screen the moment it lands.
      if (summary.source === 'fallback') {
        const started = briefing;
        void refined
          .then(async (better) => {
            if (better.source !== 'llm' || signal.aborted) return;
            await started.replaceSummary(summaryMessage(transferId, better, req.note), better.spokenBrief);
            log.info({ transferId }, "the model's summary replaced the fallback on Agent B's screen");
          })
          .catch((err: unknown) => log.warn({ err }, "could not replace the fallback summary on Agent B's screen"));
      }
      void briefing.sendStatus(status('briefing'));
      void this.#tellAgentA(status('briefing', { target: leg.identity }));

      const decision = await raceAbort(
        withTimeout(briefing.decision, d.config.transfer.briefingTimeoutMs, 'timeout'),
        signal,
      ).catch((err: unknown): BriefingDecision => {
        if (err instanceof Cancelled) throw err;
        return { kind: 'decline', reason: `no decision within ${d.config.transfer.briefingTimeoutMs} ms of briefing` };
      });
      if (decision.kind === 'left') return { kind: 'failed', outcome: 'agent_b_left', reason: `${leg.identity} left the consult room during the briefing` };
      if (decision.kind === 'voicemail') return { kind: 'failed', outcome: outcomeOfSipFailure('voicemail'), reason: `phone ${leg.identity}: voicemail answered` };
      if (decision.kind === 'decline') return { kind: 'failed', outcome: 'declined', reason: `${leg.identity} declined after the briefing: ${decision.reason}` };

      record('connecting', { attempt, agentB: leg.identity, via: decision.via });
      void briefing.sendStatus(status('connecting'));
      void this.#tellAgentA(status('connecting', { target: leg.identity }));
      // A phone leg has no console to rejoin with: only a move brings it over (checked before dialling).
      const joined = await joinAgentB(leg.kind === 'sip' ? 'move' : d.config.transfer.joinStrategy, transferId, leg.identity, {
        roomService: d.roomService,
        consultRoom: briefing.room,
        consultRoomName,
        callerRoomName,
        consoleUrl: d.config.transfer.consoleUrl,
        log,
        callerRoomToken: (identity) =>
          mintRoomToken({ apiKey, apiSecret, room: callerRoomName, identity, name: leg.name, ttlSeconds: TOKEN_TTL_SECONDS }),
        waitInCallerRoom: (identity, timeoutMs) => this.#agentBInCallerRoom(identity, timeoutMs, log),
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
      // Deleting the room also hangs up a phone leg still in it, and sends Agent A back.
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

function summaryMessage(transferId: string, s: SummaryResult, note?: string): SummaryMessage {
  return {
    v: CONTRACT_VERSION,
    transferId,
    summary: { ...s.summary, pendingTurns: s.pendingTurns.map((t) => ({ speaker: t.speaker, text: t.text, at: t.at })) },
    brief: s.brief,
    source: s.source,
    generatedAt: s.generatedAt,
    ...(note ? { note } : {}),
  };
}

function statusOf(transferId: string, event: StatusMessage['event'], extra: Partial<StatusMessage> = {}): StatusMessage {
  return { v: CONTRACT_VERSION, transferId, event, at: Date.now(), ...extra };
}

/** What the record keeps of a target: never a SIP trunk's credentials or header values. */
export function targetForRecord(target: TransferTarget): Record<string, string | undefined> {
  switch (target.kind) {
    case 'participant':
      return { skill: target.skill, identity: target.identity };
    case 'agent':
      return { agentName: target.agentName };
    case 'sip':
      return { phone: target.number, trunkId: target.trunkId, trunkHost: target.trunk?.hostname, callerId: target.callerId };
  }
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

/**
 * Resolves with the identity of the AI agent that marked itself (ATTR.handoff) as taking over
 * `transferId` in `room`; rejects after `timeoutMs`.
 */
export function waitForHandoffAgent(room: Room, transferId: string, timeoutMs: number): Promise<string> {
  const isIt = (p: Participant) => p.kind === ParticipantKind.AGENT && p.attributes[ATTR.handoff] === transferId;
  return waitForRemote(room, isIt, timeoutMs, `no agent took over transfer ${transferId} within ${timeoutMs} ms`);
}
