#!/usr/bin/env bash
# Regenerates src/gen from ../proto with the pinned buf and protoc-gen-es.
# With --check, generates into a temp dir instead and fails (listing the files) if src/gen differs.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$VSC_ROOT"
if [ "${1:-}" != "--check" ]; then
  exec node_modules/.bin/buf generate --template buf.gen.yaml
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
node_modules/.bin/buf generate --template buf.gen.yaml -o "$tmp"
if ! diff -r -q src/gen "$tmp/src/gen"; then
  log "src/gen is out of date with ../proto: run 'make -C vscode-client gen' and commit the result"
  exit 1
fi
log "src/gen matches ../proto"
