/**
 * The worker's entry point: `tsx agent/main.ts start` (production) or `dev`.
 * Validates configuration before anything connects, then hands over to the agents CLI, which
 * registers with LiveKit and forks a process per job running `agent/job.ts`.
 */
import { type AgentServer, ServerOptions, cli } from '@livekit/agents';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig } from './config.js';
import { AgentDispatchClient, RoomServiceClient } from 'livekit-server-sdk';
import { openTransferStore } from '../db/store.js';
import { loadEnvFiles } from './env-file.js';
import { applyJobProcessFlags } from './job-process.js';
import { logger } from './log.js';
import { startStaleTransferSweeper } from './recovery.js';

loadEnvFiles();

let config;
try {
  config = loadConfig();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`${err.message}\n`);
  process.exit(78); // EX_CONFIG: a supervisor can tell "fix the config" from a crash.
}

// The worker's main process looks after transfers whose worker died (see agent/recovery.ts).
if (process.argv.includes('start') || process.argv.includes('dev')) {
  const workerConfig = config;
  void openTransferStore({ url: workerConfig.database.url, authToken: workerConfig.database.authToken, spoolDir: workerConfig.database.spoolDir })
    .then((store) => {
      const dispatch = new AgentDispatchClient(workerConfig.livekit.apiUrl, workerConfig.livekit.apiKey, workerConfig.livekit.apiSecret);
      startStaleTransferSweeper({
        store,
        roomService: new RoomServiceClient(workerConfig.livekit.apiUrl, workerConfig.livekit.apiKey, workerConfig.livekit.apiSecret),
        log: logger().child({ component: 'stale-transfer-sweep' }),
        dispatchRecovery: async (room, transferId, textOnly) => {
          await dispatch.createDispatch(room, workerConfig.agentName, { metadata: JSON.stringify({ recoverTransferId: transferId, textOnly }) });
        },
      });
    })
    .catch((err: unknown) => logger().warn({ err }, 'transfer records unavailable in the worker process; no stale-transfer sweep'));
}

// Job processes are forked with this process's execArgv: give them the heap settings that keep
// garbage collection out of the audio loop (agent/job-process.ts).
applyJobProcessFlags();
// The runtime reads its loop monitor's threshold from the environment, in this process and in every
// job process it forks: hand it the validated value (agent/config.ts says what it costs).
process.env.LIVEKIT_AGENTS_LOOP_BLOCK_WARN_MS = String(config.worker.loopBlockWarnMs);
// The same for the native core's own logs, which it reads when its first room connects in each
// process (patches/@livekit+rtc-node+0.13.35.patch keeps them out of JavaScript).
process.env.RUST_LOG = config.nativeLogFilter;

cli.runApp(
  new ServerOptions({
    agent: fileURLToPath(new URL('./job.ts', import.meta.url)),
    agentName: config.agentName,
    wsURL: config.livekit.url,
    apiKey: config.livekit.apiKey,
    apiSecret: config.livekit.apiSecret,
    host: config.worker.host,
    port: config.worker.port,
    // Set explicitly: ServerOptions computes its defaults before the CLI says start or dev.
    numIdleProcesses: config.worker.idleProcesses,
    loadThreshold: config.worker.loadThreshold,
    // The server dispatches to a worker only while its reported load is under the server's target
    // (0.7 by default). CPU use of a shared host swings with everything else running on it, so a
    // job count is offered as a steadier measure.
    ...(config.worker.maxJobs > 0
      ? { loadFunc: async (server: AgentServer) => server.activeJobs.length / config.worker.maxJobs }
      : {}),
    // A job process imports the agent code on start; on a busy two-core host 10 s (the default) is
    // not always enough, and a process killed mid-start costs the caller a retry.
    initializeProcessTimeout: 30_000,
    logLevel: config.logLevel,
  }),
);
