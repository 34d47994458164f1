/** Fast tests of the pure parts of the transfer: picking a console, contract parsing, tokens, WAV, metadata, bounded steps. */
import { TokenVerifier } from 'livekit-server-sdk';
import { describe, expect, it } from 'vitest';
import { AudioByteStream } from '@livekit/agents';
import { boundedStep } from '../../agent/async-utils.js';
import { logger } from '../../agent/log.js';
import { ATTR, AnswerSchema, CONSOLE_ROLE, RPC_ERROR, parsePayload } from '../../agent/contract.js';
import { type ConsoleInfo, consoleFromAttributes, pickConsole } from '../../agent/desk.js';
import { pcmFromWav } from '../../agent/groq-tts.js';
import { parseJobOptions } from '../../agent/job-options.js';
import { isNotImplemented } from '../../agent/server-errors.js';
import { mintRoomToken } from '../../agent/tokens.js';

const c = (identity: string, idleSince: number, skills: string[] = [], available = true): ConsoleInfo => ({
  identity,
  name: identity,
  available,
  skills,
  idleSince,
});

describe('picking a console', () => {
  const desk = [c('ann', 300, ['billing']), c('bob', 100, ['returns']), c('cat', 200, ['billing', 'returns']), c('dan', 50, ['billing'], false)];

  it('offers the longest-idle available console with the skill', () => {
    expect(pickConsole(desk, { skill: 'billing' })?.identity).toBe('cat');
    expect(pickConsole(desk, { skill: 'Returns ' })?.identity).toBe('bob');
    expect(pickConsole(desk, {})?.identity).toBe('bob');
  });

  it('skips consoles already tried, unavailable ones, and returns nothing when none is left', () => {
    expect(pickConsole(desk, { skill: 'billing', exclude: new Set(['cat']) })?.identity).toBe('ann');
    expect(pickConsole(desk, { skill: 'billing', exclude: new Set(['cat', 'ann']) })).toBeUndefined();
    expect(pickConsole(desk, { skill: 'legal' })).toBeUndefined();
  });

  it('honours a named console only if it is available', () => {
    expect(pickConsole(desk, { identity: 'ann', skill: 'returns' })?.identity).toBe('ann');
    expect(pickConsole(desk, { identity: 'dan' })).toBeUndefined();
  });

  it('spreads ties at random instead of always picking the same console', () => {
    const tied = [c('x', 10), c('y', 10)];
    expect(pickConsole(tied, {}, () => 0)?.identity).toBe('x');
    expect(pickConsole(tied, {}, () => 0.99)?.identity).toBe('y');
  });

  it('reads presence from participant attributes, ignoring participants that are not consoles', () => {
    const info = consoleFromAttributes('ann', 'Ann', {
      [ATTR.role]: CONSOLE_ROLE,
      [ATTR.available]: 'true',
      [ATTR.skills]: ' Billing, returns ,',
      [ATTR.idleSince]: '1234',
    });
    expect(info).toEqual({ identity: 'ann', name: 'Ann', available: true, skills: ['billing', 'returns'], idleSince: 1234 });
    expect(consoleFromAttributes('caller', undefined, {})).toBeUndefined();
    expect(consoleFromAttributes('x', '', { [ATTR.role]: CONSOLE_ROLE })).toMatchObject({ available: false, name: 'x' });
  });
});

describe('contract payloads', () => {
  const ok = { v: 1, transferId: 't', attemptId: 'a', decision: 'accept' };
  it('parses a good answer', () => {
    expect(parsePayload(AnswerSchema, JSON.stringify(ok))).toEqual({ ok: true, value: ok });
  });
  it('says which of JSON, version or shape is wrong', () => {
    expect(parsePayload(AnswerSchema, '{')).toMatchObject({ ok: false, code: RPC_ERROR.badRequest, message: 'payload is not JSON' });
    expect(parsePayload(AnswerSchema, JSON.stringify({ ...ok, v: 7 }))).toMatchObject({ ok: false, code: RPC_ERROR.unsupportedVersion });
    const bad = parsePayload(AnswerSchema, JSON.stringify({ ...ok, decision: 'maybe', extra: 1 }));
    expect(bad).toMatchObject({ ok: false, code: RPC_ERROR.badRequest });
    if (!bad.ok) expect(bad.message).toMatch(/^payload is not valid: decision: .*extra/);
    expect(parsePayload(AnswerSchema, JSON.stringify({ ...ok, reason: 'x'.repeat(20_000) }))).toMatchObject({
      ok: false,
      message: expect.stringContaining('larger than'),
    });
  });
});

describe('join strategy errors', () => {
  it('recognises the open-source server refusing MoveParticipant, and nothing else', () => {
    expect(isNotImplemented({ status: 500, code: 'unknown', message: 'twirp error unknown: not implemented' })).toBe(true);
    expect(isNotImplemented({ status: 501, code: 'unimplemented', message: 'x' })).toBe(true);
    expect(isNotImplemented({ status: 503, code: 'unavailable', message: 'no response from servers' })).toBe(false);
    expect(isNotImplemented(new Error('permission denied'))).toBe(false);
  });
});

describe('tokens the worker mints', () => {
  it('are for one room and one identity, expire within minutes, and grant nothing more', async () => {
    const { token, expiresAt } = await mintRoomToken({ apiKey: 'k', apiSecret: 's'.repeat(32), room: 'r1', identity: 'ann', ttlSeconds: 300 });
    const claims = await new TokenVerifier('k', 's'.repeat(32)).verify(token);
    expect(claims.sub).toBe('ann');
    expect(claims.video).toEqual({ room: 'r1', roomJoin: true, canPublish: true, canSubscribe: true, canPublishData: true, canUpdateOwnMetadata: false });
    expect(claims.exp! - claims.nbf!).toBe(300);
    expect(expiresAt).toBeGreaterThan(Date.now() + 290_000);
  });
});

describe('speech WAV decoding', () => {
  function wav(rate: number, samples: number, dataSize = samples * 2): Buffer {
    const b = Buffer.alloc(44 + samples * 2);
    b.write('RIFF', 0, 'ascii');
    b.writeUInt32LE(0xffffffff, 4);
    b.write('WAVEfmt ', 8, 'ascii');
    b.writeUInt32LE(16, 16);
    b.writeUInt16LE(1, 20);
    b.writeUInt16LE(1, 22);
    b.writeUInt32LE(rate, 24);
    b.writeUInt32LE(rate * 2, 28);
    b.writeUInt16LE(2, 32);
    b.writeUInt16LE(16, 34);
    b.write('data', 36, 'ascii');
    b.writeUInt32LE(dataSize, 40);
    return b;
  }
  it('returns the samples, also when a streaming writer left the sizes unset', () => {
    expect(pcmFromWav(wav(48_000, 480), 48_000).length).toBe(960);
    expect(pcmFromWav(wav(48_000, 480, 0xffffffff), 48_000).length).toBe(960);
  });
  it('refuses audio it cannot play as is', () => {
    expect(() => pcmFromWav(wav(24_000, 10), 48_000)).toThrow(/24000 Hz; expected 16-bit mono 48000 Hz/);
    expect(() => pcmFromWav(Buffer.from('{"error":"x"}'), 48_000)).toThrow(/not a WAV/);
  });
});

describe('dispatch metadata', () => {
  it('uses defaults for empty metadata and explains bad metadata', () => {
    expect(parseJobOptions(undefined)).toEqual({ ok: true, options: { mode: 'frontline' } });
    expect(parseJobOptions('{"textOnly":true,"mode":"assist"}')).toEqual({ ok: true, options: { mode: 'assist', textOnly: true } });
    const bad = parseJobOptions('{"mode":"sideways"}');
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error).toMatch(/^dispatch metadata is not valid: mode:/);
    expect(parseJobOptions('{').ok).toBe(false);
  });
});

describe('bounded clean-up steps', () => {
  const recorder = () => {
    const lines: { obj: object; msg: string }[] = [];
    return { lines, log: { warn: (obj: object, msg: string) => void lines.push({ obj, msg }) } };
  };

  it('give up on an answer that never comes, and the log says which step it was', async () => {
    const { lines, log } = recorder();
    expect(await boundedStep(new Promise(() => undefined), 20, 'leaving the consult room', log)).toBe(false);
    expect(lines.map((l) => l.msg)).toEqual(['leaving the consult room did not finish within 20 ms; going on without it']);
  });

  it('report a failure without throwing, and stay quiet when the step finishes', async () => {
    const { lines, log } = recorder();
    expect(await boundedStep(Promise.reject(new Error('gone')), 1_000, 'closing the briefing session', log)).toBe(true);
    expect(await boundedStep(Promise.resolve(), 1_000, 'sending the summary', log)).toBe(true);
    expect(lines).toEqual([{ obj: { err: new Error('gone') }, msg: 'closing the briefing session failed' }]);
  });
});

describe('audio bytes cut into frames (@livekit/agents AudioByteStream, patched in patches/)', () => {
  it('gives the same 100 ms frames whatever the chunks, keeps the remainder, and flush() returns the tail', () => {
    logger(); // the stream takes the agents logger when it is made
    const samples = Int16Array.from({ length: 48_000 + 1_234 }, (_, i) => (i * 7) % 30_000);
    const bytes = new Uint8Array(samples.buffer);
    const whole = new AudioByteStream(48_000, 1);
    const oneGo = [...whole.write(bytes.slice().buffer), ...whole.flush()];
    const pieces = new AudioByteStream(48_000, 1);
    const chunked = [];
    for (let at = 0; at < bytes.length; at += 4_097) chunked.push(...pieces.write(bytes.slice(at, at + 4_097).buffer));
    chunked.push(...pieces.flush());
    for (const frames of [oneGo, chunked]) {
      expect(frames.map((f) => f.samplesPerChannel)).toEqual([...Array<number>(10).fill(4_800), 1_234]);
      const joined = new Int16Array(frames.reduce((n, f) => n + f.data.length, 0));
      let at = 0;
      for (const f of frames) {
        joined.set(f.data, at);
        at += f.data.length;
      }
      expect(joined).toEqual(samples);
    }
  });
});
