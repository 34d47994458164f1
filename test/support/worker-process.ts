/**
 * Runs the real worker (`agent/main.ts start`) as a child process in its own process group, the
 * way production runs it, and stops it by killing the whole group: job processes the agents
 * runtime forks ignore SIGTERM once orphaned, so killing only the parent would leave them behind.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { stopProcessGroup } from '../../scripts/livekit-dev-server.js';
import { Inbox, eventually, withDeadline } from './wait.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

export interface WorkerProcessOptions {
  /** Environment for the worker, on top of a minimal base (PATH, HOME). */
  env: Record<string, string>;
  /** Print the worker's output to this process's stderr as it arrives (debugging). */
  echo?: boolean;
  registerTimeoutMs?: number;
}

export interface WorkerProcess {
  pid: number;
  healthUrl: string;
  /** Every line the worker and its jobs printed (pino JSON lines, mostly). */
  lines: Inbox<string>;
  output(): string;
  /** Parsed JSON log records. */
  records(): Record<string, unknown>[];
  waitForLog(match: RegExp | ((line: string) => boolean), timeoutMs: number, what?: string): Promise<string>;
  /** Resolves with the exit code when the worker process exits. */
  exited: Promise<number | null>;
  stop(): Promise<void>;
  /** SIGKILL the whole process group at once, job processes included: a crash, not a shutdown. */
  crash(): Promise<void>;
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Spawn the worker CLI with `args` (e.g. ['start']) without waiting for anything. */
export function spawnWorker(args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [...(process.env.WT_WORKER_NODE_ARGS ? process.env.WT_WORKER_NODE_ARGS.split(' ') : []), '--import', 'tsx', 'agent/main.ts', ...args], {
    cwd: repoRoot,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/root',
      NODE_NO_WARNINGS: '1',
      // For hunting native-side failures: the Rust core's own log (e.g. livekit=debug) in the worker's output.
      ...(process.env.WT_WORKER_RUST_LOG ? { RUST_LOG: process.env.WT_WORKER_RUST_LOG } : {}),
      ...env,
    },
  });
}

export async function startWorker(opts: WorkerProcessOptions): Promise<WorkerProcess> {
  const port = await freePort();
  const child = spawnWorker(['start'], {
    WORKER_HOST: '127.0.0.1',
    WORKER_PORT: String(port),
    WORKER_IDLE_PROCESSES: '1',
    WORKER_LOAD_THRESHOLD: 'off',
    WORKER_MAX_JOBS: '100',
    LOG_LEVEL: 'info',
    ...opts.env,
  });
  const lines = new Inbox<string>();
  const chunks: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    let pending = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      chunks.push(chunk);
      if (opts.echo) process.stderr.write(chunk);
      pending += chunk;
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      for (const line of parts) lines.push(line);
    });
  }
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const healthUrl = `http://127.0.0.1:${port}`;
  const stop = () => stopProcessGroup(child, exited);

  const worker: WorkerProcess = {
    pid: child.pid!,
    healthUrl,
    lines,
    output: () => chunks.join(''),
    records: () =>
      lines.items.flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      }),
    waitForLog: (match, timeoutMs, what) =>
      lines.waitFor(typeof match === 'function' ? match : (l) => match.test(l), timeoutMs, what ?? `worker log ${String(match)}`),
    exited,
    stop,
    crash: async () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
      await exited;
    },
  };

  // The worker's health endpoint answers 200 only once it is registered with LiveKit.
  try {
    await withDeadline(
      Promise.race([
        eventually(
          async () => {
            const res = await fetch(healthUrl, { signal: AbortSignal.timeout(1000) });
            return res.ok;
          },
          { timeoutMs: opts.registerTimeoutMs ?? 60_000, what: 'worker health endpoint to answer 200', intervalMs: 100 },
        ),
        exited.then((code) => {
          throw new Error(`worker exited with code ${code} before registering:\n${worker.output().slice(-4000)}`);
        }),
      ]),
      (opts.registerTimeoutMs ?? 60_000) + 1000,
      'worker registration',
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return worker;
}

/** A worker log line in one short line (time, pid, level, message, transfer, error), or undefined for debug lines. */
export function compactLogLine(line: string): string | undefined {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.slice(0, 200);
  }
  if (typeof r.level === 'number' && r.level < 30) return undefined;
  const err = r.err as { message?: unknown } | undefined;
  const time = typeof r.time === 'number' ? new Date(r.time).toISOString().slice(11, 23) : '';
  return [time, r.pid, r.level, r.msg, r.transferId, r.room ?? r.room_id, err?.message ?? r.reason].filter((x) => x !== undefined && x !== '').join(' ').slice(0, 300);
}
