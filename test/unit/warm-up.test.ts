import { createRequire } from 'node:module';
import { TrackSource } from '@livekit/rtc-node';
import { describe, expect, it } from 'vitest';
import { warmFfiMessageTypes } from '../../agent/warm-up.js';

describe('warmFfiMessageTypes', () => {
  it("works out the fields of every FFI message type, in the copy of the bindings rtc-node uses", () => {
    const warmed = warmFfiMessageTypes();
    // 415 in rtc-ffi-bindings 0.12.73: a drop to a handful would mean the bindings changed shape.
    expect(warmed).toBeGreaterThan(300);
    const bindings = createRequire(createRequire(import.meta.url).resolve('@livekit/rtc-node'))('@livekit/rtc-ffi-bindings') as {
      TrackSource: unknown;
      FfiEvent: { fields: { all?: unknown[] } };
    };
    // The same module instance as the one rtc-node encodes and decodes with (not a second copy).
    expect(bindings.TrackSource).toBe(TrackSource);
    // protobuf-es keeps the worked-out list on the type: a call finds it ready.
    expect(bindings.FfiEvent.fields.all?.length).toBeGreaterThan(10);
  });
});
