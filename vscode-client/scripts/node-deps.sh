#!/usr/bin/env bash
# What building and packaging the extension needs, and nothing else: the npm dependencies
# (node_modules, re-installed only when package-lock.json changes) and the pinned Node 24. Only npm and
# Node: no apt, no browser, no Python. `make package` runs this alone; the test set-up (setup.sh) runs it too.
set -euo pipefail
source "$(dirname "$0")/common.sh"
command -v npm >/dev/null || { log "npm is missing: install Node.js (20 or newer), then run this again"; exit 1; }

cd "$VSC_ROOT"
want=$(stamp_of package.json package-lock.json 2>/dev/null || stamp_of package.json)
if [ ! -f node_modules/.onthefly-stamp ] || [ "$(cat node_modules/.onthefly-stamp)" != "$want" ]; then
  log "installing npm dependencies"
  if [ -f package-lock.json ]; then npm ci --no-fund --no-audit --loglevel=error; else npm install --no-fund --no-audit --loglevel=error; fi
  echo "$want" > node_modules/.onthefly-stamp
fi

"$VSC_ROOT/scripts/install-node24.sh"
