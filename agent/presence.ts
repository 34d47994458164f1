/**
 * Waiting for someone to arrive in a room, with the server as a second witness.
 *
 * A room connection learns that someone joined from the server's participant updates. Rarely, a
 * connection never hears of a participant that the server lists in the room: in the two-node test
 * 1 run of 28 had the worker's consult-room connection miss Agent B for good (the server
 * had both participants active in the room; the worker's connection saw nobody and could not even
 * leave). Waiting on the connection alone then fails a transfer that is in fact ready. So while we
 * wait, the server is asked too, and a participant it lists that our connection has not seen after
 * a grace period counts as arrived, marked as such, so the caller can repair its connection.
 */
import { type Participant, type Room, RoomEvent } from '@livekit/rtc-node';
import { ParticipantInfo_State, type RoomServiceClient } from 'livekit-server-sdk';

/** Asks the server whether `identity` is in `room` now. */
export interface PresenceCheck {
  inRoom(room: string, identity: string): Promise<boolean>;
}

/** How an arrival was learned: from our own connection, or only from the server. */
export type Arrival = 'seen' | 'server';

export interface ArrivalOptions {
  /** The server's view; without it, only our connection counts. */
  server?: PresenceCheck;
  /** The room's name on the server (a connection still joining may not know it yet). */
  roomName: string;
  /** How long after the server first lists them our connection gets to see them too. */
  graceMs?: number;
  /** How often the server is asked. */
  pollMs?: number;
  /** Another sign that our connection has seen them (a handler of the caller's own). */
  seen?: Promise<unknown>;
  /** Stops the wait (rejects with the signal's reason). */
  signal?: AbortSignal;
}

/**
 * Longer than livekit-server's 3 s batch tick (subscriberUpdateInterval), on which a participant
 * without tracks may be announced: a connection that will hear of them on the tick is not replaced.
 */
export const ARRIVAL_GRACE_MS = 3_500;
export const ARRIVAL_POLL_MS = 1_000;

/** The server's view from a RoomServiceClient: in the room when joined or active. */
export function serverPresence(rooms: Pick<RoomServiceClient, 'getParticipant'>): PresenceCheck {
  return {
    async inRoom(room, identity) {
      try {
        const p = await rooms.getParticipant(room, identity);
        return p.state === ParticipantInfo_State.JOINED || p.state === ParticipantInfo_State.ACTIVE;
      } catch {
        // Not found, or the server API unreachable: no second witness this time; ask again later.
        return false;
      }
    },
  };
}

/**
 * Resolves with how `identity` was found in `room` (already there, joining, or listed by the
 * server and still unseen by our connection after `graceMs`); rejects with `timeoutMessage`.
 */
export function waitForArrival(room: Room, identity: string, timeoutMs: number, timeoutMessage: string, opts: ArrivalOptions): Promise<Arrival> {
  if (room.remoteParticipants.has(identity)) return Promise.resolve('seen');
  const graceMs = opts.graceMs ?? ARRIVAL_GRACE_MS;
  const pollMs = opts.pollMs ?? ARRIVAL_POLL_MS;
  return new Promise<Arrival>((resolve, reject) => {
    let done = false;
    let listedSince: number | undefined;
    let asking = false;
    const finish = (outcome: Arrival | Error) => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      clearInterval(poll);
      room.off(RoomEvent.ParticipantConnected, onJoined);
      opts.signal?.removeEventListener('abort', onAbort);
      if (outcome instanceof Error) reject(outcome);
      else resolve(outcome);
    };
    const onAbort = () => finish(opts.signal!.reason instanceof Error ? opts.signal!.reason : new Error('aborted'));
    const onJoined = (p: Participant) => {
      if (p.identity === identity) finish('seen');
    };
    const deadline = setTimeout(() => finish(new Error(timeoutMessage)), timeoutMs);
    const poll = setInterval(() => {
      if (!opts.server || asking) return;
      asking = true;
      opts.server.inRoom(opts.roomName, identity).then(
        (listed) => {
          asking = false;
          if (done) return;
          if (room.remoteParticipants.has(identity)) return finish('seen');
          if (!listed) {
            listedSince = undefined;
            return;
          }
          listedSince ??= Date.now();
          if (Date.now() - listedSince >= graceMs) finish('server');
        },
        () => {
          asking = false;
        },
      );
    }, pollMs);
    poll.unref?.();
    room.on(RoomEvent.ParticipantConnected, onJoined);
    opts.seen?.then(() => finish('seen'), () => undefined);
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
  });
}
