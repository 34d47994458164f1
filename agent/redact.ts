/**
 * Redaction of personal data in text the worker stores or speaks.
 *
 * Pure and synchronous: a few linear regex passes per string, cheap enough to run on every
 * summary and turn. Patterns favour precision over recall where a false positive would destroy a
 * fact Agent B needs (an order number must not be blanked as a "phone number"): unseparated
 * 9-digit runs count as an SSN only next to an SSN keyword, and bare digit runs count as a phone
 * number only with a leading "+", typical phone grouping, or a phone keyword in front.
 * Not covered: numbers spoken as words ("four one one one ..."), e-mail addresses spelled out
 * ("john at example dot com").
 */

export interface RedactionSettings {
  /** Payment card numbers (13-19 digits, Luhn-valid); the last four digits are kept. */
  cards: boolean;
  /** National ID numbers: US SSN, UK National Insurance number. */
  nationalIds: boolean;
  emails: boolean;
  phones: boolean;
}

export const REDACT_NONE: Readonly<RedactionSettings> = Object.freeze({
  cards: false,
  nationalIds: false,
  emails: false,
  phones: false,
});

export const REDACT_ALL: Readonly<RedactionSettings> = Object.freeze({
  cards: true,
  nationalIds: true,
  emails: true,
  phones: true,
});

/** Names accepted by {@link parseRedactionSettings}, mapped to the setting they turn on. */
const REDACTION_NAMES: Record<string, keyof RedactionSettings> = {
  cards: 'cards',
  card: 'cards',
  national_ids: 'nationalIds',
  nationalids: 'nationalIds',
  ids: 'nationalIds',
  emails: 'emails',
  email: 'emails',
  phones: 'phones',
  phone: 'phones',
};

/**
 * Parses an env-style setting: `all`, `none` (or empty), or a comma list such as
 * `cards,national_ids,emails,phones`. Unknown names throw, so a typo cannot silently turn
 * redaction off.
 */
export function parseRedactionSettings(value: string | undefined, fallback: RedactionSettings): RedactionSettings {
  if (value === undefined) return { ...fallback };
  const trimmed = value.trim().toLowerCase();
  if (trimmed === 'all') return { ...REDACT_ALL };
  if (trimmed === '' || trimmed === 'none' || trimmed === 'off') return { ...REDACT_NONE };
  const result: RedactionSettings = { ...REDACT_NONE };
  for (const part of trimmed.split(',')) {
    const name = part.trim();
    if (name === '') continue;
    const key = REDACTION_NAMES[name];
    if (!key) throw new Error(`unknown redaction category "${name}" (use cards, national_ids, emails, phones, all or none)`);
    result[key] = true;
  }
  return result;
}

export function redactionEnabled(settings: RedactionSettings): boolean {
  return settings.cards || settings.nationalIds || settings.emails || settings.phones;
}

// 13-19 digits, optionally grouped by single spaces or dashes (4-4-4-4, 4-6-5, ...).
const CARD_CANDIDATE = /(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])/g;
// SSN with separators; area 000/666/9xx, group 00 and serial 0000 are never issued.
const SSN_SEPARATED = /\b(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}\b/g;
// Unseparated SSN only right after a keyword, so 9-digit order numbers survive.
const SSN_KEYWORD = /\b(ssn|social security(?: number)?|social)(\W{1,5}(?:(?:is|number|no\.?)\W{1,3})?)(\d{9})\b/gi;
// UK NI number: two prefix letters (D, F, I, Q, U, V never; O never second), six digits, A-D.
const NI_NUMBER = /\b([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]) ?(\d{2}) ?(\d{2}) ?(\d{2}) ?([A-D])\b/gi;
const NI_INVALID_PREFIXES = new Set(['BG', 'GB', 'NK', 'KN', 'TN', 'NT', 'ZZ']);
const EMAIL = /[A-Z0-9._%+-]+@[A-Z0-9-]+(?:\.[A-Z0-9-]+)*\.[A-Z]{2,}/gi;
// International form: "+" then 8-15 digits with common separators (also inside SIP identities
// such as "sip_+15551234567").
const PHONE_INTERNATIONAL = /(?<![\d+])\+\d(?:[ .-]?\(?\d\)?){7,16}(?!\d)/g;
// North American grouping: (555) 123-4567, 555-123-4567, 555.123.4567.
const PHONE_NANP = /(?<![\w-])(?:\(\d{3}\)\s?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-])/g;
// UK national form starting with 0: 07700 900123, 020 7946 0958.
const PHONE_UK = /(?<![\w-])0\d{2,4}[ -]\d{3,4}(?:[ -]?\d{3,4})?(?![\w-])/g;
// Bare digit runs right after a phone keyword.
const PHONE_KEYWORD = /\b(phone|mobile|cell|telephone|landline|tel\.?)(\W{1,20}(?:(?:is|number|no\.?|on|at)\W{1,3})*)(\d{7,15})\b/gi;

function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

function digitCount(s: string): number {
  let n = 0;
  for (const ch of s) if (ch >= '0' && ch <= '9') n++;
  return n;
}

/** Returns `text` with the categories turned on in `settings` replaced by bracketed labels. */
export function redact(text: string, settings: RedactionSettings): string {
  if (text === '' || !redactionEnabled(settings)) return text;
  let out = text;
  // Cards first: their long digit runs would otherwise be half-eaten by the phone patterns.
  if (settings.cards) {
    out = out.replace(CARD_CANDIDATE, (match) => {
      const digits = match.replace(/\D/g, '');
      if (digits.length < 13 || digits.length > 19 || !luhnValid(digits)) return match;
      return `[card ending ${digits.slice(-4)}]`;
    });
  }
  if (settings.nationalIds) {
    out = out.replace(SSN_SEPARATED, '[redacted SSN]');
    out = out.replace(SSN_KEYWORD, (_m, keyword: string, gap: string) => `${keyword}${gap}[redacted SSN]`);
    out = out.replace(NI_NUMBER, (match, prefix: string) =>
      NI_INVALID_PREFIXES.has(prefix.toUpperCase()) ? match : '[redacted NI number]',
    );
  }
  if (settings.emails) out = out.replace(EMAIL, '[redacted email]');
  if (settings.phones) {
    const phone = (match: string): string => {
      const n = digitCount(match);
      return n >= 7 && n <= 15 ? '[redacted phone]' : match;
    };
    out = out.replace(PHONE_INTERNATIONAL, phone);
    out = out.replace(PHONE_NANP, phone);
    out = out.replace(PHONE_UK, (match) => (digitCount(match) >= 10 && digitCount(match) <= 11 ? '[redacted phone]' : match));
    out = out.replace(PHONE_KEYWORD, (_m, keyword: string, gap: string) => `${keyword}${gap}[redacted phone]`);
  }
  return out;
}

/**
 * Redacts every string inside a JSON-like value (objects, arrays), returning a copy with the same
 * shape. Used on structured summaries so no field escapes the setting.
 */
export function redactDeep<T>(value: T, settings: RedactionSettings): T {
  if (!redactionEnabled(settings)) return value;
  return walk(value, settings) as T;
}

function walk(value: unknown, settings: RedactionSettings): unknown {
  if (typeof value === 'string') return redact(value, settings);
  if (Array.isArray(value)) return value.map((item) => walk(item, settings));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key] = walk(item, settings);
    return out;
  }
  return value;
}
