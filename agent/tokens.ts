import { AccessToken } from 'livekit-server-sdk';

/**
 * Tokens the worker mints for others (consoles) and for its own extra participants. Each is for one
 * room and one identity, carries only the grants the holder needs, and lives minutes, not the
 * SDK's default six hours: an offer that leaks should be worthless soon.
 */
export interface RoomTokenRequest {
  apiKey: string;
  apiSecret: string;
  room: string;
  identity: string;
  name?: string;
  ttlSeconds: number;
  /** `agent` for the worker's own participants. */
  kind?: 'agent' | 'standard';
  attributes?: Record<string, string>;
  canPublish?: boolean;
  /** Let the holder set its own attributes (see the consult-room token in transfer.ts). */
  canUpdateOwnMetadata?: boolean;
}

export async function mintRoomToken(req: RoomTokenRequest): Promise<{ token: string; expiresAt: number }> {
  const at = new AccessToken(req.apiKey, req.apiSecret, {
    identity: req.identity,
    name: req.name,
    ttl: req.ttlSeconds,
    attributes: req.attributes,
  });
  if (req.kind) at.kind = req.kind;
  at.addGrant({
    room: req.room,
    roomJoin: true,
    canPublish: req.canPublish ?? true,
    canSubscribe: true,
    canPublishData: true,
    canUpdateOwnMetadata: req.canUpdateOwnMetadata ?? false,
  });
  return { token: await at.toJwt(), expiresAt: Date.now() + req.ttlSeconds * 1000 };
}

/** RoomService and friends speak HTTP; LiveKit URLs are usually given as ws(s)://. */
export function httpUrlOf(livekitUrl: string): string {
  return livekitUrl.replace(/^ws/, 'http');
}
