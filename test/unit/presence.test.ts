/**
 * Waiting for an arrival with the server as a second witness (agent/presence.ts). The room is a
 * real, unconnected rtc-node Room: its events are what a connection would emit; the server's view
 * is a small PresenceCheck whose answers each test scripts.
 */
import { type RemoteParticipant, Room, RoomEvent } from '@livekit/rtc-node';
import { TwirpError } from 'livekit-server-sdk';
import { describe, expect, it } from 'vitest';
import { type PresenceCheck, serverPresence, waitForArrival } from '../../agent/presence.js';

const FAST = { graceMs: 60, pollMs: 10 };

/** The server's view: whether `who` is listed, changed by the test; counts the questions. */
function scriptedServer(listed: () => boolean): PresenceCheck & { asked: number } {
  const server = {
    asked: 0,
    async inRoom(_room: string, _identity: string) {
      server.asked++;
      return listed();
    },
  };
  return server;
}

function joined(room: Room, identity: string): void {
  room.emit(RoomEvent.ParticipantConnected, { identity } as unknown as RemoteParticipant);
}

describe('waitForArrival', () => {
  it('is "seen" when our connection announces them, even while the server lists them too', async () => {
    const room = new Room();
    const server = scriptedServer(() => true);
    const waiting = waitForArrival(room, 'agent-b', 2_000, 'no Agent B', { roomName: 'consult', server, graceMs: 1_000, pollMs: 10 });
    joined(room, 'someone-else');
    joined(room, 'agent-b');
    await expect(waiting).resolves.toBe('seen');
  });

  it('is "server" when the server lists them and our connection stays silent past the grace period', async () => {
    const room = new Room();
    let listed = false;
    const server = scriptedServer(() => listed);
    const started = Date.now();
    const waiting = waitForArrival(room, 'agent-b', 5_000, 'no Agent B', { roomName: 'consult', server, ...FAST });
    setTimeout(() => (listed = true), 100);
    await expect(waiting).resolves.toBe('server');
    // Not before the server listed them plus the grace period.
    expect(Date.now() - started).toBeGreaterThanOrEqual(100 + FAST.graceMs);
  });

  it('gives our connection the grace period: an announcement inside it is "seen"', async () => {
    const room = new Room();
    const server = scriptedServer(() => true);
    const waiting = waitForArrival(room, 'agent-b', 5_000, 'no Agent B', { roomName: 'consult', server, graceMs: 500, pollMs: 10 });
    setTimeout(() => joined(room, 'agent-b'), 100);
    await expect(waiting).resolves.toBe('seen');
  });

  it('counts the caller\'s own sign of arrival as "seen"', async () => {
    const room = new Room();
    let arrived!: () => void;
    const seen = new Promise<void>((r) => (arrived = r));
    const waiting = waitForArrival(room, 'agent-b', 5_000, 'no Agent B', { roomName: 'consult', seen, ...FAST });
    arrived();
    await expect(waiting).resolves.toBe('seen');
  });

  it('times out with the given message when neither our connection nor the server has them, and stops asking', async () => {
    const room = new Room();
    const server = scriptedServer(() => false);
    await expect(waitForArrival(room, 'agent-b', 150, 'Agent B did not come', { roomName: 'consult', server, ...FAST })).rejects.toThrow('Agent B did not come');
    const asked = server.asked;
    expect(asked).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 60));
    expect(server.asked).toBe(asked);
    expect(room.listenerCount(RoomEvent.ParticipantConnected)).toBe(0);
  });

  it('a server that only briefly listed them (they left again) does not count', async () => {
    const room = new Room();
    let calls = 0;
    const server = scriptedServer(() => ++calls === 2);
    await expect(waitForArrival(room, 'agent-b', 400, 'no Agent B', { roomName: 'consult', server, ...FAST })).rejects.toThrow('no Agent B');
  });

  it('a server that fails to answer is no witness; the wait goes on until the deadline', async () => {
    const room = new Room();
    const server: PresenceCheck = { inRoom: async () => Promise.reject(new Error('connection refused')) };
    await expect(waitForArrival(room, 'agent-b', 150, 'no Agent B', { roomName: 'consult', server, ...FAST })).rejects.toThrow('no Agent B');
  });

  it('stops when aborted, with the abort reason', async () => {
    const room = new Room();
    const abort = new AbortController();
    const waiting = waitForArrival(room, 'agent-b', 5_000, 'no Agent B', { roomName: 'consult', signal: abort.signal, ...FAST });
    abort.abort(new Error('caller hung up'));
    await expect(waiting).rejects.toThrow('caller hung up');
    expect(room.listenerCount(RoomEvent.ParticipantConnected)).toBe(0);
  });
});

describe('serverPresence', () => {
  it('counts joined and active participants, not a joining or disconnected one, nor a not-found error', async () => {
    // ParticipantInfo_State: JOINING 0, JOINED 1, ACTIVE 2, DISCONNECTED 3.
    const states: Record<string, number> = { joining: 0, joined: 1, active: 2, gone: 3 };
    const presence = serverPresence({
      getParticipant: async (_room: string, identity: string) => {
        if (!(identity in states)) throw new TwirpError('not_found', 'participant not found', 404);
        return { state: states[identity] } as Awaited<ReturnType<Parameters<typeof serverPresence>[0]['getParticipant']>>;
      },
    });
    const answers = await Promise.all(['joining', 'joined', 'active', 'gone', 'nobody'].map((id) => presence.inRoom('consult', id)));
    expect(answers).toEqual([false, true, true, false, false]);
  });
});
