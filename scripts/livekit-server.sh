#!/usr/bin/env bash
# Make sure a livekit-server binary is available and print its path.
#
#   scripts/livekit-server.sh install   # prints the path of the binary, installing it if needed
#
# Uses `livekit-server` from PATH when there is one (LIVEKIT_SERVER_BIN overrides both), else builds
# the pinned version from its Go module with `go install` into a cache outside the repository.
set -euo pipefail

LIVEKIT_SERVER_VERSION="${LIVEKIT_SERVER_VERSION:-v1.13.5}"
CACHE_DIR="${WT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/warm-transfer}"
BIN_DIR="$CACHE_DIR/livekit-server-$LIVEKIT_SERVER_VERSION"
BIN="$BIN_DIR/livekit-server"

install() {
  if [[ -n "${LIVEKIT_SERVER_BIN:-}" ]]; then
    [[ -x "$LIVEKIT_SERVER_BIN" ]] || { echo "LIVEKIT_SERVER_BIN=$LIVEKIT_SERVER_BIN is not an executable file" >&2; exit 1; }
    echo "$LIVEKIT_SERVER_BIN"; return
  fi
  if command -v livekit-server >/dev/null 2>&1; then
    command -v livekit-server; return
  fi
  if [[ -x "$BIN" ]]; then
    echo "$BIN"; return
  fi
  command -v go >/dev/null 2>&1 || {
    echo "livekit-server is not on PATH and Go is not installed to build it (needs Go >= 1.26)." >&2
    echo "Install Go, or put livekit-server on PATH, or set LIVEKIT_SERVER_BIN." >&2
    exit 1
  }
  echo "Installing livekit-server $LIVEKIT_SERVER_VERSION with go install (first time only, a few minutes)..." >&2
  local tmp
  tmp="$(mktemp -d "$CACHE_DIR.tmp.XXXXXX" 2>/dev/null || { mkdir -p "$(dirname "$CACHE_DIR")"; mktemp -d "$CACHE_DIR.tmp.XXXXXX"; })"
  local started=$SECONDS
  # The module's main package is ./cmd/server; `go install` names the binary `server`.
  if ! GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-mod=mod go install "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_SERVER_VERSION" >&2; then
    rm -rf "$tmp"
    echo "go install of livekit-server $LIVEKIT_SERVER_VERSION failed (see above)." >&2
    exit 1
  fi
  mkdir -p "$BIN_DIR"
  mv "$tmp/server" "$BIN"
  rm -rf "$tmp"
  echo "Installed $BIN in $((SECONDS - started)) s" >&2
  echo "$BIN"
}

case "${1:-install}" in
  install|path) install ;;
  version) echo "$LIVEKIT_SERVER_VERSION" ;;
  *) echo "usage: $0 install|version" >&2; exit 2 ;;
esac
