"""The built-in catalog against real numbers: checkpoint sizes (tests/data/model-checkpoints.json)
and the KV-cache sizes real vLLM logged for each architecture family (tests/data/vllm-real/kv-families/)."""

import json
import re
from pathlib import Path

import pytest

from pbsvllm.catalog import catalog_row, catalog_rows, format_table
from pbsvllm.modelfacts import facts_from_catalog_entry, load_catalog, load_model_facts
from pbsvllm.plan import Hardware, Workload, make_plan
from tests.paths import DATA as _DATA

NO_CACHE = {"HF_HUB_CACHE": "/nonexistent-hf-cache"}
DATA = Path(_DATA)
CATALOG = load_catalog()
REAL = json.loads((DATA / "model-checkpoints.json").read_text())["models"]
CHECKED = sorted(n for n, r in REAL.items() if r["total_size"])
POLARIS = Hardware(4, 40, "nvlink", gpu_name="A100-SXM4-40GB")


def test_catalog_has_30_checked_models_across_the_families():
    assert len(CHECKED) >= 30
    assert set(REAL) == set(CATALOG)
    families = " ".join(str(CATALOG[n].get("family")) for n in CHECKED)
    for fam in ("dense", "moe", "mla", "sliding", "chunked", "hybrid", "vision", "fp8", "awq", "mxfp4"):
        assert fam in families, fam
    for n in CATALOG:
        assert CATALOG[n].get("source") and CATALOG[n].get("family") and CATALOG[n].get("released"), n


@pytest.mark.parametrize("name", CHECKED)
def test_estimate_from_config_alone_within_10_percent_of_the_real_checkpoint(name):
    real = REAL[name]
    assert real["source"] and CATALOG[name]["checkpoint_bytes"] == real["total_size"]
    assert CATALOG[name]["checkpoint_source"] == real["source"]
    facts = facts_from_catalog_entry(name, name, CATALOG[name])
    est = facts.estimated_weight_bytes
    assert abs(est / real["total_size"] - 1) <= 0.10, (name, est, real["total_size"])


def test_the_issue_case_qwen3_30b_a3b_from_config_json_alone(tmp_path):
    """No safetensors index on disk: the MoE model sizes right and plans on one Polaris node."""
    cfg = {k: v for k, v in CATALOG["Qwen/Qwen3-30B-A3B"].items()
           if k not in ("family", "released", "source", "verified", "checkpoint_bytes", "checkpoint_source")}
    cfg["architectures"] = [cfg.pop("architecture")]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    f = load_model_facts(str(tmp_path), {}, env=NO_CACHE)
    assert f.weight_source.startswith("estimated from the architecture")
    assert 56 < f.weight_gib < 58             # the real checkpoint: 61,064,245,248 bytes = 56.9 GiB (not ~435)
    assert f.moe and f.moe.experts == 128 and f.moe.expert_intermediate == 768 and f.moe.moe_layers == 48
    p = make_plan(f, Hardware(4, 40, "nvlink", nodes=4), Workload(), "0.11.0")
    assert p.nodes == 1 and p.fits_well
    # with the real index on disk, its total_size wins
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 61064245248}}))
    f2 = load_model_facts(str(tmp_path), {}, env=NO_CACHE)
    assert f2.weight_bytes == 61064245248 and "total_size" in f2.weight_source


def test_moe_mla_and_quantized_parts_are_counted():
    v3 = facts_from_catalog_entry("v3", "v3", CATALOG["deepseek-ai/DeepSeek-V3"])
    assert v3.moe.moe_layers == 58 and v3.moe.dense_layers == 3 and v3.moe.shared_intermediate == 2048
    assert v3.is_mla and v3.kv_bytes_per_token(1) == 61 * (512 + 64) * 2 and v3.kv_bytes_per_token(8) == 70272
    assert v3.quant_scheme.method == "fp8" and v3.quant_scheme.bytes_per_param == pytest.approx(1 + 4 / 128**2)
    oss = facts_from_catalog_entry("oss", "oss", CATALOG["openai/gpt-oss-20b"])
    assert oss.quant_scheme.method == "mxfp4" and "attn" in oss.quant_scheme.keep_16bit   # modules_to_not_convert
    assert {t.kind: t.layers for t in oss.kv_types} == {"full_attention": 12, "sliding_attention": 12}
    scout = facts_from_catalog_entry("s", "s", CATALOG["meta-llama/Llama-4-Scout-17B-16E-Instruct"])
    assert {t.kind: t.layers for t in scout.kv_types} == {"full_attention": 12, "chunked_attention": 36}
    assert scout.param_groups.vision > 0 and scout.moe.shared_intermediate == 8192
    g = facts_from_catalog_entry("g", "g", CATALOG["ibm-granite/granite-4.0-h-small"])
    lin = [t for t in g.kv_types if t.kind == "linear"][0]
    assert lin.layers == 36 and lin.mixer == "mamba2"
    assert lin.state_elems == (8192 + 2 * 128) * 3 + 128 * 64 * 128      # conv + SSM state per sequence
    nxt = facts_from_catalog_entry("n", "n", CATALOG["Qwen/Qwen3-Next-80B-A3B-Instruct"])
    assert [t.mixer for t in nxt.kv_types if t.kind == "linear"] == ["gated_deltanet"]


FAMILY_LOGS = sorted((DATA / "vllm-real" / "kv-families").glob("*.log"))
# KV block size of vLLM 0.32's CPU attention backends ("kv lcm block sizes 128" in the sliding-window
# logs; the MLA backend uses 16-token blocks): only the rounding to whole blocks depends on it
BLOCK = {"mla-deepseek-v2": 16}


def _logged_tokens(log: str):
    m = re.search(r"KV cache size: ([\d,]+) tokens", log)
    return int(m.group(1).replace(",", "")) if m else None


@pytest.mark.parametrize("log_path", FAMILY_LOGS, ids=[p.stem for p in FAMILY_LOGS])
def test_predicted_kv_tokens_match_what_real_vllm_logged(log_path):
    """Each family's tiny config served by real vLLM 0.32 (CPU, 1 GiB of KV cache, max-model-len
    2048, 2048 batched tokens): the planner's KV arithmetic gives the number vLLM logged."""
    name = log_path.stem
    logged = _logged_tokens(log_path.read_text())
    if logged is None:   # vLLM could not serve this family on the CPU: the .source says so
        assert "no KV cache line" in (log_path.with_suffix(".source")).read_text()
        pytest.xfail(f"real vLLM 0.32 (CPU) did not serve {name}; no figure to compare")
    f = load_model_facts(str(log_path.with_suffix("")), {}, env=NO_CACHE)
    predicted = f.vllm_kv_tokens(2**30, 2048, 2048, block=BLOCK.get(name, 128))
    assert predicted == logged, (name, predicted, logged)


def test_family_logs_cover_dense_moe_mla_sliding_and_hybrid():
    names = {p.stem for p in FAMILY_LOGS if _logged_tokens(p.read_text())}
    assert {"dense-llama", "moe-qwen3", "mla-deepseek-v2", "sliding-gemma3", "sliding-mistral",
            "hybrid-granitemoehybrid", "chunked-llama4", "hybrid-qwen3-next"} <= names


def test_catalog_view_rows_and_table():
    rows = catalog_rows(POLARIS, "0.11.0")
    assert len(rows) == len(CATALOG)
    table = format_table(rows, "polaris")
    assert "Qwen/Qwen3-30B-A3B" in table and "EP" in table and "does not fit one node" in table
    row = catalog_row("Qwen3-30B-A3B", POLARIS, "0.11.0")
    j = row.to_json()
    assert j["plan"]["expert_parallel"] and j["checkpoint_bytes"] == 61064245248
    assert abs(j["estimate_error"]) < 0.001 and j["moe"]["experts"] == 128
    with pytest.raises(Exception, match="not in the built-in catalog"):
        catalog_row("no/such-model", POLARIS, "0.11.0")


def test_models_example_runs_as_documented():
    import os
    import subprocess
    import sys

    from tests.paths import EXAMPLES
    r = subprocess.run(["bash", os.path.join(EXAMPLES, "models.sh")], capture_output=True, text=True,
                       env={**os.environ, "PYTHON": sys.executable}, timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Qwen/Qwen3-30B-A3B" in out and "--enable-expert-parallel" in out and "sliding_attention" in out
    assert "layout     TP=1 PP=1 DP=4 on 1 node(s)" in out                  # from config.json alone
    assert "key 'num_hidden_layers' must be >= 1, got -48" in out and "(exit 11)" in out
    assert "Traceback" not in out + r.stderr
