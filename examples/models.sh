#!/usr/bin/env bash
# The built-in model catalog and what the planner does with today's architectures (offline).
#   bash examples/models.sh
# Nothing is downloaded or submitted: the numbers come from pbsvllm/data/catalog.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export PBSVLLM_HOME="$(mktemp -d)/pbsvllm"
export PBSVLLM_CONFIG="$(mktemp -d)/config.toml"
: > "$PBSVLLM_CONFIG"
export HF_HUB_CACHE=/nonexistent            # plan from the catalog, as before a download
pv() { "$PY" -m pbsvllm "$@"; }

echo "## every MoE model on a Polaris node (4x A100-40GB): checkpoint vs estimate, and the plan"
pv models --family moe --profile polaris

echo; echo "## one model: its numbers, their sources, and the plan with its reasons"
pv models Qwen/Qwen3-30B-A3B --profile polaris

echo; echo "## the same as JSON: the expert-parallel layout and the per-layer-type KV detail"
pv models google/gemma-3-27b-it --profile polaris --json |
  "$PY" -c 'import json,sys; j=json.load(sys.stdin); p=j["plan"] or {}; print(json.dumps({"estimate_error": j["estimate_error"], "layout": [p.get("tensor_parallel_size"), p.get("data_parallel_size"), p.get("expert_parallel")], "kv_cache_layers": p.get("kv_cache_layers")}, indent=1))'

echo; echo "## plan for a MoE model from its config.json alone (no safetensors index on disk)"
dir="$(mktemp -d)/Qwen3-30B-A3B"; mkdir -p "$dir"
cat > "$dir/config.json" <<'JSON'
{"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 2048, "num_hidden_layers": 48,
 "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 6144,
 "moe_intermediate_size": 768, "num_experts": 128, "num_experts_per_tok": 8, "vocab_size": 151936,
 "max_position_embeddings": 40960, "tie_word_embeddings": false, "torch_dtype": "bfloat16"}
JSON
pv plan "$dir" --profile polaris | head -6

echo; echo "## a bad number in a config.json is one line naming the file and key"
sed -i 's/"num_hidden_layers": 48/"num_hidden_layers": -48/' "$dir/config.json"
pv plan "$dir" --profile polaris 2>&1 || echo "(exit $?)"
