/**
 * The recording Twirp server, driven by the real `RoomServiceClient` of livekit-server-sdk: what
 * the SDK sends for MoveParticipant, how a Twirp error reaches the caller of `moveParticipant`
 * (the worker's `auto` strategy must recognise "not implemented" to fall back to `rejoin`), and
 * proxying to an upstream server.
 */
import { RoomServiceClient, ServerError, TwirpError } from 'livekit-server-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { type TwirpRecorder, startTwirpRecorder } from '../support/twirp-recorder.js';

const API_KEY = 'recorder-key';
const API_SECRET = 'recorder-secret-that-is-long-enough';

const started: TwirpRecorder[] = [];
async function recorder(opts: Parameters<typeof startTwirpRecorder>[0] = {}): Promise<TwirpRecorder> {
  const r = await startTwirpRecorder({ apiSecret: API_SECRET, ...opts });
  started.push(r);
  return r;
}

afterEach(async () => {
  await Promise.all(started.splice(0).map((r) => r.close()));
});

/** The error `moveParticipant` rejects with, or a failure if it resolves. */
async function moveError(client: RoomServiceClient): Promise<unknown> {
  return client.moveParticipant('consult-1', 'agent-b', 'caller-1').then(
    () => expect.fail('moveParticipant resolved; expected a Twirp error'),
    (err: unknown) => err,
  );
}

describe('twirp recorder', () => {
  it('records MoveParticipant exactly as the SDK sends it, with the admin grant in the token', async () => {
    const rec = await recorder();
    const client = new RoomServiceClient(rec.url, API_KEY, API_SECRET);

    await expect(client.moveParticipant('consult-1', 'agent-b', 'caller-1')).resolves.toBeUndefined();

    const [move] = rec.calls('MoveParticipant');
    expect(move).toBeDefined();
    expect(move!.path).toBe('/twirp/livekit.RoomService/MoveParticipant');
    expect(move!.service).toBe('livekit.RoomService');
    expect(move!.headers['content-type']).toBe('application/json;charset=UTF-8');
    expect(move!.body).toEqual({ room: 'consult-1', identity: 'agent-b', destinationRoom: 'caller-1' });
    expect(move!.auth?.signatureValid).toBe(true);
    expect(move!.auth?.header).toMatchObject({ alg: 'HS256' });
    expect(move!.auth?.claims.iss).toBe(API_KEY);
    expect(move!.auth?.claims.video).toEqual({ roomAdmin: true, room: 'consult-1', destinationRoom: 'caller-1' });
    expect(move!.response).toEqual({ status: 200, body: {}, proxied: false });
  });

  it('answers "not implemented" the way open-source livekit-server does, and the SDK surfaces it as a TwirpError', async () => {
    const rec = await recorder();
    rec.setMoveBehaviour('oss-not-implemented');
    const err = await moveError(new RoomServiceClient(rec.url, API_KEY, API_SECRET));

    // TwirpError is an alias of ServerError: one class, `code` is the Twirp code, `status` the HTTP
    // status, `name` the HTTP status text. The real server wraps "not implemented" as `unknown`/500,
    // so only the message tells it apart from any other internal error.
    expect(TwirpError).toBe(ServerError);
    expect(err).toBeInstanceOf(TwirpError);
    expect(err).toMatchObject({
      name: 'Internal Server Error',
      message: 'twirp error unknown: not implemented',
      status: 500,
      code: 'unknown',
    });
    expect(rec.calls('MoveParticipant')[0]?.response).toEqual({
      status: 500,
      body: { code: 'unknown', msg: 'twirp error unknown: not implemented' },
      proxied: false,
    });
  });

  it('answers a spec-style Twirp unimplemented (501) when told to', async () => {
    const rec = await recorder();
    rec.setMoveBehaviour('unimplemented');
    const err = await moveError(new RoomServiceClient(rec.url, API_KEY, API_SECRET));
    expect(err).toBeInstanceOf(TwirpError);
    expect(err).toMatchObject({ name: 'Not Implemented', message: 'not implemented', status: 501, code: 'unimplemented' });
    expect(rec.calls('MoveParticipant')[0]?.response).toEqual({
      status: 501,
      body: { code: 'unimplemented', msg: 'not implemented' },
      proxied: false,
    });
  });

  it('scripts other errors and one-shot replies in order', async () => {
    const rec = await recorder();
    const client = new RoomServiceClient(rec.url, API_KEY, API_SECRET);
    rec.setMoveBehaviour('error');
    rec.queueMoveBehaviours('unimplemented', 'ok', () => ({
      kind: 'error',
      error: { code: 'failed_precondition', msg: 'participant is an agent', meta: { why: 'kind' } },
    }));

    expect(await moveError(client)).toMatchObject({ status: 501, code: 'unimplemented' });
    await expect(client.moveParticipant('consult-1', 'agent-b', 'caller-1')).resolves.toBeUndefined();
    expect(await moveError(client)).toMatchObject({
      status: 412,
      code: 'failed_precondition',
      message: 'participant is an agent',
      metadata: { why: 'kind' },
    });
    // The queue is used up: the standing behaviour again.
    expect(await moveError(client)).toMatchObject({ status: 500, code: 'internal' });
    expect(rec.calls('MoveParticipant').map((r) => r.response.status)).toEqual([501, 200, 412, 500]);
  });

  it('proxies other methods, and MoveParticipant when told to, to the upstream, recording both sides', async () => {
    const upstream = await recorder();
    upstream.setBehaviour('ListParticipants', (req) => ({
      kind: 'ok',
      body: { participants: [{ identity: 'caller', name: `in ${(req.body as { room: string }).room}` }] },
    }));
    upstream.setMoveBehaviour('unimplemented');
    const front = await recorder({ upstream: upstream.url.replace('http://', 'ws://') });
    const client = new RoomServiceClient(front.url, API_KEY, API_SECRET);

    const list = await client.listParticipants('caller-1');
    expect(list.map((p) => [p.identity, p.name])).toEqual([['caller', 'in caller-1']]);

    const [frontList] = front.calls('ListParticipants');
    const [upstreamList] = upstream.calls('ListParticipants');
    expect(frontList?.response.proxied).toBe(true);
    expect(frontList?.body).toEqual({ room: 'caller-1' });
    expect(upstreamList?.body).toEqual({ room: 'caller-1' });
    // The caller's token reaches the upstream untouched.
    expect(upstreamList?.auth?.token).toBe(frontList?.auth?.token);
    expect(upstreamList?.auth?.claims.video).toEqual({ roomAdmin: true, room: 'caller-1' });

    // A proxied Twirp error reaches the SDK exactly as the upstream sent it.
    front.setMoveBehaviour('proxy');
    const direct = await moveError(new RoomServiceClient(upstream.url, API_KEY, API_SECRET));
    const proxied = await moveError(client);
    expect(proxied).toBeInstanceOf(TwirpError);
    expect(proxied).toMatchObject({ name: 'Not Implemented', status: 501, code: 'unimplemented', message: 'not implemented' });
    expect({ ...(proxied as object) }).toEqual({ ...(direct as object) });
    expect(front.calls('MoveParticipant')[0]?.response).toMatchObject({ status: 501, proxied: true });
  });

  it('refuses to proxy without an upstream, and rejects non-Twirp paths, recording both', async () => {
    const rec = await recorder();
    const client = new RoomServiceClient(rec.url, API_KEY, API_SECRET);
    await expect(client.listRooms()).rejects.toMatchObject({ status: 501, code: 'unimplemented' });
    const res = await fetch(`${rec.url}/not-twirp`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: 'bad_route' });
    expect(rec.requests.items.map((r) => [r.method, r.response.status])).toEqual([
      ['ListRooms', 501],
      ['', 404],
    ]);
  });

  it('lets a test wait for a request that has not arrived yet', async () => {
    const rec = await recorder();
    const client = new RoomServiceClient(rec.url, API_KEY, API_SECRET);
    const seen = rec.waitForRequest((r) => r.method === 'MoveParticipant' && (r.body as { identity?: string }).identity === 'late', 5_000);
    await client.moveParticipant('consult-1', 'late', 'caller-1');
    expect((await seen).body).toEqual({ room: 'consult-1', identity: 'late', destinationRoom: 'caller-1' });
    await expect(rec.waitForRequest((r) => r.method === 'DeleteRoom', 50, 'a DeleteRoom')).rejects.toThrow(/a DeleteRoom/);
  });
});
