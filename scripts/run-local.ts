/**
 * `npm start`: run the worker locally. With no LIVEKIT_URL configured (environment or .env.local),
 * a local open-source livekit-server is started first (dev keys, bound to 127.0.0.1) and the
 * worker is pointed at it. Ctrl-C stops both.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig } from '../agent/config.js';
import { loadEnvFiles } from '../agent/env-file.js';
import { type RunningLiveKitServer, startLiveKitServer, stopProcessGroup } from './livekit-dev-server.js';

loadEnvFiles();

let server: RunningLiveKitServer | undefined;
if (!process.env.LIVEKIT_URL) {
  process.stdout.write('No LIVEKIT_URL configured: starting a local livekit-server in dev mode...\n');
  server = await startLiveKitServer({ bindAddress: '127.0.0.1' });
  process.env.LIVEKIT_URL = server.url;
  process.env.LIVEKIT_API_KEY = server.apiKey;
  process.env.LIVEKIT_API_SECRET = server.apiSecret;
  process.stdout.write(`${server.version} at ${server.url} (API key ${server.apiKey}, secret ${server.apiSecret}); log: ${server.logFile}\n`);
}

try {
  const config = loadConfig();
  process.stdout.write(
    `Worker "${config.agentName}" registering with ${config.livekit.url}. Send it into a room with an explicit dispatch, e.g.\n` +
      `  lk dispatch create --room my-room --agent-name ${config.agentName} --url ${config.livekit.url} --api-key ${config.livekit.apiKey} --api-secret <secret>\n`,
  );
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`${err.message}\n`);
  await server?.stop();
  process.exit(78);
}

const worker = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../agent/main.ts', import.meta.url)), 'dev'], {
  stdio: 'inherit',
  detached: true, // own process group: stopping it also stops the job processes it forks
});
const exited = new Promise<number | null>((resolve) => worker.once('exit', (code) => resolve(code)));

// Ctrl-C reaches npm and this process at once, and npm then sends SIGTERM too: a second signal must
// wait for the first shutdown (which stops the local server), not exit in the middle of it.
let stopping: Promise<never> | undefined;
function shutdown(code: number): Promise<never> {
  stopping ??= (async () => {
    await stopProcessGroup(worker, exited);
    await server?.stop();
    process.exit(code);
  })();
  return stopping;
}
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));
void exited.then((code) => shutdown(code ?? 1));
