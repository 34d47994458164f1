/**
 * Closing the remote-session channel that @livekit/agents 1.9 opens for every AgentSession in a room.
 *
 * The framework serves LiveKit's own tools over `lk.agent.session` byte streams: it streams every
 * conversation item, transcript and tool call (with arguments and output) to the participant it
 * listens to, or to the whole room before it has one, and it answers their requests: the agent's
 * instructions and history, running text through the model, switching audio input on. For a call
 * that is a leak and a way around the hold (a held caller's words must never reach the model),
 * and each event costs a byte stream (three FFI requests) on the call's event loop. The framework
 * has no option to leave it out, so it is closed as soon as the session has started; only the
 * session's own start goes out before that (an agent-handoff marker without content, and its state).
 */
import type { voice } from '@livekit/agents';
import type { Logger } from './log.js';

/** The part of the framework's (untyped, private) session host this needs. */
interface SessionHost {
  close(): Promise<void>;
}

/** Call right after `session.start()`: closes the channel, or does nothing where there is none. */
export async function closeSessionChannel(session: voice.AgentSession, log: Logger): Promise<void> {
  // Private in the typings; checked by test/e2e/hardening.test.ts, which fails if an upgrade renames it.
  const host = (session as unknown as { sessionHost?: SessionHost }).sessionHost;
  await host?.close().catch((err: unknown) => log.warn({ err }, 'could not close the agents session channel'));
}
