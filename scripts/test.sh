#!/usr/bin/env bash
# The one test command (`npm test`): installs what the tests need, type-checks, then runs every
# test (unit, integration, end-to-end) inside a network namespace made for this run, against a
# real livekit-server. Fails if any end-to-end test was skipped.
#
#   npm test                      # everything
#   npm test -- --project unit    # extra arguments go to vitest
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "== installing npm packages (npm ci)"
  # The optional onnxruntime post-install downloads from outside; the bundled VAD does not need it.
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
fi

echo "== livekit-server"
bash scripts/livekit-server.sh install

echo "== type check"
npx tsc -p tsconfig.json --noEmit

report="$(mktemp -t vitest-report.XXXXXX.json)"
# A failing end-to-end test leaves the worker's output for its call here (test/support/transfer-rig.ts).
export WT_FAILURE_LOG_DIR="$(mktemp -d -t wt-failures.XXXXXX)"
trap 'rm -rf "$report" "$WT_FAILURE_LOG_DIR"' EXIT

echo "== tests"
set +e
bash scripts/in-test-netns.sh npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
status=$?
set -e

npx tsx scripts/check-test-report.ts "$report" ${1:+--allow-no-e2e} || status=1
for f in "$WT_FAILURE_LOG_DIR"/*.log; do
  [[ -e "$f" ]] || continue
  echo "== worker output of a failed test ($(basename "$f" .log)), lines cut at 400 characters"
  cut -c1-400 "$f" | tail -n 120
done
exit $status
