/**
 * Assist mode: a human Agent A talks with the caller and the worker sits in the room silently. It
 * transcribes everyone (each audio track through VAD + STT, and typed `lk.chat` text), so the
 * rolling summary is ready, and it runs a transfer when Agent A asks for one by RPC.
 */
import { stt as sttTypes, type inference } from '@livekit/agents';
import * as openai from '@livekit/agents-plugin-openai';
import {
  AudioStream,
  type Participant,
  ParticipantKind,
  type RemoteParticipant,
  type RemoteTrack,
  type Room,
  RoomEvent,
  RpcError,
  type RpcInvocationData,
  type TextStreamReader,
  TrackKind,
} from '@livekit/rtc-node';
import type { RoomServiceClient } from 'livekit-server-sdk';
import type { WorkerConfig } from './config.js';
import { CONTRACT_VERSION, type LeaveRequest, RPC, RPC_ERROR, type StartReply, StartSchema, parsePayload } from './contract.js';
import type { Logger } from './log.js';
import type { Speaker, Transcript } from './transcript.js';
import type { RequestDecision, TransferRequest } from './transfer.js';

/** Who is speaking, from the participant's kind: agents (human or AI) are Agent A's side. */
export function speakerOf(p: Pick<Participant, 'kind'>): Speaker {
  return p.kind === ParticipantKind.AGENT ? 'agent_a' : 'caller';
}

/**
 * Writes every participant's speech and chat into the transcript. One STT stream per audio track,
 * segmented by the VAD (Groq's Whisper endpoint is not a streaming recogniser).
 */
export class AssistTranscriber {
  #streams = new Map<string, sttTypes.SpeechStream>();
  #closed = false;

  constructor(
    private readonly room: Room,
    private readonly transcript: Transcript,
    private readonly opts: { config: WorkerConfig; vad?: inference.VAD; textOnly: boolean; log: Logger },
  ) {}

  start(): void {
    // Text first: a chat message is a turn as it is.
    this.room.registerTextStreamHandler('lk.chat', (reader: TextStreamReader, info: { identity: string }) => {
      void reader
        .readAll()
        .then((text) => {
          const p = this.room.remoteParticipants.get(info.identity);
          if (p && text.trim()) this.transcript.add({ speaker: speakerOf(p), identity: p.identity, text });
        })
        .catch((err: unknown) => this.opts.log.debug({ err }, 'could not read a chat message'));
    });
    if (this.opts.textOnly || !this.opts.vad) return;
    this.room.on(RoomEvent.TrackSubscribed, (track: RemoteTrack, _pub, p: RemoteParticipant) => {
      if (track.kind === TrackKind.KIND_AUDIO) void this.#transcribe(track, p);
    });
    this.room.on(RoomEvent.TrackUnsubscribed, (track: RemoteTrack) => this.#stop(track.sid ?? ''));
    for (const p of this.room.remoteParticipants.values()) {
      for (const pub of p.trackPublications.values()) {
        if (pub.track && pub.kind === TrackKind.KIND_AUDIO) void this.#transcribe(pub.track as RemoteTrack, p);
      }
    }
  }

  async #transcribe(track: RemoteTrack, p: RemoteParticipant): Promise<void> {
    const sid = track.sid ?? `${p.identity}-audio`;
    if (this.#closed || this.#streams.has(sid)) return;
    const recogniser = openai.STT.withGroq({
      model: this.opts.config.groq.sttModel,
      apiKey: this.opts.config.groq.apiKey,
      baseURL: this.opts.config.groq.openaiBaseURL,
    });
    const stream = new sttTypes.StreamAdapter(recogniser, this.opts.vad!).stream();
    this.#streams.set(sid, stream);
    const audio = new AudioStream(track, { sampleRate: 16_000, numChannels: 1 });
    const pump = (async () => {
      for await (const frame of audio) {
        if (!this.#streams.has(sid)) break;
        stream.pushFrame(frame);
      }
    })();
    try {
      for await (const ev of stream) {
        if (ev.type !== sttTypes.SpeechEventType.FINAL_TRANSCRIPT) continue;
        const text = ev.alternatives?.[0]?.text?.trim();
        if (text) this.transcript.add({ speaker: speakerOf(p), identity: p.identity, text });
      }
    } catch (err) {
      this.opts.log.warn({ err, identity: p.identity }, 'transcription of a track stopped');
    } finally {
      this.#stop(sid);
      await audio.cancel().catch(() => undefined);
      await pump.catch(() => undefined);
    }
  }

  #stop(sid: string): void {
    const stream = this.#streams.get(sid);
    this.#streams.delete(sid);
    stream?.close();
  }

  close(): void {
    this.#closed = true;
    for (const sid of [...this.#streams.keys()]) this.#stop(sid);
  }
}

/** Maps a refused request to the RPC error Agent A's console gets. */
function refusal(decision: Extract<RequestDecision, { started: false }>): RpcError {
  switch (decision.why) {
    case 'already_running':
      return new RpcError(RPC_ERROR.wrongState, 'a transfer is already running for this call');
    case 'caller_absent':
      return new RpcError(RPC_ERROR.wrongState, 'there is no caller in the room to transfer');
    default:
      return new RpcError(RPC_ERROR.unavailable, `the transfer cannot start: ${decision.detail ?? decision.why}`);
  }
}

/**
 * `warm-transfer.start`: only a participant whose token marks it as an agent may start a
 * transfer. The reply is the transfer id, at once; progress follows as status messages.
 */
export function registerStartRpc(
  room: Room,
  ports: {
    request: (req: TransferRequest, agentA: string) => Promise<RequestDecision>;
    log: Logger;
  },
): void {
  room.localParticipant!.registerRpcMethod(RPC.start, async (data: RpcInvocationData) => {
    const from = room.remoteParticipants.get(data.callerIdentity);
    if (from?.kind !== ParticipantKind.AGENT) {
      ports.log.warn({ from: data.callerIdentity }, 'refused a transfer start from a participant that is not an agent');
      throw new RpcError(RPC_ERROR.forbidden, 'only an agent (a participant whose token has kind "agent") may start a transfer');
    }
    const parsed = parsePayload(StartSchema, data.payload);
    if (!parsed.ok) throw new RpcError(parsed.code, parsed.message);
    const start = parsed.value;
    const decision = await ports.request(
      { target: start.target, reason: start.reason ?? 'Agent A asked for a transfer', note: start.note, initiatedBy: data.callerIdentity },
      data.callerIdentity,
    );
    if (!decision.started) throw refusal(decision);
    const reply: StartReply = { v: CONTRACT_VERSION, transferId: decision.transferId };
    return JSON.stringify(reply);
  });
}

/**
 * Agent B is with the caller: ask Agent A's console to leave the caller room, and remove it if it
 * has not gone by the deadline (a console that crashed or ignores us must not stay on the call).
 */
export async function seeAgentAOut(
  room: Room,
  agentA: string,
  transferId: string,
  ports: { roomService: Pick<RoomServiceClient, 'removeParticipant'>; log: Logger },
  timeoutMs = 10_000,
): Promise<'left' | 'removed' | 'gone'> {
  if (!room.remoteParticipants.has(agentA)) return 'gone';
  let onLeft: ((p: RemoteParticipant) => void) | undefined;
  const left = new Promise<'left'>((resolve) => {
    onLeft = (p: RemoteParticipant) => p.identity === agentA && resolve('left');
    room.on(RoomEvent.ParticipantDisconnected, onLeft);
  });
  const request: LeaveRequest = { v: CONTRACT_VERSION, transferId, reason: 'Agent B has the call' };
  void room
    .localParticipant!.performRpc({ destinationIdentity: agentA, method: RPC.leave, payload: JSON.stringify(request), responseTimeout: timeoutMs })
    .catch((err: unknown) => ports.log.info({ err, transferId }, 'Agent A did not confirm the leave request'));
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
  const result = await Promise.race([left, deadline]);
  clearTimeout(timer);
  room.off(RoomEvent.ParticipantDisconnected, onLeft!);
  if (result === 'left') return 'left';
  await ports.roomService.removeParticipant(room.name!, agentA).catch((err: unknown) => ports.log.warn({ err, transferId }, 'could not remove Agent A'));
  ports.log.info({ transferId, agentA }, 'Agent A did not leave the caller room in time; removed');
  return 'removed';
}
