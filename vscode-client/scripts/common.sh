# Shared paths and helpers for the vscode-client scripts (sourced, not run).
VSC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_ROOT=$(cd "$VSC_ROOT/.." && pwd)
# Outside the work tree by default, so that fresh clones (CI) on the same machine reuse the ~600 MB
# code-server install; ONTHEFLY_VSC_CACHE moves it (e.g. to vscode-client/.cache, which git ignores).
CACHE_DIR=${ONTHEFLY_VSC_CACHE:-${XDG_CACHE_HOME:-${HOME:-$VSC_ROOT}/.cache}/onthefly-vscode}
NODE24_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1
NODE24_DIR=$CACHE_DIR/node-$NODE24_VERSION
NODE24_BIN=$NODE24_DIR/node_modules/node/bin
CODE_SERVER_DIR=$CACHE_DIR/code-server-$CODE_SERVER_VERSION
# npm here warns about a user config key it will drop; the noise hides real messages.
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

log() { echo "vscode-client: $*" >&2; }

# sha256 of the named files, as a stamp that says whether an install is current.
stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# Serialises installs into the shared cache (two clones testing at once on one machine); waits up to
# 30 minutes for the other install. Take it in the script that writes, not in one that calls another.
lock_cache() {
  mkdir -p "$CACHE_DIR"
  exec 9>"$CACHE_DIR/.install.lock"
  flock -w 1800 9 || { log "timed out waiting for another install into $CACHE_DIR (lock $CACHE_DIR/.install.lock)"; exit 1; }
}
