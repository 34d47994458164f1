/**
 * Listening to hold music as a caller hears it: a steady tone stands in for the music, so that any
 * 10 ms quieter than a fifth of the tone, once it has started, is a gap (a source that runs dry
 * sends silence; the receiver's stats count no loss or concealment, so the level is what shows it).
 */
import { writeFileSync } from 'node:fs';
import { type AudioFrame, AudioStream, type RemoteTrack } from '@livekit/rtc-node';
import { DEFAULT_VOLUME } from '../../agent/hold-music.js';
import { wavFile } from './groq-standin.js';

export const TONE_SAMPLE_RATE = 48_000;
export const TONE_AMPLITUDE = 8_000;
/** The tone's level as the worker plays it: a sine's RMS is its amplitude over the square root of two. */
export const PLAYED_TONE_RMS = (TONE_AMPLITUDE / Math.SQRT2) * DEFAULT_VOLUME;

/** One second of a 440 Hz tone: a whole number of cycles, so it loops without a click. */
export function toneSamples(): Int16Array {
  const samples = new Int16Array(TONE_SAMPLE_RATE);
  for (let i = 0; i < samples.length; i++) samples[i] = Math.round(TONE_AMPLITUDE * Math.sin((2 * Math.PI * 440 * i) / TONE_SAMPLE_RATE));
  return samples;
}

/** The tone as a 16-bit mono WAV file (for HOLD_MUSIC_FILE: the worker decodes it like any music). */
export function writeToneWav(path: string): void {
  writeFileSync(path, wavFile(Buffer.from(toneSamples().buffer), TONE_SAMPLE_RATE));
}

export interface HeardMusic {
  /** 10 ms blocks from the first loud one to the last loud one. */
  heardMs: number;
  /** Quiet 10 ms blocks among them, and the longest run of them. */
  gapMs: number;
  longestGapMs: number;
}

/** Reads a track in 100 ms frames (ten FFI events a second) and keeps the level of every 10 ms in it. */
export class ToneListener {
  readonly levels: number[] = [];
  #stopped = false;
  #reader: ReadableStreamDefaultReader<AudioFrame>;
  #done: Promise<void>;

  constructor(track: RemoteTrack) {
    this.#reader = new AudioStream(track, { sampleRate: TONE_SAMPLE_RATE, numChannels: 1, frameSizeMs: 100 }).getReader();
    this.#done = this.#read();
  }

  async #read(): Promise<void> {
    const block = TONE_SAMPLE_RATE / 100;
    while (!this.#stopped) {
      const { value, done } = await this.#reader.read();
      if (done) return;
      for (let at = 0; at + block <= value.data.length; at += block) {
        let sum = 0;
        for (let i = at; i < at + block; i++) sum += value.data[i]! * value.data[i]!;
        this.levels.push(Math.sqrt(sum / block));
      }
    }
  }

  /** Blocks at least half as loud as the tone was played. */
  loudBlocks(): number {
    return this.levels.filter((x) => x > PLAYED_TONE_RMS / 2).length;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#reader.cancel().catch(() => undefined);
    await this.#done.catch(() => undefined);
  }

  heard(): HeardMusic {
    const quiet = (x: number) => x < PLAYED_TONE_RMS / 5;
    const first = this.levels.findIndex((x) => !quiet(x));
    const last = this.levels.length - 1 - [...this.levels].reverse().findIndex((x) => !quiet(x));
    if (first < 0) return { heardMs: 0, gapMs: 0, longestGapMs: 0 };
    let gap = 0;
    let run = 0;
    let longest = 0;
    for (const x of this.levels.slice(first, last + 1)) {
      run = quiet(x) ? run + 1 : 0;
      if (quiet(x)) gap += 1;
      longest = Math.max(longest, run);
    }
    return { heardMs: (last - first + 1) * 10, gapMs: gap * 10, longestGapMs: longest * 10 };
  }
}
