import { initializeLogger, log } from '@livekit/agents';

/** Structured (pino) logger shared by every module. Child loggers carry context such as transferId. */
export type Logger = ReturnType<typeof log>;

let initialized = false;

/**
 * The agents logger, initialised on first use when nothing else did it (tests, scripts, worker
 * threads): `log()` from @livekit/agents throws until `initializeLogger()` has run.
 */
export function logger(): Logger {
  try {
    return log();
  } catch {
    if (!initialized) {
      initialized = true;
      initializeLogger({ pretty: false, level: process.env.LOG_LEVEL ?? 'info' });
    }
    return log();
  }
}
