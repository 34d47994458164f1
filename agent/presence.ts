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
import { setTimeout as sleep } from 'node:timers/promises';
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
 * The identity of the first remote participant of `room` that matches (already there, joining,
 * or changing its attributes to match); rejects with `timeoutMessage` after `timeoutMs`, or with
 * the signal's reason when it is aborted.
 */
export function waitForRemote(room: Room, matches: (p: Participant) => boolean, timeoutMs: number, timeoutMessage: string, signal?: AbortSignal): Promise<string> {
  const already = [...room.remoteParticipants.values()].find(matches);
  if (already) return Promise.resolve(already.identity);
  return new Promise<string>((resolve, reject) => {
    const finish = (outcome: string | Error) => {
      clearTimeout(timer);
      room.off(RoomEvent.ParticipantConnected, check);
      room.off(RoomEvent.ParticipantAttributesChanged, onAttributes);
      signal?.removeEventListener('abort', onAbort);
      if (outcome instanceof Error) reject(outcome);
      else resolve(outcome);
    };
    const check = (p: Participant) => {
      if (matches(p)) finish(p.identity);
    };
    const onAttributes = (_changed: Record<string, string>, p: Participant) => check(p);
    const onAbort = () => finish(signal!.reason instanceof Error ? signal!.reason : new Error('aborted'));
    const timer = setTimeout(() => finish(new Error(timeoutMessage)), timeoutMs);
    room.on(RoomEvent.ParticipantConnected, check);
    room.on(RoomEvent.ParticipantAttributesChanged, onAttributes);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Resolves with how `identity` was found in `room` (already there, joining, or listed by the
 * server and still unseen by our connection after `graceMs`); rejects with `timeoutMessage`.
 */
export async function waitForArrival(room: Room, identity: string, timeoutMs: number, timeoutMessage: string, opts: ArrivalOptions): Promise<Arrival> {
  // Stops whichever witnesses are still waiting once one has answered.
  const stop = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
  const witnesses: Array<Promise<Arrival>> = [waitForRemote(room, (p) => p.identity === identity, timeoutMs, timeoutMessage, signal).then(() => 'seen')];
  if (opts.seen) witnesses.push(opts.seen.then(() => 'seen', () => new Promise<never>(() => undefined)));
  if (opts.server) witnesses.push(listedBy(opts.server, opts.roomName, identity, opts.graceMs ?? ARRIVAL_GRACE_MS, opts.pollMs ?? ARRIVAL_POLL_MS, stop.signal));
  try {
    return await Promise.race(witnesses);
  } finally {
    stop.abort();
  }
}

/** Resolves once the server has listed `identity` for `graceMs` running; never while stopped. */
async function listedBy(server: PresenceCheck, room: string, identity: string, graceMs: number, pollMs: number, stop: AbortSignal): Promise<Arrival> {
  let listedSince: number | undefined;
  for (;;) {
    await sleep(pollMs, undefined, { signal: stop, ref: false }).catch(() => undefined);
    if (stop.aborted) return new Promise<never>(() => undefined); // the wait is over: no answer
    if (!(await server.inRoom(room, identity).catch(() => false))) {
      listedSince = undefined;
      continue;
    }
    listedSince ??= Date.now();
    if (Date.now() - listedSince >= graceMs) return 'server';
  }
}
