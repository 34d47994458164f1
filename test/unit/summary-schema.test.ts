import { describe, expect, it } from 'vitest';
import {
  HandoffSummary,
  SUMMARY_CAPS,
  SummaryModelOutput,
  clampText,
  cleanText,
  summaryResponseJsonSchema,
  toSpeakable,
} from '../../agent/summary-schema.js';

function validSummary(): HandoffSummary {
  return {
    caller: { name: 'Dana Reyes', verified: ['Date of birth matched the account'], claims: ['Says they are the account holder'] },
    intent: 'Wants a refund for a duplicate charge',
    keyFacts: [{ label: 'Order number', value: 'A-99812' }],
    stepsTaken: ['Agent A confirmed the duplicate charge'],
    sentiment: 'frustrated',
    urgency: 'normal',
    openQuestions: ['When will the refund arrive?'],
    suggestedNextStep: 'Issue the refund for the second charge',
  };
}

describe('text hygiene', () => {
  it('cleanText removes control and format characters, tags and markdown', () => {
    expect(cleanText('line one\nline\ttwo\u0007')).toBe('line one line two');
    expect(cleanText('pay\u202Eyal\u200B')).toBe('payyal');
    expect(cleanText('<speak><break time="3s"/>Hello</speak> **bold** `code`')).toBe('Hello bold code');
    expect(cleanText('see [the docs](http://x.example)')).toBe('see the docs');
    expect(cleanText('## Heading')).toBe('Heading');
  });

  it('clampText cuts at a word boundary and marks the cut', () => {
    const out = clampText('the quick brown fox jumps over the lazy dog', 20);
    expect(out.length).toBeLessThanOrEqual(20);
    expect(out).toBe('the quick brown fox…');
    expect(clampText('short', 20)).toBe('short');
  });

  it('toSpeakable gives plain text a TTS engine can read', () => {
    expect(toSpeakable('Caller 😡 wants order #4411 [card ending 1111] refunded {urgent}')).toBe(
      'Caller wants order number 4411 card ending 1111 refunded urgent',
    );
    const long = 'First sentence here. '.repeat(40);
    const spoken = toSpeakable(long, 100);
    expect(spoken.length).toBeLessThanOrEqual(100);
    expect(spoken.endsWith('.')).toBe(true);
  });
});

describe('HandoffSummary schema', () => {
  it('accepts a valid summary unchanged', () => {
    expect(HandoffSummary.parse(validSummary())).toEqual(validSummary());
  });

  it('clamps every over-long field and list instead of failing', () => {
    const s = validSummary();
    s.intent = 'x '.repeat(1_000);
    s.caller.name = 'n'.repeat(500);
    s.keyFacts = Array.from({ length: 40 }, (_, i) => ({ label: 'L'.repeat(100), value: `v${i} `.repeat(100) }));
    s.openQuestions = Array.from({ length: 20 }, () => 'q?');
    const out = HandoffSummary.parse(s);
    expect(out.intent.length).toBeLessThanOrEqual(SUMMARY_CAPS.intent);
    expect(out.caller.name.length).toBeLessThanOrEqual(SUMMARY_CAPS.callerName);
    expect(out.keyFacts).toHaveLength(SUMMARY_CAPS.facts);
    for (const f of out.keyFacts) {
      expect(f.label.length).toBeLessThanOrEqual(SUMMARY_CAPS.factLabel);
      expect(f.value.length).toBeLessThanOrEqual(SUMMARY_CAPS.factValue);
    }
    expect(out.openQuestions).toHaveLength(SUMMARY_CAPS.questions);
  });

  it('strips markup and control characters from every field', () => {
    const s = validSummary();
    s.intent = '<script>alert(1)</script>Refund\u0000 please';
    s.keyFacts = [{ label: '**Order**', value: 'A-1\nB' }];
    const out = HandoffSummary.parse(s);
    expect(out.intent).toBe('alert(1) Refund please');
    expect(out.keyFacts[0]).toEqual({ label: 'Order', value: 'A-1 B' });
  });

  it.each([
    ['a missing field', (s: Record<string, unknown>) => delete s.intent],
    ['a wrong type', (s: Record<string, unknown>) => (s.keyFacts = 'A-99812')],
    ['an unknown enum value', (s: Record<string, unknown>) => (s.sentiment = 'livid')],
  ])('rejects %s', (_name, mutate) => {
    const s = validSummary() as unknown as Record<string, unknown>;
    mutate(s);
    expect(HandoffSummary.safeParse(s).success).toBe(false);
  });

  it('makes the brief speakable and capped', () => {
    const out = SummaryModelOutput.parse({ summary: validSummary(), brief: `- **Caller** <b>Dana</b> wants a refund.\n${'More. '.repeat(200)}` });
    expect(out.brief.startsWith('Caller Dana wants a refund.')).toBe(true);
    expect(out.brief.length).toBeLessThanOrEqual(SUMMARY_CAPS.brief);
    expect(out.brief).not.toMatch(/[<>*\n]/);
  });
});

describe('summaryResponseJsonSchema', () => {
  const schema = summaryResponseJsonSchema();

  type Node = Record<string, unknown>;
  const objects: Node[] = [];
  const keywords = new Set<string>();
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(visit);
    if (node === null || typeof node !== 'object') return;
    const n = node as Node;
    for (const k of Object.keys(n)) keywords.add(k);
    if (n.type === 'object') objects.push(n);
    Object.values(n).forEach(visit);
  };
  visit(schema);

  it('meets Groq strict mode: every property required, no additional properties', () => {
    expect(objects.length).toBeGreaterThanOrEqual(4); // root, summary, caller, key fact
    for (const o of objects) {
      expect(o.additionalProperties).toBe(false);
      expect(new Set(o.required as string[])).toEqual(new Set(Object.keys(o.properties as Node)));
    }
  });

  it('leaves length keywords out and keeps the caps in descriptions', () => {
    expect(schema.$schema).toBeUndefined();
    for (const k of ['maxLength', 'minLength', 'maxItems', 'minItems']) expect(keywords.has(k)).toBe(false);
    expect(JSON.stringify(schema)).toContain(`at most ${SUMMARY_CAPS.intent} characters`);
  });
});
