import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARS, ConfigError, configTableMarkdown, loadConfig, redactedConfig } from '../../agent/config.js';
import { SUMMARIZER_ENV } from '../../agent/summarizer.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

const VALID = {
  LIVEKIT_URL: 'ws://127.0.0.1:7880',
  LIVEKIT_API_KEY: 'devkey',
  LIVEKIT_API_SECRET: 'secret-value-123',
  GROQ_API_KEY: 'gsk_abcdef',
};

function problemsOf(env: Record<string, string>): { variable: string; message: string }[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

describe('configuration', () => {
  it('accepts a minimal valid environment and fills in documented defaults', () => {
    const c = loadConfig(VALID);
    expect(c.agentName).toBe('warm-transfer');
    expect(c.groq.baseURL).toBe('https://api.groq.com');
    expect(c.groq.openaiBaseURL).toBe('https://api.groq.com/openai/v1');
    expect(c.tts.baseURL).toBe('https://api.groq.com/openai/v1');
    expect(c.tts.apiKey).toBe('gsk_abcdef');
    expect(c.database.url).toBe('file:data/transfers.db');
    expect(c.worker).toMatchObject({ host: '127.0.0.1', port: 8081, maxJobs: 0, loadThreshold: 0.7, loopBlockWarnMs: 250 });
    expect(c.textOnly).toBe(false);
  });

  it("takes the agents loop monitor's threshold (0 turns it off) and names the variable when it is not a number", () => {
    expect(loadConfig({ ...VALID, LIVEKIT_AGENTS_LOOP_BLOCK_WARN_MS: '0' }).worker.loopBlockWarnMs).toBe(0);
    expect(loadConfig({ ...VALID, LIVEKIT_AGENTS_LOOP_BLOCK_WARN_MS: '100' }).worker.loopBlockWarnMs).toBe(100);
    const problems = problemsOf({ ...VALID, LIVEKIT_AGENTS_LOOP_BLOCK_WARN_MS: 'soon' });
    expect(problems.map((p) => p.variable)).toEqual(['LIVEKIT_AGENTS_LOOP_BLOCK_WARN_MS']);
    expect(problems[0]!.message).toContain('a whole number of milliseconds from 0 to 60000');
  });

  it('tells the user GROQ_API_KEY is missing and what to put there', () => {
    const { GROQ_API_KEY: _omit, ...env } = VALID;
    let message = '';
    try {
      loadConfig(env);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toBe(
      [
        'Configuration is not valid (1 problem):',
        '  - GROQ_API_KEY is not set; expected a Groq API key (starts with "gsk_"); create one at console.groq.com/keys',
        'Set these in the environment or in .env.local (see .env.example and the README configuration table).',
      ].join('\n'),
    );
  });

  it('reports every problem at once, naming each variable', () => {
    const problems = problemsOf({ LIVEKIT_URL: 'not a url', WORKER_PORT: '70000', AGENT_TEXT_ONLY: 'maybe', LOG_LEVEL: 'loud' });
    expect(problems.map((p) => p.variable).sort()).toEqual(
      ['AGENT_TEXT_ONLY', 'GROQ_API_KEY', 'LIVEKIT_API_KEY', 'LIVEKIT_API_SECRET', 'LIVEKIT_URL', 'LOG_LEVEL', 'WORKER_PORT'].sort(),
    );
    expect(problems.find((p) => p.variable === 'LIVEKIT_URL')!.message).toContain('is not a URL (got "not a url")');
    expect(problems.find((p) => p.variable === 'WORKER_PORT')!.message).toContain('out of range (got 70000)');
  });

  it('rejects a Groq base URL that already carries /openai/v1', () => {
    const problems = problemsOf({ ...VALID, GROQ_BASE_URL: 'https://api.groq.com/openai/v1' });
    expect(problems).toEqual([{ variable: 'GROQ_BASE_URL', message: expect.stringContaining('without /openai/v1') }]);
  });

  it('reports a bad summarizer setting under its own variable name', () => {
    const problems = problemsOf({ ...VALID, SUMMARY_DEBOUNCE_MS: 'soon', SUMMARY_REDACT_SPOKEN: 'cards,dna' });
    expect(problems[0]?.variable).toBe('SUMMARY_DEBOUNCE_MS');
    expect(loadConfig({ ...VALID, SUMMARY_ROLLING: 'false' }).summary.rolling).toBe(false);
  });

  it('rejects database URLs of an unknown kind', () => {
    expect(problemsOf({ ...VALID, DATABASE_URL: 'postgres://x' })[0]?.variable).toBe('DATABASE_URL');
    expect(loadConfig({ ...VALID, DATABASE_URL: 'libsql://db.example.turso.io' }).database.url).toBe('libsql://db.example.turso.io');
  });

  it('never echoes a secret value into an error message', () => {
    // A whitespace-only secret is "not set"; nothing of it may be printed.
    const problems = problemsOf({ ...VALID, LIVEKIT_API_SECRET: '   ' });
    expect(problems[0]?.message).not.toContain('got');
    const safe = JSON.stringify(redactedConfig(loadConfig(VALID)));
    expect(safe).not.toContain('secret-value-123');
    expect(safe).not.toContain('gsk_abcdef');
  });

  it('turns load reporting off with WORKER_LOAD_THRESHOLD=off', () => {
    expect(loadConfig({ ...VALID, WORKER_LOAD_THRESHOLD: 'off' }).worker.loadThreshold).toBe(Number.POSITIVE_INFINITY);
    expect(problemsOf({ ...VALID, WORKER_LOAD_THRESHOLD: '1.5' })[0]?.variable).toBe('WORKER_LOAD_THRESHOLD');
  });

  it('keeps the README configuration table in step with the code', () => {
    const readme = readFileSync(`${repoRoot}/README.md`, 'utf8');
    expect(readme).toContain(configTableMarkdown());
    const example = readFileSync(`${repoRoot}/.env.example`, 'utf8');
    for (const spec of Object.values(CONFIG_VARS)) expect(example).toContain(spec.name);
    for (const name of Object.values(SUMMARIZER_ENV)) {
      expect(readme).toContain(`\`${name}\``);
      expect(example).toContain(name);
    }
  });

  it('the worker refuses to start without GROQ_API_KEY, prints the message, and exits 78', () => {
    const { GROQ_API_KEY: _omit, ...env } = VALID;
    // Run from an empty directory so a developer's .env.local cannot supply the key.
    const tsx = pathToFileURL(`${repoRoot}/node_modules/tsx/dist/loader.mjs`).href;
    const res = spawnSync(process.execPath, ['--import', tsx, `${repoRoot}/agent/main.ts`, 'start'], {
      cwd: mkdtempSync(join(tmpdir(), 'wt-config-')),
      env: { PATH: process.env.PATH ?? '', HOME: '/nonexistent', ...env },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(res.status).toBe(78);
    expect(res.stderr).toContain('GROQ_API_KEY is not set; expected a Groq API key');
    expect(res.stdout + res.stderr).not.toContain('secret-value-123');
  });
});
