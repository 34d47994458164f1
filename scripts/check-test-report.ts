/**
 * Reads vitest's JSON report and fails when an end-to-end test (test/e2e, test/e2e-multinode) was
 * skipped or none ran: an e2e test that silently does not run is worse than one that fails.
 */
import { readFileSync } from 'node:fs';

interface Report {
  testResults: { name: string; assertionResults: { fullName: string; status: string }[] }[];
}

const file = process.argv[2];
if (!file) throw new Error('usage: check-test-report.ts <vitest-json-report>');
let report: Report;
try {
  report = JSON.parse(readFileSync(file, 'utf8')) as Report;
} catch (err) {
  console.error(`no readable vitest report at ${file}: ${(err as Error).message}`);
  process.exit(1);
}

// End-to-end files: test/e2e/ and the other end-to-end projects beside it (test/e2e-multinode/).
const e2e = report.testResults.filter((f) => /\/test\/e2e(-[\w-]+)?\//.test(f.name));
const results = e2e.flatMap((f) => f.assertionResults);
const notRun = results.filter((r) => r.status !== 'passed' && r.status !== 'failed');
const passed = results.filter((r) => r.status === 'passed').length;
const failed = results.filter((r) => r.status === 'failed').length;
const all = report.testResults.flatMap((f) => f.assertionResults);
console.log(
  `e2e: ${passed} passed, ${failed} failed, ${notRun.length} not run (of ${results.length} in ${e2e.length} files); all tests: ` +
    `${all.filter((r) => r.status === 'passed').length} passed, ${all.filter((r) => r.status === 'failed').length} failed`,
);
if (notRun.length > 0) {
  console.error(`end-to-end tests that did not run:\n${notRun.map((r) => `  - ${r.fullName} (${r.status})`).join('\n')}`);
  process.exit(1);
}
const filtered = process.argv.includes('--allow-no-e2e');
if (results.length === 0 && !filtered) {
  console.error('no end-to-end test ran');
  process.exit(1);
}
