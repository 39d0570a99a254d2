#!/usr/bin/env bash
# Real-GPU checks for pbsvllm's probe, CUDA_VISIBLE_DEVICES resolution, plan
# --probe and the job script's pre-launch GPU check. Run on a GPU node from
# the repository root (python3 with click, jinja2, psutil, nvidia-ml-py and,
# for the CUDA comparison, torch):
#     OUT=/some/dir bash scripts/device-run.sh [probe|plan|all]
# Writes everything it captures under $OUT; exits non-zero if a check fails.
# Without a GPU it stops at the first step with pbsvllm's one-line error (exit 8).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
phase="${1:-all}"
: "${OUT:?set OUT to a directory for the captured output}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
PY="${PYTHON:-python3}"
fail=0
step() { echo; echo "=== $*"; }
check() {  # check NAME EXPECTED_RC CMD...: run, record, compare the exit code
  local name="$1" want="$2"; shift 2
  "$@"; local rc=$?
  if [ "$rc" -ne "$want" ]; then echo "FAIL: $name exited $rc, expected $want"; fail=1
  else echo "ok: $name (exit $rc)"; fi
}

if [ "$phase" = probe ] || [ "$phase" = all ]; then
  step "nvidia-smi (for comparison)"
  { nvidia-smi -L; nvidia-smi topo -m;
    nvidia-smi --query-gpu=index,uuid,pci.bus_id,name,memory.total,memory.free,compute_cap,mig.mode.current,driver_version --format=csv;
  } >"$OUT/nvidia-smi.txt" 2>&1
  cat "$OUT/nvidia-smi.txt"
  step "pbsvllm probe --raw / --json / text"
  $PY -m pbsvllm probe --raw >"$OUT/probe-raw.json" || { echo "FAIL: probe --raw"; exit 8; }
  check "probe --json" 0 sh -c "$PY -m pbsvllm probe --json >'$OUT/probe.json'"
  $PY -m pbsvllm probe | tee "$OUT/probe.txt"
  step "CUDA_VISIBLE_DEVICES resolution vs CUDA (torch)"
  check "cvd-check" 0 "$PY" scripts/device_check.py cvd "$OUT"
  step "probe --expect-gpus (the check the job script runs before vLLM)"
  mapfile -t U < <(nvidia-smi --query-gpu=uuid --format=csv,noheader)
  if [ "${#U[@]}" -ge 4 ]; then
    two="${U[3]},${U[1]}"
    check "expect 2 with 2 UUIDs" 0 env CUDA_VISIBLE_DEVICES="$two" "$PY" -m pbsvllm probe --expect-gpus 2
    check "expect 4 with 2 UUIDs" 8 env CUDA_VISIBLE_DEVICES="$two" "$PY" -m pbsvllm probe --expect-gpus 4
    check "expect 2 with a foreign UUID" 8 env CUDA_VISIBLE_DEVICES="${U[0]},GPU-deadbeef-0000-0000-0000-000000000000" "$PY" -m pbsvllm probe --expect-gpus 2
  fi
fi
if [ "$phase" = plan ] || [ "$phase" = all ]; then
  step "plan --probe (2B, 8B, 70B)"
  : >"$OUT/plan.txt"
  for m in Qwen/Qwen3-VL-2B-Instruct meta-llama/Llama-3.1-8B-Instruct meta-llama/Llama-3.1-70B-Instruct; do
    echo "--- pbsvllm plan $m --probe -P pbspro" | tee -a "$OUT/plan.txt"
    check "plan --probe $m" 0 bash -o pipefail -c "$PY -m pbsvllm plan '$m' --probe -P pbspro 2>&1 | tee -a '$OUT/plan.txt'"
  done
  step "pre-launch check in the rendered script"
  check "preflight" 0 env PYTHON="$PY" bash scripts/device-preflight.sh "$OUT"
fi
echo
[ "$fail" -eq 0 ] && echo "device-run: all checks passed" || echo "device-run: SOME CHECKS FAILED"
exit "$fail"
