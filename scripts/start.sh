#!/usr/bin/env bash
# Install packages on first use, then run a TypeScript entry point with tsx.
#   bash scripts/start.sh scripts/run-local.ts   # npm start
#   bash scripts/start.sh scripts/demo.ts        # npm run demo
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  # The optional onnxruntime post-install downloads from outside; the bundled VAD does not need it.
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
fi
entry="$1"
shift
exec node --import tsx "$entry" "$@"
