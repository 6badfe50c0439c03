#!/usr/bin/env bash
# Installs everything the extension's tests need on a fresh Debian machine, idempotently: Debian
# packages (chromium, build tools for code-server's native addons), what the build needs
# (node-deps.sh: npm dependencies and Node 24) and the project's Python venv (the repo's own
# scripts/bootstrap.sh). Building and packaging alone need only node-deps.sh. code-server, needed
# only by the e2e tests, is scripts/install-code-server.sh.
set -euo pipefail
source "$(dirname "$0")/common.sh"

need_apt=()
for pkg in chromium libkrb5-dev pkg-config build-essential python3 python3-venv; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
command -v node >/dev/null && command -v npm >/dev/null || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_apt[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

"$VSC_ROOT/scripts/node-deps.sh"
"$REPO_ROOT/scripts/bootstrap.sh"
