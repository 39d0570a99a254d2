#!/usr/bin/env bash
# The rendered job script's GPU parts on a real GPU node (called by
# scripts/device-run.sh): renders scripts with `pbsvllm submit --dry-run` for
# this node (GPU count and memory from `pbsvllm probe`), then runs each whole
# script under bash the way PBS would (PBS_JOBID set, CUDA_VISIBLE_DEVICES =
# GPU UUIDs as the cgroup hook sets them), with the real nvidia-smi and torch
# and a stand-in `vllm` on PATH that records the GPUs torch shows it.
#     bash scripts/device-preflight.sh OUTDIR
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
OUTDIR="${1:?usage: device-preflight.sh OUTDIR}"
PY="${PYTHON:-python3}"
T="$(mktemp -d)"
mkdir -p "$T/bin" "$OUTDIR"
REPORT="$OUTDIR/preflight.txt"
: >"$REPORT"
cat >"$T/bin/vllm" <<'EOF'
#!/usr/bin/env bash
# stand-in launcher: what would vLLM see?
{
  echo "pid=$$ CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-unset} PBSVLLM_JOB_ID=${PBSVLLM_JOB_ID:-} port=$(printf '%s\n' "$@" | grep -A1 -x -- --port | tail -n 1)"
  python3 -c 'import torch; n = torch.cuda.device_count(); print("  torch sees", n, " ".join("GPU-%s" % torch.cuda.get_device_properties(i).uuid for i in range(n)))'
} >>"$DEVICE_RECORD" 2>&1
EOF
chmod +x "$T/bin/vllm"
# PROBE_FROM=raw.json reads a saved probe instead (to try this script without a GPU)
if ! "$PY" -m pbsvllm probe --json ${PROBE_FROM:+--from "$PROBE_FROM"} >"$T/probe.json"; then
  echo "FAIL: pbsvllm probe did not run (see above)" | tee -a "$REPORT"
  exit 8
fi
read -r NG MEM < <("$PY" -c 'import json,sys; h=json.load(open(sys.argv[1]))["planner_hardware"]; print(h["gpus_per_node"], h["gpu_memory_gib"])' "$T/probe.json")
mapfile -t U < <("$PY" -c 'import json,sys; [print(g["uuid"]) for g in json.load(open(sys.argv[1]))["gpus"]]' "$T/probe.json")
echo "node: $NG GPU(s) of $MEM GiB; UUIDs ${U[*]}" | tee -a "$REPORT"
fail=0
n=0
# run_case NAME MODEL "SUBMIT ARGS" CVD EXPECTED_RC GREP_IN_LOG EXPECTED_RECORD_LINES
run_case() {
  local name="$1" model="$2" extra="$3" cvd="$4" want_rc="$5" want_log="$6" want_calls="$7"
  n=$((n + 1))
  local job="dev$n.pbs" script="$T/job$n.sh" home="$T/home"
  # shellcheck disable=SC2086  # extra holds several words on purpose
  PBSVLLM_HOME="$home" "$PY" -m pbsvllm submit "$model" -a dev -P pbspro --gpus "$NG" --gpu-memory "$MEM" \
    $extra --dry-run >"$script" || { echo "FAIL: $name: render"; fail=1; return; }
  : >"$T/record$n"
  env -i PATH="$T/bin:$PATH" HOME="$HOME" PBS_JOBID="$job" CUDA_VISIBLE_DEVICES="$cvd" \
    DEVICE_RECORD="$T/record$n" NCCL_NVLS_ENABLE=0 ${PYTHONPATH:+PYTHONPATH="$PYTHONPATH"} \
    ${FAKE_NODE_RAW:+FAKE_NODE_RAW="$FAKE_NODE_RAW"} bash "$script" >"$T/out$n" 2>&1
  local rc=$?
  local log="$home/logs/dev.$job.log"
  local calls
  calls="$(grep -c '^pid=' "$T/record$n")"
  {
    echo
    echo "=== case $n: $name"
    echo "model $model, submit $extra, CUDA_VISIBLE_DEVICES=$cvd"
    echo "--- job log ($log), exit $rc"
    cat "$log" 2>/dev/null
    echo "--- what each server saw"
    cat "$T/record$n"
    if [ -f "$home/run/$job.server.json" ]; then
      echo "--- server-info replicas"
      "$PY" -c 'import json,sys; [print(" ", r["index"], r["port"], r["gpus"], r["pid"], r["pgid"], r["log_path"]) for r in json.load(open(sys.argv[1]))["replicas"]]' "$home/run/$job.server.json"
    fi
  } >>"$REPORT"
  if [ "$rc" -ne "$want_rc" ] || ! grep -q -- "$want_log" "$log" || [ "$calls" -ne "$want_calls" ]; then
    echo "FAIL: $name: exit $rc (want $want_rc), log has '$want_log'? calls $calls (want $want_calls)" | tee -a "$REPORT"
    fail=1
  else
    echo "ok: $name" | tee -a "$REPORT"
  fi
}
if [ "$NG" -ge 4 ]; then
  ALL="${U[3]},${U[1]},${U[2]},${U[0]}"
  run_case "4 planned, 4 UUIDs given" Qwen/Qwen3-VL-2B-Instruct "" "$ALL" 0 \
    "pre-launch GPU check passed: CUDA sees 4 GPU(s)" 1
  run_case "4 planned, 2 UUIDs given" Qwen/Qwen3-VL-2B-Instruct "" "${U[3]},${U[1]}" 2 \
    "the plan uses 4 GPU(s) but CUDA sees 2" 0
  run_case "4 planned, one UUID of another node" Qwen/Qwen3-VL-2B-Instruct "" \
    "${U[0]},${U[1]},GPU-00000000-1111-2222-3333-444444444444,${U[2]}" 2 "but CUDA sees 2" 0
  run_case "replicas: 2B on vLLM 0.7.3 (no DP flag) -> 4 servers x 1 GPU" Qwen/Qwen3-VL-2B-Instruct \
    "--vllm-version 0.7.3" "$ALL" 0 "starting replica 3 on GPU(s) 0," 4
  run_case "replicas: 70B on vLLM 0.7.3 -> 2 servers x TP=2" meta-llama/Llama-3.1-70B-Instruct \
    "--vllm-version 0.7.3" "$ALL" 0 "starting replica 1 on GPU(s) 2,0," 2
  # each replica's torch must see exactly its own GPUs (checked by UUID)
  "$PY" - "$T" "${U[@]}" <<'EOF' | tee -a "$REPORT" || fail=1
import re, sys
t, u = sys.argv[1], sys.argv[2:]
ok = True
for case, sets in ((4, [[3], [1], [2], [0]]), (5, [[3, 1], [2, 0]])):
    seen = [l.split()[3:] for l in open(f"{t}/record{case}") if l.startswith("  torch sees")]
    want = [[u[i] for i in s] for s in sets]
    good = sorted(seen) == sorted(want)
    ok &= good
    print(f"case {case}: replicas' torch saw {seen}; expected (any order) {want}: {'ok' if good else 'FAIL'}")
sys.exit(0 if ok else 1)
EOF
else
  echo "FAIL: these cases need a node with 4 GPUs" | tee -a "$REPORT"
  fail=1
fi
rm -rf "$T"
exit "$fail"
