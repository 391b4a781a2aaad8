#!/usr/bin/env bash
# Starts the engine, then the gateway in front of it; Ctrl-C (or SIGTERM) stops both.
set -euo pipefail

PY=${PY:-.venv/bin/python}
CHECKPOINT=${CHECKPOINT:-.cache/checkpoints/tiny}
WHISPER=${WHISPER:-.cache/checkpoints/whisper-tiny}
# Speech to text (whisper-1) from the locally built tiny Whisper unless another model is configured.
if [ -z "${TANTRA_AUDIO_WHISPER_MODEL:-}" ] && [ -f "$WHISPER/ggml-model.bin" ]; then
  export TANTRA_AUDIO_WHISPER_MODEL="$WHISPER/ggml-model.bin"
fi
MODEL_NAME=${TANTRA_MODEL_NAME:-tantra-tiny}
ENGINE_PORT=${TANTRA_ENGINE_PORT:-8001}
GATEWAY_PORT=${TANTRA_PORT:-8000}
# Metrics, upstream health and the detailed /readyz answer here only, never on GATEWAY_PORT.
OPERATOR_PORT=${TANTRA_OPERATOR_PORT:-9090}
REDIS_PORT=${TANTRA_REDIS_PORT:-6379}
STATE=${TANTRA_STATE_DIR:-.cache/tantra}
export TANTRA_DATABASE_URL=${TANTRA_DATABASE_URL:-sqlite+aiosqlite:///$STATE/tantra.db}

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

# Redis holds the rate limits; without TANTRA_REDIS_URL a local one is started (or reused).
if [ -z "${TANTRA_REDIS_URL:-}" ]; then
  export TANTRA_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null; then
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --loglevel warning &
    pids+=($!)
  fi
fi

# First run: an admin key and a dev tenant with an API key, kept in $STATE (mode 600).
if [ -z "${TANTRA_ADMIN_KEY:-}" ]; then
  export TANTRA_ADMIN_KEY_FILE=${TANTRA_ADMIN_KEY_FILE:-$STATE/admin.key}
fi
ADMIN_KEY_FILE=${TANTRA_ADMIN_KEY_FILE:-$STATE/admin.key}
"$PY" -m gateway bootstrap --admin-key-file "$ADMIN_KEY_FILE" --dev-key-file "$STATE/dev.key"

# --restart: a crashed engine comes back on the same port; the gateway notices on its own.
"$PY" -m engine serve --model "$CHECKPOINT" --served-model-name "$MODEL_NAME" --port "$ENGINE_PORT" --restart &
pids+=($!)
wait_for "http://127.0.0.1:$ENGINE_PORT/health" "${pids[-1]}" engine

TANTRA_ENGINE_URL="http://127.0.0.1:$ENGINE_PORT" TANTRA_PORT="$GATEWAY_PORT" TANTRA_OPERATOR_PORT="$OPERATOR_PORT" \
  "$PY" -m gateway &
pids+=($!)
wait_for "http://127.0.0.1:$GATEWAY_PORT/healthz" "${pids[-1]}" gateway

echo
echo "Tantra is serving model '$MODEL_NAME'."
echo "  base_url: http://localhost:$GATEWAY_PORT/v1   (Ctrl-C stops engine and gateway)"
echo "  api_key:  $(cat "$STATE/dev.key")   (in $STATE/dev.key; admin key in $ADMIN_KEY_FILE)"
echo "  export OPENAI_BASE_URL=http://localhost:$GATEWAY_PORT/v1 OPENAI_API_KEY=\$(cat $STATE/dev.key)"
echo "  metrics:  http://localhost:$OPERATOR_PORT/metrics   (and /health/upstreams, /readyz in full)"
echo
wait -n "${pids[@]}"
