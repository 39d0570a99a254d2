#!/usr/bin/env bash
# Prepare, on a machine that reaches PyPI, everything a GPU machine without
# network needs to serve real vLLM with pbsvllm: the vLLM 0.24.0 wheel
# (trimmed to what a dense model on Hopper loads), the pinned packages the
# GPU image lacks (scripts/gpu-requirements.txt), a wheel of this checkout's
# pbsvllm and the scripts that run there. The bundle is cut into parts small
# enough for one transfer each (the device tool carries at most 64 MiB a call,
# the repository's own files included).
#
#   bash scripts/gpu-stage.sh [DEST]        # DEST default: .gpu in this repository
#
# Result:
#   DEST/kit/        gpu-run.sh, gpu_make_model.py, gpu_summary.py, pbsvllm-*.whl (carry on every call)
#   DEST/p1 .. pN/   bundle.partNN (carry one per call)
# and the device calls to make, printed last (see scripts/gpu-run.sh):
#   carry [DEST/kit, DEST/p1]:  bash DEST/kit/gpu-run.sh stage 1 N
#   ...
#   carry [DEST/kit, DEST/pN]:  bash DEST/kit/gpu-run.sh stage N N && bash DEST/kit/gpu-run.sh model
#   carry [DEST/kit]:           bash DEST/kit/gpu-run.sh kv     (then: vs; on a 4-GPU node: dp-vs-tp)
# Files written on the GPU machine outside the repository (/tmp/pbsvllm-gpu)
# last only while it stays warm (about 30 s after each call), so make the
# calls back to back.
#
# Environment: PBSVLLM_GPU_CACHE (downloads, default ~/.cache/pbsvllm-gpu),
# PBSVLLM_GPU_PART_BYTES (bytes per part, default 45000000: the 64 MiB a call carries also holds the repository, 13 MB on 2026-12-07), PYTHON (a
# Python with pip; any version: wheels are fetched for cp312).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DEST="${1:-$ROOT/.gpu}"
CACHE="${PBSVLLM_GPU_CACHE:-$HOME/.cache/pbsvllm-gpu}"
PART_BYTES="${PBSVLLM_GPU_PART_BYTES:-45000000}"
PY="${PYTHON:-python3}"
VLLM_VERSION=0.24.0
VLLM_WHEEL="vllm-$VLLM_VERSION-cp38-abi3-manylinux_2_28_x86_64.whl"
PLATFORM=(--only-binary=:all: --python-version 3.12 --implementation cp
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_31_x86_64
  --platform manylinux_2_34_x86_64)
# What vLLM's wheel holds that a dense model on an H100/H200 does not load
# (each is imported in a try/except or only for other GPUs or other models):
# FlashAttention 2 (Hopper runs FA3), the MoE kernels, the Rust front end,
# DeepGEMM, Blackwell FMHA, FlashMLA (MLA models), a picture in the docs.
TRIM=('vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so' 'vllm/_moe_C_stable_libtorch.abi3.so' 'vllm/vllm-rs'
  'vllm/third_party/deep_gemm/*' 'vllm/third_party/fmha_sm100/*' 'vllm/_flashmla_C.abi3.so'
  'vllm/_flashmla_extension_C.abi3.so' 'vllm/distributed/kv_transfer/disagg_prefill_workflow.jpg')

mkdir -p "$CACHE/whl" "$CACHE/deps"
pip_dl() { "$PY" -m pip download -q --disable-pip-version-check --no-deps "${PLATFORM[@]}" "$@"; }

echo "gpu-stage: vLLM $VLLM_VERSION wheel"
[ -s "$CACHE/whl/$VLLM_WHEEL" ] || pip_dl -d "$CACHE/whl" "vllm==$VLLM_VERSION"
if [ ! -s "$CACHE/vllm-trim-$VLLM_VERSION.zip" ]; then
  cp "$CACHE/whl/$VLLM_WHEEL" "$CACHE/vllm-trim.tmp.zip"
  zip -q -d "$CACHE/vllm-trim.tmp.zip" "${TRIM[@]}" >/dev/null
  mv "$CACHE/vllm-trim.tmp.zip" "$CACHE/vllm-trim-$VLLM_VERSION.zip"
fi

echo "gpu-stage: packages the GPU image lacks (scripts/gpu-requirements.txt)"
reqs="$(grep -v '^#' "$HERE/gpu-requirements.txt" | grep -v '^$')"
# shellcheck disable=SC2086  # one requirement per word
pip_dl -d "$CACHE/deps" $reqs
# keep exactly the pinned set (an older pin's wheel must not travel too)
want="$(echo "$reqs" | sed 's/==/-/' | tr 'A-Z.-' 'a-z__')"
for w in "$CACHE"/deps/*.whl; do
  stem="$(basename "$w" | cut -d- -f1-2 | tr 'A-Z.-' 'a-z__')"
  echo "$want" | grep -qx "$stem" || rm -f "$w"
done

echo "gpu-stage: pbsvllm wheel of this checkout"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
"$PY" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation -w "$T/kit" "$ROOT" >/dev/null

echo "gpu-stage: bundle and parts in $DEST"
mkdir -p "$T/bundle/deps"
cp "$CACHE/vllm-trim-$VLLM_VERSION.zip" "$T/bundle/vllm.zip"
cp "$CACHE"/deps/*.whl "$T/bundle/deps/"
(cd "$T/bundle" && sha256sum vllm.zip deps/*.whl >SHA256SUMS && tar cf "$T/bundle.tar" .)
rm -rf "$DEST"
mkdir -p "$DEST/kit"
split -b "$PART_BYTES" -d -a 2 "$T/bundle.tar" "$T/bundle.part"
n=0
for p in "$T"/bundle.part*; do
  n=$((n + 1))
  mkdir -p "$DEST/p$n"
  mv "$p" "$DEST/p$n/"
done
(cd "$T" && sha256sum bundle.tar | cut -d' ' -f1) >"$DEST/kit/bundle.sha256"
cp "$HERE/gpu-run.sh" "$HERE/gpu_make_model.py" "$HERE/gpu_summary.py" "$T"/kit/pbsvllm-*.whl "$DEST/kit/"
echo "$n" >"$DEST/kit/parts"
top="$(git -C "$(dirname "$DEST")" rev-parse --show-toplevel 2>/dev/null || echo "$ROOT")"
rel="${DEST#"$top"/}"
echo
echo "gpu-stage: ready: $n parts of at most $PART_BYTES bytes ($(du -sh "$DEST" | cut -f1) in all). Device calls, back to back:"
for i in $(seq 1 "$n"); do
  extra=""
  [ "$i" -eq "$n" ] && extra=" && bash $rel/kit/gpu-run.sh model"
  echo "  carry [\"$rel/kit\", \"$rel/p$i\"]:  bash $rel/kit/gpu-run.sh stage $i $n$extra"
done
echo "  carry [\"$rel/kit\"]:  bash $rel/kit/gpu-run.sh kv      # then: vs; on a 4-GPU node: dp-vs-tp"
