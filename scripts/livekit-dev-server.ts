/**
 * Start and stop a local open-source livekit-server in dev mode, for development, the demo and the
 * tests. Run directly (`npm run livekit-server`) it serves in the foreground until Ctrl-C.
 *
 * The server is always bound to an address we choose (never all interfaces) and is told to hand
 * out a loopback STUN address, so no client is ever sent to a STUN host outside this machine.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const DEV_API_KEY = 'devkey';
export const DEV_API_SECRET = 'secret';

export interface LiveKitServerOptions {
  /** Address for HTTP/WebSocket (and RTC unless nodeIp differs). */
  bindAddress?: string;
  /** Address advertised to WebRTC clients (a test address inside the test network namespace). */
  nodeIp?: string;
  httpPort?: number;
  rtcTcpPort?: number;
  rtcUdpPort?: number;
  apiKey?: string;
  apiSecret?: string;
  /** Redis address for multi-node setups. */
  redisAddress?: string;
  /** Where the server's output goes; default a file in a temp directory. */
  logFile?: string;
  startTimeoutMs?: number;
}

export interface RunningLiveKitServer {
  /** ws:// URL for clients and the worker. */
  url: string;
  /** http:// URL for the server API (RoomService, AgentDispatch). */
  httpUrl: string;
  apiKey: string;
  apiSecret: string;
  version: string;
  pid: number;
  logFile: string;
  stop(): Promise<void>;
}

const repoRoot = fileURLToPath(new URL('..', import.meta.url));

/** Path of the livekit-server binary, installing the pinned version when missing. */
export function livekitServerBinary(): string {
  return execFileSync('bash', [join(repoRoot, 'scripts/livekit-server.sh'), 'install'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}

function serverConfigYaml(o: Required<Omit<LiveKitServerOptions, 'redisAddress' | 'logFile'>> & { redisAddress?: string }): string {
  const lines = [
    `port: ${o.httpPort}`,
    'bind_addresses:',
    `  - ${o.bindAddress}`,
    'rtc:',
    `  tcp_port: ${o.rtcTcpPort}`,
    `  udp_port: ${o.rtcUdpPort}`,
    '  use_external_ip: false',
    `  node_ip: ${o.nodeIp}`,
    '  enable_loopback_candidate: true',
    // Without this the server tells clients to use public STUN hosts. Nothing listens here; that is
    // the point: every candidate a client needs is a host candidate on the test network.
    '  stun_servers:',
    `    - ${o.bindAddress}:3478`,
    'keys:',
    `  ${o.apiKey}: ${o.apiSecret}`,
    'logging:',
    '  level: info',
  ];
  if (o.nodeIp !== o.bindAddress) {
    lines.splice(3, 0, `  - ${o.nodeIp}`);
  }
  if (o.redisAddress) lines.push('redis:', `  address: ${o.redisAddress}`);
  return `${lines.join('\n')}\n`;
}

export async function startLiveKitServer(opts: LiveKitServerOptions = {}): Promise<RunningLiveKitServer> {
  const o = {
    bindAddress: opts.bindAddress ?? '127.0.0.1',
    nodeIp: opts.nodeIp ?? opts.bindAddress ?? '127.0.0.1',
    httpPort: opts.httpPort ?? 7880,
    rtcTcpPort: opts.rtcTcpPort ?? 7881,
    rtcUdpPort: opts.rtcUdpPort ?? 7882,
    apiKey: opts.apiKey ?? DEV_API_KEY,
    apiSecret: opts.apiSecret ?? DEV_API_SECRET,
    startTimeoutMs: opts.startTimeoutMs ?? 30_000,
    redisAddress: opts.redisAddress,
  };
  const bin = livekitServerBinary();
  const version = execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim();
  const dir = mkdtempSync(join(tmpdir(), 'livekit-server-'));
  const configFile = join(dir, 'livekit.yaml');
  writeFileSync(configFile, serverConfigYaml(o));
  const logFile = opts.logFile ?? join(dir, 'server.log');
  const log = createWriteStream(logFile);

  // detached: its own process group, so stop() can take down anything it spawned too.
  const child = spawn(bin, ['--dev', '--config', configFile, '--bind', o.bindAddress], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const httpUrl = `http://${o.bindAddress}:${o.httpPort}`;
  const stop = () => stopProcessGroup(child, exited);
  try {
    await waitUntilHealthy(httpUrl, o.startTimeoutMs, exited, logFile);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url: `ws://${o.bindAddress}:${o.httpPort}`,
    httpUrl,
    apiKey: o.apiKey,
    apiSecret: o.apiSecret,
    version,
    pid: child.pid!,
    logFile,
    stop,
  };
}

async function waitUntilHealthy(httpUrl: string, timeoutMs: number, exited: Promise<number | null>, logFile: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let early: number | null | undefined;
  void exited.then((code) => {
    early = code;
  });
  while (Date.now() < deadline) {
    if (early !== undefined) {
      throw new Error(`livekit-server exited with code ${early} before it was healthy; see ${logFile}`);
    }
    try {
      const res = await fetch(httpUrl, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    // Poll interval while the server boots; readiness is the health answer, not this delay.
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`livekit-server was not healthy at ${httpUrl} within ${timeoutMs} ms; see ${logFile}`);
}

/** SIGTERM the whole process group, then SIGKILL it if it has not exited within the grace period. */
export async function stopProcessGroup(child: ChildProcess, exited: Promise<unknown>, graceMs = 5000): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, sig);
    } catch {
      // group already gone
    }
  };
  signal('SIGTERM');
  const timer = setTimeout(() => signal('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
  // Children of the group leader may outlive it; make sure none is left.
  signal('SIGKILL');
}

// Foreground mode: `npm run livekit-server`.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const server = await startLiveKitServer({
    bindAddress: process.env.LIVEKIT_BIND ?? '127.0.0.1',
    nodeIp: process.env.LIVEKIT_NODE_IP,
  });
  process.stdout.write(
    `livekit-server ${server.version} is up at ${server.url} (key ${server.apiKey}); log: ${server.logFile}\nCtrl-C stops it.\n`,
  );
  const shutdown = () => void server.stop().then(() => process.exit(0));
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}
