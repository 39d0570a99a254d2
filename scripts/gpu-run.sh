#!/usr/bin/env bash
# Real vLLM on a real GPU node without network, with what scripts/gpu-stage.sh
# prepared: install, build a random-weight model of a real architecture, and
# measure pbsvllm's plan against the real server. Runs ON the GPU machine,
# from the repository root, as bash .gpu/kit/gpu-run.sh PHASE:
#
#   stage K N   keep part K of N of the bundle; after the last, install vLLM
#               0.24.0, its missing packages and pbsvllm under $STAGE/site
#   env         what the machine has (nvidia-smi, python, torch, compilers)
#   model [SHAPE]  build the model (default qwen2.5-1.5b; qwen3-1.7b for dp-vs-tp)
#   kv          issue 17 items 1 and 3: probe, plan --probe-file, submit --wait
#               (local scheduler, GPU profile), the server's KV line against the
#               plan's prediction, status with live metrics under load, doctor on
#               the real log, cancel
#   vs          issue 17 item 2: the seed's flags against the plan's, both
#               servers up on the same GPU(s), through pbsvllm bench --vs
#   dp-vs-tp    issue 18 (a node of 4 GPUs): the plan's layout (TP=1, DP=N)
#               against TP=N --enforce-eager (the seed's original) and TP=N
#               without eager, each pair through pbsvllm bench --vs
#
# Results go to $OUT (the device tool's return folder; default $STAGE/out):
# one .tgz per phase with every log and JSON, and a short summary JSON.
# Environment: PBSVLLM_GPU_STAGE (default /tmp/pbsvllm-gpu), VS_LEVELS
# ("C:N C:N ...": concurrency and requests per level), VS_UTIL (memory
# fraction each of the two servers of a pair gets, default 0.45).
set -uo pipefail

KIT="$(cd "$(dirname "$0")" && pwd)"
STAGE="${PBSVLLM_GPU_STAGE:-/tmp/pbsvllm-gpu}"
SITE="$STAGE/site"
OUTDIR="${OUT:-$STAGE/out}"
PY="${PYTHON:-python3}"
VLLM_VERSION=0.24.0
mkdir -p "$STAGE/bin" "$STAGE/cache" "$OUTDIR"

export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PATH="$STAGE/bin:$PATH" PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
# FlashInfer is not in the bundle: vLLM 0.24 imports it for its top-k/top-p
# sampler unless told not to (PyTorch's sampler is used instead)
export VLLM_USE_FLASHINFER_SAMPLER=0
# NVLink multicast stays off (the device's rule; harmless on one GPU)
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export VLLM_CACHE_ROOT="$STAGE/cache/vllm" TORCHINDUCTOR_CACHE_DIR="$STAGE/cache/inductor" \
  TRITON_CACHE_DIR="$STAGE/cache/triton"
export PBSVLLM_HOME="$STAGE/home" PBSVLLM_CONFIG="$STAGE/config.toml"

say() { echo "[gpu-run $(date +%H:%M:%S)] $*"; }
die() { say "FAIL: $*"; exit 1; }

phase_env() {
  local f="$OUTDIR/env.txt"
  {
    echo "== nvidia-smi"; nvidia-smi; nvidia-smi topo -m 2>&1
    echo "== python"; command -v python3; python3 --version
    echo "== torch"; python3 -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.device_count(), torch.cuda.get_device_name(0)); f,t=torch.cuda.mem_get_info(); print("mem_get_info free", f, "total", t)'
    echo "== compilers"; command -v gcc cc nvcc; gcc --version 2>&1 | head -1
    echo "== disk"; df -h /tmp | tail -1
    echo "== memory"; grep -E 'MemTotal|MemAvailable' /proc/meminfo; nproc
    echo "== pip list"; python3 -m pip list 2>/dev/null
  } >"$f" 2>&1
  sed -n '1,/== pip list/p' "$f"
  grep -i -E '^(transformers|tokenizers|safetensors|numpy|pydantic|triton|torch|fastapi|uvicorn|openai|httpx|click|jinja2|psutil|nvidia-ml-py|paramiko|pyyaml|protobuf|typing.extensions) ' "$f"
}

write_wrappers() {  # vllm and pbsvllm commands; -P: never import from the current folder (a checkout)
  printf '#!/bin/sh\nexec %s -P -m vllm.entrypoints.cli.main "$@"\n' "$(command -v "$PY")" >"$STAGE/bin/vllm"
  printf '#!/bin/sh\nexec %s -P -m pbsvllm "$@"\n' "$(command -v "$PY")" >"$STAGE/bin/pbsvllm"
  chmod +x "$STAGE/bin/vllm" "$STAGE/bin/pbsvllm"
}

install_bundle() {
  local b="$STAGE/bundle"
  say "joining $(ls "$STAGE"/parts/bundle.part* | wc -l) parts"
  cat "$STAGE"/parts/bundle.part* >"$STAGE/bundle.tar" || die "cannot join the parts"
  if [ -f "$KIT/bundle.sha256" ]; then
    [ "$(sha256sum "$STAGE/bundle.tar" | cut -d' ' -f1)" = "$(cat "$KIT/bundle.sha256")" ] || die "bundle checksum differs"
  fi
  rm -rf "$b" "$SITE" && mkdir -p "$b" "$SITE"
  tar xf "$STAGE/bundle.tar" -C "$b" && rm -f "$STAGE/bundle.tar" "$STAGE"/parts/bundle.part*
  (cd "$b" && sha256sum -c --quiet SHA256SUMS) || die "a file of the bundle is damaged"
  say "vLLM $VLLM_VERSION (trimmed wheel) -> $SITE"
  $PY -m zipfile -e "$b/vllm.zip" "$SITE" || die "unzip vllm"
  say "$(ls "$b"/deps/*.whl | wc -l) packages + pbsvllm -> $SITE"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
    --upgrade --target "$SITE" "$b"/deps/*.whl "$KIT"/pbsvllm-*.whl 2>&1 | grep -v -i 'warning' || true
  write_wrappers
  $PY -c 'import vllm, vllm.entrypoints.openai.api_server, vllm.v1.engine.core, vllm.v1.worker.gpu_model_runner, pbsvllm; import vllm._C_stable_libtorch; from vllm.vllm_flash_attn import _vllm_fa3_C; print("installed: vllm", vllm.__version__, "pbsvllm", pbsvllm.__version__)' 2>&1 | tail -3
}

phase_stage() {
  local k="$1" n="$2"
  mkdir -p "$STAGE/parts"
  cp "$KIT/../p$k"/bundle.part* "$STAGE/parts/" || die "part $k is not in $KIT/../p$k"
  local have
  have="$(ls "$STAGE"/parts/bundle.part* 2>/dev/null | wc -l)"
  say "part $k of $n kept ($have here)"
  if [ "$have" -ge "$n" ]; then install_bundle; fi
}

MODEL_DIR() { echo "$STAGE/models/${1:-qwen2.5-1.5b}"; }

phase_model() {
  local shape="${1:-qwen2.5-1.5b}" dir
  dir="$(MODEL_DIR "$shape")"
  if [ -f "$dir/.ready" ]; then say "model $shape already in $dir"; return 0; fi
  rm -rf "$dir"
  $PY "$KIT/gpu_make_model.py" "$dir" --shape "$shape" | tee "$OUTDIR/model-$shape.json" || die "model build"
  touch "$dir/.ready"
}

# --- shared helpers ------------------------------------------------------------------

write_profile() {  # probe -> the GPU profile in $PBSVLLM_CONFIG
  local w="$1"
  if [ -n "${PROBE_FROM:-}" ]; then  # a saved probe (to try this script without a GPU)
    cp "$PROBE_FROM" "$w/probe-raw.json"
  else
    pbsvllm probe --raw >"$w/probe-raw.json" || die "pbsvllm probe --raw"
  fi
  pbsvllm probe --from "$w/probe-raw.json" >"$w/probe.txt" 2>&1
  pbsvllm probe --from "$w/probe-raw.json" --json >"$w/probe.json" || die "pbsvllm probe --json"
  read -r NG MEM IC NAME < <($PY -c 'import json,sys; h=json.load(open(sys.argv[1]))["planner_hardware"]; print(h["gpus_per_node"], h["gpu_memory_gib"], h["interconnect"], h["gpu_name"].replace(" ", "_"))' "$w/probe.json")
  cat >"$PBSVLLM_CONFIG" <<EOF
profile = "gpu"
[profiles.gpu]
base = "local"
description = "the GPU machine of scripts/gpu-run.sh"
device = "cuda"
gpus_per_node = $NG
gpu_memory_gib = $MEM
interconnect = "$IC"
gpu_name = "${NAME//_/ }"
cpus_per_node = $(nproc)
launcher = "$STAGE/bin/vllm serve"
vllm_version = "$VLLM_VERSION"
[profiles.gpu.env]
PYTHONPATH = "$SITE"
HF_HUB_OFFLINE = "1"
TRANSFORMERS_OFFLINE = "1"
VLLM_NO_USAGE_STATS = "1"
VLLM_USE_FLASHINFER_SAMPLER = "0"
NCCL_NVLS_ENABLE = "0"
TORCH_SYMM_MEM_DISABLE_MULTICAST = "1"
NVSHMEM_DISABLE_NVLS = "1"
VLLM_CACHE_ROOT = "$VLLM_CACHE_ROOT"
TORCHINDUCTOR_CACHE_DIR = "$TORCHINDUCTOR_CACHE_DIR"
TRITON_CACHE_DIR = "$TRITON_CACHE_DIR"
EOF
  cp "$PBSVLLM_CONFIG" "$w/config.toml"
  say "probe: $NG x $NAME, $MEM GiB, interconnect $IC"
}

wait_ready() {  # wait_ready PORT PID LOG SECONDS: /v1/models lists the model and a 1-token completion works
  local port="$1" pid="$2" log="$3" limit="$4" t=0
  while [ "$t" -lt "$limit" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then say "server on :$port died; log tail:"; tail -40 "$log"; return 1; fi
    if $PY - "$port" <<'EOF' 2>/dev/null; then say "server on :$port ready after ${t}s"; return 0; fi
import json, sys, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}/v1"
models = json.load(urllib.request.urlopen(base + "/models", timeout=5))
name = models["data"][0]["id"]
req = urllib.request.Request(base + "/completions", data=json.dumps({"model": name, "prompt": "the", "max_tokens": 1}).encode(),
                             headers={"Content-Type": "application/json"})
json.load(urllib.request.urlopen(req, timeout=30))
EOF
    sleep 3; t=$((t + 3))
  done
  say "server on :$port not ready in ${limit}s; log tail:"; tail -40 "$log"; return 1
}

start_server() {  # start_server NAME PORT ARGS...: vllm serve in its own session; sets SPID
  local name="$1" port="$2"; shift 2
  local log="$W/server-$name.log"
  echo "vllm serve $*" >"$W/server-$name.argv"
  setsid "$STAGE/bin/vllm" serve "$@" --host 127.0.0.1 --port "$port" >"$log" 2>&1 &
  SPID=$!
  echo "$SPID" >"$W/server-$name.pid"
  say "started $name (pid $SPID) on :$port: vllm serve $*"
}

stop_server() {  # stop_server NAME
  local pid; pid="$(cat "$W/server-$1.pid" 2>/dev/null)" || return 0
  kill -TERM -- "-$pid" 2>/dev/null; for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -KILL -- "-$pid" 2>/dev/null; rm -f "$W/server-$1.pid"
}

gpu_free_wait() {  # wait until no process holds GPU memory (a cancelled server may still be exiting)
  local used
  for _ in $(seq 1 60); do
    used="$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | sort -n | tail -1)"
    [ "${used:-0}" -lt 2048 ] && return 0
    sleep 2
  done
  say "GPU memory still in use (${used} MiB):"; nvidia-smi; return 1
}

plan_args() {  # plan_args PLAN_JSON UTIL: the plan's flags, minus model/host/port/name, utilisation replaced
  $PY - "$1" "$2" <<'EOF'
import json, sys
plan = json.load(open(sys.argv[1]))
args = plan["vllm_args"][1:]
out, i = [], 0
while i < len(args):
    if args[i] in ("--host", "--port", "--served-model-name"):
        i += 2
        continue
    if args[i] == "--gpu-memory-utilization":
        out += [args[i], sys.argv[2]]
        i += 2
        continue
    out.append(args[i])
    i += 1
print(" ".join(out))
EOF
}

bench_pair() {  # bench_pair TAG A_NAME A_PORT B_NAME B_PORT: every level of VS_LEVELS through bench --vs
  local tag="$1" a="$2" ap="$3" b="$4" bp="$5" lv c n
  for lv in ${VS_LEVELS:-1:32 8:128 64:512 256:1024}; do
    c="${lv%%:*}"; n="${lv##*:}"
    say "bench $tag: $a vs $b at c=$c, n=$n"
    pbsvllm bench "http://127.0.0.1:$ap/v1" --vs "http://127.0.0.1:$bp/v1" --model m -c "$c" -n "$n" \
      --input-len 128 --output-len 128 --seed 0 --warmup 4 --timeout 600 --json >"$W/bench-$tag-c$c.json" \
      2>"$W/bench-$tag-c$c.err" || say "bench $tag c=$c failed: $(tail -3 "$W/bench-$tag-c$c.err")"
  done
}

finish() {  # finish NAME: summary + tarball into $OUTDIR
  local name="$1"
  $PY "$KIT/gpu_summary.py" "$W" >"$OUTDIR/$name-summary.json" 2>"$OUTDIR/$name-summary.err" || true
  cp "$OUTDIR/$name-summary.json" "$W/" 2>/dev/null
  tar czf "$OUTDIR/$name.tgz" -C "$W" . && say "wrote $OUTDIR/$name.tgz ($(du -h "$OUTDIR/$name.tgz" | cut -f1))"
  cat "$OUTDIR/$name-summary.json"
}

# --- issue 17: KV prediction and the whole loop --------------------------------------

phase_kv() {
  W="$STAGE/work/kv"; rm -rf "$W"; mkdir -p "$W"
  local model; model="$(MODEL_DIR qwen2.5-1.5b)"
  [ -f "$model/.ready" ] || phase_model qwen2.5-1.5b
  write_profile "$W"
  echo "$VLLM_VERSION" >"$W/vllm-version"
  pbsvllm cancel qwen-gpu >/dev/null 2>&1 && say "cancelled an earlier qwen-gpu job"
  gpu_free_wait
  pbsvllm plan "$model" --probe-file "$W/probe-raw.json" --served-model-name m --json >"$W/plan.json" || die "plan"
  pbsvllm plan "$model" --probe-file "$W/probe-raw.json" --served-model-name m >"$W/plan.txt" 2>&1
  say "plan: $($PY -c 'import json,sys; p=json.load(open(sys.argv[1])); print(" ".join(p["vllm_args"][1:]), "| predicted KV tokens", p["kv_cache_tokens"])' "$W/plan.json")"
  # the whole loop: submit through the local scheduler with the GPU profile, wait for readiness + registry
  local t0=$SECONDS
  pbsvllm submit "$model" -a qwen-gpu --served-model-name m --wait --timeout 420 \
    --registry "$W/endpoints.toml" --json >"$W/submit.json" 2>"$W/submit.err"
  local rc=$?
  echo "{\"submit_wait_seconds\": $((SECONDS - t0)), \"rc\": $rc}" >"$W/submit-timing.json"
  say "submit --wait: rc $rc after $((SECONDS - t0)) s"
  cp -r "$PBSVLLM_HOME" "$W/home-after-submit" 2>/dev/null
  local log; log="$(ls -t "$PBSVLLM_HOME"/logs/qwen-gpu.*.log 2>/dev/null | head -1)"
  [ -n "$log" ] && grep -E "KV cache|Model loading took|Graph capturing|CUDA graph|memory|Memory profiling" "$log" | tail -15
  if [ "$rc" -ne 0 ]; then cat "$W/submit.err"; [ -n "$log" ] && tail -60 "$log"; finish kv; return 1; fi
  cp "$W/endpoints.toml" "$W/registry-after-ready.toml" 2>/dev/null
  # status with live metrics under load
  pbsvllm bench qwen-gpu -c 256 -n 3000 --input-len 128 --output-len 128 --timeout 600 --json \
    >"$W/load-bench.json" 2>"$W/load-bench.err" &
  local bpid=$!
  sleep 8
  pbsvllm status --json >"$W/status-under-load.json" 2>&1
  pbsvllm status >"$W/status-under-load.txt" 2>&1
  sleep 4
  pbsvllm status qwen-gpu >"$W/status-under-load-2.txt" 2>&1
  cat "$W/status-under-load.txt"
  wait "$bpid"
  pbsvllm doctor qwen-gpu >"$W/doctor.txt" 2>&1
  pbsvllm doctor qwen-gpu --json >"$W/doctor.json" 2>&1
  head -40 "$W/doctor.txt"
  pbsvllm cancel qwen-gpu --json >"$W/cancel.json" 2>&1; cat "$W/cancel.json"
  sleep 10
  pbsvllm status qwen-gpu >"$W/status-after-cancel.txt" 2>&1; cat "$W/status-after-cancel.txt"
  cp "$W/endpoints.toml" "$W/registry-after-cancel.toml" 2>/dev/null
  [ -n "$log" ] && cp "$log" "$W/server-submit.log"
  cp -r "$PBSVLLM_HOME" "$W/home-final" 2>/dev/null
  nvidia-smi --query-gpu=memory.used,memory.total --format=csv >"$W/nvidia-smi-after.txt" 2>&1
  finish kv
}

# --- issue 17: the seed's flags against the plan's -----------------------------------

phase_vs() {
  W="$STAGE/work/vs"; rm -rf "$W"; mkdir -p "$W"
  local model util="${VS_UTIL:-0.45}"; model="$(MODEL_DIR qwen2.5-1.5b)"
  [ -f "$model/.ready" ] || phase_model qwen2.5-1.5b
  write_profile "$W"
  echo "$VLLM_VERSION" >"$W/vllm-version"
  pbsvllm plan "$model" --probe-file "$W/probe-raw.json" --served-model-name m --json >"$W/plan.json" || die "plan"
  # both servers share the GPU: each gets the same fraction; every other flag is the plan's / the seed's
  pbsvllm plan "$model" --probe-file "$W/probe-raw.json" --served-model-name m \
    --vllm-arg=--gpu-memory-utilization="$util" --json >"$W/plan-at-util.json" || die "plan at $util"
  local pa; pa="$(plan_args "$W/plan.json" "$util")"
  gpu_free_wait
  # shellcheck disable=SC2086
  start_server baseline 8101 "$model" --served-model-name m --enforce-eager --max-num-batched-tokens 2048 \
    --gpu-memory-utilization "$util"
  wait_ready 8101 "$SPID" "$W/server-baseline.log" 600 || { finish vs; return 1; }
  # shellcheck disable=SC2086
  start_server plan 8102 "$model" --served-model-name m $pa
  wait_ready 8102 "$SPID" "$W/server-plan.log" 900 || { stop_server baseline; finish vs; return 1; }
  bench_pair seed-vs-plan baseline 8101 plan 8102
  stop_server plan; stop_server baseline
  finish vs
}

# --- issue 18: DP=N against TP=N on one node ------------------------------------------

phase_dp_vs_tp() {
  W="$STAGE/work/dp-vs-tp"; rm -rf "$W"; mkdir -p "$W"
  local model util="${VS_UTIL:-0.45}"; model="$(MODEL_DIR qwen3-1.7b)"
  [ -f "$model/.ready" ] || phase_model qwen3-1.7b
  write_profile "$W"
  echo "$VLLM_VERSION" >"$W/vllm-version"
  pbsvllm plan "$model" --probe-file "$W/probe-raw.json" --served-model-name m --json >"$W/plan.json" || die "plan"
  pbsvllm plan "$model" --probe-file "$W/probe-raw.json" --served-model-name m >"$W/plan.txt" 2>&1
  pbsvllm plan "$model" --probe-file "$W/probe-raw.json" --served-model-name m \
    --vllm-arg=--gpu-memory-utilization="$util" --json >"$W/plan-at-util.json" || die "plan at $util"
  local pa; pa="$(plan_args "$W/plan.json" "$util")"
  say "node: $NG GPU(s), $IC; plan: $pa"
  gpu_free_wait
  export VS_LEVELS="${VS_LEVELS:-1:32 8:128 64:512 256:1024 512:2048}"
  # pair 1: the seed's original (TP=N, eager, 2048-token chunks) against the plan
  # shellcheck disable=SC2086
  start_server seed 8201 "$model" --served-model-name m --tensor-parallel-size "$NG" --enforce-eager \
    --max-num-batched-tokens 2048 --gpu-memory-utilization "$util"
  wait_ready 8201 "$SPID" "$W/server-seed.log" 900 || { finish dp-vs-tp; return 1; }
  # shellcheck disable=SC2086
  start_server plan 8202 "$model" --served-model-name m $pa
  wait_ready 8202 "$SPID" "$W/server-plan.log" 900 || { stop_server seed; finish dp-vs-tp; return 1; }
  bench_pair seed-vs-plan seed 8201 plan 8202
  stop_server seed
  # pair 2: TP=N without eager (vLLM's defaults otherwise) against the plan
  start_server tpn 8203 "$model" --served-model-name m --tensor-parallel-size "$NG" --gpu-memory-utilization "$util"
  wait_ready 8203 "$SPID" "$W/server-tpn.log" 900 || { stop_server plan; finish dp-vs-tp; return 1; }
  bench_pair tpn-vs-plan tpn 8203 plan 8202
  stop_server tpn; stop_server plan
  finish dp-vs-tp
}

[ "${BASH_SOURCE[0]}" = "$0" ] || return 0  # sourced (to try one function): define only
[ -d "$SITE" ] && write_wrappers
case "${1:-}" in
  stage) phase_stage "${2:?part number}" "${3:?number of parts}" ;;
  env) phase_env ;;
  model) phase_model "${2:-qwen2.5-1.5b}" ;;
  kv) phase_kv ;;
  vs) phase_vs ;;
  dp-vs-tp) phase_dp_vs_tp ;;
  *) echo "usage: gpu-run.sh stage K N | env | model [SHAPE] | kv | vs | dp-vs-tp" >&2; exit 2 ;;
esac
