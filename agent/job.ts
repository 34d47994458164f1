/**
 * One job = one call. The agents runtime imports this file in a forked job process and runs
 * `entry` when the dispatch system sends the worker into a room.
 */
import { type JobContext, type JobProcess, defineAgent, inference, voice } from '@livekit/agents';
import { ParticipantKind, type RemoteParticipant, RpcError } from '@livekit/rtc-node';
import { AgentDispatchClient, RoomServiceClient, SipClient } from 'livekit-server-sdk';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { type TransferStore, openTransferStore } from '../db/store.js';
import { AssistTranscriber, registerStartRpc, seeAgentAOut } from './assist.js';
import { atMost, settledWithin } from './async-utils.js';
import { ATTR, CONTRACT_VERSION, GreetSchema, type Handoff, RPC, RPC_ERROR, parsePayload } from './contract.js';
import { loadConfig } from './config.js';
import { Desk } from './desk.js';
import { FrontlineAgent, GREETING_INSTRUCTIONS, RECOVERED_INSTRUCTIONS, SPECIALIST_GREETING_INSTRUCTIONS, specialistInstructions } from './frontline.js';
import { AssistHold, CallerHold, type Hold, withHoldWindow } from './hold.js';
import { type HoldClip, loadHoldMusic } from './hold-music.js';
import { parseJobOptions } from './job-options.js';
import { settleHeap } from './job-process.js';
import { favourCallThread } from './thread-priority.js';
import { warmUpProcess } from './warm-up.js';
import { closeSessionChannel } from './session-channel.js';
import { StallProbe } from './stall-probe.js';
import { type Logger, logger } from './log.js';
import { buildVoicePipeline } from './pipeline.js';
import { jobParticipantIdentity, recoverRoom } from './recovery.js';
import { redact } from './redact.js';
import { Summarizer, prewarmSummarizer } from './summarizer.js';
import { mintRoomToken } from './tokens.js';
import { Transcript } from './transcript.js';
import { TransferController, describeOutcome } from './transfer.js';

const CALLER_KINDS = new Set<ParticipantKind>([ParticipantKind.STANDARD, ParticipantKind.SIP, ParticipantKind.CONNECTOR]);
const HANDOVER_SPEECH_TIMEOUT_MS = 15_000;
/** An AI agent target greets on its own if the handing-over agent never asks it to. */
const HANDOFF_GREET_FALLBACK_MS = 20_000;
const RECORD_FLUSH_TIMEOUT_MS = 3_000;

interface ProcessData extends Record<string, unknown> {
  vad?: inference.VAD;
  store?: Promise<TransferStore | undefined>;
  holdMusic?: Promise<HoldClip>;
  helperThreads?: ReturnType<typeof favourCallThread>;
}

async function openStore(log: Logger): Promise<TransferStore | undefined> {
  try {
    const config = loadConfig();
    return await openTransferStore({ url: config.database.url, authToken: config.database.authToken, spoolDir: config.database.spoolDir, log });
  } catch (err) {
    // Calls must go on without the database; the store's own queue covers outages after opening.
    log.error({ err }, 'could not open the transfer record store; transfers in this process will not be recorded');
    return undefined;
  }
}

export default defineAgent({
  prewarm: async (proc: JobProcess<ProcessData>) => {
    const config = loadConfig();
    // The call thread goes first; everything else in this process may wait (agent/thread-priority.ts).
    proc.userData.helperThreads = favourCallThread(config.worker.helperThreadNice);
    // Loading the VAD model and opening the database take a moment: do it while the process idles.
    proc.userData.vad = new inference.VAD();
    // The first summary request otherwise pays for loading the HTTP client and the schema mid-call.
    prewarmSummarizer(config.summary.transport);
    proc.userData.store = openStore(logger());
    const holdMusic = loadHoldMusic(config.transfer.holdMusicFile);
    holdMusic.catch((err: unknown) => logger().warn({ err }, 'could not decode the hold music; held callers will hear silence'));
    proc.userData.holdMusic = holdMusic;
    // What a call would otherwise do for the first time while the caller listens (agent/warm-up.ts).
    const warm = warmUpProcess({
      buildModelClients: () => buildVoicePipeline(config, { textOnly: false, vad: proc.userData.vad }),
      onError: (step, err) => logger().warn({ err, step }, 'prewarm step failed; the first call pays for it'),
    });
    // Then collect what loading left behind, before a call arrives (see agent/job-process.ts).
    void Promise.allSettled([proc.userData.store, holdMusic, warm]).then(settleHeap);
  },
  entry: async (ctx: JobContext<ProcessData>) => {
    // Audio frames flow through this loop: measure how long it is ever blocked, and report it.
    const loopDelay = monitorEventLoopDelay({ resolution: 5 });
    loopDelay.enable();
    let peakRss = process.memoryUsage.rss();
    const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 1_000).unref();
    const config = loadConfig();
    // JOB_STALL_PROBE: also tell the call thread's own blocking from the host not running it.
    // A 5 ms period: at 1 ms the probe alone took 5% of a core per job, load that made the stalls it
    // measured when ten calls shared two cores (see agent/stall-probe.ts).
    const probe = config.worker.stallProbe ? new StallProbe({ cpu: 'thread', periodMs: 5 }) : undefined;
    probe?.start();
    const log = logger().child({ room: ctx.job.room?.name, jobId: ctx.job.id });
    const parsed = parseJobOptions(ctx.job.metadata);
    if (!parsed.ok) log.warn({ error: parsed.error }, 'ignoring bad dispatch metadata; using defaults');
    const options = parsed.options;
    const assist = options.mode === 'assist';
    const textOnly = options.textOnly ?? config.textOnly;
    const store = await (ctx.proc.userData.store ?? openStore(log));

    const transcript = new Transcript();
    if (options.handoff) {
      // Our own rolling summary starts from what the previous agent handed over.
      transcript.add({ speaker: 'system', text: `Handed over by another agent. Reason: ${options.handoff.reason}. Brief: ${options.handoff.brief}` });
    }
    const summarizerSettings = config.summary;
    const summarizer = new Summarizer(transcript, summarizerSettings, { log });
    const musicFor = () => ctx.proc.userData.holdMusic ?? loadHoldMusic(config.transfer.holdMusicFile);

    const callerIdentity = (): string | undefined => {
      if (options.callerIdentity) return ctx.room.remoteParticipants.has(options.callerIdentity) ? options.callerIdentity : undefined;
      const caller = [...ctx.room.remoteParticipants.values()].find((p: RemoteParticipant) => p.kind !== undefined && CALLER_KINDS.has(p.kind));
      return caller?.identity;
    };

    // Frontline: the worker's AI is Agent A. Assist: no voice of our own; a human is Agent A.
    const session = assist ? undefined : new voice.AgentSession(buildVoicePipeline(config, { textOnly, vad: ctx.proc.userData.vad }));
    let agentA: string | undefined; // assist mode: whoever started the running transfer
    const transferRoomService = new RoomServiceClient(config.livekit.apiUrl, config.livekit.apiKey, config.livekit.apiSecret);
    const callHold: Hold = session
      ? new CallerHold(session, ctx.room, { message: config.transfer.holdMessage, music: musicFor }, log)
      : new AssistHold(
          ctx.room,
          {
            callerIdentity,
            agentAIdentity: () => agentA,
            updateSubscriptions: async (room, identity, trackSids, subscribe) => {
              await transferRoomService.updateSubscriptions(room, identity, trackSids, subscribe);
            },
          },
          { music: musicFor },
          log,
        );
    // JOB_STALL_PROBE: stalls while the caller is on hold are reported on their own (`onHold`).
    const hold = probe ? withHoldWindow(callHold, () => probe.window('onHold')) : callHold;

    let controller: TransferController | undefined;
    let transcriber: AssistTranscriber | undefined;
    if (session) {
      // Every conversation turn feeds the transcript, which feeds the rolling summary.
      session.on(voice.AgentSessionEventTypes.ConversationItemAdded, (ev) => {
        const item = ev.item;
        if (item.type !== 'message' || !item.textContent) return;
        if (item.role === 'user') transcript.add({ speaker: 'caller', text: item.textContent, identity: callerIdentity() });
        else if (item.role === 'assistant') transcript.add({ speaker: 'agent_a', text: item.textContent });
      });
      const agent = new FrontlineAgent(
        { requestTransfer: async (req) => controller?.request(req) ?? { started: false, why: 'desk_unreachable', detail: 'the worker is still starting' } },
        { instructions: options.handoff ? specialistInstructions(options.handoff) : undefined },
      );
      await session.start({
        agent,
        room: ctx.room,
        inputOptions: {
          audioEnabled: !textOnly,
          textEnabled: true,
          participantIdentity: options.callerIdentity,
          textInputCallback: (sess, ev) => {
            if (hold.held) {
              // Kept for Agent B, never answered: the caller is on hold.
              transcript.add({ speaker: 'caller', text: ev.text, identity: ev.participantIdentity });
              return;
            }
            sess.interrupt();
            sess.generateReply({ userInput: ev.text });
          },
        },
        outputOptions: { audioEnabled: !textOnly, transcriptionEnabled: true },
      });
      await closeSessionChannel(session, log);
    }
    await ctx.connect();
    // From here audio can flow (the caller's, ours, hold music): stalls from now on are the ones a
    // caller could hear. Job start-up before it (session construction, connecting) can stall no
    // audio; its largest delay is kept for the whole-job figure. The same timer goes on (a second
    // histogram started mid-task measured its first interval from a stale loop clock).
    const startUpLoopDelayMax = loopDelay.max;
    loopDelay.reset();
    const endInCallWindow = probe?.window('inCall');
    if (!session) {
      transcriber = new AssistTranscriber(ctx.room, transcript, { config, vad: ctx.proc.userData.vad, textOnly, log });
      transcriber.start();
    }

    const deskIdentity = `wt-desk-${ctx.job.id}`;
    const desk = new Desk({
      url: config.livekit.url,
      token: (
        await mintRoomToken({
          apiKey: config.livekit.apiKey,
          apiSecret: config.livekit.apiSecret,
          room: config.transfer.deskRoom,
          identity: deskIdentity,
          name: 'Transfer desk',
          kind: 'agent',
          ttlSeconds: 6 * 60 * 60, // held for the whole call
          canPublish: false,
        })
      ).token,
      roomName: config.transfer.deskRoom,
      log,
    });
    // Join the desk in the background, so a transfer can start at once when it is asked for.
    void desk.connect().catch((err: unknown) => log.warn({ err }, 'could not join the agent desk yet; will retry at transfer time'));

    const leaveCall = async (transferId: string) => {
      await store?.flush(RECORD_FLUSH_TIMEOUT_MS);
      log.info({ transferId }, 'handover done; the worker leaves the call');
      ctx.shutdown('warm transfer completed');
    };
    controller = new TransferController({
      config,
      mode: options.mode,
      callerRoom: ctx.room,
      callerIdentity,
      agentAIdentity: assist ? () => agentA : undefined,
      briefingSession: () => buildVoicePipeline(config, { textOnly: false, vad: ctx.proc.userData.vad }),
      textOnly,
      hold,
      desk,
      summarizer,
      transcript,
      transcriptForAgentB: () =>
        transcript
          .all()
          .map((t) => `${t.speaker === 'caller' ? 'Caller' : t.speaker === 'agent_a' ? 'Agent A' : t.speaker}: ${redact(t.text, summarizerSettings.redactSpoken)}`)
          .join('\n'),
      store,
      roomService: transferRoomService,
      dispatch: new AgentDispatchClient(config.livekit.apiUrl, config.livekit.apiKey, config.livekit.apiSecret),
      sip: new SipClient(config.livekit.apiUrl, config.livekit.apiKey, config.livekit.apiSecret),
      workerId: ctx.workerId,
      jobId: ctx.job.id,
      log,
      introduce: async (agentBName) => {
        if (!session) return; // a human Agent A introduces Agent B in their own words
        // Both the caller and Agent B hear the introduction; then Agent A leaves the call.
        try {
          const handle = session.say(`Thank you for holding. ${agentBName} is with us now and has the details of your call. ${agentBName}, over to you.`, {
            allowInterruptions: false,
          });
          await atMost(handle.waitForPlayout(), HANDOVER_SPEECH_TIMEOUT_MS);
        } catch (err) {
          log.warn({ err }, 'handover introduction failed');
        }
      },
      onCompleted: async (result) => {
        if (assist && agentA) {
          const how = await seeAgentAOut(ctx.room, agentA, result.transferId, { roomService: transferRoomService, log });
          log.info({ transferId: result.transferId, agentA, how }, 'Agent A is out of the caller room');
        }
        await leaveCall(result.transferId);
      },
      onNotCompleted: (result) => {
        // Assist mode: Agent A got the `cancelled` status and is back with the caller (hold ended).
        // Frontline: the AI explains and carries on.
        session?.generateReply({
          instructions:
            `The transfer to a colleague did not work out (${describeOutcome(result.outcome)}). ` +
            'Apologise briefly, tell the caller you are still here to help, and continue helping them yourself.',
        });
      },
    });
    if (assist) {
      registerStartRpc(ctx.room, {
        log,
        request: async (req, from) => {
          if (!controller!.running) agentA = from;
          return controller!.request(req);
        },
      });
    }
    if (options.handoff) {
      await takeOverCall(ctx, session!, options.handoff, log);
    }

    ctx.addShutdownCallback(async () => {
      loopDelay.disable();
      endInCallWindow?.();
      clearInterval(rssTimer);
      const stalls = probe?.stop();
      log.info(
        {
          loopDelayMaxMs: Math.round(Math.max(startUpLoopDelayMax, loopDelay.max) / 1e5) / 10,
          inCallLoopDelayMaxMs: Math.round(loopDelay.max / 1e5) / 10,
          inCallLoopDelayP99Ms: Math.round(loopDelay.percentile(99) / 1e5) / 10,
          ...(stalls
            ? {
                stallProbe: {
                  maxStallMs: stalls.maxStallMs,
                  p99StallMs: stalls.p99StallMs,
                  maxStallOnCpuMs: stalls.maxStallOnCpuMs,
                  maxStallOnCpuExGcMs: stalls.maxStallOnCpuExGcMs,
                  largestStall: stalls.largestStall,
                  largestOnCpuStall: stalls.largestOnCpuStall,
                  inCall: stalls.windows.inCall,
                  onHold: stalls.windows.onHold,
                  maxGcMs: stalls.maxGcMs,
                },
              }
            : {}),
          peakRssMb: Math.round(Math.max(peakRss, process.memoryUsage.rss()) / 2 ** 20),
          helperThreadsLowered: ctx.proc.userData.helperThreads?.lowered() ?? 0,
          cpuUserMs: Math.round(process.cpuUsage().user / 1000),
        },
        'job stats',
      );
      transcriber?.close();
      summarizer.close();
      await desk.close();
      // Let a running transfer write its outcome first (bounded), then seal the records: close()
      // also spools what the database could not take, for another process to replay.
      const running = controller?.current;
      if (running) await settledWithin(running, RECORD_FLUSH_TIMEOUT_MS, undefined);
      await store?.close(RECORD_FLUSH_TIMEOUT_MS);
    });

    // A restarted job: a transfer this room had under a job that died is ended and explained.
    const recovered = store
      ? await recoverRoom(ctx.room.name!, ctx.job.id, {
          store,
          roomService: transferRoomService,
          ownerInRoom: (ownerJobId) => ctx.room.remoteParticipants.has(jobParticipantIdentity(ownerJobId)),
          log,
          notifyAgentB: async (identity, message) => {
            await desk.connect();
            await desk.sendStatus(identity, message);
          },
        }).catch((err: unknown) => {
          log.warn({ err }, 'could not check for transfers left open by a failed job');
          return [];
        })
      : [];

    if (options.recoverTransferId && recovered.length === 0) {
      // Sent to take a call back, but another agent already did (e.g. LiveKit Cloud restarted the job).
      const others = [...ctx.room.remoteParticipants.values()].filter((p) => p.kind === ParticipantKind.AGENT);
      if (others.length > 0) {
        log.info({ transferId: options.recoverTransferId }, 'the call was already taken back; leaving');
        ctx.shutdown('recovery not needed');
        return;
      }
    }
    log.info({ textOnly, mode: options.mode, handoff: options.handoff?.transferId, recoveredTransfers: recovered.map((t) => t.id) }, 'call started');
    if (session && !options.handoff) {
      session.generateReply({ instructions: recovered.length > 0 ? RECOVERED_INSTRUCTIONS : GREETING_INSTRUCTIONS });
    }
  },
});

/**
 * An AI agent transfer target: mark ourselves in the caller room as taking over the transfer, and
 * greet the caller when the handing-over agent says so (it answers after the greeting has played),
 * or on our own if it never does.
 */
async function takeOverCall(ctx: JobContext<ProcessData>, session: voice.AgentSession, handoff: Handoff, log: Logger): Promise<void> {
  let greeted: Promise<void> | undefined;
  const greet = () =>
    (greeted ??= (async () => {
      try {
        const handle = session.generateReply({ instructions: SPECIALIST_GREETING_INSTRUCTIONS });
        await atMost(handle.waitForPlayout(), HANDOVER_SPEECH_TIMEOUT_MS);
      } catch (err) {
        log.warn({ err }, 'specialist greeting failed');
      }
    })());
  ctx.room.localParticipant!.registerRpcMethod(RPC.greet, async (data) => {
    if (ctx.room.remoteParticipants.get(data.callerIdentity)?.kind !== ParticipantKind.AGENT) {
      throw new RpcError(RPC_ERROR.forbidden, 'only the agent handing the call over may ask for the greeting');
    }
    const parsedGreet = parsePayload(GreetSchema, data.payload);
    if (!parsedGreet.ok) throw new RpcError(parsedGreet.code, parsedGreet.message);
    if (parsedGreet.value.transferId !== handoff.transferId) throw new RpcError(RPC_ERROR.unknownTransfer, `this agent took over ${handoff.transferId}`);
    await greet();
    return JSON.stringify({ v: CONTRACT_VERSION, ok: true });
  });
  // Not awaited: the SDK waits for the server's acknowledgement, which now and then never comes
  // (it gives up after 5 s; the change is applied all the same).
  ctx.room.localParticipant!.setAttributes({ [ATTR.handoff]: handoff.transferId }).catch((err: unknown) => {
    log.warn({ err }, 'could not mark this agent as taking over the transfer');
  });
  setTimeout(() => void greet(), HANDOFF_GREET_FALLBACK_MS).unref();
}
