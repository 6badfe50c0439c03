#!/usr/bin/env bash
# Regenerates src/gen from ../proto with the project's pinned buf (the Python venv's buf-bin, the same
# one `make lint-proto` uses) and the pinned protoc-gen-es from node_modules.
# With --check, generates into a temp dir instead and fails (listing the files) if src/gen differs.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$VSC_ROOT"
BUF=${BUF:-$REPO_ROOT/.venv/bin/buf}
[ -x "$BUF" ] || { log "no buf at $BUF: run scripts/bootstrap.sh (or make -C vscode-client deps)"; exit 1; }
if [ "${1:-}" != "--check" ]; then
  exec "$BUF" generate --template buf.gen.yaml
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BUF" generate --template buf.gen.yaml -o "$tmp"
if ! diff -r -q src/gen "$tmp/src/gen"; then
  log "src/gen is out of date with ../proto: run 'make -C vscode-client gen' and commit the result"
  exit 1
fi
log "src/gen matches ../proto"
