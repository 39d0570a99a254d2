"""Model facts offline: local dirs, the HF cache, text_config, safetensors index, catalog, KV bytes (docs/reference/kv-cache.md)."""

import json

import pytest

from pbsvllm.errors import ModelFactsError
from pbsvllm.modelfacts import load_catalog, load_model_facts, parse_params

NO_CACHE = {"HF_HUB_CACHE": "/nonexistent-hf-cache"}

TINY = {  # the tiny CPU model (docs/reference/vllm-cpu.md)
    "architectures": ["LlamaForCausalLM"], "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "intermediate_size": 256, "max_position_embeddings": 512, "vocab_size": 1024,
    "torch_dtype": "bfloat16", "tie_word_embeddings": True,
}


@pytest.mark.parametrize("model,bpt", [
    ("Qwen/Qwen2.5-7B-Instruct", 57344),
    ("meta-llama/Llama-3.1-8B-Instruct", 131072),
    ("meta-llama/Llama-3.1-8B", 131072),
    ("meta-llama/Llama-3.1-70B-Instruct", 327680),
    ("Qwen/Qwen3-VL-2B-Instruct", 114688),
])
def test_catalog_kv_bytes_match_reference_table(model, bpt):
    f = load_model_facts(model, {}, env=NO_CACHE)
    assert f.kv_bytes_per_token(1) == bpt
    assert f.source.startswith("built-in catalog")


def test_70b_per_gpu_at_tp4_and_pp():
    f = load_model_facts("meta-llama/Llama-3.1-70B-Instruct", {}, env=NO_CACHE)
    assert f.kv_bytes_per_token(4) == 81920          # docs/reference/kv-cache.md
    assert f.kv_bytes_per_token(4, 2) == 40960       # half the layers per PP stage
    assert f.kv_bytes_per_token(16) == 2 * 80 * 1 * 128 * 2  # KV heads replicated beyond 8
    assert f.kv_bytes_per_token(4, kv_dtype_bytes=1) == 40960  # fp8 KV cache


def test_mla_has_no_factor_two():
    f = load_model_facts("deepseek-ai/DeepSeek-V2-Lite-Chat", {}, env=NO_CACHE)
    assert f.is_mla
    assert f.kv_bytes_per_token(1) == 27 * (512 + 64) * 2
    assert f.kv_bytes_per_token(4) == f.kv_bytes_per_token(1)  # MLA latent cache is not split by TP


def test_every_catalog_entry_has_a_source_and_loads():
    cat = load_catalog()
    assert len(cat) >= 5
    for name, entry in cat.items():
        assert entry.get("source"), name
        f = load_model_facts(name, {}, env=NO_CACHE)
        assert f.weight_bytes > 0 and f.num_layers > 0


def test_local_dir_tiny_model_matches_real_vllm_run(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 4096)
    f = load_model_facts(str(tmp_path), {}, env=NO_CACHE)
    assert f.kv_bytes_per_token(1) == 512            # docs/reference/kv-cache.md: 1 GiB / 512 B = 2,097,152 tokens (logged)
    assert (2**30) // f.kv_bytes_per_token(1) == 2097152
    assert f.head_dim == 32 and f.local_path == str(tmp_path)
    assert f.weight_bytes == 4096 and "safetensors" in f.weight_source


def test_hf_cache_snapshot_vl_text_config_and_index(tmp_path):
    repo = tmp_path / "hub" / "models--Qwen--Qwen3-VL-2B-Instruct"
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    cfg = {
        "architectures": ["Qwen3VLForConditionalGeneration"], "dtype": "bfloat16",
        "text_config": {"hidden_size": 2048, "num_hidden_layers": 28, "num_attention_heads": 16,
                        "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 6144,
                        "vocab_size": 151936, "max_position_embeddings": 262144},
        "vision_config": {"depth": 24},
    }
    (snap / "config.json").write_text(json.dumps(cfg))
    (snap / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 4_255_000_000}}))
    f = load_model_facts("Qwen/Qwen3-VL-2B-Instruct", {}, env={"HF_HOME": str(tmp_path)})
    assert f.source == str(snap / "config.json")
    assert f.multimodal and f.dtype == "bfloat16"
    assert f.kv_bytes_per_token(1) == 114688
    assert f.weight_bytes == 4_255_000_000 and "total_size" in f.weight_source
    # HF_HUB_CACHE wins over HF_HOME
    f2 = load_model_facts("Qwen/Qwen3-VL-2B-Instruct", {}, env={"HF_HUB_CACHE": str(tmp_path / "none"),
                                                               "HF_HOME": str(tmp_path)})
    assert f2.source.startswith("built-in catalog")


def test_unknown_model_says_which_override(tmp_path):
    with pytest.raises(ModelFactsError) as e:
        load_model_facts("someorg/NoSuchModel-13B", {}, env=NO_CACHE)
    assert "--params" in str(e.value) and "someorg/NoSuchModel-13B" in str(e.value)
    f = load_model_facts("someorg/NoSuchModel-13B", {"params": "13B"}, env=NO_CACHE)
    assert f.params == 13e9 and f.weight_bytes == 26e9
    assert "--params" in f.source


def test_overrides():
    f = load_model_facts("meta-llama/Llama-3.1-8B-Instruct", {"quantization": "fp8"}, env=NO_CACHE)
    # vLLM's online fp8 quantizes the linear layers only: 6.98e9 x 1 byte + embeddings and LM head in 16 bits
    assert f.weight_bytes == 6_979_321_856 + 2 * (2 * 525_336_576 + 266_240) and f.quantization == "fp8"
    f = load_model_facts("meta-llama/Llama-3.1-8B-Instruct", {"params": "7B", "dtype": "float16"}, env=NO_CACHE)
    assert f.weight_bytes == 14e9
    with pytest.raises(ModelFactsError, match="--dtype"):
        load_model_facts("meta-llama/Llama-3.1-8B-Instruct", {"dtype": "int3"}, env=NO_CACHE)
    with pytest.raises(ModelFactsError, match="unknown model-facts override"):
        load_model_facts("meta-llama/Llama-3.1-8B-Instruct", {"layers": 3}, env=NO_CACHE)


@pytest.mark.parametrize("text,value", [("7B", 7e9), ("1.5b", 1.5e9), ("500M", 5e8), ("7.6e9", 7.6e9), (70, 70e9)])
def test_parse_params(text, value):
    assert parse_params(text) == pytest.approx(value)


def test_bad_config_json_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelFactsError, match="config.json"):
        load_model_facts(str(tmp_path), {}, env=NO_CACHE)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "x"}))
    with pytest.raises(ModelFactsError, match="hidden_size"):
        load_model_facts(str(tmp_path), {}, env=NO_CACHE)


def test_float32_checkpoint_is_served_in_16_bits(tmp_path):
    cfg = dict(TINY, torch_dtype="float32")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 8000)
    f = load_model_facts(str(tmp_path), {}, env=NO_CACHE)
    assert f.weight_bytes == 4000 and "float32" in f.weight_source
    assert f.kv_bytes_per_token(1) == 512
