/**
 * A throwaway Redis for multi-node tests: Debian's `redis-server`, bound to one address on a free
 * port, no persistence, in its own process group (stopped by killing the group). LiveKit nodes
 * that share it route rooms, signalling and agent jobs between each other through it.
 *
 * `redisCommand` speaks just enough RESP over node:net to ask it things (PING, HKEYS, HGET).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopProcessGroup } from '../../scripts/livekit-dev-server.js';
import { freePort } from './worker-process.js';

export interface RedisServerOptions {
  /** Address to bind; default 127.0.0.1. */
  host?: string;
  /** Default: a free port. */
  port?: number;
  startTimeoutMs?: number;
}

export interface RunningRedis {
  host: string;
  port: number;
  /** host:port, as LiveKit's `redis.address` wants it. */
  address: string;
  pid: number;
  logFile: string;
  stop(): Promise<void>;
}

/** A RESP reply: simple string, error (as an Error), integer, bulk string (null when nil), array. */
export type RespValue = string | number | null | Error | RespValue[];

export async function startRedisServer(opts: RedisServerOptions = {}): Promise<RunningRedis> {
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? (await freePort(host));
  const dir = mkdtempSync(join(tmpdir(), 'redis-server-'));
  const logFile = join(dir, 'redis.log');
  const log = createWriteStream(logFile);
  const args = ['--port', String(port), '--bind', host, '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir, '--logfile', ''];
  // detached: its own process group, so stop() can kill the group.
  const child: ChildProcess = spawn('redis-server', args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  let spawnError: Error | undefined;
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.once('error', (err: NodeJS.ErrnoException) => {
      spawnError =
        err.code === 'ENOENT'
          ? new Error("redis-server is not installed; install Debian's redis-server (apt-get install -y redis-server; .ci/run does)")
          : err;
      resolve(null);
    });
  });
  const stop = () => stopProcessGroup(child, exited);
  const running: RunningRedis = { host, port, address: `${host}:${port}`, pid: child.pid ?? -1, logFile, stop };

  const timeoutMs = opts.startTimeoutMs ?? 15_000;
  const deadline = Date.now() + timeoutMs;
  let early: number | null | undefined;
  void exited.then((code) => {
    early = code;
  });
  try {
    for (;;) {
      if (spawnError) throw spawnError;
      if (early !== undefined) throw new Error(`redis-server exited with code ${early} before answering PING; see ${logFile}`);
      try {
        if ((await redisCommand(running.address, ['PING'], 1000)) === 'PONG') return running;
      } catch {
        // not listening yet
      }
      if (Date.now() >= deadline) throw new Error(`redis-server did not answer PING at ${running.address} within ${timeoutMs} ms; see ${logFile}`);
      // Poll interval while it boots; readiness is the PONG, not this delay.
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Send one command and read one reply. Rejects on a connection error or after `timeoutMs`. */
export function redisCommand(address: string, args: string[], timeoutMs = 2000): Promise<RespValue> {
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i);
  const port = Number(address.slice(i + 1));
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`redis ${args[0]} at ${address}: no reply within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (fn: () => void) => {
      clearTimeout(timer);
      socket.destroy();
      fn();
    };
    socket.once('error', (err) => done(() => reject(err)));
    socket.once('close', () => done(() => reject(new Error(`redis ${args[0]} at ${address}: connection closed before a reply`))));
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      let parsed: ReturnType<typeof parseResp>;
      try {
        parsed = parseResp(buf, 0);
      } catch (err) {
        done(() => reject(err as Error));
        return;
      }
      if (parsed) done(() => resolve(parsed.value));
    });
    socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
  });
}

/** Parse one RESP2 value at `at`; undefined when `buf` does not hold all of it yet. */
function parseResp(buf: Buffer, at: number): { value: RespValue; next: number } | undefined {
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return undefined;
  const type = String.fromCharCode(buf[at]!);
  const line = buf.toString('utf8', at + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+':
      return { value: line, next };
    case '-':
      return { value: new Error(line), next };
    case ':':
      return { value: Number(line), next };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, next };
      if (buf.length < next + len + 2) return undefined;
      return { value: buf.toString('utf8', next, next + len), next: next + len + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, next };
      const items: RespValue[] = [];
      let pos = next;
      for (let k = 0; k < n; k++) {
        const item = parseResp(buf, pos);
        if (!item) return undefined;
        items.push(item.value);
        pos = item.next;
      }
      return { value: items, next: pos };
    }
    default:
      throw new Error(`unexpected RESP type byte ${JSON.stringify(type)}`);
  }
}
