import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { JOB_PROCESS_FLAGS, applyJobProcessFlags, hasJobProcessFlags } from '../../agent/job-process.js';

describe('job process flags', () => {
  it('are added once to what forked job processes inherit', () => {
    const execArgv = ['--import', 'tsx'];
    expect(hasJobProcessFlags(execArgv)).toBe(false);
    applyJobProcessFlags(execArgv);
    applyJobProcessFlags(execArgv);
    expect(execArgv).toEqual(['--import', 'tsx', ...JOB_PROCESS_FLAGS]);
    expect(hasJobProcessFlags(execArgv)).toBe(true);
  });

  it('are flags this Node accepts (it exits with "bad option" otherwise) and expose gc for the prewarm', () => {
    const out = execFileSync(process.execPath, [...JOB_PROCESS_FLAGS, '-e', "console.log(typeof gc, require('node:v8').getHeapStatistics().total_heap_size > 0)"], { encoding: 'utf8' });
    expect(out.trim()).toBe('function true');
  });
});
