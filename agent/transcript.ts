/**
 * The call transcript: an append-only list of turns with size caps, shared by the agent (which
 * adds turns as speech is transcribed) and the summarizer (which reads them).
 *
 * Memory is bounded: each turn is clipped to `maxCharsPerTurn`, and once the kept turns exceed
 * `maxTotalChars` or `maxTurns`, the oldest are dropped. Dropped turns are still counted, and
 * sequence numbers never restart, so readers can tell that something is missing.
 */
import { logger } from './log.js';

export const SPEAKERS = ['caller', 'agent_a', 'agent_b', 'system'] as const;
export type Speaker = (typeof SPEAKERS)[number];

export interface Turn {
  /** 1-based, strictly increasing across the whole call (dropped turns keep their numbers). */
  readonly seq: number;
  readonly speaker: Speaker;
  /** LiveKit participant identity of the speaker, when known. */
  readonly identity?: string;
  readonly text: string;
  /** Epoch milliseconds. */
  readonly at: number;
  /** Set when the text was clipped to `maxCharsPerTurn`. */
  readonly truncated?: true;
}

export interface TurnInput {
  speaker: Speaker;
  text: string;
  identity?: string;
  /** Defaults to the transcript's clock. */
  at?: number;
}

export interface TranscriptLimits {
  maxCharsPerTurn: number;
  maxTotalChars: number;
  maxTurns: number;
}

export const DEFAULT_TRANSCRIPT_LIMITS: Readonly<TranscriptLimits> = Object.freeze({
  maxCharsPerTurn: 2_000,
  // ~50k tokens: far more than a summary needs, small enough to keep in memory per call.
  maxTotalChars: 200_000,
  maxTurns: 5_000,
});

export type TurnListener = (turn: Turn) => void;

export class Transcript {
  readonly limits: Readonly<TranscriptLimits>;
  private readonly turns: Turn[] = [];
  private readonly listeners = new Set<TurnListener>();
  private readonly now: () => number;
  private nextSeq = 1;
  private keptChars = 0;
  private droppedTurnCount = 0;
  private droppedCharCount = 0;

  constructor(opts: { limits?: Partial<TranscriptLimits>; now?: () => number } = {}) {
    this.limits = Object.freeze({ ...DEFAULT_TRANSCRIPT_LIMITS, ...opts.limits });
    this.now = opts.now ?? Date.now;
  }

  /**
   * Appends a turn and notifies `onTurn` listeners. Whitespace-only text is ignored (returns
   * undefined): speech recognisers emit empty finals, and they are not turns.
   */
  add(input: TurnInput): Turn | undefined {
    const normalized = input.text.replace(/\s+/g, ' ').trim();
    if (normalized === '') return undefined;
    const clipped = normalized.length > this.limits.maxCharsPerTurn;
    const turn: Turn = Object.freeze({
      seq: this.nextSeq++,
      speaker: input.speaker,
      ...(input.identity !== undefined ? { identity: input.identity } : {}),
      text: clipped ? normalized.slice(0, this.limits.maxCharsPerTurn) : normalized,
      at: input.at ?? this.now(),
      ...(clipped ? { truncated: true as const } : {}),
    });
    this.turns.push(turn);
    this.keptChars += turn.text.length;
    this.dropOldest();
    for (const listener of this.listeners) {
      // A failing listener must not break the caller of add() (the speech pipeline).
      try {
        listener(turn);
      } catch (err) {
        logger().warn({ err, seq: turn.seq }, 'transcript onTurn listener failed');
      }
    }
    return turn;
  }

  /** Turns with `seq` greater than the given one, oldest first (`since(0)` is everything kept). */
  since(seq: number): Turn[] {
    // Kept turns have consecutive seqs, so the start index is computed, not searched.
    const first = this.turns[0];
    if (!first) return [];
    const start = Math.max(0, seq + 1 - first.seq);
    return this.turns.slice(start);
  }

  all(): Turn[] {
    return this.turns.slice();
  }

  /** Seq of the oldest turn still kept (turns before it were dropped), 0 when there is none. */
  get firstSeq(): number {
    return this.turns[0]?.seq ?? 0;
  }

  /** Seq of the newest turn, 0 when there is none yet. */
  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  get size(): number {
    return this.turns.length;
  }

  /** Turns and characters dropped from the front to stay within the limits. */
  get dropped(): { turns: number; chars: number } {
    return { turns: this.droppedTurnCount, chars: this.droppedCharCount };
  }

  /** Subscribes to new turns; returns the unsubscribe function. */
  onTurn(listener: TurnListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  private dropOldest(): void {
    // Always keep the newest turn, even if it alone exceeds the total (it is already clipped).
    while (
      this.turns.length > 1 &&
      (this.keptChars > this.limits.maxTotalChars || this.turns.length > this.limits.maxTurns)
    ) {
      const oldest = this.turns.shift()!;
      this.keptChars -= oldest.text.length;
      this.droppedTurnCount++;
      this.droppedCharCount += oldest.text.length;
    }
  }
}
