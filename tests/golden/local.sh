#!/bin/bash
# shellcheck disable=SC1090,SC1091  # profile env_lines may source site files shellcheck cannot follow
#PBS -N qwen3-vl
#PBS -l select=1:ncpus=2
#PBS -l walltime=01:00:00
#PBS -j oe
#PBS -o /home/user/.pbsvllm/logs/
# Rendered by pbsvllm 0.1.0 for alias qwen3-vl, profile local.
# Plan: TP=1 PP=1 DP=1 on no GPU(s); 74,898 KV tokens per replica; max concurrency 2.3 at 32,768 tokens
set -euo pipefail

# --- environment (profile local): its variables, then its own lines,
#     which may use them and have the last word ---
export VLLM_CPU_KVCACHE_SPACE=4
export HF_HUB_OFFLINE=1
export PYTHONUNBUFFERED=1

# --- paths and the realtime log ---
if [ -n "${PBS_O_WORKDIR:-}" ]; then
  cd "$PBS_O_WORKDIR"
fi
JOB_ID="${PBS_JOBID:?PBS_JOBID is not set: submit this script with qsub or pbsvllm submit}"
ALIAS=qwen3-vl
MODEL=Qwen/Qwen2.5-7B-Instruct
SERVED_MODEL_NAME=qwen3-vl
PBSVLLM_HOME=/home/user/.pbsvllm
LOG_DIR=/home/user/.pbsvllm/logs
LOG="$LOG_DIR/$ALIAS.$JOB_ID.log"
RUN_DIR="$PBSVLLM_HOME/run"
SERVER_INFO="$RUN_DIR/$JOB_ID.server.json"
umask 077
mkdir -p "$LOG_DIR" "$RUN_DIR"
log() {
  printf '%s pbsvllm[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$JOB_ID" "$*" | tee -a "$LOG"
}
PBSVLLM_PY="$(command -v python3 || command -v python || true)"
if [ -z "$PBSVLLM_PY" ]; then
  log "ERROR: no python3 on PATH after the profile's environment lines (vLLM needs one)"
  exit 2
fi
log "job $JOB_ID on $(hostname): serving $MODEL as $SERVED_MODEL_NAME (alias $ALIAS)"

# --- device: cpu (no GPUs; CUDA_VISIBLE_DEVICES left alone) ---

# --- API key: read from a 0600 file into VLLM_API_KEY (never on a command line) ---
API_KEY_FILE=/home/user/.config/pbsvllm/api_key
if [ ! -r "$API_KEY_FILE" ]; then
  log "ERROR: API key file $API_KEY_FILE is missing or unreadable"
  exit 2
fi
KEY_MODE="$(stat -c %a "$API_KEY_FILE" 2>/dev/null || stat -f %Lp "$API_KEY_FILE")"
case "$KEY_MODE" in
  600|400) ;;
  *)
    log "ERROR: API key file $API_KEY_FILE has mode $KEY_MODE; run: chmod 600 $API_KEY_FILE"
    exit 2
    ;;
esac
# the rule pbsvllm's own probes use (pbsvllm.health.key_from_text): the first
# line, without surrounding whitespace and the line end (LF or CRLF);
# printable ASCII, no spaces inside
VLLM_API_KEY=""
IFS= read -r VLLM_API_KEY < "$API_KEY_FILE" || true
VLLM_API_KEY="${VLLM_API_KEY#"${VLLM_API_KEY%%[![:space:]]*}"}"
VLLM_API_KEY="${VLLM_API_KEY%"${VLLM_API_KEY##*[![:space:]]}"}"
if [ -z "$VLLM_API_KEY" ]; then
  log "ERROR: API key file $API_KEY_FILE is empty (its first line holds no key)"
  exit 2
fi
if ! [[ "$VLLM_API_KEY" =~ ^[!-~]+$ ]]; then
  log "ERROR: API key file $API_KEY_FILE holds a key with spaces, control or non-ASCII characters"
  exit 2
fi
export VLLM_API_KEY

# --- a free port, from the requested one upward ---
PORT_START=8000
BIND_HOST=127.0.0.1
free_port() {  # free_port HOST START: the first port from START up that HOST can bind
  "$PBSVLLM_PY" -c '
import socket, sys
host, start = sys.argv[1], int(sys.argv[2])
for port in range(start, start + 200):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
' "$1" "$2"
}
PORT="$(free_port "$BIND_HOST" "$PORT_START")"
if [ -z "$PORT" ]; then
  log "ERROR: no free port in $PORT_START..$((PORT_START + 199)) on $BIND_HOST"
  exit 2
fi
if [ "$PORT" != "$PORT_START" ]; then
  log "port $PORT_START is busy: using $PORT"
fi

VLLM_PID=""
VLLM_PIDS=()  # one pid per server (several in replicas mode)
STOPPING=0
# shellcheck disable=SC2317  # on_term is called by the trap
on_term() {
  STOPPING=1
  log "SIGTERM received: stopping vLLM${VLLM_PID:+ (pid $VLLM_PID)}"
  if [ "${#VLLM_PIDS[@]}" -gt 0 ]; then  # VLLM_PIDS holds VLLM_PID once set: signal each server once
    kill -TERM "${VLLM_PIDS[@]}" 2>/dev/null || true
  elif [ -n "$VLLM_PID" ]; then
    kill -TERM "$VLLM_PID" 2>/dev/null || true
  fi
}
trap on_term TERM INT


# --- vLLM: one flag per line, with the planner's reason ---
VLLM_ARGS=()
VLLM_ARGS+=(Qwen/Qwen2.5-7B-Instruct)
VLLM_ARGS+=(--served-model-name qwen3-vl)  # the name clients send as "model" (default: the alias)
VLLM_ARGS+=(--host 127.0.0.1)  # listen address
VLLM_ARGS+=(--port "$PORT")  # requested port; the job moves up to the next free one at start time
VLLM_ARGS+=(--tensor-parallel-size 1)  # TP=1: the CPU backend runs one engine on this machine's cores; no GPUs
VLLM_ARGS+=(--max-num-seqs 64)  # the KV cache holds 74,898 tokens = ~49 requests of 1536 tokens; capped at 256 on a CPU, where larger batches only queue for the same cores
VLLM_ARGS+=(--max-num-batched-tokens 2048)  # vLLM's CPU default (2048) made explicit: a CPU is compute-bound, bigger prefill chunks only stall running decodes longer
if [ "$STOPPING" = 1 ]; then
  exit 143
fi
export PBSVLLM_JOB_ID="$JOB_ID" PBSVLLM_ALIAS="$ALIAS" PBSVLLM_HOME
log "starting:" 'vllm serve' "${VLLM_ARGS[*]}"
vllm serve "${VLLM_ARGS[@]}" >>"$LOG" 2>&1 &
VLLM_PID=$!
VLLM_PIDS=("$VLLM_PID")
SI_REPLICAS="$VLLM_PID"$'\t'"$PORT"$'\t'"${CUDA_VISIBLE_DEVICES:-}"$'\t'"$LOG"$'\n'

# --- server-info file, written atomically (temp file + fsync + rename) ---
SERVER_HOST=127.0.0.1
if [ -z "$SERVER_HOST" ]; then
  SERVER_HOST="$(hostname -s 2>/dev/null || hostname)"''
fi
SI_JOB_ID="$JOB_ID" SI_HOST="$SERVER_HOST" SI_PORT="$PORT" SI_PID="$VLLM_PID" SI_MODEL="$MODEL" \
SI_SERVED="$SERVED_MODEL_NAME" SI_ALIAS="$ALIAS" SI_LOG="$LOG" SI_PATH="$SERVER_INFO" \
SI_URL_TEMPLATE='http://{host}:{port}/v1' SI_REPLICAS="$SI_REPLICAS" \
"$PBSVLLM_PY" -c '
import datetime, json, os, socket, tempfile
e = os.environ
def pgid_of(pid):
    try:
        return os.getpgid(pid)
    except OSError:
        return None
def url_of(port):
    return e["SI_URL_TEMPLATE"].format(host=e["SI_HOST"], port=port, hostname=socket.gethostname(), alias=e["SI_ALIAS"])
replicas = []
for i, line in enumerate(l for l in e["SI_REPLICAS"].split("\n") if l):
    rpid, rport, rgpus, rlog = line.split("\t")
    replicas.append({"index": i, "host": e["SI_HOST"], "port": int(rport), "url": url_of(int(rport)),
                     "pid": int(rpid), "pgid": pgid_of(int(rpid)), "gpus": rgpus, "log_path": rlog})
pid, port = int(e["SI_PID"]), int(e["SI_PORT"])
pgid = pgid_of(pid)
url = url_of(port)
info = {
    "job_id": e["SI_JOB_ID"], "host": e["SI_HOST"], "port": port, "url": url, "pid": pid, "pgid": pgid,
    "model": e["SI_MODEL"], "served_model_name": e["SI_SERVED"], "alias": e["SI_ALIAS"],
    "start_time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "log_path": e["SI_LOG"],
    "replicas": replicas,
}
path = e["SI_PATH"]
fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".server.", suffix=".tmp")
with os.fdopen(fd, "w") as fh:
    json.dump(info, fh, indent=2)
    fh.flush()
    os.fsync(fh.fileno())
os.replace(tmp, path)
' || log "WARNING: could not write $SERVER_INFO"
log "vLLM pid(s) ${VLLM_PIDS[*]} from port $PORT; server info in $SERVER_INFO; log in $LOG"

# --- wait for vLLM; on SIGTERM the trap forwards it and we keep waiting ---
set +e
RC=0
for P in "${VLLM_PIDS[@]}"; do
  while :; do
    wait "$P"
    P_RC=$?
    if ! kill -0 "$P" 2>/dev/null; then
      break
    fi
  done
  wait "$P" 2>/dev/null
  LAST=$?
  if [ "$LAST" -ne 127 ]; then
    P_RC=$LAST
  fi
  if [ "${#VLLM_PIDS[@]}" -gt 1 ]; then
    log "vLLM server pid $P exited with status $P_RC"
  fi
  if [ "$RC" -eq 0 ]; then
    RC=$P_RC
  fi
done
set -e
log "vLLM exited with status $RC"
exit "$RC"
