import { AudioByteStream, type APIConnectOptions, shortuuid, tts } from '@livekit/agents';

/**
 * Text-to-speech through an OpenAI-compatible `/audio/speech` endpoint that answers WAV.
 *
 * The OpenAI plugin's TTS asks for `response_format: "pcm"`, which Groq's speech models (Orpheus)
 * do not offer: they answer wav/mp3/flac/ogg/mulaw at 48 kHz. So we ask for WAV and read the
 * samples out of the RIFF container ourselves.
 */
export interface WavSpeechOptions {
  baseURL: string; // e.g. https://api.groq.com/openai/v1
  apiKey: string;
  model: string;
  voice: string;
  /** Sample rate the endpoint answers with; Groq's Orpheus is fixed at 48 kHz. */
  sampleRate?: number;
  requestTimeoutMs?: number;
}

const CHANNELS = 1;

export class WavSpeechTTS extends tts.TTS {
  label = 'warm-transfer.WavSpeechTTS';
  readonly #opts: Required<WavSpeechOptions>;
  readonly #closed = new AbortController();

  constructor(opts: WavSpeechOptions) {
    const sampleRate = opts.sampleRate ?? 48_000;
    super(sampleRate, CHANNELS, { streaming: false });
    this.#opts = { requestTimeoutMs: 15_000, ...opts, sampleRate };
  }

  override get model(): string {
    return this.#opts.model;
  }

  override get provider(): string {
    return new URL(this.#opts.baseURL).host;
  }

  synthesize(text: string, connOptions?: APIConnectOptions, abortSignal?: AbortSignal): tts.ChunkedStream {
    const signals = [this.#closed.signal, AbortSignal.timeout(this.#opts.requestTimeoutMs)];
    if (abortSignal) signals.push(abortSignal);
    return new WavChunkedStream(this, text, this.#opts, AbortSignal.any(signals), connOptions);
  }

  stream(): tts.SynthesizeStream {
    throw new Error('streaming synthesis is not supported by the /audio/speech endpoint');
  }

  override async close(): Promise<void> {
    this.#closed.abort();
  }
}

class WavChunkedStream extends tts.ChunkedStream {
  label = 'warm-transfer.WavChunkedStream';
  readonly #opts: Required<WavSpeechOptions>;
  readonly #signal: AbortSignal;

  constructor(owner: WavSpeechTTS, text: string, opts: Required<WavSpeechOptions>, signal: AbortSignal, connOptions?: APIConnectOptions) {
    super(text, owner, connOptions, signal);
    this.#opts = opts;
    this.#signal = signal;
  }

  protected async run(): Promise<void> {
    try {
      const res = await fetch(`${this.#opts.baseURL}/audio/speech`, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.#opts.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          model: this.#opts.model,
          voice: this.#opts.voice,
          input: this.inputText,
          response_format: 'wav',
        }),
        signal: this.#signal,
      });
      if (!res.ok) {
        const body = (await res.text()).slice(0, 500);
        throw new Error(`speech request failed with HTTP ${res.status}: ${body}`);
      }
      const pcm = pcmFromWav(Buffer.from(await res.arrayBuffer()), this.#opts.sampleRate);
      const requestId = shortuuid();
      const framer = new AudioByteStream(this.#opts.sampleRate, CHANNELS);
      // flush(): the last words end in a frame shorter than 100 ms, which write() alone keeps back.
      const frames = [...framer.write(pcm), ...framer.flush()];
      frames.forEach((frame, i) => {
        this.queue.put({ requestId, segmentId: requestId, frame, final: i === frames.length - 1 });
      });
    } catch (err) {
      if (err instanceof Error && err.name === 'AbortError') return;
      throw err;
    } finally {
      this.queue.close();
    }
  }
}

/**
 * The 16-bit PCM samples of a WAV file. Streaming WAV writers often put 0xFFFFFFFF in the size
 * fields, so the data chunk runs to the end of the buffer when its size does not fit.
 */
export function pcmFromWav(wav: Buffer, expectedRate: number): Buffer {
  if (wav.length < 12 || wav.toString('ascii', 0, 4) !== 'RIFF' || wav.toString('ascii', 8, 12) !== 'WAVE') {
    throw new Error('speech response is not a WAV file');
  }
  let offset = 12;
  let format: { channels: number; rate: number; bits: number } | undefined;
  while (offset + 8 <= wav.length) {
    const id = wav.toString('ascii', offset, offset + 4);
    const size = wav.readUInt32LE(offset + 4);
    const body = offset + 8;
    if (id === 'fmt ') {
      format = { channels: wav.readUInt16LE(body + 2), rate: wav.readUInt32LE(body + 4), bits: wav.readUInt16LE(body + 14) };
    } else if (id === 'data') {
      if (!format) throw new Error('WAV data chunk before its fmt chunk');
      if (format.bits !== 16 || format.channels !== CHANNELS || format.rate !== expectedRate) {
        throw new Error(
          `WAV is ${format.bits}-bit, ${format.channels} channel(s), ${format.rate} Hz; expected 16-bit mono ${expectedRate} Hz`,
        );
      }
      const end = Math.min(wav.length, body + size);
      // An odd trailing byte cannot be a sample.
      return wav.subarray(body, end - ((end - body) % 2));
    }
    offset = body + size + (size % 2);
  }
  throw new Error('WAV has no data chunk');
}
