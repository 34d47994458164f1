import { AudioFrame } from '@livekit/rtc-node';
import { describe, expect, it } from 'vitest';
import { atVolume } from '../../agent/hold-music.js';

const frame = (...samples: number[]) => new AudioFrame(Int16Array.from(samples), 48_000, 1, samples.length);

describe('atVolume', () => {
  it('scales every sample once, rounding and clipping to 16 bits, and keeps the format', () => {
    const frames = [frame(1000, -1000, 3), frame(32767, -32768, 0)];
    const half = atVolume(frames, 0.5);
    expect(half.map((f) => [...f.data])).toEqual([
      [500, -500, 2],
      [16384, -16384, 0],
    ]);
    expect(half[0]).toMatchObject({ sampleRate: 48_000, channels: 1, samplesPerChannel: 3 });
    expect([...atVolume(frames, 2)[1]!.data]).toEqual([32767, -32768, 0]);
    // The decoded frames are left as they were: other holds may want another volume.
    expect([...frames[0]!.data]).toEqual([1000, -1000, 3]);
  });

  it('returns the same scaled frames for the same music and volume, and the music itself at 1', () => {
    const frames = [frame(10, 20)];
    expect(atVolume(frames, 0.8)).toBe(atVolume(frames, 0.8));
    expect(atVolume(frames, 0.8)).not.toBe(atVolume(frames, 0.5));
    expect(atVolume(frames, 1)).toBe(frames);
  });
});
