/** How the LiveKit server API says it cannot do something (kept apart so any module can import it). */

/** True when a RoomService error means the server has no MoveParticipant (open-source server). */
export function isNotImplemented(err: unknown): boolean {
  const e = err as { code?: unknown; status?: unknown; message?: unknown } | undefined;
  return e?.code === 'unimplemented' || e?.status === 501 || /not implemented|unimplemented/i.test(String(e?.message ?? ''));
}

