import { describe, expect, it, vi } from 'vitest';
import { Transcript, type Turn } from '../../agent/transcript.js';

describe('Transcript', () => {
  it('numbers turns from 1 and stamps them with its clock', () => {
    let clock = 1_000;
    const t = new Transcript({ now: () => clock++ });
    const a = t.add({ speaker: 'caller', text: 'Hello', identity: 'sip_caller' });
    const b = t.add({ speaker: 'agent_a', text: 'Hi, how can I help?' });
    expect(a).toEqual({ seq: 1, speaker: 'caller', identity: 'sip_caller', text: 'Hello', at: 1_000 });
    expect(b).toEqual({ seq: 2, speaker: 'agent_a', text: 'Hi, how can I help?', at: 1_001 });
    expect(t.lastSeq).toBe(2);
    expect(t.all().map((x) => x.seq)).toEqual([1, 2]);
  });

  it('normalises whitespace and ignores empty turns', () => {
    const t = new Transcript();
    expect(t.add({ speaker: 'caller', text: '   \n ' })).toBeUndefined();
    expect(t.add({ speaker: 'caller', text: ' two\n\tlines ' })?.text).toBe('two lines');
    expect(t.lastSeq).toBe(1);
  });

  it('returns immutable turns and copies of its list', () => {
    const t = new Transcript();
    const turn = t.add({ speaker: 'caller', text: 'x' })!;
    expect(Object.isFrozen(turn)).toBe(true);
    t.all().pop();
    expect(t.size).toBe(1);
  });

  it('clips long turns and marks them', () => {
    const t = new Transcript({ limits: { maxCharsPerTurn: 10 } });
    const turn = t.add({ speaker: 'caller', text: 'a'.repeat(25) })!;
    expect(turn.text).toBe('a'.repeat(10));
    expect(turn.truncated).toBe(true);
  });

  it('drops the oldest turns past the total cap, counting them, seqs unchanged', () => {
    const t = new Transcript({ limits: { maxTotalChars: 25, maxCharsPerTurn: 100 } });
    for (let i = 1; i <= 5; i++) t.add({ speaker: 'caller', text: `turn ${i} text` }); // 11 chars each
    expect(t.all().map((x) => x.seq)).toEqual([4, 5]);
    expect(t.dropped).toEqual({ turns: 3, chars: 33 });
    expect(t.firstSeq).toBe(4);
    expect(t.lastSeq).toBe(5);
  });

  it('drops the oldest turns past the turn cap', () => {
    const t = new Transcript({ limits: { maxTurns: 3 } });
    for (let i = 1; i <= 5; i++) t.add({ speaker: 'agent_a', text: `t${i}` });
    expect(t.all().map((x) => x.text)).toEqual(['t3', 't4', 't5']);
    expect(t.dropped.turns).toBe(2);
  });

  it('always keeps the newest turn, even when it alone is over the total', () => {
    const t = new Transcript({ limits: { maxTotalChars: 5, maxCharsPerTurn: 50 } });
    t.add({ speaker: 'caller', text: 'first' });
    t.add({ speaker: 'caller', text: 'a much longer second turn' });
    expect(t.all().map((x) => x.seq)).toEqual([2]);
  });

  it('since(seq) returns the turns after seq, also across dropped turns', () => {
    const t = new Transcript({ limits: { maxTurns: 4 } });
    for (let i = 1; i <= 6; i++) t.add({ speaker: 'caller', text: `t${i}` });
    expect(t.since(0).map((x) => x.seq)).toEqual([3, 4, 5, 6]);
    expect(t.since(1).map((x) => x.seq)).toEqual([3, 4, 5, 6]);
    expect(t.since(4).map((x) => x.seq)).toEqual([5, 6]);
    expect(t.since(6)).toEqual([]);
    expect(t.since(99)).toEqual([]);
    expect(new Transcript().since(0)).toEqual([]);
    expect(new Transcript().firstSeq).toBe(0);
  });

  it('notifies onTurn listeners until they unsubscribe', () => {
    const t = new Transcript();
    const seen: Turn[] = [];
    const off = t.onTurn((turn) => seen.push(turn));
    t.add({ speaker: 'caller', text: 'one' });
    off();
    t.add({ speaker: 'caller', text: 'two' });
    expect(seen.map((x) => x.text)).toEqual(['one']);
  });

  it('keeps adding and notifying when a listener throws', () => {
    const t = new Transcript();
    const good = vi.fn();
    t.onTurn(() => {
      throw new Error('listener bug');
    });
    t.onTurn(good);
    expect(t.add({ speaker: 'caller', text: 'still works' })?.seq).toBe(1);
    expect(good).toHaveBeenCalledTimes(1);
  });
});
