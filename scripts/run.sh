#!/usr/bin/env bash
# Starts the engines (the chat model's, the embedding model's and, with TANTRA_VISION_MODEL, a
# vision model's), then the gateway in front of them; Ctrl-C (or SIGTERM) stops them all.
set -euo pipefail

PY=${PY:-.venv/bin/python}
CHECKPOINT=${CHECKPOINT:-.cache/checkpoints/tiny}
WHISPER=${WHISPER:-.cache/checkpoints/whisper-tiny}
# The embedding model (all-MiniLM-L6-v2, `--preset minilm`); an empty EMBEDDING serves none.
EMBEDDING=${EMBEDDING-.cache/checkpoints/minilm}
EMBEDDING_MODEL_NAME=${TANTRA_EMBEDDING_MODEL_NAME:-all-minilm-l6-v2}
EMBEDDING_ENGINE_PORT=${TANTRA_EMBEDDING_ENGINE_PORT:-8002}
# The static model distilled from it (`--preset minilm-static`), which the gateway computes itself as
# `minilm-static` (docs/embeddings.md, "Local static models"); TANTRA_LOCAL_EMBEDDING_MODELS set beforehand wins.
STATIC_EMBEDDING=${STATIC_EMBEDDING-.cache/checkpoints/minilm-static}
if [ -z "${TANTRA_LOCAL_EMBEDDING_MODELS:-}" ] && [ -f "$STATIC_EMBEDDING/model.safetensors" ]; then
  export TANTRA_LOCAL_EMBEDDING_MODELS="{\"minilm-static\": \"$STATIC_EMBEDDING\"}"
fi
# Speech to text (whisper-1) from the locally built tiny Whisper unless another model is configured.
if [ -z "${TANTRA_AUDIO_WHISPER_MODEL:-}" ] && [ -f "$WHISPER/ggml-model.bin" ]; then
  export TANTRA_AUDIO_WHISPER_MODEL="$WHISPER/ggml-model.bin"
fi
# A vision model beside the core (docs/vision.md, "Through the gateway"): TANTRA_VISION_MODEL is
# a preset (`tiny-long-vita`, built under .cache/checkpoints when missing) or a Long-VITA checkpoint
# directory. Its route takes text, images and video as they are, and `auto` sends it the requests
# that carry them. A preset is served in float32 (its reference's precision), trained weights in bf16.
VISION=${TANTRA_VISION_MODEL:-}
VISION_ENGINE_PORT=${TANTRA_VISION_ENGINE_PORT:-8003}
VISION_MAX_MODEL_LEN=${TANTRA_VISION_MAX_MODEL_LEN:-16384}
# Its KV cache: 1 GiB holds the tiny preset's 16k tokens; Long-VITA-16K needs about 3 (docs/vision.md).
VISION_KV_CACHE_GIB=${TANTRA_VISION_KV_CACHE_GIB:-1}
# Frames vLLM's loader takes from a video, one per second: the gateway's 60 s at most, 258 tokens each.
VISION_VIDEO_FRAMES=${TANTRA_VISION_VIDEO_FRAMES:-60}
MODEL_NAME=${TANTRA_MODEL_NAME:-tantra-tiny}
ENGINE_PORT=${TANTRA_ENGINE_PORT:-8001}
# The chat engine's reasoning parser (docs/orchestration.md, "Reasoning"): `think` for the
# SpikingBrain and Qwen2.5 ChatML models, `qwen3` for Qwen3; empty: reasoning is not split out.
REASONING_PARSER=${TANTRA_ENGINE_REASONING_PARSER:-}
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
# With four cores or more each engine gets its own (vLLM pins every server to the same first cores
# otherwise, and the two would take turns on them): the last core embeds, the others generate.
CORES=$(nproc)
CHAT_CORES=() EMBEDDING_CORES=()
if [ -n "$EMBEDDING" ] && [ "$CORES" -ge 4 ]; then
  CHAT_CORES=(--cpu-cores "0-$((CORES - 2))") EMBEDDING_CORES=(--cpu-cores "$((CORES - 1))")
fi
"$PY" -m engine serve --model "$CHECKPOINT" --served-model-name "$MODEL_NAME" --port "$ENGINE_PORT" \
  "${CHAT_CORES[@]}" ${REASONING_PARSER:+--reasoning-parser "$REASONING_PARSER"} --restart &
pids+=($!)
chat_pid=$!
# The embedding model on vLLM's pooling runner, in float32 (docs/embeddings.md says why).
if [ -n "$EMBEDDING" ]; then
  "$PY" -m engine serve --model "$EMBEDDING" --served-model-name "$EMBEDDING_MODEL_NAME" \
    --port "$EMBEDDING_ENGINE_PORT" --runner pooling "${EMBEDDING_CORES[@]}" --restart &
  pids+=($!)
  embedding_pid=$!
fi
# The vision model, with vLLM's video loader taking one frame per second as Long-VITA samples them.
if [ -n "$VISION" ]; then
  VISION_DTYPE=${TANTRA_VISION_DTYPE:-bfloat16}
  if [ ! -d "$VISION" ]; then
    VISION_PRESET=$VISION
    VISION=.cache/checkpoints/$VISION_PRESET
    VISION_DTYPE=${TANTRA_VISION_DTYPE:-float32}
    "$PY" -m engine build-checkpoint --preset "$VISION_PRESET" --out "$VISION" >/dev/null
  fi
  VISION_MODEL_NAME=${TANTRA_VISION_MODEL_NAME:-$(basename "$VISION")}
  "$PY" -m engine serve --model "$VISION" --served-model-name "$VISION_MODEL_NAME" --port "$VISION_ENGINE_PORT" \
    --dtype "$VISION_DTYPE" --max-model-len "$VISION_MAX_MODEL_LEN" --kv-cache-gib "$VISION_KV_CACHE_GIB" --restart \
    -- --media-io-kwargs "{\"video\": {\"fps\": 1, \"num_frames\": $VISION_VIDEO_FRAMES}}" &
  pids+=($!)
  vision_pid=$!
fi
wait_for "http://127.0.0.1:$ENGINE_PORT/health" "$chat_pid" engine
if [ -n "$EMBEDDING" ]; then
  wait_for "http://127.0.0.1:$EMBEDDING_ENGINE_PORT/health" "$embedding_pid" "embedding engine"
fi
if [ -n "$VISION" ]; then
  wait_for "http://127.0.0.1:$VISION_ENGINE_PORT/health" "$vision_pid" "vision engine"
fi
# The gateway fronts every engine: one upstream each, the vision model's route taking media, `auto`.
eval "$("$PY" scripts/run_config.py --model "$MODEL_NAME" --port "$ENGINE_PORT" \
  ${EMBEDDING:+--embedding-port "$EMBEDDING_ENGINE_PORT"} \
  ${VISION:+--vision-model "$VISION_MODEL_NAME" --vision-port "$VISION_ENGINE_PORT"})"

# Gateway processes (TANTRA_WORKERS, docs/performance.md "Worker processes"): the engines here take
# most of the cores, so one gateway worker per four cores available, 1 to 4; several need Redis,
# so with TANTRA_REDIS_URL=memory:// one. TANTRA_WORKERS set beforehand wins.
if [ -z "${TANTRA_WORKERS:-}" ]; then
  GATEWAY_WORKERS=$(( CORES / 4 )); GATEWAY_WORKERS=$(( GATEWAY_WORKERS < 1 ? 1 : GATEWAY_WORKERS > 4 ? 4 : GATEWAY_WORKERS ))
  [[ $TANTRA_REDIS_URL == memory://* ]] && GATEWAY_WORKERS=1
  export TANTRA_WORKERS=$GATEWAY_WORKERS
fi
TANTRA_ENGINE_URL="http://127.0.0.1:$ENGINE_PORT" TANTRA_PORT="$GATEWAY_PORT" TANTRA_OPERATOR_PORT="$OPERATOR_PORT" \
  "$PY" -m gateway &
pids+=($!)
wait_for "http://127.0.0.1:$GATEWAY_PORT/healthz" "${pids[-1]}" gateway

echo
echo "Tantra is serving model '$MODEL_NAME'${VISION:+, vision model '$VISION_MODEL_NAME' (and 'auto')}${EMBEDDING:+ and embeddings from '$EMBEDDING_MODEL_NAME'}."
echo "  base_url: http://localhost:$GATEWAY_PORT/v1   (Ctrl-C stops engine and gateway)"
echo "  api_key:  $(cat "$STATE/dev.key")   (in $STATE/dev.key; admin key in $ADMIN_KEY_FILE)"
echo "  export OPENAI_BASE_URL=http://localhost:$GATEWAY_PORT/v1 OPENAI_API_KEY=\$(cat $STATE/dev.key)"
echo "  metrics:  http://localhost:$OPERATOR_PORT/metrics   (and /health/upstreams, /readyz in full)"
echo
wait -n "${pids[@]}"
