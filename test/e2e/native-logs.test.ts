/**
 * The native SDK's logs stay out of the JavaScript thread (patches/@livekit+rtc-node+0.13.35.patch).
 *
 * @livekit/rtc-node asks its FFI to forward every native log record, trace level included, as an
 * event, and then drops them unread. Each record was its own event: decoded from protobuf on the
 * call's thread and handed to every Room, which takes a lock for it. A job saw about 1,200 a
 * second while a call connected (websocket frames, libwebrtc debug lines). With the patch the FFI
 * keeps them and prints what RUST_LOG asks for to stderr. This test fails if an upgrade
 * of rtc-node drops the patch or the FFI starts sending them again.
 */
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { RoomEvent } from '@livekit/rtc-node';
import { afterEach, expect, inject, it } from 'vitest';
import { HoldMusic, loadHoldMusic } from '../../agent/hold-music.js';
import { logger } from '../../agent/log.js';
import { TestParticipant, uniqueRoom } from '../support/participants.js';
import { nextEvent } from '../support/wait.js';

const server = inject('livekit');

/** rtc-node's FFI client: not exported, so reached by path (the test's only use of its internals). */
interface FfiEvents {
  on(event: 'ffi_event', listener: (ev: { message: { case?: string } }) => void): void;
  off(event: 'ffi_event', listener: (ev: { message: { case?: string } }) => void): void;
}
const require = createRequire(import.meta.url);
const { FfiClient } = require(join(dirname(require.resolve('@livekit/rtc-node')), 'ffi_client.cjs')) as {
  FfiClient: { instance: FfiEvents };
};

const people: TestParticipant[] = [];
afterEach(async () => {
  await Promise.all(people.splice(0).map((p) => p.leave()));
});

it('connecting, publishing and subscribing to audio sends no native log events to JavaScript', async () => {
  const counts = new Map<string, number>();
  const count = (ev: { message: { case?: string } }) => counts.set(ev.message.case ?? '?', (counts.get(ev.message.case ?? '?') ?? 0) + 1);
  FfiClient.instance.on('ffi_event', count);
  try {
    const room = uniqueRoom('native-logs');
    const listener = await TestParticipant.join(server, room, 'listener');
    people.push(listener);
    const subscribed = nextEvent(listener.room, RoomEvent.TrackSubscribed, { timeoutMs: 15_000, what: 'the music track to be subscribed' });
    const player = await TestParticipant.join(server, room, 'player');
    people.push(player);
    const music = new HoldMusic(player.room, { music: () => loadHoldMusic() }, logger());
    await music.play();
    await subscribed;
    await music.stop();
  } finally {
    FfiClient.instance.off('ffi_event', count);
  }
  // The listener saw real FFI traffic (connects, room events, audio frames captured)...
  expect(counts.get('connect')).toBeGreaterThanOrEqual(2);
  expect(counts.get('roomEvent')).toBeGreaterThan(0);
  // ...and not one batch of native logs. Unpatched, two connects alone brought hundreds.
  expect(counts.get('logs') ?? 0).toBe(0);
});
