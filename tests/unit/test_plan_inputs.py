"""Bad model and plan inputs get one clear line naming the file and key (or the option), never a
traceback and never a pass-through to vLLM (issue 11, class 6); expert-parallel layouts for MoE."""

import json
import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbsvllm.errors import ModelFactsError, PlanError
from pbsvllm.modelarch import quant_scheme
from pbsvllm.modelfacts import load_model_facts, parse_params
from pbsvllm.plan import Hardware, Workload, make_plan

NO_CACHE = {"HF_HUB_CACHE": "/nonexistent-hf-cache"}
TINY = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 256,
        "max_position_embeddings": 512, "vocab_size": 1024, "torch_dtype": "bfloat16"}
POLARIS = Hardware(4, 40, "nvlink", gpu_name="A100-SXM4-40GB")


def _facts_with(tmp_path, **changes):
    cfg = dict(TINY, **changes)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    return load_model_facts(str(tmp_path), {}, env=NO_CACHE)


@pytest.mark.parametrize("key", ["num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
                                 "vocab_size", "max_position_embeddings", "intermediate_size", "head_dim"])
@pytest.mark.parametrize("value,words", [
    ("abc", "must be a number"), (True, "must be a number"), ([4], "must be a number"), ({"a": 1}, "must be a number"),
    (-3, "must be >="), (float("nan"), "finite"), (float("inf"), "finite"), (1e15, "absurdly large"),
    (2.5, "whole number"),
])
def test_bad_architecture_numbers_name_the_file_and_key(tmp_path, key, value, words):
    with pytest.raises(ModelFactsError) as e:
        _facts_with(tmp_path, **{key: value})
    msg = str(e.value)
    assert str(tmp_path / "config.json") in msg and f"'{key}'" in msg and words in msg
    assert "\n" not in msg


def test_bad_numbers_inside_text_config_and_quantization_config(tmp_path):
    cfg = {"architectures": ["X"], "text_config": dict(TINY, num_attention_heads=-1)}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFactsError, match=r"'text_config.num_attention_heads' must be >= 1"):
        load_model_facts(str(tmp_path), {}, env=NO_CACHE)
    with pytest.raises(ModelFactsError, match=r"'quantization_config.bits' must be a number"):
        _facts_with(tmp_path, quantization_config={"quant_method": "awq", "bits": "four"})
    with pytest.raises(ModelFactsError, match="quant_method 'magic4' is not known"):
        _facts_with(tmp_path, quantization_config={"quant_method": "magic4"})
    with pytest.raises(ModelFactsError, match="'layer_types' has 1 entries for 2 layers"):
        _facts_with(tmp_path, layer_types=["full_attention"])
    with pytest.raises(ModelFactsError, match="unknown layer type"):
        _facts_with(tmp_path, layer_types=["full_attention", "warp_attention"])
    with pytest.raises(ModelFactsError, match="'num_experts' is absurdly large"):
        _facts_with(tmp_path, num_experts=10**7)
    with pytest.raises(ModelFactsError, match="torch_dtype"):
        _facts_with(tmp_path, torch_dtype="int3")


def test_binary_huge_and_deeply_nested_config_files(tmp_path):
    (tmp_path / "config.json").write_bytes(b"\xff\xfe\x00binary\x00")
    with pytest.raises(ModelFactsError, match="not UTF-8|cannot read"):
        load_model_facts(str(tmp_path), {}, env=NO_CACHE)
    (tmp_path / "config.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ModelFactsError, match="cannot read|not a JSON object"):
        load_model_facts(str(tmp_path), {}, env=NO_CACHE)
    (tmp_path / "config.json").write_text('{"hidden_size": NaN, "num_hidden_layers": 2, "num_attention_heads": 4}')
    with pytest.raises(ModelFactsError, match="'hidden_size' must be a finite number"):
        load_model_facts(str(tmp_path), {}, env=NO_CACHE)


@pytest.mark.parametrize("text", ["1e400B", "inf", "nan", "0", "-7B", "1e20", "7X", ""])
def test_params_out_of_range_or_garbage(text):
    with pytest.raises(ModelFactsError, match="--params"):
        parse_params(text)


def test_model_names_that_would_become_flags_or_break_lines():
    for bad in ("-x", "--max-model-len", "", "  ", "org/model\nnext", "a\x00b"):
        with pytest.raises(ModelFactsError):
            load_model_facts(bad, {"params": "7B"}, env=NO_CACHE)
    f = load_model_facts("org/fine", {"params": "7B"}, env=NO_CACHE)
    with pytest.raises(PlanError, match="starts with '-'"):
        make_plan(f, POLARIS, Workload(), "0.11.0", model_arg="-rf")


@pytest.mark.parametrize("wl", [Workload(max_model_len=-5), Workload(max_model_len=0), Workload(concurrency=-1),
                                Workload(prompt_len=10**12), Workload(kv_cache_dtype="fp3")])
def test_bad_workload_never_reaches_vllm(wl):
    f = load_model_facts("meta-llama/Llama-3.1-8B-Instruct", {}, env=NO_CACHE)
    with pytest.raises(PlanError, match="--max-model-len|--concurrency|--prompt-len|--kv-cache-dtype"):
        make_plan(f, POLARIS, wl, "0.11.0")


@pytest.mark.parametrize("hw", [Hardware(4, math.inf, "nvlink"), Hardware(4, math.nan, "nvlink"),
                                Hardware(4, 1e9, "nvlink"), Hardware(4, 40, "nvlink", nodes=0)])
def test_bad_hardware_is_one_line(hw):
    f = load_model_facts("meta-llama/Llama-3.1-8B-Instruct", {}, env=NO_CACHE)
    with pytest.raises(PlanError, match="--gpu-memory|--nodes"):
        make_plan(f, hw, Workload(), "0.11.0")


def test_user_flag_values_checked():
    f = load_model_facts("meta-llama/Llama-3.1-8B-Instruct", {}, env=NO_CACHE)
    for args, words in ((["--max-model-len", "-5"], "must be between 1"), (["--max-num-seqs", "x"], "integer"),
                        (["--gpu-memory-utilization", "nan"], "fraction"),
                        (["--gpu-memory-utilization", "2"], "fraction")):
        with pytest.raises(PlanError, match=words):
            make_plan(f, POLARIS, Workload(), "0.11.0", args)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pbsvllm", *args], capture_output=True, text=True,
                          env={"HF_HUB_CACHE": "/nonexistent", "PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})


@pytest.mark.parametrize("args,code,words", [
    (["plan", "meta-llama/Llama-3.1-8B-Instruct", "--gpu-memory", "inf"], 2, "--gpu-memory"),
    (["plan", "meta-llama/Llama-3.1-8B-Instruct", "--gpu-memory", "nan"], 2, "--gpu-memory"),
    (["plan", "org/x", "--params", "1e400B"], 11, "--params"),
    (["plan", "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "-5"], 2, "--max-model-len"),
    (["plan", "meta-llama/Llama-3.1-8B-Instruct", "--vllm-arg", "--max-model-len -5"], 12, "--max-model-len"),
    (["plan", "--params", "7B", "--", "-evil"], 11, "starts with '-'"),
    (["plan", "meta-llama/Llama-3.1-8B-Instruct", "--num-layers", "0"], 2, "--num-layers"),
    (["models", "no/such"], 11, "not in the built-in catalog"),
])
def test_cli_bad_values_one_line_no_traceback(args, code, words):
    r = _cli(*args)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert words in r.stderr and "Traceback" not in r.stderr
    assert "vllm serve" not in r.stdout


# ---------------------------------------------------------------------------
# expert parallelism for MoE
# ---------------------------------------------------------------------------

def _plan(model, hw, version="0.11.0", user=()):
    return make_plan(load_model_facts(model, {}, env=NO_CACHE), hw, Workload(), version, list(user))


def test_moe_with_dp_ranks_shards_the_experts_and_takes_expert_parallel():
    p = _plan("Qwen/Qwen3-30B-A3B", POLARIS)
    assert p.expert_parallel and "--enable-expert-parallel" in p.vllm_args
    assert (p.tensor_parallel_size, p.data_parallel_size) == (1, 4)     # TP=2 if every replica held every expert
    why = p.reasons["--enable-expert-parallel"]
    assert "shards them over the 4 GPUs anyway" in why and "all-to-all" in why and "all-gathering" in why
    assert p.memory["weights_per_gpu_gib"] < 17                          # 13.5 GiB of experts + 2.9 of the rest
    assert p.to_json()["expert_parallel"] is True
    big = _plan("Qwen/Qwen3-30B-A3B", Hardware(4, 80, "nvlink"))
    assert big.expert_parallel and big.memory["weights_per_gpu_gib"] < 17


def test_moe_without_dp_ranks_has_no_expert_parallel():
    p = _plan("Qwen/Qwen3-30B-A3B", POLARIS, version="0.6.3")          # no --data-parallel-size: separate servers
    assert not p.expert_parallel and p.data_parallel_mode == "replicas" and p.tensor_parallel_size == 2
    assert "has no --data-parallel-size" in p.decisions["expert_parallel"]
    assert "--enable-expert-parallel" not in p.vllm_args
    one = _plan("Qwen/Qwen3-30B-A3B", POLARIS, user=["--tensor-parallel-size", "4"])
    assert not one.expert_parallel and one.data_parallel_size == 1
    assert "tensor-parallel style" in one.decisions["expert_parallel"]


def test_moe_expert_parallel_over_pcie_says_so():
    p = _plan("Qwen/Qwen3-30B-A3B", Hardware(4, 40, "pcie"))
    assert p.expert_parallel and "PCIe" in p.reasons["--enable-expert-parallel"]


def test_mla_moe_prefers_data_parallel_attention():
    p = _plan("deepseek-ai/DeepSeek-V2-Lite-Chat", Hardware(4, 24, "nvlink"))
    assert p.expert_parallel and p.tensor_parallel_size == 1
    assert "MLA latent" in p.reasons["--enable-expert-parallel"]


def test_user_expert_parallel_wins():
    p = _plan("Qwen/Qwen3-30B-A3B", Hardware(4, 80, "nvlink"), user=["--enable-expert-parallel"])
    assert p.expert_parallel and p.vllm_args.count("--enable-expert-parallel") == 1
    assert p.arg("--enable-expert-parallel").source == "user"


def test_plan_json_keeps_keys_and_adds_per_layer_type_detail():
    p = _plan("google/gemma-3-27b-it", Hardware(4, 80, "nvlink"))
    j = p.to_json()
    for k in ("tensor_parallel_size", "vllm_args", "kv_cache_tokens", "max_concurrency", "reasons", "memory",
              "decisions", "alternatives", "kv_bytes_per_token"):
        assert k in j
    layers = {lay["kind"]: lay for lay in j["kv_cache_layers"]}
    assert layers["sliding_attention"]["layers"] == 52 and layers["sliding_attention"]["window"] == 1024
    assert layers["sliding_attention"]["tokens_held_per_request"] == 1024 - 1 + p.max_num_batched_tokens
    assert layers["full_attention"]["tokens_held_per_request"] == p.max_model_len
    hybrid = _plan("ibm-granite/granite-4.0-h-small", Hardware(4, 80, "nvlink")).to_json()
    lin = [lay for lay in hybrid["kv_cache_layers"] if lay["kind"] == "linear"][0]
    assert lin["mixer"] == "mamba2" and lin["state_bytes_per_sequence_per_layer"] > 0


@pytest.mark.parametrize("qc,method,per", [
    ({"quant_method": "fp8", "weight_block_size": [128, 128]}, "fp8", 1 + 4 / 16384),
    ({"quant_method": "fp8"}, "fp8", 1.0),
    ({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True}, "awq", 0.5 + 2.5 / 128),
    ({"quant_method": "gptq", "bits": 4, "group_size": 128}, "gptq", 0.5 + 2.5 / 128),
    ({"quant_method": "gptq", "bits": 8, "group_size": -1}, "gptq", 1.0),
    ({"quant_method": "mxfp4"}, "mxfp4", 0.5 + 1 / 32),
    ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, "nvfp4", 0.5 + 1 / 16),
    ({"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized",
      "config_groups": {"g": {"weights": {"num_bits": 4, "type": "float", "group_size": 16}}}}, "nvfp4", 0.5625),
    ({"quant_method": "compressed-tensors", "format": "pack-quantized",
      "config_groups": {"g": {"weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128,
                                          "symmetric": True}}}}, "compressed-tensors-w4", 0.5 + 2 / 128),
    ({"quant_method": "compressed-tensors", "format": "float-quantized",
      "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float", "strategy": "channel"}}}}, "fp8", 1.0),
])
def test_quantization_schemes(qc, method, per):
    s = quant_scheme(qc, "config.json")
    assert s.method == method and s.bytes_per_param == pytest.approx(per)


def test_ignore_lists_keep_modules_in_16_bits():
    s = quant_scheme({"quant_method": "compressed-tensors", "ignore": ["lm_head", "re:.*self_attn.*"],
                      "config_groups": {"g": {"weights": {"num_bits": 4, "type": "int", "group_size": 128}}}}, "c")
    assert "attn" in s.keep_16bit


def test_unknown_quantization_needs_a_weight_size(tmp_path):
    cfg = dict(TINY, quantization_config={"quant_method": "magic4"})
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFactsError, match="--weight-gib"):
        load_model_facts(str(tmp_path), {}, env=NO_CACHE)
    f = load_model_facts(str(tmp_path), {"weight_gib": 3}, env=NO_CACHE)
    assert f.weight_bytes == 3 * 2**30 and f.weight_source == "--weight-gib"
    r = _cli("plan", str(tmp_path), "--weight-gib", "nan")
    assert r.returncode == 2 and "--weight-gib" in r.stderr and "Traceback" not in r.stderr


def test_broken_safetensors_index_is_ignored(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    for meta in ('{"metadata": {"total_size": "abc"}}', '{"metadata": {"total_size": -5}}', '[1, 2]',
                 '{"metadata": {"total_size": 1e30}}', '{"metadata": "x"}', "not json"):
        (tmp_path / "model.safetensors.index.json").write_text(meta)
        f = load_model_facts(str(tmp_path), {}, env=NO_CACHE)
        assert f.weight_source.startswith("estimated from the architecture"), meta


KEYS = ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
        "intermediate_size", "vocab_size", "max_position_embeddings", "num_experts", "n_routed_experts",
        "num_local_experts", "num_experts_per_tok", "moe_intermediate_size", "first_k_dense_replace",
        "kv_lora_rank", "qk_rope_head_dim", "q_lora_rank", "sliding_window", "sliding_window_pattern",
        "layer_types", "mlp_only_layers", "quantization_config", "vision_config", "text_config",
        "tie_word_embeddings", "torch_dtype", "linear_num_value_heads", "mamba_n_heads", "hybrid_override_pattern",
        "attention_chunk_size", "no_rope_layers", "full_attention_interval", "shared_expert_intermediate_size"]
VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10, 10**7), st.floats(allow_nan=True, allow_infinity=True),
              st.sampled_from(["", "abc", "bfloat16", "full_attention", "sliding_attention", "mamba", "fp8", "awq",
                               "M*-", "linear_attention"])),
    lambda inner: st.one_of(st.lists(inner, max_size=6),
                            st.dictionaries(st.sampled_from(KEYS + ["quant_method", "bits", "group_size"]), inner,
                                            max_size=5)),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(cfg=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=12))
def test_any_config_json_gives_facts_or_one_clear_error(tmp_path_factory, cfg):
    """Random config.json contents: facts, or a ModelFactsError naming the file; never another exception."""
    d = tmp_path_factory.mktemp("cfg")
    base = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    (d / "config.json").write_text(json.dumps({**base, **cfg}))
    try:
        f = load_model_facts(str(d), {}, env=NO_CACHE)
    except ModelFactsError as exc:
        assert str(d) in str(exc) and "\n" not in str(exc)
        return
    assert f.weight_bytes >= 0 and f.kv_bytes_per_token(1) >= 0
    try:
        make_plan(f, POLARIS, Workload(), "0.11.0")
    except (PlanError, ModelFactsError):
        pass
