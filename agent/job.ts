/**
 * One job = one call. The agents runtime imports this file in a forked job process and runs
 * `entry` when the dispatch system sends the worker into a room.
 */
import { type JobContext, type JobProcess, defineAgent, inference, voice } from '@livekit/agents';
import { loadConfig } from './config.js';
import { FrontlineAgent, GREETING_INSTRUCTIONS } from './frontline.js';
import { parseJobOptions } from './job-options.js';
import { logger } from './log.js';
import { buildVoicePipeline } from './pipeline.js';

export default defineAgent({
  prewarm: async (proc: JobProcess) => {
    // Loading the VAD model takes a moment; do it while the process idles, not when a call arrives.
    proc.userData.vad = new inference.VAD();
  },
  entry: async (ctx: JobContext) => {
    const config = loadConfig();
    const log = logger().child({ room: ctx.job.room?.name, jobId: ctx.job.id });
    const parsed = parseJobOptions(ctx.job.metadata);
    if (!parsed.ok) log.warn({ error: parsed.error }, 'ignoring bad dispatch metadata; using defaults');
    const options = parsed.options;
    if (options.mode === 'assist') {
      log.warn('assist mode is not available yet; running as the frontline agent');
    }
    const textOnly = options.textOnly ?? config.textOnly;

    const pipeline = buildVoicePipeline(config, {
      textOnly,
      vad: ctx.proc.userData.vad as inference.VAD | undefined,
    });
    const session = new voice.AgentSession(pipeline);
    await session.start({
      agent: new FrontlineAgent(),
      room: ctx.room,
      inputOptions: {
        audioEnabled: !textOnly,
        textEnabled: true,
        participantIdentity: options.callerIdentity,
      },
      outputOptions: { audioEnabled: !textOnly, transcriptionEnabled: true },
    });
    await ctx.connect();
    log.info({ textOnly, mode: options.mode }, 'call started');
    session.generateReply({ instructions: GREETING_INSTRUCTIONS });
  },
});
