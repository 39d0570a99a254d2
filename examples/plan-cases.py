"""Print the planner's decisions for the cases in docs/planner.md (offline, no GPU needed).

    .venv/bin/python examples/plan-cases.py
"""

from pbsvllm.errors import PlanError
from pbsvllm.modelfacts import load_model_facts
from pbsvllm.plan import Hardware, Workload, make_plan

CASES = [
    ("Qwen/Qwen3-VL-2B-Instruct", Hardware(4, 40, "nvlink"), "4x A100-40GB NVLink (polaris)"),
    ("Qwen/Qwen3-VL-2B-Instruct", Hardware(4, 24, "pcie"), "4x 24 GiB PCIe"),
    ("Qwen/Qwen2.5-7B-Instruct", Hardware(4, 40, "nvlink"), "4x A100-40GB"),
    ("meta-llama/Llama-3.1-8B-Instruct", Hardware(4, 40, "nvlink"), "4x A100-40GB"),
    ("meta-llama/Llama-3.1-8B-Instruct", Hardware(4, 24, "nvlink"), "4x 24 GiB NVLink"),
    ("meta-llama/Llama-3.1-8B-Instruct", Hardware(4, 24, "pcie"), "4x 24 GiB PCIe"),
    ("meta-llama/Llama-3.1-70B-Instruct", Hardware(4, 40, "nvlink"), "4x A100-40GB"),
    ("meta-llama/Llama-3.1-70B-Instruct", Hardware(4, 40, "nvlink", nodes=2), "4x A100-40GB, --nodes 2"),
    ("meta-llama/Llama-3.1-70B-Instruct", Hardware(4, 48, "pcie"), "4x 48 GiB PCIe"),
    ("meta-llama/Llama-3.1-8B-Instruct", Hardware(8, 140, "nvlink"), "8x H200"),
    ("meta-llama/Llama-3.1-70B-Instruct", Hardware(8, 140, "nvlink"), "8x H200"),
]

for model, hw, desc in CASES:
    facts = load_model_facts(model, {}, env={"HF_HUB_CACHE": "/nonexistent"})
    try:
        p = make_plan(facts, hw, Workload(), "0.11.0")
    except PlanError as exc:
        print(f"| {model.split('/')[1]} | {desc} | error: {exc}")
        continue

    def val(flag, p=p):
        a = p.arg(flag)
        return a.values[0] if a and a.values else "-"

    print(f"| {model.split('/')[1]} | {desc} | {p.tensor_parallel_size} | {p.pipeline_parallel_size} | "
          f"{p.data_parallel_size} | {p.nodes} | {p.kv_cache_tokens:,} | {val('--max-num-seqs')} | "
          f"{val('--max-num-batched-tokens')} | {val('--gpu-memory-utilization')} | "
          f"{'yes' if p.fits_well else 'no'} |")

# MoE, sliding-window and hybrid models (the second table of docs/planner.md)
MOE_CASES = [
    ("Qwen/Qwen3-30B-A3B", Hardware(4, 40, "nvlink"), "4x A100-40GB (polaris)"),
    ("Qwen/Qwen3-30B-A3B", Hardware(4, 80, "nvlink"), "4x A100-80GB"),
    ("Qwen/Qwen3-30B-A3B", Hardware(4, 40, "pcie"), "4x 40 GiB PCIe"),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", Hardware(4, 40, "nvlink"), "4x A100-40GB"),
    ("deepseek-ai/DeepSeek-V2-Lite-Chat", Hardware(4, 24, "nvlink"), "4x 24 GiB NVLink"),
    ("openai/gpt-oss-20b", Hardware(4, 40, "nvlink"), "4x A100-40GB"),
    ("google/gemma-3-27b-it", Hardware(8, 140, "nvlink"), "8x H200"),
    ("Qwen/Qwen3-235B-A22B", Hardware(8, 140, "nvlink"), "8x H200"),
    ("deepseek-ai/DeepSeek-V3", Hardware(8, 140, "nvlink"), "8x H200"),
    ("ibm-granite/granite-4.0-h-small", Hardware(4, 80, "nvlink"), "4x A100-80GB"),
]
print()
for model, hw, desc in MOE_CASES:
    facts = load_model_facts(model, {}, env={"HF_HUB_CACHE": "/nonexistent"})
    try:
        p = make_plan(facts, hw, Workload(), "0.11.0")
    except PlanError as exc:
        print(f"| {model.split('/')[1]} | {desc} | error: {exc}")
        continue
    print(f"| {model.split('/')[1]} | {desc} | {p.tensor_parallel_size} | {p.data_parallel_size} | "
          f"{'yes' if p.expert_parallel else 'no'} | {p.nodes} | {p.kv_cache_tokens:,} | "
          f"{p.max_concurrency / p.data_parallel_size:.1f} | {'yes' if p.fits_well else 'no'} |")
