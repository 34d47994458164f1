/**
 * A transfer's timeline: its events with the time spent in each phase (until the next event).
 * Shared by the history command and anyone who wants the same numbers.
 */
import type { JsonValue, TransferWithEvents } from './types.js';

export interface TimelineEntry {
  seq: number;
  phase: string;
  at: number;
  /** Since the first event. */
  offsetMs: number;
  /** Until the next event; for the last event of an open transfer, until `now`; null once ended. */
  durationMs: number | null;
  /** The phase the transfer is still in (open transfers only). */
  ongoing: boolean;
  detail: JsonValue | null;
}

export interface Timeline {
  entries: TimelineEntry[];
  /** Time spent per phase, summed when a phase was entered more than once (a second offer). */
  phaseTotalsMs: Record<string, number>;
  /** First event to the end (or to `now` while open). */
  totalMs: number | null;
}

export function buildTimeline({ transfer, events }: TransferWithEvents, now: number = Date.now()): Timeline {
  const open = transfer.outcome === null;
  const first = events[0]?.at ?? transfer.requestedAt;
  const entries = events.map((e, i): TimelineEntry => {
    const next = events[i + 1];
    const isLast = next === undefined;
    let durationMs: number | null = null;
    if (!isLast) durationMs = Math.max(0, next.at - e.at);
    else if (open) durationMs = Math.max(0, now - e.at);
    return {
      seq: e.seq,
      phase: e.phase,
      at: e.at,
      offsetMs: e.at - first,
      durationMs,
      ongoing: isLast && open,
      detail: e.detail,
    };
  });
  const phaseTotalsMs: Record<string, number> = {};
  for (const e of entries) {
    if (e.durationMs === null) continue;
    phaseTotalsMs[e.phase] = (phaseTotalsMs[e.phase] ?? 0) + e.durationMs;
  }
  const end = open ? now : transfer.endedAt ?? events.at(-1)?.at ?? null;
  return { entries, phaseTotalsMs, totalMs: end === null ? null : Math.max(0, end - first) };
}

/** 950 → "950ms", 2310 → "2.31s", 125000 → "2m05s", 7260000 → "2h01m". */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(ms < 10_000 ? 2 : 1)}s`;
  const totalSeconds = Math.round(ms / 1_000);
  if (totalSeconds < 3_600) {
    return `${Math.floor(totalSeconds / 60)}m${String(totalSeconds % 60).padStart(2, '0')}s`;
  }
  const totalMinutes = Math.round(totalSeconds / 60);
  return `${Math.floor(totalMinutes / 60)}h${String(totalMinutes % 60).padStart(2, '0')}m`;
}
