#!/usr/bin/env bash
# tests/mlflow.rs against a real MLflow tracking server: installs mlflow from PyPI into a venv
# outside the repository (MLFLOW_VENV overrides it, default ~/.cache/lightning-mlflow; the
# full `mlflow` package, since `mlflow-skinny` has no server: ~850 MB, about 1 min to install
# once), starts `mlflow server` on a free port of 127.0.0.1 with a SQLite store and its
# artifact proxy in a temporary directory, runs the test with LIGHTNING_MLFLOW_URI set, and
# stops the server. Extra arguments go to cargo test (scripts/test-all.sh passes --features
# mpi, so nothing rebuilds). Without python3 and its venv module it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MLFLOW_VENV:-$HOME/.cache/lightning-mlflow}
MLFLOW_VERSION=3.17.2
if ! command -v python3 > /dev/null || ! python3 -c 'import venv, ensurepip' 2> /dev/null; then
  echo "mlflow: SKIPPED, no python3 with venv and pip on this machine"
  exit 0
fi
if ! "$VENV/bin/mlflow" --version 2> /dev/null | grep -q "$MLFLOW_VERSION"; then
  echo "mlflow: installing mlflow==$MLFLOW_VERSION into $VENV (once; ~850 MB, about a minute)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "mlflow==$MLFLOW_VERSION" >&2
fi
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$VENV/bin/mlflow" server --host 127.0.0.1 --port "$port" --workers 1 \
  --backend-store-uri "sqlite:///$work/mlflow.db" --artifacts-destination "$work/artifacts" \
  > "$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2> /dev/null; wait "$server" 2> /dev/null; rm -rf "$work"' EXIT
uri="http://127.0.0.1:$port"
for _ in $(seq 120); do
  if python3 -c "import urllib.request; urllib.request.urlopen('$uri/health', timeout=1)" 2> /dev/null; then
    break
  fi
  if ! kill -0 "$server" 2> /dev/null; then
    echo "mlflow: the server did not start:" >&2
    cat "$work/server.log" >&2
    exit 1
  fi
  sleep 0.5
done
echo "mlflow: server at $uri" >&2
LIGHTNING_MLFLOW_URI=$uri cargo test --locked "$@" --test mlflow -- --nocapture
