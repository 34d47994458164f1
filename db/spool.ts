/**
 * The spool: transfer records the database would not take, kept on local disk until a store that
 * can reach the database writes them.
 *
 * A job process lives for one call. If the database is down for the whole call, the retry queue
 * (write-queue.ts) holds the call's records in memory until the process exits, and they would be
 * lost. So a store appends the writes it has not stored to a spool file (JSON lines, fsync'd) once
 * they have waited a while, and at flush and close; and every store replays the spool files that
 * other stores left behind: when it opens, every `replayIntervalMs`, and when its own database
 * comes back after an outage.
 *
 * Files (in `dir`, one per store, i.e. per process):
 *   <db>-<created ms>-<pid>-<store>@<host>.jsonl.live   being written by a running store
 *   <db>-<created ms>-<pid>-<store>@<host>.jsonl        sealed by `close`: anyone may replay it
 *   <...>.jsonl.claimed-<pid>-<store>@<host>            being replayed by that store
 * `<db>` names the database (a hash of its location): a store only touches its own database's
 * files, so several databases may share a directory (DATABASE_SPOOL_DIR). A `.live` or `.claimed`
 * file is taken over when its process is gone (same host, pid no longer running) or when its
 * holder stopped refreshing its modification time (`abandonedAfterMs`; other hosts, reused pids).
 * A claim is one `rename`, which is atomic: of two stores claiming one file, one gets it.
 *
 * Replaying is safe however often it happens (statements.ts): creates, events and finishes apply
 * once, heartbeats only move forward, and the other updates (consult room, Agent B, summary) set
 * their value again, in the order the writes were made, since a replayer applies a file's writes
 * in file order. A file holds, from its first line, every write its writer had not stored, so a
 * value set again is followed by the later writes of it. The exception: a writer that stores
 * newer writes and dies in the millisecond before it deletes its file (or is taken for dead while
 * alive) leaves a file whose replay can put back an older consult room, Agent B or summary. The
 * replayed writes go through the replayer's own retry queue; the claimed file is deleted once all
 * of them are stored, and if the replayer stops first they are in its own spool.
 *
 * All file work is asynchronous (fs/promises, on libuv's thread pool): a store on a job's main
 * thread never blocks its event loop on the disk. What a write costs in the call path is a check
 * and, during an outage, a scheduled append.
 */
import { createHash, randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, stat, unlink, utimes } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { TRANSFER_OUTCOMES, TRANSFER_PHASES } from '../agent/transfer-state.js';
import { transferIdOf, type WriteOp } from './types.js';
import type { StoreLogger } from './write-queue.js';

export interface SpoolOptions {
  /** The spool directory (created on first use). */
  dir: string;
  /** The database's location (never a token): files of other databases are left alone. */
  database: string;
  log: StoreLogger;
  /** The store's writes not stored yet, oldest first. */
  pending: () => WriteOp[];
  /** Whether the store has a write with this key queued. */
  isPending: (key: string) => boolean;
  /** Hands a replayed write to the store's queue (behind what is queued already). */
  enqueue: (op: WriteOp) => void;
  /** Whether to take on more files now: not while the store's own writes are failing. */
  canClaim: () => boolean;
  /** How often to look for files left by others (and refresh this store's own). Default 30 s. */
  replayIntervalMs?: number;
  /** A `.live` / `.claimed` file untouched this long is taken over. Default max(5 min, 10 intervals). */
  abandonedAfterMs?: number;
}

export interface SpoolStats {
  /** Writes this store put in its spool files. */
  spooled: number;
  /** Writes this store took from spool files into its queue. */
  replayed: number;
}

/** What `seal` did with the writes the store could not store. */
export interface SealResult {
  /** The sealed file holding them, when there were any and they reached the disk. */
  file: string | undefined;
  records: number;
  durable: boolean;
}

export const DEFAULT_REPLAY_INTERVAL_MS = 30_000;
const MIN_ABANDONED_AFTER_MS = 5 * 60_000;

/** A store that writes or claims spool files: its process, its own id, its host. */
export interface Holder {
  pid: number;
  /** Distinguishes stores of one process (lower-case letters and digits). */
  store: string;
  /** The host name, with anything but letters, digits and '-' replaced by '-'. */
  host: string;
}

export interface SpoolFileName {
  name: string;
  /** The sealed name (`….jsonl`), which a released claim goes back to. */
  base: string;
  db: string;
  createdMs: number;
  state: 'live' | 'sealed' | 'claimed';
  /** The store that wrote it. */
  writer: Holder;
  /** The store that claimed it (state `claimed`). */
  claimer: Holder | undefined;
}

const NAME_RE =
  /^(([0-9a-f]{12})-(\d+)-(\d+)-([0-9a-z]+)@([A-Za-z0-9-]*)\.jsonl)(?:(\.live)|\.claimed-(\d+)-([0-9a-z]+)@([A-Za-z0-9-]*))?$/;

/** The name of a file written by `writer` for the database tagged `db` (see the header). */
export function formatSpoolFileName(db: string, createdMs: number, writer: Holder, state: 'live' | 'sealed'): string {
  const base = `${db}-${Math.trunc(createdMs)}-${writer.pid}-${writer.store}@${writer.host}.jsonl`;
  return state === 'live' ? `${base}.live` : base;
}

/** Parses a spool file name; undefined for anything else in the directory. */
export function parseSpoolFileName(name: string): SpoolFileName | undefined {
  const m = NAME_RE.exec(name);
  if (m === null) return undefined;
  const [, base, db, created, pid, store, host, live, claimPid, claimStore, claimHost] = m;
  return {
    name,
    base: base!,
    db: db!,
    createdMs: Number(created),
    state: live !== undefined ? 'live' : claimPid !== undefined ? 'claimed' : 'sealed',
    writer: { pid: Number(pid), store: store!, host: host! },
    claimer: claimPid !== undefined ? { pid: Number(claimPid), store: claimStore!, host: claimHost! } : undefined,
  };
}

/** The tag that names a database in file names. */
export function spoolDatabaseTag(database: string): string {
  return createHash('sha256').update(database).digest('hex').slice(0, 12);
}

/** This host, as spool file names carry it. */
export function hostTag(): string {
  return hostname().replace(/[^A-Za-z0-9-]/g, '-').slice(0, 63);
}

function errCode(err: unknown): string | undefined {
  return (err as { code?: unknown } | null)?.code as string | undefined;
}

/** Whether a process runs on this host (EPERM: it does, under another user). */
function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errCode(err) === 'EPERM';
  }
}

const OP_KINDS = new Set(['create', 'consultRoom', 'agentB', 'summary', 'event', 'finish', 'touch']);
const PHASES = new Set<string>(TRANSFER_PHASES);
const OUTCOMES = new Set<string>(TRANSFER_OUTCOMES);

/**
 * A spool line as a write, or undefined when it is not one. Only the shape the statements rely on
 * is checked; the database refuses anything else (and the queue logs it whole).
 */
export function parseSpoolLine(line: string): WriteOp | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const op = value as Record<string, unknown>;
  if (typeof op.kind !== 'string' || !OP_KINDS.has(op.kind)) return undefined;
  if (typeof op.key !== 'string' || op.key === '' || typeof op.at !== 'number') return undefined;
  if (op.kind === 'create') {
    const t = op.transfer as Record<string, unknown> | null | undefined;
    return typeof t === 'object' && t !== null && typeof t.id === 'string' && typeof t.requestedAt === 'number'
      ? (value as WriteOp)
      : undefined;
  }
  if (typeof op.id !== 'string') return undefined;
  // the phase picks a column name in the SQL: only a known one may come through
  if (op.kind === 'event' && !(typeof op.phase === 'string' && PHASES.has(op.phase))) return undefined;
  if (op.kind === 'finish' && !(typeof op.outcome === 'string' && OUTCOMES.has(op.outcome))) return undefined;
  return value as WriteOp;
}

export class Spool {
  readonly dir: string;
  private readonly db: string;
  private readonly me: Holder = { pid: process.pid, store: randomUUID().slice(0, 8), host: hostTag() };
  private readonly log: StoreLogger;
  private readonly replayIntervalMs: number;
  private readonly abandonedAfterMs: number;
  /** The own file appended to; undefined until the first write, and after it was given up. */
  private live: string | undefined;
  /** Every own `.live` file that may still hold writes (an earlier one is left after a write error). */
  private readonly ownFiles = new Set<string>();
  /** Keys written to the current own file whose writes are still pending. */
  private readonly spooledKeys = new Set<string>();
  /** Claimed files, with the keys of theirs not stored yet. */
  private readonly claimed = new Map<string, Set<string>>();
  /** File changes run one at a time, in order. */
  private chain: Promise<unknown> = Promise.resolve();
  private scans: Promise<number> = Promise.resolve(0);
  private scanning = false;
  private persistQueued = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private writeFailing = false;
  private dirUnreadable = false;
  private readonly counters: SpoolStats = { spooled: 0, replayed: 0 };

  constructor(private readonly opts: SpoolOptions) {
    this.dir = opts.dir;
    this.db = spoolDatabaseTag(opts.database);
    this.log = opts.log.child({ spool: opts.dir });
    this.replayIntervalMs = opts.replayIntervalMs ?? DEFAULT_REPLAY_INTERVAL_MS;
    this.abandonedAfterMs = opts.abandonedAfterMs ?? Math.max(MIN_ABANDONED_AFTER_MS, 10 * this.replayIntervalMs);
  }

  stats(): SpoolStats {
    return { ...this.counters };
  }

  /** How many spool files of this database there are (any state, any writer). */
  async backlog(): Promise<number> {
    try {
      return (await readdir(this.dir)).filter((name) => parseSpoolFileName(name)?.db === this.db).length;
    } catch (err) {
      if (errCode(err) === 'ENOENT') return 0;
      throw err;
    }
  }

  /** Replays what is there now, in the background, and then every `replayIntervalMs`. */
  start(): void {
    void this.replay();
    this.timer = setInterval(() => {
      void this.heartbeat();
      if (!this.scanning) void this.replay();
    }, this.replayIntervalMs);
    // records must never keep a finished process alive
    this.timer.unref();
  }

  /**
   * Claims the spool files of this database that nobody is handling and queues their writes.
   * Resolves with how many writes it queued, once they are queued (not stored). Never rejects.
   */
  replay(): Promise<number> {
    this.scans = this.scans.then(() => this.scan());
    return this.scans;
  }

  /** Appends the pending writes not yet in this store's file. Resolves false when that failed. */
  persist(): Promise<boolean> {
    return this.step(() => this.appendPending());
  }

  /** `persist`, coalesced: at most one append waits to run. */
  persistSoon(): void {
    if (this.persistQueued || this.stopped) return;
    this.persistQueued = true;
    void this.step(() => {
      this.persistQueued = false;
      return this.appendPending();
    });
  }

  /** Writes left the queue (stored, or rejected and logged): files that only held those can go. */
  done(ops: WriteOp[]): void {
    if (this.spooledKeys.size > 0) {
      for (const op of ops) this.spooledKeys.delete(op.key);
      if (this.spooledKeys.size === 0) void this.step(() => this.dropOwnFiles());
    }
    for (const [file, keys] of this.claimed) {
      for (const op of ops) keys.delete(op.key);
      if (keys.size === 0) {
        this.claimed.delete(file);
        void this.step(() => this.removeClaimed(file));
      }
    }
  }

  /** No more claims; resolves when a claim in progress has queued its writes. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.scans;
  }

  /**
   * The store is closing and its queue has stopped: puts what it could not store into a sealed
   * file (anyone may replay it), and lets go of the files it claimed, which that file now covers
   * (or, if it could not be written, which go back to being replayable as they were).
   */
  async seal(): Promise<SealResult> {
    await this.stop(); // a claim in progress ends with its writes in the queue, and so below
    return this.step(async () => {
      const pending = this.opts.pending();
      const durable = pending.length === 0 || (await this.appendPending());
      let file: string | undefined;
      if (pending.length === 0) {
        this.spooledKeys.clear(); // all stored, whether or not every report of it has come in
        await this.dropOwnFiles();
      } else if (durable && this.live !== undefined) {
        // every pending write is in the current file: earlier own files hold nothing more
        for (const old of this.ownFiles) if (old !== this.live) await this.remove(old);
        file = this.live.slice(0, -'.live'.length);
        await this.move(this.live, file);
        this.ownFiles.clear();
        this.live = undefined;
      } else {
        // best effort: whatever reached the disk becomes replayable
        for (const own of this.ownFiles) await this.move(own, own.slice(0, -'.live'.length));
        this.ownFiles.clear();
        this.live = undefined;
      }
      for (const claimedFile of this.claimed.keys()) {
        if (durable) await this.remove(claimedFile);
        else await this.move(claimedFile, parseSpoolFileName(claimedFile)?.base ?? claimedFile);
      }
      this.claimed.clear();
      this.spooledKeys.clear();
      await this.syncDir();
      return { file: file === undefined ? undefined : path.join(this.dir, file), records: pending.length, durable };
    });
  }

  // -------------------------------------------------------------------------------------------

  private step<T>(work: () => Promise<T>): Promise<T> {
    const next = this.chain.then(work, work);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async scan(): Promise<number> {
    if (this.stopped) return 0;
    this.scanning = true;
    try {
      let names: string[];
      try {
        names = await readdir(this.dir);
        this.dirUnreadable = false;
      } catch (err) {
        // once per spell, not every interval
        if (errCode(err) !== 'ENOENT' && !this.dirUnreadable) {
          this.log.warn({ err }, 'could not read the transfer record spool directory; spool files left by others are not replayed');
        }
        this.dirUnreadable = errCode(err) !== 'ENOENT';
        return 0;
      }
      const files = names
        .map(parseSpoolFileName)
        .filter((f): f is SpoolFileName => f !== undefined && f.db === this.db)
        // oldest first: the order the writes were made in, as near as files tell
        .sort((a, b) => a.createdMs - b.createdMs || (a.name < b.name ? -1 : 1));
      let queued = 0;
      for (const file of files) {
        if (this.stopped || !this.opts.canClaim()) break;
        if (!(await this.claimable(file))) continue;
        const claimedName = `${file.base}.claimed-${this.me.pid}-${this.me.store}@${this.me.host}`;
        try {
          await rename(path.join(this.dir, file.name), path.join(this.dir, claimedName));
        } catch (err) {
          // ENOENT: another store claimed it first
          if (errCode(err) !== 'ENOENT') this.log.warn({ err, file: file.name }, 'could not claim a transfer record spool file');
          continue;
        }
        queued += await this.load(claimedName, file);
      }
      return queued;
    } catch (err) {
      this.log.error({ err }, 'replaying the transfer record spool failed; it is tried again later');
      return 0;
    } finally {
      this.scanning = false;
    }
  }

  private async claimable(file: SpoolFileName): Promise<boolean> {
    if (file.state === 'sealed') return true;
    const holder = file.state === 'claimed' ? file.claimer! : file.writer;
    // a store of this process is open (a closed one sealed or released its files)
    if (holder.host === this.me.host && holder.pid === this.me.pid) return false;
    if (holder.host === this.me.host && !processRuns(holder.pid)) return true;
    // another host, or a pid that runs (maybe reused): holders refresh their files' mtime
    try {
      const st = await stat(path.join(this.dir, file.name));
      return Date.now() - st.mtimeMs > this.abandonedAfterMs;
    } catch {
      return false;
    }
  }

  /** Reads a claimed file and queues its writes, in file order. */
  private async load(claimedName: string, file: SpoolFileName): Promise<number> {
    const full = path.join(this.dir, claimedName);
    let text: string;
    try {
      text = await readFile(full, 'utf8');
    } catch (err) {
      this.log.error({ err, file: claimedName }, 'could not read a claimed transfer record spool file; releasing it');
      await this.move(claimedName, file.base);
      return 0;
    }
    const lines = text.split('\n');
    // a complete file ends with a newline; anything after the last one is a write cut short
    const tail = lines.pop() ?? '';
    const ops: WriteOp[] = [];
    lines.forEach((line, i) => {
      if (line.trim() === '') return;
      const op = parseSpoolLine(line);
      if (op !== undefined) ops.push(op);
      else this.log.error({ file: claimedName, line: i + 1, text: line }, 'transfer record spool line is not a record; skipped (its text follows)');
    });
    if (tail !== '') {
      this.log.error(
        { file: claimedName, line: lines.length + 1, text: tail },
        'transfer record spool file ends in a torn line (its writer stopped mid-write); skipped (its text follows)',
      );
    }

    // Registered before queueing, so that a write stored at once still counts for this file.
    const keys = new Set(ops.map((op) => op.key));
    this.claimed.set(claimedName, keys);
    this.log.info(
      {
        file: claimedName,
        records: ops.length,
        transfers: [...new Set(ops.map(transferIdOf))],
        writtenBy: { pid: file.writer.pid, host: file.writer.host },
        replayedBy: { pid: this.me.pid, host: this.me.host },
      },
      'replaying transfer records from a spool file',
    );
    let queued = 0;
    const seen = new Set<string>();
    for (const op of ops) {
      // a write already queued here (another copy of the same file) is stored by that entry
      if (seen.has(op.key) || this.opts.isPending(op.key)) continue;
      seen.add(op.key);
      this.opts.enqueue(op);
      queued++;
    }
    this.counters.replayed += queued;
    if (keys.size === 0) {
      this.claimed.delete(claimedName);
      await this.step(() => this.removeClaimed(claimedName));
    }
    return queued;
  }

  private async removeClaimed(claimedName: string): Promise<void> {
    await this.remove(claimedName);
    this.log.info({ file: claimedName }, 'transfer record spool file replayed: every record in it is stored');
  }

  /** Own files go once everything written to them left the queue. */
  private async dropOwnFiles(): Promise<void> {
    if (this.spooledKeys.size > 0 || this.ownFiles.size === 0) return;
    for (const own of this.ownFiles) await this.remove(own);
    this.ownFiles.clear();
    this.live = undefined;
  }

  private async appendPending(): Promise<boolean> {
    const pending = this.opts.pending();
    if (this.live !== undefined) {
      const fresh = pending.filter((op) => !this.spooledKeys.has(op.key));
      if (fresh.length === 0) return true;
      try {
        await this.writeLines(this.live, fresh, false);
        this.spooled(fresh);
        return true;
      } catch (err) {
        if (errCode(err) === 'ENOENT') {
          // Another store took this process for dead and claimed the file: it replays what is in
          // there; a new file gets everything still pending here.
          this.log.warn({ file: this.live }, 'transfer record spool file was taken over by another store; starting a new one');
          this.ownFiles.delete(this.live);
        } else {
          this.writeFailed(err);
        }
        this.live = undefined;
      }
    }
    if (pending.length === 0) return true;
    // A new file gets every pending write, so that it alone covers them: an earlier file that
    // failed mid-write may end in a torn line.
    this.spooledKeys.clear();
    const name = formatSpoolFileName(this.db, Date.now(), this.me, 'live');
    try {
      await mkdir(this.dir, { recursive: true });
      this.ownFiles.add(name);
      await this.writeLines(name, pending, true);
      await this.syncDir();
      this.live = name;
      this.spooled(pending);
      this.writeFailing = false;
      return true;
    } catch (err) {
      this.writeFailed(err);
      return false;
    }
  }

  private spooled(ops: WriteOp[]): void {
    // a write stored while its line was being written needs no spooling any more
    let added = 0;
    for (const op of ops) {
      if (!this.opts.isPending(op.key)) continue;
      this.spooledKeys.add(op.key);
      added++;
    }
    this.counters.spooled += ops.length;
    if (added === 0) void this.step(() => this.dropOwnFiles());
  }

  private writeFailed(err: unknown): void {
    if (this.writeFailing) return;
    this.writeFailing = true;
    this.log.error(
      { err },
      'could not write the transfer record spool; records not stored are only in memory until the database is back (and are logged whole at shutdown)',
    );
  }

  /** Appends whole lines and waits until they are on the disk. */
  private async writeLines(name: string, ops: WriteOp[], create: boolean): Promise<void> {
    const text = ops.map((op) => `${JSON.stringify(op)}\n`).join('');
    const flags = constants.O_WRONLY | constants.O_APPEND | (create ? constants.O_CREAT | constants.O_EXCL : 0);
    const fh = await open(path.join(this.dir, name), flags, 0o600);
    try {
      await fh.writeFile(text, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** Makes created, renamed and removed names durable too (best effort: not every system can). */
  private async syncDir(): Promise<void> {
    try {
      const fh = await open(this.dir, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    } catch {
      // the names are still there; only a power cut could lose them
    }
  }

  /** Tells others that this store still holds its files. */
  private async heartbeat(): Promise<void> {
    const now = new Date();
    for (const file of [...this.ownFiles, ...this.claimed.keys()]) {
      await utimes(path.join(this.dir, file), now, now).catch(() => undefined);
    }
  }

  private async remove(file: string): Promise<void> {
    try {
      await unlink(path.join(this.dir, file));
    } catch (err) {
      if (errCode(err) !== 'ENOENT') this.log.warn({ err, file }, 'could not remove a transfer record spool file');
    }
  }

  private async move(from: string, to: string): Promise<void> {
    try {
      await rename(path.join(this.dir, from), path.join(this.dir, to));
    } catch (err) {
      if (errCode(err) !== 'ENOENT') this.log.warn({ err, file: from }, 'could not rename a transfer record spool file');
    }
  }
}
