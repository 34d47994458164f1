/**
 * The handoff summary: its schema, field caps, and the text hygiene applied to every field.
 *
 * One zod schema serves three purposes: it is sent to Groq as the JSON schema response format,
 * it validates what comes back, and it types the result. Every string passes a `cleanText` +
 * clamp overwrite before its cap is checked, so an over-long or markup-laden field from the model
 * is trimmed rather than failing the whole summary; wrong types, missing fields and unknown enum
 * values do fail validation (and the caller falls back).
 */
import { z } from 'zod';
import type { Turn } from './transcript.js';

/** Length caps (characters) and item caps for every field. */
export const SUMMARY_CAPS = Object.freeze({
  callerName: 80,
  callerItem: 160,
  callerItems: 6,
  intent: 300,
  factLabel: 40,
  factValue: 120,
  facts: 12,
  step: 200,
  steps: 8,
  question: 200,
  questions: 6,
  nextStep: 300,
  /** The spoken brief: about three sentences. */
  brief: 480,
});

export const SENTIMENTS = ['positive', 'neutral', 'confused', 'frustrated', 'angry', 'distressed'] as const;
export const URGENCIES = ['low', 'normal', 'high', 'critical'] as const;

// --- text hygiene -----------------------------------------------------------------------------

// Control characters (incl. newlines and tabs) become spaces: every field is a single line.
const CONTROL = /\p{Cc}/gu;
// Format characters: zero-width joiners, bidi overrides (which can disguise text on a screen).
const FORMAT = /\p{Cf}/gu;
// Markup tags (HTML, XML, SSML) are removed whole: TTS engines may interpret SSML.
const TAG = /<\/?[a-z!?][^<>]*>/gi;
const MARKDOWN_LINK = /\[([^\]]*)\]\((?:[^)]*)\)/g;

/** Single-line text without control characters, markup tags or markdown emphasis. */
export function cleanText(input: string): string {
  return input
    .replace(CONTROL, ' ')
    .replace(FORMAT, '')
    .replace(TAG, ' ')
    .replace(MARKDOWN_LINK, '$1')
    .replace(/[<>`*]/g, '')
    .replace(/^\s*(?:#+|[-+]\s)\s*/, '')
    .replace(/\s+/g, ' ')
    .trim();
}

/**
 * Text a TTS engine can read as plain speech: `cleanText`, plus no emoji, no brackets or other
 * symbols that engines read out literally ("left bracket"), and "#123" read as "number 123".
 */
export function toSpeakable(input: string, max: number = SUMMARY_CAPS.brief): string {
  const text = cleanText(input)
    .replace(/\p{Extended_Pictographic}/gu, '')
    .replace(/#\s?(?=\d)/g, 'number ')
    .replace(/[[\]{}()|~^_\\]/g, ' ')
    .replace(/\s+([.,!?;:])/g, '$1')
    .replace(/\s+/g, ' ')
    .trim();
  return clampSentences(text, max);
}

/** Cuts `text` to at most `max` characters at a word boundary, marking the cut with an ellipsis. */
export function clampText(text: string, max: number): string {
  if (text.length <= max) return text;
  let cut = max - 1;
  const space = text.lastIndexOf(' ', cut);
  if (space > max * 0.6) cut = space;
  // Never split a surrogate pair.
  const code = text.charCodeAt(cut - 1);
  if (code >= 0xd800 && code <= 0xdbff) cut--;
  return text.slice(0, cut).trimEnd() + '…';
}

/** Like clampText, but prefers ending on a whole sentence (spoken text should not stop mid-word). */
export function clampSentences(text: string, max: number): string {
  if (text.length <= max) return text;
  const head = text.slice(0, max);
  const end = Math.max(head.lastIndexOf('. '), head.lastIndexOf('! '), head.lastIndexOf('? '));
  if (end > max * 0.5) return head.slice(0, end + 1);
  const clipped = clampText(text, max - 1).replace(/…$/, '');
  return clipped.replace(/[,;:\s]+$/, '') + '.';
}

// --- schema -----------------------------------------------------------------------------------

/** A cleaned, clamped string field: the overwrite runs before the cap check, so the cap holds. */
function text(max: number, description: string) {
  return z
    .string()
    .overwrite((s) => clampText(cleanText(s), max))
    .max(max)
    .describe(`${description} (at most ${max} characters)`);
}

function list<T extends z.ZodType>(item: T, max: number, description: string) {
  return z
    .array(item)
    .overwrite((items) => items.slice(0, max))
    .max(max)
    .describe(`${description} (at most ${max} items)`);
}

const C = SUMMARY_CAPS;

export const HandoffSummary = z.object({
  caller: z.object({
    name: text(C.callerName, 'Name the caller gave, as they gave it; empty string if none'),
    verified: list(
      text(C.callerItem, 'One item'),
      C.callerItems,
      'Identity or account details that Agent A explicitly confirmed against records during the call; empty if nothing was verified',
    ),
    claims: list(
      text(C.callerItem, 'One item'),
      C.callerItems,
      'What the caller said about themselves that was not verified, phrased as a claim ("says they are the account holder")',
    ),
  }),
  intent: text(C.intent, 'What the caller wants, in one sentence'),
  keyFacts: list(
    z.object({
      label: text(C.factLabel, 'What the value is, e.g. "Order number"'),
      value: text(C.factValue, 'The value exactly as stated in the call'),
    }),
    C.facts,
    'Identifiers and facts Agent B needs: account, order, ticket or case numbers, dates, amounts, products',
  ),
  stepsTaken: list(text(C.step, 'One step'), C.steps, 'What was already tried or done during the call, in order'),
  sentiment: z.enum(SENTIMENTS).describe("The caller's current mood"),
  urgency: z.enum(URGENCIES).describe('How urgent the request is for the caller'),
  openQuestions: list(text(C.question, 'One question'), C.questions, 'Questions still unanswered'),
  suggestedNextStep: text(C.nextStep, 'What Agent B should do first'),
});
export type HandoffSummary = z.infer<typeof HandoffSummary>;

/** What the model returns: the structured summary and the brief spoken to Agent B. */
export const SummaryModelOutput = z.object({
  summary: HandoffSummary,
  brief: z
    .string()
    .overwrite((s) => toSpeakable(s, C.brief))
    .max(C.brief)
    .describe(
      `Two to four plain sentences briefing Agent B aloud: who is calling, what they want, what was done, what to do next. No lists, markup or emoji (at most ${C.brief} characters)`,
    ),
});
export type SummaryModelOutput = z.infer<typeof SummaryModelOutput>;

/**
 * The JSON schema sent as the response format. Length and item caps are left out on purpose:
 * Groq's strict (constrained-decoding) mode accepts only a subset of JSON Schema, and the caps
 * are enforced on receipt anyway. They stay in each field's description for the model to follow.
 */
export function summaryResponseJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(SummaryModelOutput) as Record<string, unknown>;
  delete schema.$schema;
  return stripKeywords(schema, new Set(['maxLength', 'minLength', 'maxItems', 'minItems'])) as Record<string, unknown>;
}

function stripKeywords(value: unknown, keywords: Set<string>): unknown {
  if (Array.isArray(value)) return value.map((v) => stripKeywords(v, keywords));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value)) {
      if (!keywords.has(key)) out[key] = stripKeywords(v, keywords);
    }
    return out;
  }
  return value;
}

// --- result -----------------------------------------------------------------------------------

export type SummarySource = 'llm' | 'fallback';

/**
 * What the summarizer hands the transfer orchestrator.
 *
 * `summary`, `brief` and `pendingTurns` have been through the *stored* redaction setting: they
 * are safe to save and to show. `spokenBrief` has been through the *spoken* setting and is what
 * Agent B hears (plain text, safe for TTS).
 */
export interface SummaryResult {
  summary: HandoffSummary;
  brief: string;
  spokenBrief: string;
  /** `fallback` means no model wrote this: it was built from the transcript by rules. */
  source: SummarySource;
  /** The model that wrote the summary (only for `source: 'llm'`). */
  model?: string;
  /** The newest transcript turn the summary reflects. */
  coveredThroughSeq: number;
  /** Turns after `coveredThroughSeq`, verbatim (stored-redacted), for Agent B to read. */
  pendingTurns: Turn[];
  /** Epoch ms when the summary was produced. */
  generatedAt: number;
  /** Why the fallback was used (only for `source: 'fallback'`). */
  fallbackReason?: string;
}
