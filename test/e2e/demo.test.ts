/** `npm run demo` completes a warm transfer on this clone (with the Groq stand-in: no key is set). */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { withDeadline } from '../support/wait.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

describe('npm run demo', () => {
  it('runs a full warm transfer and prints the timeline and the stored record', async () => {
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/root',
      WT_TEST_NODE_IP: process.env.WT_TEST_NODE_IP ?? '',
      // Its own ports: the e2e server holds 7880-7882 in this namespace.
      DEMO_LIVEKIT_PORT: '7950',
      DATABASE_URL: `file:${join(mkdtempSync(join(tmpdir(), 'wt-demo-')), 'transfers.db')}`,
    };
    // detached: its own process group, so a failure cannot leave the demo's server behind.
    const child = spawn('npm', ['run', 'demo'], { cwd: repoRoot, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await withDeadline(
      new Promise<number | null>((resolve) => child.once('exit', resolve)),
      150_000,
      'the demo to finish',
    ).catch((err: unknown) => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
      throw err;
    });
    expect(out).toContain('No GROQ_API_KEY: using the local Groq STAND-IN');
    expect(out).toMatch(/Timeline\n\s+\+0\.000s\s+requested/);
    expect(out).toContain('"outcome": "completed"');
    expect(out).toMatch(/demo complete: transfer tr_\w+ completed \(with the Groq stand-in\)/);
    expect(code, out.slice(-3000)).toBe(0);
  });
});
