#!/usr/bin/env bash
# Installs Node 24 (the npm package node@24) into the cache dir, once. The tests run under it, and
# code-server needs it (under Node 20 its page fails to load).
set -euo pipefail
source "$(dirname "$0")/common.sh"
lock_cache
if [ ! -x "$NODE24_BIN/node" ] || ! "$NODE24_BIN/node" --version 2>/dev/null | grep -q "^v$NODE24_VERSION$"; then
  log "installing node@$NODE24_VERSION into $NODE24_DIR"
  mkdir -p "$NODE24_DIR"
  npm install --prefix "$NODE24_DIR" --no-save --no-fund --no-audit --loglevel=error "node@$NODE24_VERSION"
fi
"$NODE24_BIN/node" --version | grep -q "^v$NODE24_VERSION$" || { log "node@$NODE24_VERSION did not install a working Node"; exit 1; }
