/**
 * What every process of a worker's group is doing right now, for a failed test's report: a call
 * that goes silent with no log line at all (not even a bounded wait's warning) means a job's event
 * loop is stuck, and CI keeps no other trace of where. Per process: each thread's name and state,
 * the main thread's kernel wait and system call, and (where gdb is installed) its native stack.
 */
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

function read(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '?';
  }
}

/** pid, comm, state and process group of one /proc/<pid>/stat (comm may hold spaces and parens). */
function stat(pid: string): { comm: string; state: string; pgid: number } | undefined {
  const text = read(`/proc/${pid}/stat`);
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  const rest = text.slice(close + 2).split(' ');
  return { comm: text.slice(text.indexOf('(') + 1, close), state: rest[0] ?? '?', pgid: Number(rest[2]) };
}

function processesInGroup(pgid: number): string[] {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p) && stat(p)?.pgid === pgid);
}

async function nativeStack(pid: string): Promise<string> {
  try {
    const { stdout } = await run('gdb', ['-p', pid, '-batch', '-nx', '-ex', 'bt 40'], { timeout: 20_000, maxBuffer: 1 << 20 });
    return stdout
      .split('\n')
      .filter((l) => l.startsWith('#'))
      .join('\n');
  } catch (err) {
    return `(no native stack: ${(err as Error).message.split('\n')[0]})`;
  }
}

/** `stackPids`: the processes worth a native stack (gdb takes a second or two per process). */
export async function snapshotProcessGroup(pgid: number, stackPids: ReadonlySet<number>): Promise<string> {
  const out: string[] = [];
  for (const pid of processesInGroup(pgid)) {
    const tasks = readdirSync(`/proc/${pid}/task`).map((tid) => ({ tid, ...stat(tid) }));
    const states = tasks.map((t) => `${t.comm}:${t.state}`).join(' ');
    out.push(
      `pid ${pid} ${read(`/proc/${pid}/cmdline`).replaceAll('\0', ' ').slice(0, 120)}`,
      `  main thread: state ${stat(pid)?.state} wchan ${read(`/proc/${pid}/wchan`)} syscall ${read(`/proc/${pid}/syscall`).split(' ')[0]}`,
      `  threads: ${states}`,
    );
    if (stackPids.has(Number(pid))) out.push((await nativeStack(pid)).replace(/^/gm, '  '));
  }
  return out.join('\n');
}
