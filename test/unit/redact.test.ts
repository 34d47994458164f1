import { describe, expect, it } from 'vitest';
import { REDACT_ALL, REDACT_NONE, parseRedactionSettings, redact, redactDeep } from '../../agent/redact.js';

const only = (key: keyof typeof REDACT_ALL) => ({ ...REDACT_NONE, [key]: true });

describe('redact: card numbers', () => {
  it.each([
    ['4111 1111 1111 1111', '[card ending 1111]'],
    ['4111-1111-1111-1111', '[card ending 1111]'],
    ['4111111111111111', '[card ending 1111]'],
    ['5500 0000 0000 0004', '[card ending 0004]'],
    ['3782 822463 10005', '[card ending 0005]'], // Amex 15 digits, 4-6-5 grouping
  ])('redacts Luhn-valid %s, keeping the last four', (card, expected) => {
    expect(redact(`my card is ${card}, thanks`, only('cards'))).toBe(`my card is ${expected}, thanks`);
  });

  it('leaves digit runs that fail the Luhn check (order numbers) alone', () => {
    expect(redact('order 4111111111111112', only('cards'))).toBe('order 4111111111111112');
    expect(redact('tracking 1234 5678 9012 3456', only('cards'))).toBe('tracking 1234 5678 9012 3456');
  });

  it('leaves short runs alone', () => {
    expect(redact('account 424242424242', only('cards'))).toBe('account 424242424242');
  });
});

describe('redact: national IDs', () => {
  it('redacts US SSNs with separators', () => {
    expect(redact('SSN 123-45-6789 on file', only('nationalIds'))).toBe('SSN [redacted SSN] on file');
    expect(redact('it is 123 45 6789', only('nationalIds'))).toBe('it is [redacted SSN]');
  });

  it('skips numbers the SSA never issues', () => {
    expect(redact('000-12-3456 666-12-3456 900-12-3456 123-00-4567', only('nationalIds'))).toBe(
      '000-12-3456 666-12-3456 900-12-3456 123-00-4567',
    );
  });

  it('redacts an unseparated SSN only next to the keyword', () => {
    expect(redact('my social security number is 123456789', only('nationalIds'))).toBe(
      'my social security number is [redacted SSN]',
    );
    expect(redact('order 123456789 shipped', only('nationalIds'))).toBe('order 123456789 shipped');
  });

  it('redacts UK National Insurance numbers, spaced or not', () => {
    expect(redact('NI number AB123456C', only('nationalIds'))).toBe('NI number [redacted NI number]');
    expect(redact('it is ab 12 34 56 c', only('nationalIds'))).toBe('it is [redacted NI number]');
  });

  it('skips NI prefixes that are never issued', () => {
    expect(redact('GB123456A and QQ123456C', only('nationalIds'))).toBe('GB123456A and QQ123456C');
  });
});

describe('redact: emails and phone numbers', () => {
  it('redacts emails', () => {
    expect(redact('write to jane.doe+bank@example.co.uk please', only('emails'))).toBe(
      'write to [redacted email] please',
    );
  });

  it.each([
    '+44 7700 900123',
    '+1 (555) 123-4567',
    '+15551234567',
    '(555) 123-4567',
    '555-123-4567',
    '555.123.4567',
    '07700 900123',
    '020 7946 0958',
  ])('redacts the phone number %s', (phone) => {
    expect(redact(`call me on ${phone} today`, only('phones'))).toBe('call me on [redacted phone] today');
  });

  it('redacts the number inside a SIP participant identity', () => {
    expect(redact('sip_+15551234567', only('phones'))).toBe('sip_[redacted phone]');
  });

  it('redacts a bare digit run after a phone keyword', () => {
    expect(redact('my mobile number is 5551234567', only('phones'))).toBe('my mobile number is [redacted phone]');
  });

  it('keeps order and account numbers that are not phone-shaped', () => {
    const text = 'order 12345678, account 987654321, case 2024-0042, ref 55512345';
    expect(redact(text, only('phones'))).toBe(text);
  });
});

describe('redact: settings', () => {
  const text = 'card 4111 1111 1111 1111, ssn 123-45-6789, mail a.b@example.com, phone +44 7700 900123';

  it('does nothing with every category off', () => {
    expect(redact(text, REDACT_NONE)).toBe(text);
  });

  it('redacts every category with all on', () => {
    expect(redact(text, REDACT_ALL)).toBe(
      'card [card ending 1111], ssn [redacted SSN], mail [redacted email], phone [redacted phone]',
    );
  });

  it('redacts only the categories turned on', () => {
    expect(redact(text, { ...REDACT_NONE, cards: true, emails: true })).toBe(
      'card [card ending 1111], ssn 123-45-6789, mail [redacted email], phone +44 7700 900123',
    );
  });

  it('parses env-style settings', () => {
    expect(parseRedactionSettings(undefined, REDACT_ALL)).toEqual(REDACT_ALL);
    expect(parseRedactionSettings('all', REDACT_NONE)).toEqual(REDACT_ALL);
    expect(parseRedactionSettings('none', REDACT_ALL)).toEqual(REDACT_NONE);
    expect(parseRedactionSettings('', REDACT_ALL)).toEqual(REDACT_NONE);
    expect(parseRedactionSettings('cards, national_ids', REDACT_NONE)).toEqual({
      cards: true,
      nationalIds: true,
      emails: false,
      phones: false,
    });
    expect(() => parseRedactionSettings('cards,passports', REDACT_NONE)).toThrow(/passports/);
  });

  it('redacts every string inside a structure', () => {
    const value = { a: 'mail a@example.com', list: ['+44 7700 900123', { n: 3, s: '4111111111111111' }], flag: true };
    expect(redactDeep(value, REDACT_ALL)).toEqual({
      a: 'mail [redacted email]',
      list: ['[redacted phone]', { n: 3, s: '[card ending 1111]' }],
      flag: true,
    });
    // Unchanged input object (a copy is returned).
    expect(value.a).toBe('mail a@example.com');
  });
});
