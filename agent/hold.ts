/**
 * Putting the caller on hold and taking them off it.
 *
 * While held, the AI must not act on the caller: audio input is switched off, and typed text is
 * kept for the transcript but never reaches the model (LiveKit's own transfer task switched off
 * audio only, so a held caller who typed still got replies). Taking the caller off hold is
 * idempotent and safe to call on every exit path.
 */
import type { Room } from '@livekit/rtc-node';
import type { voice } from '@livekit/agents';
import { atMost } from './async-utils.js';
import { type HoldClip, HoldMusic } from './hold-music.js';
import type { Logger } from './log.js';

export interface HoldOptions {
  message: string;
  /** Decoded hold music (see hold-music.ts). */
  music: () => Promise<HoldClip>;
  /** Upper bound on waiting for the hold message to finish before the music starts. */
  messageTimeoutMs?: number;
}

/** What the transfer needs from a hold, whoever Agent A is. */
export interface Hold {
  readonly held: boolean;
  start(): Promise<void>;
  /**
   * Music off. `resumeListening: false` keeps the AI deaf to the caller: used when the call is being
   * handed over, so Agent A cannot answer the caller in the seconds before it leaves.
   */
  stop(opts?: { resumeListening?: boolean }): Promise<void>;
}

export class CallerHold implements Hold {
  #held = false;
  #music: HoldMusic;
  #audioInputWasEnabled = true;

  constructor(
    private readonly session: voice.AgentSession,
    room: Room,
    private readonly opts: HoldOptions,
    private readonly log: Logger,
  ) {
    this.#music = new HoldMusic(room, opts, log);
  }

  get held(): boolean {
    return this.#held;
  }

  async start(): Promise<void> {
    if (this.#held) return;
    this.#held = true;
    // Stop listening first: nothing the caller says from here on may trigger a reply or a tool.
    this.#audioInputWasEnabled = this.session.input.audioEnabled;
    if (this.session.input.audio) this.session.input.setAudioEnabled(false);
    this.session.interrupt();
    try {
      const handle = this.session.say(this.opts.message, { allowInterruptions: false, addToChatCtx: true });
      await atMost(handle.waitForPlayout(), this.opts.messageTimeoutMs ?? 10_000);
    } catch (err) {
      this.log.warn({ err }, 'hold message could not be played');
    }
    if (!this.#held) return; // taken off hold while the message played
    await this.#music.play();
  }

  /** Music off, listening back on (unless told otherwise). Safe to call any number of times. */
  async stop(opts: { resumeListening?: boolean } = {}): Promise<void> {
    const wasHeld = this.#held;
    this.#held = false;
    await this.#music.stop();
    if (wasHeld && (opts.resumeListening ?? true) && this.session.input.audio) this.session.input.setAudioEnabled(this.#audioInputWasEnabled);
  }
}

/**
 * Hold in assist mode: a human Agent A is in the room, so the worker has no voice of its own to
 * announce the hold (Agent A does). The caller hears music, and stops receiving Agent A's tracks
 * while Agent A consults with Agent B, so the private conversation stays private.
 */
export class AssistHold implements Hold {
  #held = false;
  #music: HoldMusic;
  #muted: { caller: string; trackSids: string[] } | undefined;

  constructor(
    private readonly room: Room,
    private readonly ports: {
      callerIdentity: () => string | undefined;
      agentAIdentity: () => string | undefined;
      updateSubscriptions: (room: string, identity: string, trackSids: string[], subscribe: boolean) => Promise<void>;
    },
    opts: Pick<HoldOptions, 'music'>,
    private readonly log: Logger,
  ) {
    this.#music = new HoldMusic(room, opts, log);
  }

  get held(): boolean {
    return this.#held;
  }

  async start(): Promise<void> {
    if (this.#held) return;
    this.#held = true;
    const caller = this.ports.callerIdentity();
    const agentA = this.ports.agentAIdentity();
    const trackSids = agentA ? [...(this.room.remoteParticipants.get(agentA)?.trackPublications.keys() ?? [])] : [];
    if (caller && trackSids.length > 0) {
      try {
        await this.ports.updateSubscriptions(this.room.name!, caller, trackSids, false);
        this.#muted = { caller, trackSids };
      } catch (err) {
        this.log.warn({ err }, 'could not stop the caller hearing Agent A during the hold');
      }
    }
    if (!this.#held) return;
    await this.#music.play();
  }

  async stop(): Promise<void> {
    this.#held = false;
    await this.#music.stop();
    const muted = this.#muted;
    this.#muted = undefined;
    if (muted) {
      await this.ports
        .updateSubscriptions(this.room.name!, muted.caller, muted.trackSids, true)
        .catch((err: unknown) => this.log.warn({ err }, 'could not let the caller hear Agent A again'));
    }
  }
}

/**
 * The same hold, calling `open` when it starts and the returned function once it has stopped: a
 * window over the time the caller hears music, which is when a stalled event loop is audible (and
 * when the transfer does most of its work). Used by JOB_STALL_PROBE.
 */
export function withHoldWindow(hold: Hold, open: () => () => void): Hold {
  let close: (() => void) | undefined;
  return {
    get held() {
      return hold.held;
    },
    start() {
      close ??= open();
      return hold.start();
    },
    async stop(opts) {
      await hold.stop(opts);
      close?.();
      close = undefined;
    },
  };
}
