#!/usr/bin/env bash
# `npm start`: install packages on first use, then run the worker locally (scripts/run-local.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
fi
exec node --import tsx scripts/run-local.ts "$@"
