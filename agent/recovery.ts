/**
 * After a worker dies mid-transfer: nobody may stay on hold forever, and no record may stay open.
 *
 * Two mechanisms, both keyed on the records:
 * - In the call: LiveKit restarts a failed job (dispatch restart policy) in another worker. The new
 *   job finds its room's transfers still open under another job, ends them, deletes their consult
 *   rooms, tells Agent B, and tells the caller what happened (job.ts).
 * - Everywhere else: each worker's main process sweeps for open transfers whose owner stopped
 *   sending heartbeats (startStaleTransferSweeper) and sends an agent back to the caller, or ends
 *   the transfer when the call is over.
 */
import type { RoomServiceClient } from 'livekit-server-sdk';
import type { TransferStore } from '../db/store.js';
import type { TransferRecord } from '../db/types.js';
import { CONTRACT_VERSION, type StatusMessage } from './contract.js';
import type { Logger } from './log.js';

/** How often a running transfer proves its owner is alive. */
export const HEARTBEAT_INTERVAL_MS = 5_000;
/** An open transfer whose owner has been silent this long (three missed heartbeats) is looked after by the sweep. */
export const STALE_AFTER_MS = 15_000;
/** Past this, the sweep ends an open transfer even if its caller room still has people in it. */
export const ABANDONED_AFTER_MS = 10 * 60_000;

export interface RecoveryPorts {
  store: TransferStore;
  roomService: Pick<RoomServiceClient, 'deleteRoom' | 'listParticipants'>;
  /** Best effort: tell a console that its transfer is over. */
  notifyAgentB?: (identity: string, message: StatusMessage) => Promise<void>;
  log: Logger;
}

async function endTransfer(t: TransferRecord, reason: string, ports: RecoveryPorts): Promise<void> {
  if (t.consultRoom) {
    // Deleting the consult room also disconnects a console still waiting there.
    await ports.roomService.deleteRoom(t.consultRoom).catch(() => undefined);
  }
  if (t.agentBIdentity && ports.notifyAgentB) {
    await ports.notifyAgentB(t.agentBIdentity, {
      v: CONTRACT_VERSION,
      transferId: t.id,
      event: 'cancelled',
      outcome: 'failed',
      reason,
      at: Date.now(),
    }).catch(() => undefined);
  }
  await ports.store.finish(t.id, 'failed', reason);
  ports.log.warn({ transferId: t.id, callerRoom: t.callerRoom, phase: t.phase }, `ended an orphaned transfer: ${reason}`);
}

/**
 * End the open transfers of `callerRoom` whose owner is gone. A room can hold several of our jobs
 * at once (an AI agent target dispatched by a transfer, a second dispatch), so a transfer of
 * another job is only orphaned when that job's participant has left the room or its heartbeat has
 * stopped: LiveKit restarts a failed job while the dead one may still look present for a moment.
 * `ownerInRoom` says whether the job that owns a transfer still has its participant here.
 * Returns what was ended.
 */
export async function recoverRoom(
  callerRoom: string,
  jobId: string,
  ports: RecoveryPorts & { ownerInRoom: (ownerJobId: string) => boolean },
  now = Date.now(),
): Promise<TransferRecord[]> {
  const orphaned = (t: TransferRecord) => {
    if (t.jobId === jobId) return false;
    return !t.jobId || !ports.ownerInRoom(t.jobId) || now - lastSignOf(t) > STALE_AFTER_MS;
  };
  const open = (await ports.store.listTransfers({ room: callerRoom, status: 'open' })).items.filter(orphaned);
  for (const t of open) {
    await endTransfer(t, `the worker running this transfer stopped in the ${t.phase} phase; job ${jobId} took the call back`, ports);
  }
  return open;
}

/** When the owner of an open transfer last showed it was alive. */
function lastSignOf(t: TransferRecord): number {
  return t.heartbeatAt ?? t.updatedAt ?? t.requestedAt ?? 0;
}

/** The participant identity the agents runtime gives a job in its room (its default, which we keep). */
export function jobParticipantIdentity(jobId: string): string {
  return `agent-${jobId}`;
}

export interface SweepPorts extends RecoveryPorts {
  /** Send an agent (a new job of this worker's agent name) into a caller room to take the call back. */
  dispatchRecovery: (callerRoom: string, transferId: string, textOnly: boolean) => Promise<void>;
}

const AGENT_KIND = 4; // ParticipantInfo_Kind.AGENT

/**
 * Look after open transfers whose owner went silent (no heartbeat for STALE_AFTER_MS):
 * - Agent B already with the caller: the worker died during the handover; the transfer is completed.
 * - A caller still there and no agent: send a new agent in to take the call back (it ends the
 *   transfer and tells the caller; the open-source server does not restart failed jobs itself).
 * - Nobody left: the call is over; end the transfer.
 * - An agent is there (LiveKit Cloud restarted the job): leave it to that job, unless abandoned.
 * `dispatched` remembers what this sweeper already sent an agent for.
 */
export async function sweepStaleTransfers(ports: SweepPorts, dispatched: Map<string, number>, now = Date.now()): Promise<void> {
  // Records may still be on their way (queued, or spooled by a process that exited during a
  // database outage): a transfer whose heartbeats sit in a spool only looks stale. Judge next tick.
  await ports.store.replaySpool();
  if ((await ports.store.flush(5_000)) > 0 || (await ports.store.spoolBacklog()) > 0) return;
  const stale = await ports.store.listOpenTransfers({ staleBeforeMs: now - STALE_AFTER_MS });
  for (const t of stale) {
    const lastSign = lastSignOf(t);
    const abandoned = now - lastSign > ABANDONED_AFTER_MS;
    const people = await ports.roomService.listParticipants(t.callerRoom).catch(() => []);
    const agents = people.filter((p) => Number(p.kind) === AGENT_KIND);
    const others = people.filter((p) => Number(p.kind) !== AGENT_KIND);
    if (t.agentBIdentity && others.some((p) => p.identity === t.agentBIdentity)) {
      if (t.consultRoom) await ports.roomService.deleteRoom(t.consultRoom).catch(() => undefined);
      await ports.store.finish(t.id, 'completed', 'Agent B reached the caller; the worker stopped during the handover');
      ports.log.warn({ transferId: t.id }, 'ended a transfer whose worker stopped after Agent B reached the caller');
    } else if (others.length === 0 || abandoned) {
      await endTransfer(
        t,
        abandoned
          ? `no heartbeat from its worker for ${Math.round((now - lastSign) / 1000)} s; ended by the stale-transfer sweep`
          : `its worker stopped in the ${t.phase} phase and the call is over; ended by the stale-transfer sweep`,
        ports,
      );
    } else if (agents.length === 0 && !dispatched.has(t.id)) {
      dispatched.set(t.id, now);
      const textOnly = (t.target as { textOnly?: unknown } | null)?.textOnly === true;
      ports.log.warn({ transferId: t.id, callerRoom: t.callerRoom }, 'the worker running this transfer stopped; sending an agent to take the call back');
      await ports.dispatchRecovery(t.callerRoom, t.id, textOnly);
    }
  }
}

/**
 * Run the sweep every `intervalMs` in this process (the worker's main process: one per worker).
 * Returns a stop function.
 */
export function startStaleTransferSweeper(ports: SweepPorts, intervalMs = STALE_AFTER_MS / 4): () => void {
  const dispatched = new Map<string, number>();
  let running = false;
  const tick = async () => {
    if (running) return;
    running = true;
    try {
      await sweepStaleTransfers(ports, dispatched);
    } catch (err) {
      ports.log.warn({ err }, 'stale-transfer sweep failed; will try again');
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void tick(), intervalMs);
  timer.unref();
  void tick();
  return () => clearInterval(timer);
}
