#!/usr/bin/env bash
# Starts the engine, then the gateway in front of it; Ctrl-C (or SIGTERM) stops both.
set -euo pipefail

PY=${PY:-.venv/bin/python}
CHECKPOINT=${CHECKPOINT:-.cache/checkpoints/tiny}
MODEL_NAME=${TANTRA_MODEL_NAME:-tantra-tiny}
ENGINE_PORT=${TANTRA_ENGINE_PORT:-8001}
GATEWAY_PORT=${TANTRA_PORT:-8000}

pids=()
stop() {
  trap - INT TERM EXIT
  [ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null || true
  wait || true
}
trap stop INT TERM EXIT

wait_for() {  # url, pid, what
  local url=$1 pid=$2 what=$3
  until "$PY" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$url" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "tantra: the $what exited before it was ready" >&2; exit 1; }
    sleep 1
  done
}

"$PY" -m engine serve --model "$CHECKPOINT" --served-model-name "$MODEL_NAME" --port "$ENGINE_PORT" &
pids+=($!)
wait_for "http://127.0.0.1:$ENGINE_PORT/health" "${pids[0]}" engine

TANTRA_ENGINE_URL="http://127.0.0.1:$ENGINE_PORT" TANTRA_PORT="$GATEWAY_PORT" "$PY" -m gateway &
pids+=($!)
wait_for "http://127.0.0.1:$GATEWAY_PORT/healthz" "${pids[1]}" gateway

echo
echo "Tantra is serving model '$MODEL_NAME'."
echo "  base_url: http://localhost:$GATEWAY_PORT/v1   (Ctrl-C stops engine and gateway)"
echo
wait -n "${pids[@]}"
