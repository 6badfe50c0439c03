# Shared paths and helpers for the vscode-client scripts (sourced, not run).
VSC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_ROOT=$(cd "$VSC_ROOT/.." && pwd)
CACHE_DIR=${ONTHEFLY_VSC_CACHE:-$VSC_ROOT/.cache}
NODE24_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1
NODE24_DIR=$CACHE_DIR/node24
CODE_SERVER_DIR=$CACHE_DIR/code-server-$CODE_SERVER_VERSION
# npm here warns about a user config key it will drop; the noise hides real messages.
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

log() { echo "vscode-client: $*" >&2; }

# sha256 of the named files, as a stamp that says whether an install is current.
stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
