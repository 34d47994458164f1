/**
 * `npm run bench:hold [-- --rounds 3] [-- --json]`: what a held caller costs the job process in
 * CPU. One agent participant in a room on a real livekit-server, measured in turns (the same
 * order each round, so slow drift of this shared machine falls on all alike): connected and idle;
 * playing the hold music as a hold does (agent/hold-music.ts `HoldMusic`); and the same music
 * through the agents BackgroundAudioPlayer (100 ms frames, mixer, volume per frame), which the
 * worker used before and a stock agents app uses. Per second of wall time: the main (JS) thread's
 * CPU, from /proc/thread-self/schedstat, and the whole process's (libwebrtc encodes in its own
 * threads). Medians over the rounds.
 */
import { parseArgs } from 'node:util';
import { initializeLogger, voice } from '@livekit/agents';
import { AudioFrame, Room, dispose } from '@livekit/rtc-node';
import { DEFAULT_VOLUME, type HoldClip, HoldMusic, loadHoldMusic } from '../../agent/hold-music.js';
import { logger } from '../../agent/log.js';
import { threadCpuClock } from '../../agent/stall-probe.js';
import { mintRoomToken } from '../../agent/tokens.js';
import { startLiveKitServer } from '../../scripts/livekit-dev-server.js';
import { median } from './stats.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, json: { type: 'boolean', default: false } } });
const ROUNDS = Number(values.rounds);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error(`--rounds must be a positive integer, got ${values.rounds}`);
const SECONDS = 5;

if (process.env.WT_IN_TEST_NETNS !== '1') {
  throw new Error('Run this inside the test network namespace: npm run bench:hold (scripts/in-test-netns.sh does it).');
}
initializeLogger({ pretty: false, level: 'warn' });

const mainThreadClock = threadCpuClock();
if (!mainThreadClock) throw new Error('bench:hold needs /proc/thread-self/schedstat (Linux)');
const mainThreadMs = () => mainThreadClock.read()[0];
const processMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

type Cost = { mainMsPerS: number; processMsPerS: number };

/** CPU ms per wall-clock second over `seconds`, of the main thread and of the process. */
async function cpuPerSecond(seconds: number): Promise<Cost> {
  const [m0, p0, t0] = [mainThreadMs(), processMs(), performance.now()];
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const wallS = (performance.now() - t0) / 1000;
  return { mainMsPerS: (mainThreadMs() - m0) / wallS, processMsPerS: (processMs() - p0) / wallS };
}

const server = await startLiveKitServer({ bindAddress: '127.0.0.1', nodeIp: process.env.WT_TEST_NODE_IP, httpPort: 7930, rtcTcpPort: 7931, rtcUdpPort: 7932 });
/** The music (loaded at volume 1: the player scales it) as the agents' own file decoder yields it: 100 ms frames, looped. */
async function* frames100ms(clip: HoldClip): AsyncGenerator<AudioFrame> {
  const step = (clip.sampleRate / 10) * clip.channels;
  for (;;) {
    for (const chunk of clip.chunks) {
      for (let start = 0; start < chunk.data.length; start += step) {
        const data = chunk.data.slice(start, Math.min(start + step, chunk.data.length));
        yield new AudioFrame(data, clip.sampleRate, clip.channels, data.length / clip.channels);
      }
    }
  }
}

const idle: Cost[] = [];
const held: Cost[] = [];
const heldAgentsPlayer: Cost[] = [];
try {
  const frames = await loadHoldMusic();
  const unscaled = await loadHoldMusic(undefined, 1);
  const { token } = await mintRoomToken({ apiKey: server.apiKey, apiSecret: server.apiSecret, room: 'hold-cost', identity: 'agent-hold', kind: 'agent', ttlSeconds: 600 });
  const room = new Room();
  await room.connect(server.url, token, { autoSubscribe: false, dynacast: false });
  await cpuPerSecond(1); // let the connection settle
  for (let i = 0; i < ROUNDS; i++) {
    idle.push(await cpuPerSecond(SECONDS));

    const music = new HoldMusic(room, { music: async () => frames }, logger());
    await music.play();
    held.push(await cpuPerSecond(SECONDS));
    await music.stop();

    const player = new voice.BackgroundAudioPlayer();
    await player.start({ room });
    const handle = player.play({ source: frames100ms(unscaled), volume: DEFAULT_VOLUME }, false);
    heldAgentsPlayer.push(await cpuPerSecond(SECONDS));
    handle.stop();
    await player.close();
  }
  await room.disconnect();
} finally {
  await server.stop();
}

const round1 = (n: number) => Math.round(n * 10) / 10;
const summary = (xs: Cost[]) => ({ mainMsPerS: round1(median(xs.map((x) => x.mainMsPerS))), processMsPerS: round1(median(xs.map((x) => x.processMsPerS))) });
const result = {
  rounds: ROUNDS,
  secondsEach: SECONDS,
  idle: summary(idle),
  holdMusic: summary(held),
  agentsBackgroundAudioPlayer: summary(heldAgentsPlayer),
};
if (values.json) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
} else {
  process.stdout.write(
    [
      '',
      `CPU per second of wall time, median of ${ROUNDS} rounds of ${SECONDS} s (one agent participant in a room)`,
      '',
      '| state | main thread ms/s | whole process ms/s |',
      '| --- | --- | --- |',
      `| connected, idle | ${result.idle.mainMsPerS} | ${result.idle.processMsPerS} |`,
      `| playing hold music (HoldMusic) | ${result.holdMusic.mainMsPerS} | ${result.holdMusic.processMsPerS} |`,
      `| the same music through the agents BackgroundAudioPlayer | ${result.agentsBackgroundAudioPlayer.mainMsPerS} | ${result.agentsBackgroundAudioPlayer.processMsPerS} |`,
      '',
      `A held caller costs about ${round1(result.holdMusic.processMsPerS - result.idle.processMsPerS)} ms of CPU per second more ` +
        `(${round1((result.holdMusic.processMsPerS - result.idle.processMsPerS) / 10)}% of a core); on the call thread ` +
        `${round1(result.holdMusic.mainMsPerS - result.idle.mainMsPerS)} ms/s, against ` +
        `${round1(result.agentsBackgroundAudioPlayer.mainMsPerS - result.idle.mainMsPerS)} ms/s through the BackgroundAudioPlayer.`,
      '',
    ].join('\n'),
  );
}
// Native handles of @livekit/rtc-node keep the process alive after every room has disconnected.
await dispose();
