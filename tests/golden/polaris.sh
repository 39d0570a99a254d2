#!/bin/bash
# shellcheck disable=SC1090,SC1091  # profile env_lines may source site files shellcheck cannot follow
#PBS -N qwen3-vl
#PBS -l select=1:system=polaris
#PBS -l place=scatter
#PBS -l filesystems=home:eagle
#PBS -l walltime=01:00:00
#PBS -q debug
#PBS -j oe
#PBS -o /home/user/.pbsvllm/logs/
# Rendered by pbsvllm 0.1.0 for alias qwen3-vl, profile polaris.
# Plan: TP=1 PP=1 DP=4 on 4 GPU(s); 279,433 KV tokens per replica; max concurrency 34.1 at 32,768 tokens
set -euo pipefail

# --- environment (profile polaris): its variables, then its own lines,
#     which may use them and have the last word ---
export HF_HOME=/eagle/datasets/model-weights
export HF_HUB_OFFLINE=1
export RAY_TMPDIR=/tmp
export NCCL_SOCKET_IFNAME=hsn0
export GLOO_SOCKET_IFNAME=hsn0
export no_proxy=localhost,127.0.0.1
export PYTHONUNBUFFERED=1
set +u  # module / conda scripts read unset variables
module use /soft/modulefiles
module load conda
conda activate
set -u

# --- paths and the realtime log ---
if [ -n "${PBS_O_WORKDIR:-}" ]; then
  cd "$PBS_O_WORKDIR"
fi
JOB_ID="${PBS_JOBID:?PBS_JOBID is not set: submit this script with qsub or pbsvllm submit}"
ALIAS=qwen3-vl
MODEL=Qwen/Qwen3-VL-2B-Instruct
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

# --- GPUs: only narrow what PBS gave; map GPU UUIDs (cgroup hook) to indices ---
NGPUS=4
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
  log "PBS set CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"
  case "$CUDA_VISIBLE_DEVICES" in
    *MIG-*)
      log "MIG devices: CUDA_VISIBLE_DEVICES kept as set"
      ;;
    *GPU-*)
      if command -v nvidia-smi >/dev/null 2>&1; then
        GPU_TABLE="$(nvidia-smi --query-gpu=index,uuid --format=csv,noheader 2>/dev/null || true)"
        MAPPED=""
        IFS=',' read -r -a GPU_UUIDS <<< "$CUDA_VISIBLE_DEVICES"
        for uuid in "${GPU_UUIDS[@]}"; do
          idx="$(printf '%s\n' "$GPU_TABLE" | awk -F', *' -v u="${uuid// /}" '$2 == u {print $1}')"
          if [ -z "$idx" ]; then
            log "cannot map $uuid to a GPU index; keeping the UUIDs (CUDA accepts them)"
            MAPPED=""
            break
          fi
          MAPPED="${MAPPED:+$MAPPED,}$idx"
        done
        if [ -n "$MAPPED" ]; then
          export CUDA_DEVICE_ORDER=PCI_BUS_ID
          CUDA_VISIBLE_DEVICES="$MAPPED"
          log "mapped GPU UUIDs to indices $MAPPED (CUDA_DEVICE_ORDER=PCI_BUS_ID, as nvidia-smi numbers them)"
        fi
      else
        log "nvidia-smi not found: keeping the GPU UUIDs (CUDA accepts them)"
      fi
      ;;
  esac
  IFS=',' read -r -a GPU_LIST <<< "$CUDA_VISIBLE_DEVICES"
  if [ "${#GPU_LIST[@]}" -gt "$NGPUS" ]; then
    CUDA_VISIBLE_DEVICES="$(IFS=','; printf '%s' "${GPU_LIST[*]:0:$NGPUS}")"
    log "narrowed CUDA_VISIBLE_DEVICES to the $NGPUS GPUs the plan uses"
  elif [ "${#GPU_LIST[@]}" -lt "$NGPUS" ]; then
    log "WARNING: PBS gave ${#GPU_LIST[@]} GPU(s) but the plan uses $NGPUS"
  fi
else
  CUDA_VISIBLE_DEVICES="$(seq -s, 0 $((NGPUS - 1)))"
fi
export CUDA_VISIBLE_DEVICES
log "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"

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
BIND_HOST=0.0.0.0
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

# --- pre-launch check: CUDA (torch, as vLLM will) must see exactly the planned GPUs ---
GPU_CHECK="$("$PBSVLLM_PY" -c '
import sys
try:
    import torch
except Exception as exc:
    print("? cannot import torch with %s (%s): is the vLLM environment active?" % (sys.executable, exc))
    sys.exit(0)
n = torch.cuda.device_count()
seen = []
for i in range(n):
    p = torch.cuda.get_device_properties(i)
    uuid = getattr(p, "uuid", None)
    seen.append("cuda:%d=%s%s" % (i, p.name, " GPU-%s" % uuid if uuid is not None else ""))
print(n, ", ".join(seen) or "no GPU")
' 2>/dev/null | tail -n 1)"
SEEN_GPUS="${GPU_CHECK%% *}"
if [ -z "$GPU_CHECK" ] || [ "$SEEN_GPUS" = "?" ]; then
  log "ERROR: pre-launch GPU check on $(hostname) could not run: ${GPU_CHECK#\? }"
  exit 2
fi
if [ "$SEEN_GPUS" != "$NGPUS" ]; then
  log "ERROR: pre-launch GPU check on $(hostname): the plan uses $NGPUS GPU(s) but CUDA sees $SEEN_GPUS (${GPU_CHECK#* }) with CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-unset}; vLLM was not started. Request $NGPUS GPU(s) for the job (ngpus= / gpus=) or re-plan with --gpus $SEEN_GPUS"
  exit 2
fi
log "pre-launch GPU check passed: CUDA sees $SEEN_GPUS GPU(s) as planned: ${GPU_CHECK#* }"

# --- vLLM: one flag per line, with the planner's reason ---
VLLM_ARGS=()
VLLM_ARGS+=(Qwen/Qwen3-VL-2B-Instruct)
VLLM_ARGS+=(--served-model-name qwen3-vl)  # the name clients send as "model" (default: the alias)
VLLM_ARGS+=(--host 0.0.0.0)  # listen address: all interfaces so the login node can reach the compute node
VLLM_ARGS+=(--port "$PORT")  # requested port; the job moves up to the next free one at start time
VLLM_ARGS+=(--tensor-parallel-size 1)  # TP=1: the whole model fits one GPU (4.0 GiB of weights; at TP=1 each GPU keeps 29.8 GiB for KV cache = 279,433 tokens = 182 requests of 1536 tokens, target 64); tensor parallelism would only add all-reduce traffic to every layer of every token
VLLM_ARGS+=(--data-parallel-size 4)  # 4 GPUs / TP=1 = 4 independent replicas: 4x the batch capacity with no inter-GPU traffic
VLLM_ARGS+=(--api-server-count 1)  # one API server keeps the per-engine stats lines in the log (vLLM 0.32+ defaults to one API server per DP rank and then logs no stats at all); one front end is plenty for a node
VLLM_ARGS+=(--max-model-len 32768)  # the model supports 262,144 tokens, but vLLM reserves KV cache for at least one full-length sequence and sizes its batching from it; 32,768 keeps memory for concurrency (pass --max-model-len to change)
VLLM_ARGS+=(--gpu-memory-utilization 0.92)  # 0.92 of 40 GiB: PBS gives the job whole GPUs, so only CUDA/NCCL context and allocator slack need the remaining 3.2 GiB; every extra GiB is KV cache
VLLM_ARGS+=(--max-num-seqs 512)  # the KV cache holds 279,433 tokens per replica = ~182 requests of 1536 tokens; requests vary in length and vLLM admits one only when KV blocks are free, so 512 (2x that, to a power of two, at most 1024) lets the batch fill the cache instead of stopping at vLLM's default (256 on A100 / GPUs under 70 GiB); per replica (4 replicas: 2048 in total)
VLLM_ARGS+=(--max-num-batched-tokens 8192)  # prefill chunk of 8192 tokens per step (vLLM's default: 2048 on A100s and GPUs under 70 GiB): fewer steps for long prompts, so faster time to first token, at a bounded cost in activation memory (counted above)
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
SERVER_HOST=''
if [ -z "$SERVER_HOST" ]; then
  SERVER_HOST="$(hostname -s 2>/dev/null || hostname)".hsn.cm.polaris.alcf.anl.gov
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
