#!/bin/bash
# shellcheck disable=SC1090,SC1091  # profile env_lines may source site files shellcheck cannot follow
#PBS -N qwen
#PBS -l select=2:ncpus=32:ngpus=4
#PBS -l walltime=01:00:00
#PBS -j oe
#PBS -o /home/user/.pbsvllm/logs/
# Rendered by pbsvllm 0.1.0 for alias qwen, profile pbspro.
# Plan: TP=1 PP=1 DP=8 on 4 GPU(s); 1,087,049 KV tokens per replica; max concurrency 132.7 at 32,768 tokens
set -euo pipefail

export PBSVLLM_NODE_INDEX=0  # this script runs on the head node; profile lines may use it per node
# --- environment (profile pbspro): its variables, then its own lines,
#     which may use them and have the last word ---
export PYTHONUNBUFFERED=1

# --- paths and the realtime log ---
if [ -n "${PBS_O_WORKDIR:-}" ]; then
  cd "$PBS_O_WORKDIR"
fi
JOB_ID="${PBS_JOBID:?PBS_JOBID is not set: submit this script with qsub or pbsvllm submit}"
ALIAS=qwen
MODEL=Qwen/Qwen2.5-7B-Instruct
SERVED_MODEL_NAME=qwen
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

# --- the job's 2 nodes: the node file's first host is this one (the head) ---
NNODES=2
NODES=()
NODE_FILE_INDEX=()  # line of each node in the node file (pbsdsh -n numbers them so on PBS Pro)
if [ -n "${PBS_NODEFILE:-}" ] && [ -r "$PBS_NODEFILE" ]; then
  while read -r NODE_NAME NODE_LINE; do
    NODES+=("$NODE_NAME")
    NODE_FILE_INDEX+=("$NODE_LINE")
  done < <(awk 'NF && !seen[$1]++ {print $1, NR - 1}' "$PBS_NODEFILE")
elif [ -n "${SLURM_JOB_NODELIST:-}" ] && command -v scontrol >/dev/null 2>&1; then
  while read -r NODE_NAME; do
    NODE_FILE_INDEX+=("${#NODES[@]}")
    NODES+=("$NODE_NAME")
  done < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
fi
if [ "${#NODES[@]}" -lt "$NNODES" ]; then
  log "ERROR: the plan needs $NNODES nodes but the job has ${#NODES[@]} (${NODES[*]:-none} from ${PBS_NODEFILE:-no PBS_NODEFILE}); request select=$NNODES"
  exit 2
fi
NODES=("${NODES[@]:0:$NNODES}")
NODE_LAUNCHER=auto
if [ -n "${SLURM_JOB_ID:-}" ]; then  # auto: Slurm's own launcher under Slurm, else PBS's
  NODE_LAUNCHER=srun
else
  NODE_LAUNCHER=pbsdsh
fi
NODE_LAUNCHER_ARGS=()
NODE_DIR="$RUN_DIR/$JOB_ID.nodes"  # on the shared filesystem: every node reads the helper from here
NODE_SCRIPT="$NODE_DIR/node.sh"
mkdir -p "$NODE_DIR"
log "nodes: ${NODES[*]} (head: ${NODES[0]}); starting commands on the others with $NODE_LAUNCHER"
# The helper every node runs (through the launcher, which may not pass this script's
# environment on): the profile's environment, then one role. Usage:
#   node.sh ROLE INDEX HOST [ARGS...]   ROLE: check NGPUS | run NAME LOG CMD... | stop
cat >"$NODE_SCRIPT.tmp" <<'PBSVLLM_NODE_SCRIPT'
#!/bin/bash
# pbsvllm node helper (job script of alias qwen); see docs/multinode.md
set -euo pipefail
ROLE="$1"
NODE_INDEX="$2"
NODE_HOST="$3"
shift 3
export PBSVLLM_NODE_INDEX="$NODE_INDEX"
# the job's id and alias (pbsvllm cleanup finds the job's processes on a node by them)
# shellcheck source=/dev/null
. "$(dirname "${BASH_SOURCE[0]}")/job.env"
# --- environment (profile pbspro): its variables, then its own lines,
#     which may use them and have the last word ---
export PYTHONUNBUFFERED=1
NODE_IFACE=''
NODE_RUN="$(dirname "${BASH_SOURCE[0]}")/node$NODE_INDEX"
mkdir -p "$NODE_RUN"
node_ip() {  # this node's address on the profile's interface, else its node-file name's IPv4 address
  local ip=""
  if [ -n "$NODE_IFACE" ] && command -v ip >/dev/null 2>&1; then
    ip="$(ip -4 -o addr show dev "$NODE_IFACE" 2>/dev/null | awk '{split($4, a, "/"); print a[1]; exit}')"
  fi
  if [ -z "$ip" ]; then
    ip="$(getent ahostsv4 "$NODE_HOST" 2>/dev/null | awk '{print $1; exit}')"
  fi
  printf '%s\n' "${ip:-$NODE_HOST}"
}
session_members() {  # pids of every process in the sessions this node's roles started
  local sids=() f
  for f in "$NODE_RUN"/*.sid; do
    if [ -r "$f" ]; then
      sids+=("$(cat "$f")")
    fi
  done
  if [ "${#sids[@]}" -gt 0 ]; then
    ps -eo pid=,sid= | awk -v s=" ${sids[*]} " 'index(s, " " $2 " ") {print $1}'
  fi
}
case "$ROLE" in
  check)  # check NGPUS: one line: OK IP DETAILS | FAIL REASON
    NGPUS="$1"
    IP="$(node_ip)"
    if [ -n "$NODE_IFACE" ] && command -v ip >/dev/null 2>&1 && \
        [ -z "$(ip -4 -o addr show dev "$NODE_IFACE" 2>/dev/null)" ]; then
      echo "FAIL $(hostname): no IPv4 address on interface $NODE_IFACE (profile key node_interface)"
      exit 0
    fi
    if [ "$NGPUS" -eq 0 ]; then
      echo "OK $IP $(hostname): no GPUs planned (CPU)"
      exit 0
    fi
    SEEN="$("$(command -v python3 || command -v python || echo python3)" -c '
import sys
try:
    import torch
except Exception as exc:
    print("? cannot import torch (%s): is the vLLM environment active on this node?" % exc)
    sys.exit(0)
n = torch.cuda.device_count()
print(n, ", ".join(torch.cuda.get_device_properties(i).name for i in range(n)) or "no GPU")
' 2>/dev/null | tail -n 1)"
    if [ "${SEEN%% *}" = "$NGPUS" ]; then
      echo "OK $IP $(hostname): CUDA sees $SEEN"
    else
      echo "FAIL $(hostname): the plan uses $NGPUS GPU(s) per node but CUDA sees ${SEEN:-nothing} (CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-unset})"
    fi
    ;;
  run)  # run NAME LOG CMD...: CMD in its own session (recorded for stop); the launcher waits for it
    NAME="$1"
    RUN_LOG="$2"
    shift 2
    IP="$(node_ip)"
    export VLLM_HOST_IP="$IP" PBSVLLM_NODE_IP="$IP"
    setsid "$@" >>"$RUN_LOG" 2>&1 </dev/null &
    PID=$!
    echo "$PID" >"$NODE_RUN/$NAME.sid"
    for ARG in "$@"; do
      case "$ARG" in
        --temp-dir=*/pbsvllm-ray-*) printf '%s\n' "${ARG#--temp-dir=}" >>"$NODE_RUN/tmpdirs" ;;  # removed by stop
      esac
    done
    wait "$PID"
    ;;
  stop)  # TERM every process of this node's sessions; KILL what is left after 5 s
    PIDS="$(session_members)"
    if [ -n "$PIDS" ]; then
      # shellcheck disable=SC2086  # one pid per word
      kill -TERM $PIDS 2>/dev/null || true
      for _ in $(seq 1 10); do
        PIDS="$(session_members)"
        if [ -z "$PIDS" ]; then
          break
        fi
        sleep 0.5
      done
      if [ -n "$PIDS" ]; then
        # shellcheck disable=SC2086
        kill -KILL $PIDS 2>/dev/null || true
        echo "node $NODE_INDEX ($(hostname)): killed what SIGTERM left: $(tr '\n' ' ' <<<"$PIDS")"
      fi
    fi
    rm -f "$NODE_RUN"/*.sid
    if [ -r "$NODE_RUN/tmpdirs" ]; then  # Ray's session files on this node's local disk
      while IFS= read -r DIR; do
        case "$DIR" in
          /*/pbsvllm-ray-*) rm -rf -- "$DIR" ;;
        esac
      done <"$NODE_RUN/tmpdirs"
      rm -f "$NODE_RUN/tmpdirs"
    fi
    ;;
  *)
    echo "node.sh: unknown role $ROLE" >&2
    exit 2
    ;;
esac
PBSVLLM_NODE_SCRIPT
chmod 700 "$NODE_SCRIPT.tmp"
printf 'export PBSVLLM_JOB_ID=%q PBSVLLM_ALIAS=%q\n' "$JOB_ID" "$ALIAS" >"$NODE_DIR/job.env"
mv -f "$NODE_SCRIPT.tmp" "$NODE_SCRIPT"
on_node() {  # on_node INDEX ROLE [ARGS...]: the helper on node INDEX (this node: directly), in the foreground
  local i="$1" host="${NODES[$1]}"
  shift
  local role="$1"
  shift
  local cmd=("$BASH" "$NODE_SCRIPT" "$role" "$i" "$host" "$@")
  if [ "$i" -eq 0 ] || [ "$NODE_LAUNCHER" = local ]; then
    "${cmd[@]}"
    return
  fi
  case "$NODE_LAUNCHER" in
    mpiexec) mpiexec -n 1 --ppn 1 --hosts "$host" "${NODE_LAUNCHER_ARGS[@]}" "${cmd[@]}" ;;
    pbsdsh) pbsdsh -n "${NODE_FILE_INDEX[$i]}" "${NODE_LAUNCHER_ARGS[@]}" -- "${cmd[@]}" ;;
    srun) srun --overlap --nodes=1 --ntasks=1 --nodelist="$host" "${NODE_LAUNCHER_ARGS[@]}" "${cmd[@]}" ;;
    ssh) ssh -o BatchMode=yes "${NODE_LAUNCHER_ARGS[@]}" "$host" "$(printf '%q ' "${cmd[@]}")" ;;
    *) log "ERROR: unknown node launcher $NODE_LAUNCHER"; return 2 ;;
  esac
}
NODE_LOGS=()
for ((i = 0; i < NNODES; i++)); do
  NODE_LOGS+=("$LOG_DIR/$ALIAS.$JOB_ID.node$i.log")
done
LAUNCH_PIDS=()   # one launcher process per long-running command on a node
NODES_STARTED=0
NODES_STOPPED=0
# shellcheck disable=SC2317  # stop_nodes is called by the traps
stop_nodes() {  # stop vLLM and Ray on every node (idempotent); then end the launchers
  if [ "$NODES_STARTED" != 1 ] || [ "$NODES_STOPPED" = 1 ]; then
    return 0
  fi
  NODES_STOPPED=1
  log "stopping vLLM and Ray on ${#NODES[@]} node(s): ${NODES[*]}"
  local i stoppers=()
  for ((i = NNODES - 1; i >= 0; i--)); do
    on_node "$i" stop >>"${NODE_LOGS[$i]}" 2>&1 &
    stoppers+=("$!")
  done
  wait "${stoppers[@]}" 2>/dev/null || true
  if [ "${#LAUNCH_PIDS[@]}" -gt 0 ]; then
    kill -TERM "${LAUNCH_PIDS[@]}" 2>/dev/null || true
    wait "${LAUNCH_PIDS[@]}" 2>/dev/null || true
  fi
  log "every node stopped"
}
trap stop_nodes EXIT
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
  stop_nodes  # vLLM's ranks and Ray on every node
}
trap on_term TERM INT

# --- pre-launch check on every node, in parallel: reachable through the launcher, its address
#     on the fast interface, and (GPUs) torch sees exactly the planned GPUs ---
NGPUS_PER_NODE=4
CHECKERS=()
for ((i = 0; i < NNODES; i++)); do
  on_node "$i" check "$NGPUS_PER_NODE" >"$NODE_DIR/check$i.out" 2>&1 &
  CHECKERS+=("$!")
done
NODE_IPS=()
CHECK_FAILED=0
for ((i = 0; i < NNODES; i++)); do
  wait "${CHECKERS[$i]}" || true
  CHECK_LINE="$(grep -E '^(OK|FAIL) ' "$NODE_DIR/check$i.out" | tail -n 1 || true)"
  case "$CHECK_LINE" in
    OK\ *)
      CHECK_LINE="${CHECK_LINE#OK }"
      NODE_IPS+=("${CHECK_LINE%% *}")
      log "pre-launch check passed on node $i (${NODES[$i]}, ${CHECK_LINE%% *}): ${CHECK_LINE#* }"
      ;;
    *)
      CHECK_FAILED=1
      NODE_IPS+=("")
      log "ERROR: pre-launch check failed on node $i (${NODES[$i]}): ${CHECK_LINE#FAIL }$(tail -n 3 "$NODE_DIR/check$i.out" | tr '\n' ' ')"
      ;;
  esac
done
if [ "$CHECK_FAILED" = 1 ]; then
  log "ERROR: vLLM was not started (launcher: $NODE_LAUNCHER)"
  exit 2
fi
HEAD_IP="${NODE_IPS[0]}"
DUP_IPS="$(printf '%s\n' "${NODE_IPS[@]}" | sort | uniq -d | tr '\n' ' ')"
if [ -n "$DUP_IPS" ]; then
  log "ERROR: nodes share an address ($DUP_IPS): vLLM needs a distinct IP per node; set node_interface in the profile"
  exit 2
fi

# --- vLLM: one flag per line, with the planner's reason ---
VLLM_ARGS=()
VLLM_ARGS+=(Qwen/Qwen2.5-7B-Instruct)
VLLM_ARGS+=(--served-model-name qwen)  # the name clients send as "model" (default: the alias)
VLLM_ARGS+=(--host 0.0.0.0)  # listen address: all interfaces so the login node can reach the compute node
VLLM_ARGS+=(--port "$PORT")  # requested port; the job moves up to the next free one at start time
VLLM_ARGS+=(--tensor-parallel-size 1)  # TP=1: the whole model fits one GPU (14.2 GiB of weights; at TP=1 each GPU keeps 58.1 GiB for KV cache = 1,087,049 tokens = 708 requests of 1536 tokens, target 64); tensor parallelism would only add all-reduce traffic to every layer of every token
VLLM_ARGS+=(--gpu-memory-utilization 0.95)  # 0.95 of 80 GiB: PBS gives the job whole GPUs, so only CUDA/NCCL context and allocator slack need the remaining 4.0 GiB; every extra GiB is KV cache
VLLM_ARGS+=(--max-num-seqs 1024)  # the KV cache holds 1,087,049 tokens per replica = ~708 requests of 1536 tokens; requests vary in length and vLLM admits one only when KV blocks are free, so 1024 (2x that, to a power of two, at most 1024) lets the batch fill the cache instead of stopping at vLLM's default (256 on A100 / GPUs under 70 GiB); per replica (4 replicas: 4096 in total)
VLLM_ARGS+=(--max-num-batched-tokens 16384)  # prefill chunk of 16384 tokens per step (vLLM's default: 2048 on A100s and GPUs under 70 GiB): fewer steps for long prompts, so faster time to first token, at a bounded cost in activation memory (counted above)
VLLM_ARGS+=(--data-parallel-size 8)  # 8 ranks over 2 nodes
VLLM_ARGS+=(--api-server-count 1)  # one API server keeps the stats lines
if [ "$STOPPING" = 1 ]; then
  exit 143
fi
export PBSVLLM_JOB_ID="$JOB_ID" PBSVLLM_ALIAS="$ALIAS" PBSVLLM_HOME
export VLLM_HOST_IP="$HEAD_IP"  # the address vLLM advertises to the other nodes
# --- vLLM's native multi-node data parallel: 4 rank(s) per node; this node runs the
#     API server and ranks 0..3, every other node its ranks headless ---
DP_LOCAL=4
DP_PORT="$(free_port "$HEAD_IP" 13345)"
if [ -z "$DP_PORT" ]; then
  log "ERROR: no free port for the data parallel RPC from 13345 on $HEAD_IP (profile key dp_rpc_port)"
  exit 2
fi
VLLM_ARGS+=(--data-parallel-size-local "$DP_LOCAL" --data-parallel-address "$HEAD_IP" --data-parallel-rpc-port "$DP_PORT")  # each node runs its own ranks; the others reach this node's address
HEADLESS_ARGS=()
for ((I = 0; I < ${#VLLM_ARGS[@]}; I++)); do
  if [ "${VLLM_ARGS[$I]}" = "--api-server-count" ]; then
    I=$((I + 1))  # headless nodes run no API server
  else
    HEADLESS_ARGS+=("${VLLM_ARGS[$I]}")
  fi
done
NODES_STARTED=1
for ((i = 1; i < NNODES; i++)); do
  log "starting data parallel ranks $((i * DP_LOCAL))-$((i * DP_LOCAL + DP_LOCAL - 1)) headless on node $i (${NODES[$i]}, ${NODE_IPS[$i]}); log ${NODE_LOGS[$i]}"
  # shellcheck disable=SC2094
  on_node "$i" run vllm "${NODE_LOGS[$i]}" vllm serve "${HEADLESS_ARGS[@]}" --headless \
    --data-parallel-start-rank $((i * DP_LOCAL)) >>"${NODE_LOGS[$i]}" 2>&1 &
  LAUNCH_PIDS+=("$!")
done
log "starting:" 'vllm serve' "${VLLM_ARGS[*]}"
vllm serve "${VLLM_ARGS[@]}" >>"$LOG" 2>&1 &
VLLM_PID=$!
VLLM_PIDS=("$VLLM_PID")
SI_REPLICAS="$VLLM_PID"$'\t'"$PORT"$'\t'"${CUDA_VISIBLE_DEVICES:-}"$'\t'"$LOG"$'\n'

# --- server-info file, written atomically (temp file + fsync + rename) ---
SERVER_HOST=''
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
