/**
 * Hold music: decoded once per process, played into the caller room on a track of its own.
 *
 * Why not the agents BackgroundAudioPlayer (what this used before):
 * - In @livekit/agents 1.9 its file decoder keeps writing frames after playback is stopped, and
 *   stopping it while it still decodes (a transfer that ends within a second or two) trips a
 *   Node.js internal assertion that kills the job process, and with it the call. Decoding to the
 *   end once, and looping over the samples ourselves, never stops the decoder early.
 * - It runs every 100 ms frame through a mixer and a volume pass on the call thread, and hands it
 *   to the native audio source with a 400 ms queue: ten round trips a second through the FFI per
 *   held caller. Here the samples are scaled once per process (in the prewarm) and handed over
 *   half a second at a time into a one-second queue: two round trips a second, a sixth of the
 *   call thread's time (`npm run bench:hold`), and the music plays on through a stall of the call
 *   thread of a second (the native core takes 10 ms from the queue on its own thread).
 */
import { AudioFrame, AudioSource, LocalAudioTrack, type Room, TrackPublishOptions } from '@livekit/rtc-node';
import { audioFramesFromFile, voice } from '@livekit/agents';
import { atMost, withTimeout } from './async-utils.js';
import type { Logger } from './log.js';

/** Enough music that the loop is not noticeable, bounded so a long file cannot eat memory. */
const MAX_SECONDS = 120;
/** How much music one capture hands the native source: one FFI round trip on the call thread each. */
export const CHUNK_MS = 500;
/**
 * The native source's queue: how long the call thread may stall before the caller hears a gap.
 * Measured with `test/e2e/hold-music.test.ts`: about 0.84 s with a 500 ms queue, 1.3 s with this
 * one (a 1 s stall is heard with the first and not with this). Ten transfers at once on two cores
 * stalled call threads for up to 614 ms (`npm run bench:e2e`); the margin costs 500 ms of samples.
 */
export const QUEUE_MS = 1_000;
/** The track's name in the caller room (clients may tell hold music from the agent's voice by it). */
export const HOLD_TRACK_NAME = 'hold_music';
/** The default loudness of the music next to speech. */
export const DEFAULT_VOLUME = 0.8;
/**
 * Publishing and unpublishing wait for the native core's answer, which must never hold a transfer
 * (and with it the caller) up: past these the music is given up or left to go on its own.
 */
const PUBLISH_TIMEOUT_MS = 10_000;
const UNPUBLISH_TIMEOUT_MS = 5_000;

/** Decoded music: one run of interleaved 16-bit samples. */
export interface Samples {
  sampleRate: number;
  channels: number;
  samples: Int16Array;
}

/** Music ready to play: scaled to its volume and cut into captures of CHUNK_MS (the last one shorter). */
export interface HoldClip {
  sampleRate: number;
  channels: number;
  chunks: AudioFrame[];
}

const cache = new Map<string, Promise<HoldClip>>();

export function holdMusicPath(file?: string): string {
  return file ?? voice.getBuiltinAudioPath(voice.BuiltinAudioClip.HOLD_MUSIC);
}

/**
 * The music of `file` (default: the built-in hold music) at `volume`, decoded, scaled and cut once
 * per process and shared by every call in it. Call it in the prewarm: the sample work takes a
 * tenth of a second of the call thread, which a held caller would otherwise hear as a stall.
 */
export function loadHoldMusic(file?: string, volume = DEFAULT_VOLUME): Promise<HoldClip> {
  const path = holdMusicPath(file);
  const key = `${volume} ${path}`;
  let clip = cache.get(key);
  if (!clip) {
    clip = decodeAll(path).then((decoded) => holdClip(decoded, volume));
    cache.set(key, clip);
    clip.catch(() => cache.delete(key)); // a failed decode may be retried by the next hold
  }
  return clip;
}

async function decodeAll(path: string): Promise<Samples> {
  const frames: AudioFrame[] = [];
  let seconds = 0;
  // Read to the very end even past MAX_SECONDS: see the module comment for why we never abort.
  for await (const frame of audioFramesFromFile(path)) {
    if (seconds < MAX_SECONDS) frames.push(frame);
    seconds += frame.samplesPerChannel / frame.sampleRate;
  }
  const first = frames[0];
  if (!first) throw new Error(`no audio could be decoded from ${path}`);
  const samples = new Int16Array(frames.reduce((n, f) => n + f.data.length, 0));
  let at = 0;
  for (const frame of frames) {
    samples.set(frame.data, at);
    at += frame.data.length;
  }
  return { sampleRate: first.sampleRate, channels: first.channels, samples };
}

/** `decoded` at `volume`, cut into captures of CHUNK_MS. */
export function holdClip(decoded: Samples, volume: number): HoldClip {
  const chunks: AudioFrame[] = [];
  const step = Math.round((decoded.sampleRate * CHUNK_MS) / 1000) * decoded.channels;
  for (let start = 0; start < decoded.samples.length; start += step) {
    const part = decoded.samples.subarray(start, Math.min(start + step, decoded.samples.length));
    const scaled = new Int16Array(part.length);
    for (let i = 0; i < part.length; i++) scaled[i] = Math.max(-32768, Math.min(32767, Math.round(part[i]! * volume)));
    chunks.push(new AudioFrame(scaled, decoded.sampleRate, decoded.channels, scaled.length / decoded.channels));
  }
  return { sampleRate: decoded.sampleRate, channels: decoded.channels, chunks };
}

interface Playing {
  source: AudioSource;
  stopped: boolean;
  trackSid?: string;
  feeding?: Promise<void>;
}

/** Loops hold music into a room on its own track; unpublished when the hold ends. */
export class HoldMusic {
  #playing: Playing | undefined;
  /** Bumped by every stop(): a start still loading or publishing sees it and backs out. */
  #stops = 0;

  constructor(
    private readonly room: Room,
    private readonly opts: { music: () => Promise<HoldClip> },
    private readonly log: Logger,
  ) {}

  /** Start the music (no-op while it plays). A stop() at any point of the start wins. */
  async play(): Promise<void> {
    if (this.#playing) return;
    const stops = this.#stops;
    try {
      const clip = await this.opts.music();
      if (stops !== this.#stops || this.#playing) return;
      const playing: Playing = { source: new AudioSource(clip.sampleRate, clip.channels, QUEUE_MS), stopped: false };
      this.#playing = playing;
      const track = LocalAudioTrack.createAudioTrack(HOLD_TRACK_NAME, playing.source);
      const publishing = this.room.localParticipant!.publishTrack(track, new TrackPublishOptions());
      const publication = await withTimeout(publishing, PUBLISH_TIMEOUT_MS, `the hold music track was not published within ${PUBLISH_TIMEOUT_MS} ms`).catch(
        async (err: unknown) => {
          // Given up: no music this hold, and a publication that comes after all is taken down.
          void publishing.then((late) => this.#unpublish({ ...playing, trackSid: late.sid })).catch(() => undefined);
          if (this.#playing === playing) this.#playing = undefined;
          playing.stopped = true;
          await playing.source.close().catch(() => undefined);
          throw err;
        },
      );
      playing.trackSid = publication.sid;
      // stop() ran while the track was being published: it could not unpublish it then.
      if (playing.stopped) return await this.#unpublish(playing);
      playing.feeding = this.#feed(playing, clip.chunks);
    } catch (err) {
      // Silence is better than a failed transfer: the caller was told they are on hold.
      this.log.warn({ err }, 'hold music could not be started');
    }
  }

  /** Music off at once (what is queued is dropped), track unpublished. Safe to call any number of times. */
  async stop(): Promise<void> {
    this.#stops += 1;
    const playing = this.#playing;
    this.#playing = undefined;
    if (!playing || playing.stopped) return;
    playing.stopped = true;
    playing.source.clearQueue();
    // A capture waiting for room in the queue returns within one 10 ms tick of clearing it.
    if (playing.feeding) await atMost(playing.feeding, 1_000);
    await playing.source.close().catch((err: unknown) => this.log.warn({ err }, 'could not close the hold music source'));
    await this.#unpublish(playing);
  }

  async #feed(playing: Playing, chunks: AudioFrame[]): Promise<void> {
    try {
      // Each capture returns once the native queue has room for the next: that paces the loop.
      for (let i = 0; !playing.stopped; i = (i + 1) % chunks.length) await playing.source.captureFrame(chunks[i]!);
    } catch (err) {
      if (!playing.stopped) this.log.warn({ err }, 'hold music stopped playing');
    }
  }

  async #unpublish(playing: Playing): Promise<void> {
    if (!playing.trackSid || !this.room.isConnected) return;
    const unpublishing = this.room.localParticipant!.unpublishTrack(playing.trackSid);
    await withTimeout(unpublishing, UNPUBLISH_TIMEOUT_MS, `the hold music track was not unpublished within ${UNPUBLISH_TIMEOUT_MS} ms`).catch((err: unknown) =>
      this.log.warn({ err }, 'could not unpublish the hold music track'),
    );
  }
}
