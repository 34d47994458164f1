/** The summarizer's pure parts: fallback summary, reply parsing, settings, model capabilities. */
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_SUMMARIZER_SETTINGS,
  SUMMARIZER_ENV,
  buildFallbackSummary,
  modelCapabilities,
  parseModelReply,
  summarizerSettingsFromEnv,
} from '../../agent/summarizer.js';
import { HandoffSummary, SUMMARY_CAPS } from '../../agent/summary-schema.js';
import { Transcript, type Speaker } from '../../agent/transcript.js';

function transcriptOf(lines: [Speaker, string][]): Transcript {
  const t = new Transcript({ now: () => 0 });
  for (const [speaker, text] of lines) t.add({ speaker, text });
  return t;
}

const CALL: [Speaker, string][] = [
  ['agent_a', 'Thanks for calling Acme, how can I help?'],
  ['caller', "Hi, this is Dana Reyes. I was charged twice for order number A-99812 and I want a refund."],
  ['agent_a', 'Sorry about that. Can you confirm your date of birth?'],
  ['caller', 'March 3rd 1985.'],
  ['agent_a', "Thank you for confirming, that matches our records. I've checked and I can see two charges of $49.99."],
  ['caller', 'This is the third time I have called about this, it is ridiculous.'],
  ['caller', 'When will I get my money back?'],
];

describe('buildFallbackSummary', () => {
  const { summary, brief } = buildFallbackSummary(transcriptOf(CALL).all());

  it('reports what was said, as claims', () => {
    expect(summary.caller.name).toBe('Dana Reyes');
    expect(summary.caller.claims).toEqual(['Says their name is Dana Reyes']);
    expect(summary.intent).toMatch(/^Caller said: ".*charged twice.*"$/);
    expect(summary.caller.verified[0]).toMatch(/^Agent A said: ".*confirming.*"$/);
  });

  it('extracts identifiers and amounts', () => {
    expect(summary.keyFacts).toEqual(
      expect.arrayContaining([
        { label: 'Order number (as stated)', value: 'A-99812' },
        { label: 'Amount mentioned', value: '$49.99' },
      ]),
    );
  });

  it('reads mood, urgency, steps and open questions by rule', () => {
    expect(summary.sentiment).toBe('angry');
    expect(summary.urgency).toBe('normal');
    expect(summary.stepsTaken.some((s) => s.includes("I've checked"))).toBe(true);
    expect(summary.openQuestions).toEqual(['Caller asked: "When will I get my money back?"']);
    expect(summary.suggestedNextStep).toMatch(/no AI summary/);
  });

  it('is valid under the schema and the brief is plain speech saying it is automatic', () => {
    expect(HandoffSummary.parse(summary)).toEqual(summary);
    expect(brief).toMatch(/^This is an automatic summary/);
    expect(brief).toContain('Dana Reyes');
    expect(brief).not.toMatch(/["<>*#[\]]/);
    expect(brief.length).toBeLessThanOrEqual(SUMMARY_CAPS.brief);
  });

  it('flags urgency from the caller', () => {
    const s = buildFallbackSummary(transcriptOf([['caller', 'Someone stole my card, I need it blocked right now']]).all());
    expect(s.summary.urgency).toBe('high');
  });

  it('copes with an empty or agent-only transcript', () => {
    for (const turns of [[], transcriptOf([['agent_a', 'Hello?']]).all()]) {
      const s = buildFallbackSummary(turns);
      expect(HandoffSummary.safeParse(s.summary).success).toBe(true);
      expect(s.summary.intent).toMatch(/not known/i);
      expect(s.brief.length).toBeGreaterThan(0);
    }
  });

  it('keeps the opening of a long call', () => {
    const t = transcriptOf([['caller', 'My name is Lee Park and I want to cancel order number ZX-1001 please.']]);
    for (let i = 0; i < 600; i++) t.add({ speaker: i % 2 ? 'caller' : 'agent_a', text: `filler ${i}` });
    const s = buildFallbackSummary(t.all()).summary;
    expect(s.caller.name).toBe('Lee Park');
    expect(s.intent).toContain('cancel order number ZX-1001');
  });

  it('stays cheap on a long call (bounded window)', () => {
    const t = new Transcript();
    for (let i = 0; i < 5_000; i++) {
      t.add({ speaker: i % 2 ? 'caller' : 'agent_a', text: `turn ${i}: my order number is ORD-${i} and I am still waiting, this is frustrating?` });
    }
    const turns = t.all();
    // The fastest of a few runs: on a busy machine any single run can be preempted.
    let fastest = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 7; i++) {
      const start = performance.now();
      buildFallbackSummary(turns);
      fastest = Math.min(fastest, performance.now() - start);
    }
    expect(fastest).toBeLessThan(10);
  });
});

describe('parseModelReply', () => {
  const good = {
    summary: {
      caller: { name: '', verified: [], claims: [] },
      intent: 'Refund',
      keyFacts: [],
      stepsTaken: [],
      sentiment: 'neutral',
      urgency: 'low',
      openQuestions: [],
      suggestedNextStep: 'Refund it',
    },
    brief: 'Caller wants a refund.',
  };

  it('accepts valid JSON (also inside a markdown fence)', () => {
    expect(parseModelReply(JSON.stringify(good))).toMatchObject({ ok: true, output: { brief: 'Caller wants a refund.' } });
    expect(parseModelReply('```json\n' + JSON.stringify(good) + '\n```').ok).toBe(true);
  });

  it('names what is wrong', () => {
    expect(parseModelReply('')).toEqual({ ok: false, reason: 'empty_response' });
    expect(parseModelReply(null)).toEqual({ ok: false, reason: 'empty_response' });
    expect(parseModelReply('{"summary": ')).toEqual({ ok: false, reason: 'invalid_json' });
    const bad = { ...good, summary: { ...good.summary, urgency: 'extreme' } };
    expect(parseModelReply(JSON.stringify(bad))).toMatchObject({ ok: false, reason: expect.stringMatching(/^schema_violation: summary\.urgency/) });
  });
});

describe('summarizerSettingsFromEnv', () => {
  it('uses the defaults when nothing is set', () => {
    expect(summarizerSettingsFromEnv({})).toEqual({ ...DEFAULT_SUMMARIZER_SETTINGS, apiKey: '' });
  });

  it('reads every variable', () => {
    const env = {
      [SUMMARIZER_ENV.apiKey]: 'gsk_test',
      [SUMMARIZER_ENV.transport]: 'in-thread',
      [SUMMARIZER_ENV.baseURL]: 'http://127.0.0.1:9999',
      [SUMMARIZER_ENV.model]: 'llama-3.3-70b-versatile',
      [SUMMARIZER_ENV.responseFormat]: 'json_object',
      [SUMMARIZER_ENV.rolling]: 'off',
      [SUMMARIZER_ENV.debounceMs]: '500',
      [SUMMARIZER_ENV.minIntervalMs]: '1000',
      [SUMMARIZER_ENV.maxTokensBudget]: '1234',
      [SUMMARIZER_ENV.requestTimeoutMs]: '3000',
      [SUMMARIZER_ENV.maxRetries]: '0',
      [SUMMARIZER_ENV.transferDeadlineMs]: '900',
      [SUMMARIZER_ENV.maxCompletionTokens]: '1000',
      [SUMMARIZER_ENV.maxInputChars]: '9000',
      [SUMMARIZER_ENV.redactStored]: 'cards',
      [SUMMARIZER_ENV.redactSpoken]: 'none',
      [SUMMARIZER_ENV.redactModelInput]: 'all',
    };
    expect(summarizerSettingsFromEnv(env)).toEqual({
      apiKey: 'gsk_test',
      transport: 'in-thread',
      baseURL: 'http://127.0.0.1:9999',
      model: 'llama-3.3-70b-versatile',
      responseFormat: 'json_object',
      rolling: false,
      debounceMs: 500,
      minIntervalMs: 1000,
      maxTokensBudget: 1234,
      requestTimeoutMs: 3000,
      maxRetries: 0,
      transferDeadlineMs: 900,
      maxCompletionTokens: 1000,
      maxInputChars: 9000,
      redactStored: { cards: true, nationalIds: false, emails: false, phones: false },
      redactSpoken: { cards: false, nationalIds: false, emails: false, phones: false },
      redactModelInput: { cards: true, nationalIds: true, emails: true, phones: true },
    });
  });

  it('names the variable on a bad value', () => {
    expect(() => summarizerSettingsFromEnv({ SUMMARY_DEADLINE_MS: 'soon' })).toThrow(/SUMMARY_DEADLINE_MS/);
    expect(() => summarizerSettingsFromEnv({ SUMMARY_ROLLING: 'maybe' })).toThrow(/SUMMARY_ROLLING/);
    expect(() => summarizerSettingsFromEnv({ SUMMARY_REDACT_SPOKEN: 'cards,ssn' })).toThrow(/SUMMARY_REDACT_SPOKEN.*ssn/);
  });
});

describe('modelCapabilities', () => {
  it('uses strict json_schema on gpt-oss, JSON mode on Llama 3.3 and unknown models', () => {
    expect(modelCapabilities('openai/gpt-oss-120b')).toEqual({ responseFormat: 'json_schema', strict: true, reasoning: true });
    expect(modelCapabilities('openai/gpt-oss-20b').strict).toBe(true);
    expect(modelCapabilities('llama-3.3-70b-versatile').responseFormat).toBe('json_object');
    expect(modelCapabilities('some/new-model')).toEqual({ responseFormat: 'json_object', strict: false, reasoning: false });
  });

  it('honours an explicit override, never claiming strict for a model without it', () => {
    expect(modelCapabilities('openai/gpt-oss-120b', 'json_object').responseFormat).toBe('json_object');
    expect(modelCapabilities('some/new-model', 'json_schema')).toEqual({ responseFormat: 'json_schema', strict: false, reasoning: false });
  });
});
