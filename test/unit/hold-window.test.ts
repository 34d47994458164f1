import { describe, expect, it } from 'vitest';
import { type Hold, withHoldWindow } from '../../agent/hold.js';

/** A hold that only records what was asked of it: the window's contract is about ordering. */
function recordingHold(log: string[]): Hold {
  let held = false;
  return {
    get held() {
      return held;
    },
    async start() {
      held = true;
      log.push('start');
    },
    async stop(opts) {
      held = false;
      log.push(`stop resume=${opts?.resumeListening ?? 'default'}`);
    },
  };
}

describe('withHoldWindow', () => {
  it('opens a window when the hold starts and closes it once the hold has stopped', async () => {
    const log: string[] = [];
    const hold = withHoldWindow(recordingHold(log), () => {
      log.push('open');
      return () => log.push('close');
    });
    expect(hold.held).toBe(false);
    await hold.start();
    expect(hold.held).toBe(true);
    await hold.start(); // a second start is the same hold: no second window
    await hold.stop({ resumeListening: false });
    expect(hold.held).toBe(false);
    await hold.stop(); // stop is safe to repeat: nothing more to close
    expect(log).toEqual(['open', 'start', 'start', 'stop resume=false', 'close', 'stop resume=default']);
  });

  it('opens a fresh window for a later hold', async () => {
    let windows = 0;
    const hold = withHoldWindow(recordingHold([]), () => {
      windows += 1;
      return () => undefined;
    });
    await hold.start();
    await hold.stop();
    await hold.start();
    expect(windows).toBe(2);
  });
});
