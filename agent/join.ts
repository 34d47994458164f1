/**
 * Bringing Agent B from the consult room into the caller's room.
 *
 * - `move`: RoomService.MoveParticipant. LiveKit Cloud only; the open-source server answers
 *   "not implemented".
 * - `rejoin`: Agent B's console gets a short-lived token for the caller room by RPC, joins, and the
 *   worker removes it from the consult room once it is in. Works on any server.
 * - `auto`: `move`, falling back to `rejoin` when the server says MoveParticipant is not implemented.
 */
import type { Room } from '@livekit/rtc-node';
import type { RoomServiceClient } from 'livekit-server-sdk';
import type { JoinStrategy } from './config.js';
import { CONTRACT_VERSION, JoinReplySchema, type JoinRequest, RPC, parsePayload } from './contract.js';
import type { Logger } from './log.js';
import { isNotImplemented } from './server-errors.js';

export interface JoinPorts {
  roomService: Pick<RoomServiceClient, 'moveParticipant' | 'removeParticipant'>;
  /** The worker's participant in the consult room, to call the console's join RPC. */
  consultRoom: Room;
  consultRoomName: string;
  callerRoomName: string;
  /** Resolves when `identity` is present in the caller room (event-driven), rejects on deadline. */
  waitInCallerRoom(identity: string, timeoutMs: number): Promise<void>;
  /** A caller-room token for Agent B. */
  callerRoomToken(identity: string): Promise<{ token: string; expiresAt: number }>;
  consoleUrl: string;
  log: Logger;
}

export type JoinResult = { ok: true; via: 'move' | 'rejoin' } | { ok: false; reason: string };

export async function joinAgentB(strategy: JoinStrategy, transferId: string, identity: string, ports: JoinPorts, timeoutMs = 20_000): Promise<JoinResult> {
  if (strategy === 'rejoin') return rejoin(transferId, identity, ports, timeoutMs);
  try {
    await ports.roomService.moveParticipant(ports.consultRoomName, identity, ports.callerRoomName);
  } catch (err) {
    if (strategy === 'auto' && isNotImplemented(err)) {
      ports.log.info({ transferId }, 'server cannot move participants; Agent B rejoins the caller room instead');
      return rejoin(transferId, identity, ports, timeoutMs);
    }
    return { ok: false, reason: `MoveParticipant failed: ${(err as Error).message}` };
  }
  try {
    await ports.waitInCallerRoom(identity, timeoutMs);
    return { ok: true, via: 'move' };
  } catch {
    return { ok: false, reason: `Agent B did not appear in the caller room within ${timeoutMs} ms after the move` };
  }
}

async function rejoin(transferId: string, identity: string, ports: JoinPorts, timeoutMs: number): Promise<JoinResult> {
  const { token, expiresAt } = await ports.callerRoomToken(identity);
  const request: JoinRequest = {
    v: CONTRACT_VERSION,
    transferId,
    callerRoom: ports.callerRoomName,
    url: ports.consoleUrl,
    token,
    expiresAt,
  };
  const arrived = ports.waitInCallerRoom(identity, timeoutMs);
  arrived.catch(() => undefined); // observed below; avoid an unhandled rejection if the RPC fails first
  try {
    const reply = await ports.consultRoom.localParticipant!.performRpc({
      destinationIdentity: identity,
      method: RPC.join,
      payload: JSON.stringify(request),
      responseTimeout: timeoutMs,
    });
    const parsed = parsePayload(JoinReplySchema, reply);
    if (!parsed.ok) return { ok: false, reason: `console answered the join request with ${parsed.message}` };
    if (!parsed.value.joined) return { ok: false, reason: `console could not join the caller room: ${parsed.value.error ?? 'no reason given'}` };
  } catch (err) {
    return { ok: false, reason: `join request failed: ${(err as Error).message}` };
  }
  try {
    await arrived;
  } catch {
    return { ok: false, reason: `Agent B did not appear in the caller room within ${timeoutMs} ms` };
  }
  // In the caller room now: take the console's consult-room connection away.
  await ports.roomService.removeParticipant(ports.consultRoomName, identity).catch((err: unknown) => {
    ports.log.debug({ err, transferId }, 'Agent B had already left the consult room');
  });
  return { ok: true, via: 'rejoin' };
}
