"""The planner: the issue's acceptance cases, version-aware flags, user overrides, the CPU case."""

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbsvllm.errors import FlagError, PlanError
from pbsvllm.flags import check_user_args, deprecations, is_known, parse_version
from pbsvllm.modelfacts import load_catalog, load_model_facts
from pbsvllm.plan import Hardware, Workload, make_plan

NO_CACHE = {"HF_HUB_CACHE": "/nonexistent-hf-cache"}
POLARIS = Hardware(gpus_per_node=4, gpu_memory_gib=40, interconnect="nvlink", gpu_name="A100-SXM4-40GB")
H200x8 = Hardware(gpus_per_node=8, gpu_memory_gib=140, interconnect="nvlink", gpu_name="H200")
PCIE4 = Hardware(gpus_per_node=4, gpu_memory_gib=24, interconnect="pcie", gpu_name="L4")
STABLE_KEYS = ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "nodes", "gpus_per_node",
               "vllm_args", "kv_cache_tokens", "max_concurrency", "reasons")


def facts(model, **ov):
    return load_model_facts(model, ov, env=NO_CACHE)


def plan(model, hw=POLARIS, version="0.11.0", user=(), wl=None, **kw):
    return make_plan(facts(model), hw, wl or Workload(), version, user, **kw)


def argval(p, flag):
    a = p.arg(flag)
    return None if a is None else (a.values[0] if a.values else True)


def test_seed_case_qwen3_vl_2b_on_4_gpus():
    p = plan("Qwen/Qwen3-VL-2B-Instruct", served_model_name="qwen3-vl", host="0.0.0.0", port=8005)
    assert (p.tensor_parallel_size, p.data_parallel_size, p.pipeline_parallel_size, p.nodes) == (1, 4, 1, 1)
    args = p.vllm_args
    assert "--enforce-eager" not in args
    assert int(argval(p, "--max-num-seqs")) >= 256
    assert int(argval(p, "--max-num-batched-tokens")) >= 8192
    assert argval(p, "--data-parallel-size") == "4" and argval(p, "--tensor-parallel-size") == "1"
    assert args[0] == "Qwen/Qwen3-VL-2B-Instruct"
    assert args[args.index("--served-model-name") + 1] == "qwen3-vl"
    r = p.reasons
    assert "TP=1" in r["--tensor-parallel-size"] and "all-reduce" in r["--tensor-parallel-size"]
    assert "replicas" in r["--data-parallel-size"]
    assert "KV cache" in r["--max-num-seqs"] and "0.92" in r["--gpu-memory-utilization"]
    for flag in args:
        if flag.startswith("--"):
            assert r.get(flag), f"no reason for {flag}"
    j = p.to_json()
    for k in STABLE_KEYS:
        assert k in j
    assert j["vllm_args"] == args and isinstance(j["reasons"], dict)
    assert j["kv_cache_tokens"] > 100_000 and p.fits_well
    json.dumps(j)  # serialisable


def test_seed_case_on_pcie_node_too():
    p = plan("Qwen/Qwen3-VL-2B-Instruct", hw=PCIE4)
    assert (p.tensor_parallel_size, p.data_parallel_size) == (1, 4)
    assert "--disable-custom-all-reduce" not in p.vllm_args


def test_api_server_count_1_with_dp_on_new_vllm():
    p = plan("Qwen/Qwen3-VL-2B-Instruct", version="0.32.0")
    assert argval(p, "--api-server-count") == "1"
    assert "stats" in p.reasons["--api-server-count"]
    one = plan("Qwen/Qwen3-VL-2B-Instruct", version="0.32.0", user=["--tensor-parallel-size", "4"])
    assert one.data_parallel_size == 1 and one.arg("--api-server-count") is None


@pytest.mark.parametrize("model", ["Qwen/Qwen2.5-7B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"])
def test_7_8b_on_4x_a100_40gb_is_dp4(model):
    p = plan(model)
    assert (p.tensor_parallel_size, p.data_parallel_size) == (1, 4)
    assert p.fits_well


def test_70b_on_4x_a100_40gb_does_not_fit_and_proposes_layouts():
    with pytest.raises(PlanError) as e:
        plan("meta-llama/Llama-3.1-70B-Instruct")
    msg = str(e.value)
    assert "does not fit one node" in msg
    assert "2 nodes: TP=4 PP=2" in msg and "--nodes 2" in msg
    assert "fp8" in msg
    # allowed two nodes: the proposed layout is planned
    p = plan("meta-llama/Llama-3.1-70B-Instruct", hw=Hardware(4, 40, "nvlink", nodes=2))
    assert (p.tensor_parallel_size, p.pipeline_parallel_size, p.nodes, p.data_parallel_size) == (4, 2, 2, 1)
    assert argval(p, "--distributed-executor-backend") == "ray"
    assert "cannot hold" in p.decisions["nodes"]


def test_70b_short_context_fits_one_node_but_not_well():
    p = plan("meta-llama/Llama-3.1-70B-Instruct", wl=Workload(max_model_len=8192))
    assert p.tensor_parallel_size == 4 and p.nodes == 1
    assert not p.fits_well
    assert any("does not fit one node well" in w for w in p.warnings)
    assert any(a.get("pipeline_parallel_size") == 2 for a in p.alternatives)


def test_8x_h200():
    small = plan("meta-llama/Llama-3.1-8B-Instruct", hw=H200x8)
    assert (small.tensor_parallel_size, small.data_parallel_size) == (1, 8)
    assert argval(small, "--gpu-memory-utilization") == "0.95"
    assert int(argval(small, "--max-num-batched-tokens")) == 16384
    assert int(argval(small, "--max-num-seqs")) == 1024
    big = plan("meta-llama/Llama-3.1-70B-Instruct", hw=H200x8)
    assert big.tensor_parallel_size == 2 and big.data_parallel_size == 4 and big.fits_well
    assert "TP=1 would leave" in big.reasons["--tensor-parallel-size"]


def test_pcie_node_avoids_tp_unless_needed():
    nv = plan("meta-llama/Llama-3.1-8B-Instruct", hw=Hardware(4, 24, "nvlink"))
    pc = plan("meta-llama/Llama-3.1-8B-Instruct", hw=PCIE4)
    assert nv.tensor_parallel_size == 2          # NVLink: TP=2 for a KV cache that holds the target
    assert pc.tensor_parallel_size == 1 and pc.data_parallel_size == 4   # PCIe: TP=1 still fits
    assert any("does not fit one node well" in w for w in pc.warnings)
    # a model that needs TP on PCIe gets it, and custom all-reduce is switched off explicitly
    big = plan("meta-llama/Llama-3.1-70B-Instruct", hw=Hardware(4, 48, "pcie"))
    assert big.tensor_parallel_size == 4
    assert "--disable-custom-all-reduce" in big.vllm_args
    assert "over PCIe only because the model needs it" in big.reasons["--tensor-parallel-size"]


def test_never_enforce_eager_from_the_planner():
    for model in ("Qwen/Qwen3-VL-2B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"):
        for hw in (POLARIS, H200x8, PCIE4):
            for v in ("0.6.3", "0.9.2", "0.11.0", "0.33.0"):
                try:
                    p = plan(model, hw=hw, version=v)
                except PlanError:
                    continue
                assert "--enforce-eager" not in p.vllm_args


def test_user_eager_is_kept_with_a_warning():
    p = plan("Qwen/Qwen3-VL-2B-Instruct", user=["--enforce-eager"])
    assert "--enforce-eager" in p.vllm_args
    assert any("CUDA graphs" in w for w in p.warnings)
    assert p.arg("--enforce-eager").source == "user"


def test_user_overrides_win_and_steer_the_plan():
    p = plan("Qwen/Qwen3-VL-2B-Instruct", user=["--max-num-seqs=512", "--tensor-parallel-size", "2"])
    assert argval(p, "--max-num-seqs") == "512"
    assert "set by you" in p.reasons["--max-num-seqs"] and "planner suggested" in p.reasons["--max-num-seqs"]
    assert (p.tensor_parallel_size, p.data_parallel_size) == (2, 2)
    assert p.vllm_args.count("--max-num-seqs") == 1


def test_version_awareness():
    old = plan("Qwen/Qwen3-VL-2B-Instruct", version="0.6.3")
    assert old.data_parallel_mode == "replicas" and "--data-parallel-size" not in old.vllm_args
    assert "--disable-log-requests" in old.vllm_args and "--enable-chunked-prefill" in old.vllm_args
    new = plan("Qwen/Qwen3-VL-2B-Instruct", version="0.17.0")
    assert "--disable-log-requests" not in new.vllm_args
    with pytest.raises(FlagError) as e:
        plan("Qwen/Qwen3-VL-2B-Instruct", version="0.17.0", user=["--disable-log-requests"])
    assert "--enable-log-requests" in str(e.value) and "0.17" in str(e.value)
    with pytest.raises(FlagError, match="--speculative-config"):
        plan("Qwen/Qwen3-VL-2B-Instruct", version="0.8.5", user=["--speculative-model", "x"])
    with pytest.raises(FlagError, match="needs vLLM >= 0.8.5"):
        plan("Qwen/Qwen3-VL-2B-Instruct", version="0.7.3", user=["--data-parallel-size", "2"])


def test_unknown_and_forbidden_flags():
    with pytest.raises(FlagError) as e:
        check_user_args(["--max-num-seq", "4"], "0.11.0")
    assert "--max-num-seqs" in str(e.value) and "--allow-unknown-vllm-args" in str(e.value)
    assert check_user_args(["--brand-new-flag", "1"], "0.11.0", allow_unknown=True) == [("--brand-new-flag", ["1"])]
    with pytest.raises(FlagError, match="api-key-file"):
        check_user_args(["--api-key", "secret"], "0.11.0")
    with pytest.raises(FlagError, match="needs a value"):
        check_user_args(["--max-num-seqs"], "0.11.0")
    assert check_user_args(["-tp", "2"], "0.11.0") == [("--tensor-parallel-size", ["2"])]


def test_deprecations_for_doctor():
    d = deprecations(["--disable-log-requests", "--tensor-parallel-size"], "0.11.0")
    assert d == [{"flag": "--disable-log-requests", "status": "deprecated", "since": "0.10.2",
                  "replacement": d[0]["replacement"]}]
    assert deprecations(["--speculative-model"], "0.9.2")[0]["status"] == "removed"
    assert parse_version("0.6.3.post1") == (0, 6, 3) and parse_version("0.32.0+cpu") == (0, 32, 0)


def test_workload_hints_size_the_plan():
    p = plan("meta-llama/Llama-3.1-8B-Instruct", wl=Workload(prompt_len=3000, output_len=1000, concurrency=2000))
    assert p.max_model_len == 5120                 # 4000 x 1.25 rounded to 1024
    assert int(argval(p, "--max-num-seqs")) >= 2000 // 4
    assert p.expected_request_tokens == 4000


def test_cpu_plan_tiny_model(tmp_path):
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 128, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 256,
           "max_position_embeddings": 512, "vocab_size": 1024, "torch_dtype": "bfloat16"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    f = load_model_facts(str(tmp_path), {}, env=NO_CACHE)
    hw = Hardware(gpus_per_node=0, gpu_memory_gib=0, interconnect="none", device="cpu", cpu_kvcache_gib=1)
    p = make_plan(f, hw, Workload(max_model_len=256), "0.32.0", ["--enforce-eager"], served_model_name="tiny",
                  host="127.0.0.1", port=8011)
    assert (p.tensor_parallel_size, p.data_parallel_size, p.pipeline_parallel_size) == (1, 1, 1)
    assert p.kv_cache_tokens == 2_097_152          # exactly what real vLLM logged (docs/reference/kv-cache.md)
    assert "CPU" in p.reasons["--tensor-parallel-size"]
    assert "--gpu-memory-utilization" not in p.vllm_args and "--data-parallel-size" not in p.vllm_args
    assert p.vllm_args[:2] == [str(tmp_path), "--served-model-name"]
    assert argval(p, "--max-model-len") == "256" and "--enforce-eager" in p.vllm_args
    with pytest.raises(PlanError, match="VLLM_CPU_KVCACHE_SPACE"):
        make_plan(load_model_facts("meta-llama/Llama-3.1-8B-Instruct", {}, env=NO_CACHE),
                  Hardware(0, 0, "none", device="cpu", cpu_kvcache_gib=1), Workload(), "0.32.0")


def test_plan_module_is_importable_without_jinja2():
    code = "import sys, pbsvllm.plan, pbsvllm.flags, pbsvllm.modelfacts; print('jinja2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def run_cli(*args, env_extra=None):
    env = dict(os.environ, PBSVLLM_CONFIG=os.devnull, HF_HUB_CACHE="/nonexistent-hf-cache")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "pbsvllm", *args], capture_output=True, text=True, env=env)


def test_plan_command_json_and_table():
    r = run_cli("plan", "Qwen/Qwen3-VL-2B-Instruct", "--profile", "polaris", "--json")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    for k in STABLE_KEYS:
        assert k in j
    assert (j["tensor_parallel_size"], j["data_parallel_size"]) == (1, 4)
    t = run_cli("plan", "Qwen/Qwen3-VL-2B-Instruct", "--profile", "polaris")
    assert t.returncode == 0 and "--data-parallel-size" in t.stdout and "why" in t.stdout


def test_plan_command_errors_are_one_line_with_exit_code():
    r = run_cli("plan", "meta-llama/Llama-3.1-70B-Instruct", "--profile", "polaris")
    assert r.returncode == 12  # PlanError (docs/exit-codes.md)
    assert r.stderr.startswith("pbsvllm: error: ") and r.stderr.count("\n") == 1
    assert "TP=4 PP=2" in r.stderr
    r = run_cli("plan", "nobody/unknown-model", "--profile", "polaris")
    assert r.returncode == 11 and "--params" in r.stderr  # ModelFactsError
    r = run_cli("plan", "meta-llama/Llama-3.1-70B-Instruct", "--profile", "polaris", "--nodes", "2", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["nodes"] == 2


def test_plan_command_model_fact_overrides():
    r = run_cli("plan", "acme/Secret-30B", "--profile", "polaris", "--params", "30B", "--num-layers", "48",
                "--num-kv-heads", "4", "--head-dim", "128", "--json")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["facts"]["num_layers"] == 48 and j["facts"]["weight_bytes"] == 60_000_000_000
    tp = j["tensor_parallel_size"]
    assert j["kv_bytes_per_token"] == 2 * 48 * max(1, 4 // tp) * 128 * 2


CATALOG = sorted(load_catalog())


@settings(max_examples=150, deadline=None)
@given(model=st.sampled_from(CATALOG), gpus=st.sampled_from([1, 2, 3, 4, 6, 8]),
       mem=st.sampled_from([16, 24, 40, 48, 80, 94, 140]), link=st.sampled_from(["nvlink", "pcie", "none"]),
       nodes=st.integers(1, 4), version=st.sampled_from(["0.6.3", "0.8.5", "0.10.2", "0.11.0", "0.20.0", "0.33.0"]),
       mml=st.one_of(st.none(), st.sampled_from([2048, 8192, 32768])),
       conc=st.one_of(st.none(), st.integers(1, 5000)))
def test_planner_invariants(model, gpus, mem, link, nodes, version, mml, conc):
    hw = Hardware(gpus, mem, link, nodes=nodes)
    try:
        p = make_plan(facts(model), hw, Workload(max_model_len=mml, concurrency=conc), version)
    except PlanError as exc:
        assert "does not fit" in str(exc)
        return
    assert p.tensor_parallel_size * p.pipeline_parallel_size * p.data_parallel_size <= gpus * p.nodes
    # every replica holds at least one max-length request (sliding-window and linear layers keep less than
    # every token, so vLLM's reported token count may be below max_model_len while the request fits)
    assert p.nodes <= nodes and p.max_concurrency / p.data_parallel_size >= 0.999
    if {layer["kind"] for layer in p.kv_cache_layers} <= {"full_attention", "mla"}:
        assert p.kv_cache_tokens >= p.max_model_len
    assert "--enforce-eager" not in p.vllm_args
    assert p.max_num_seqs <= p.max_num_batched_tokens
    for flag in p.vllm_args:
        if flag.startswith("--"):
            assert is_known(flag, version), (flag, version)
            assert p.reasons[flag]
