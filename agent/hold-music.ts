/**
 * Hold music, decoded once per process and kept in memory.
 *
 * Why not hand the file to BackgroundAudioPlayer: in @livekit/agents 1.9 the file decoder keeps
 * writing frames after playback is stopped, and stopping it while it still decodes (a transfer
 * that ends within a second or two) trips a Node.js internal assertion that kills the job process,
 * and with it the call. Decoding to the end once, and looping over the frames ourselves, never
 * stops the decoder early, and also saves starting ffmpeg on every hold.
 */
import { type AudioFrame } from '@livekit/rtc-node';
import { audioFramesFromFile, voice } from '@livekit/agents';

/** Enough music that the loop is not noticeable, bounded so a long file cannot eat memory. */
const MAX_SECONDS = 120;

const cache = new Map<string, Promise<AudioFrame[]>>();

export function holdMusicPath(file?: string): string {
  return file ?? voice.getBuiltinAudioPath(voice.BuiltinAudioClip.HOLD_MUSIC);
}

/** The decoded frames of `file` (default: the built-in hold music). Shared by every call in the process. */
export function loadHoldMusic(file?: string): Promise<AudioFrame[]> {
  const path = holdMusicPath(file);
  let frames = cache.get(path);
  if (!frames) {
    frames = decodeAll(path);
    cache.set(path, frames);
    frames.catch(() => cache.delete(path)); // a failed decode may be retried by the next hold
  }
  return frames;
}

async function decodeAll(path: string): Promise<AudioFrame[]> {
  const frames: AudioFrame[] = [];
  let seconds = 0;
  // Read to the very end even past MAX_SECONDS: see the module comment for why we never abort.
  for await (const frame of audioFramesFromFile(path)) {
    if (seconds < MAX_SECONDS) frames.push(frame);
    seconds += frame.samplesPerChannel / frame.sampleRate;
  }
  if (frames.length === 0) throw new Error(`no audio could be decoded from ${path}`);
  return frames;
}

/** Loop the frames until the consumer stops iterating. */
export async function* loopFrames(frames: readonly AudioFrame[]): AsyncGenerator<AudioFrame> {
  if (frames.length === 0) return;
  for (;;) {
    for (const frame of frames) yield frame;
  }
}
