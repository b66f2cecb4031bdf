# Shared settings for Eddy's scripts (sourced, not run).
# One target dir outside the clone, so every checkout and CI run on this machine reuses
# the compiled dependencies (RocksDB and wasmtime take ~20 minutes from scratch).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eddy-target}"
EDDY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export EDDY_ROOT
# Guest components are built into their own directory (see tests/it/support).
export EDDY_GUESTS="$CARGO_TARGET_DIR/guests/wasm32-wasip2/release"
# Guest toolchains that pip installs with --user land here (see scripts/setup).
case ":$PATH:" in *":$HOME/.local/bin:"*) ;; *) export PATH="$PATH:$HOME/.local/bin" ;; esac
