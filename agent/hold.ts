/**
 * Putting the caller on hold and taking them off it.
 *
 * While held, the AI must not act on the caller: audio input is switched off, and typed text is
 * kept for the transcript but never reaches the model (LiveKit's own transfer task switched off
 * audio only, so a held caller who typed still got replies). Taking the caller off hold is
 * idempotent and safe to call on every exit path.
 */
import type { AudioFrame, Room } from '@livekit/rtc-node';
import { voice } from '@livekit/agents';
import { loopFrames } from './hold-music.js';
import type { Logger } from './log.js';

export interface HoldOptions {
  message: string;
  /** Decoded hold music (see hold-music.ts). */
  music: () => Promise<AudioFrame[]>;
  musicVolume?: number;
  /** Upper bound on waiting for the hold message to finish before the music starts. */
  messageTimeoutMs?: number;
}

export class CallerHold {
  #held = false;
  #player: voice.BackgroundAudioPlayer | undefined;
  #music: { stop(): void } | undefined;
  #audioInputWasEnabled = true;

  constructor(
    private readonly session: voice.AgentSession,
    private readonly room: Room,
    private readonly opts: HoldOptions,
    private readonly log: Logger,
  ) {}

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
      await Promise.race([
        handle.waitForPlayout(),
        new Promise((resolve) => setTimeout(resolve, this.opts.messageTimeoutMs ?? 10_000).unref()),
      ]);
    } catch (err) {
      this.log.warn({ err }, 'hold message could not be played');
    }
    if (!this.#held) return; // taken off hold while the message played
    try {
      const frames = await this.opts.music();
      if (!this.#held) return;
      const player = new voice.BackgroundAudioPlayer();
      this.#player = player;
      await player.start({ room: this.room });
      if (!this.#held) return;
      this.#music = player.play({ source: loopFrames(frames), volume: this.opts.musicVolume ?? 0.8 }, false);
    } catch (err) {
      // Silence is better than a failed transfer: the caller was told they are on hold.
      this.log.warn({ err }, 'hold music could not be started');
    }
  }

  /** Music off, listening back on. Safe to call any number of times, held or not. */
  async stop(): Promise<void> {
    const wasHeld = this.#held;
    this.#held = false;
    this.#music?.stop();
    this.#music = undefined;
    const player = this.#player;
    this.#player = undefined;
    if (player) await player.close().catch((err: unknown) => this.log.warn({ err }, 'could not close hold music player'));
    if (wasHeld && this.session.input.audio) this.session.input.setAudioEnabled(this.#audioInputWasEnabled);
  }
}
