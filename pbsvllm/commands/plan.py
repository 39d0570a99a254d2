"""pbsvllm plan MODEL: the tuned vLLM flags for a model on a node, each with its reason.

Also home of the option groups ``submit`` shares (site, workload, model facts).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List

import click

from pbsvllm.commands._common import echo_json, json_option

# the --kv-cache-dtype values vLLM accepts (kept here so --help stays free of the planner's import)
KV_CACHE_DTYPES = ("auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc", "fp8_ds_mla")


def _apply(f: Callable, options: List[Callable]) -> Callable:
    for opt in reversed(options):
        f = opt(f)
    return f


def _finite(lo: float, hi: float) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback: a finite number in [lo, hi] (click's FloatRange lets nan through)."""
    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return value
        if not math.isfinite(value) or not lo <= value <= hi:
            raise click.BadParameter(f"must be a finite number between {lo:g} and {hi:g}, got {value!r}")
        return value
    return check


def site_options(f: Callable) -> Callable:
    """Which profile / node: shared by plan, submit (and usable by doctor)."""
    return _apply(f, [
        click.option("--profile", "-P", help="Site profile (built-in: polaris, sophia, pbspro, torque, local; "
                     "or one from your config file)."),
        click.option("--gpus", "gpus_per_node", type=click.IntRange(1, 1024),
                     help="GPUs per node (overrides the profile)."),
        click.option("--gpu-memory", "gpu_memory_gib", type=float, callback=_finite(1, 4096),
                     help="Memory per GPU in GiB (overrides the profile)."),
        click.option("--interconnect", type=click.Choice(["nvlink", "pcie", "none"]),
                     help="How the node's GPUs are linked (overrides the profile)."),
        click.option("--nodes", type=click.IntRange(1, 10000),
                     help="Most nodes one server may use (default 1; PP across nodes only "
                     "when one node cannot hold the model)."),
        click.option("--device", type=click.Choice(["cuda", "cpu"]), help="cuda or cpu (vLLM's CPU build)."),
        click.option("--vllm-version", help="vLLM version on the cluster (flags are checked against it)."),
    ])


def workload_options(f: Callable) -> Callable:
    """Workload hints and model-facts overrides: shared by plan and submit."""
    return _apply(f, [
        click.option("--max-model-len", type=click.IntRange(1, 10**9),
                     help="Longest request (prompt + output) to serve, in tokens."),
        click.option("--concurrency", type=click.IntRange(1, 10**7),
                     help="Expected concurrent requests for the whole server."),
        click.option("--prompt-len", type=click.IntRange(1, 10**9), help="Expected prompt length in tokens (average)."),
        click.option("--output-len", type=click.IntRange(1, 10**9), help="Expected output length in tokens (average)."),
        click.option("--kv-cache-dtype", type=click.Choice(list(KV_CACHE_DTYPES)),
                     help="KV cache dtype, e.g. fp8 (half the bytes per token)."),
        click.option("--params", help="Parameter count when no config is on disk, e.g. 7B."),
        click.option("--dtype", help="Weight dtype when not in the config (bfloat16, float16, fp8)."),
        click.option("--num-layers", type=click.IntRange(1, 10**4),
                     help="Override the model's layer count (with --params, for exact KV sizes)."),
        click.option("--num-kv-heads", type=click.IntRange(1, 10**5), help="Override the model's KV-head count."),
        click.option("--head-dim", type=click.IntRange(1, 10**5), help="Override the model's attention head size."),
        click.option("--quantization", help="Serve quantized weights (passed to vLLM as --quantization), e.g. fp8."),
        click.option("--weight-gib", type=float, callback=_finite(0.001, 1e6),
                     help="Weight size in GiB when neither an index nor the architecture gives it."),
        click.option("--vllm-arg", "vllm_args", multiple=True,
                     help="Extra vLLM flag(s), repeatable, e.g. --vllm-arg '--max-num-seqs 512'. Wins over the plan."),
        click.option("--allow-unknown-vllm-args", is_flag=True,
                     help="Pass vLLM flags pbsvllm's flag table does not know."),
    ])


PROFILE_FLAG_KEYS = ("profile", "gpus_per_node", "gpu_memory_gib", "interconnect", "nodes", "device")
OPTION_KEYS = ("max_model_len", "concurrency", "prompt_len", "output_len", "kv_cache_dtype", "params", "dtype",
               "weight_gib",
               "num_layers", "num_kv_heads", "head_dim",
               "quantization", "vllm_args", "allow_unknown_vllm_args", "vllm_version", "served_model_name", "port")


def split_kwargs(kwargs: Dict[str, Any]) -> tuple[Dict[str, Any], Dict[str, Any]]:
    """click kwargs -> (flags for config.resolve, options for render.plan_for / prepare_job)."""
    flags = {k: kwargs.get(k) for k in PROFILE_FLAG_KEYS if kwargs.get(k) is not None}
    for k in ("host", "scheduler", "api_key_file", "queue", "account", "walltime", "alias"):
        if kwargs.get(k) is not None:
            flags[k] = kwargs[k]
    options = {k: kwargs[k] for k in OPTION_KEYS if kwargs.get(k) not in (None, ())}
    return flags, options


def format_plan(plan: Any, facts: Any, hardware_text: str) -> str:
    lines = [
        f"model      {facts.model}  ({facts.weight_gib:.1f} GiB weights, {facts.num_layers} layers, "
        f"{facts.num_kv_heads} KV heads x {facts.head_dim}; {facts.source})",
        f"hardware   {hardware_text}; vLLM {plan.vllm_version}",
        f"layout     TP={plan.tensor_parallel_size} PP={plan.pipeline_parallel_size} DP={plan.data_parallel_size} "
        f"on {plan.nodes} node(s), {plan.gpus_per_node} GPU(s) per node",
        f"capacity   {plan.kv_cache_tokens:,} KV-cache tokens per replica; max concurrency {plan.max_concurrency:.1f} "
        f"at {plan.max_model_len:,} tokens, "
        f"~{plan.kv_cache_tokens // max(1, plan.expected_request_tokens) * plan.data_parallel_size:,} "
        f"at {plan.expected_request_tokens:,} tokens",
    ]
    if getattr(plan, "expert_parallel", False):
        lines.append(f"experts    {plan.decisions.get('expert_parallel', 'expert parallel')}")
    layers = getattr(plan, "kv_cache_layers", ())
    if len(layers) > 1 or (layers and layers[0].get("kind") not in ("full_attention", "mla")):
        lines.append("kv layers  " + "; ".join(
            f"{lay['layers']} {lay['kind'].replace('_', ' ')}"
            + (f" (window {lay['window']})" if lay.get("window") else "")
            + (f": {lay['bytes_per_token_per_layer']:,} B/token, {lay['tokens_held_per_request']:,} tokens kept per "
               f"max-length request" if "bytes_per_token_per_layer" in lay else
               f": {lay.get('state_bytes_per_sequence_per_layer', 0):,} B fixed state per sequence")
            for lay in layers))
    if "memory" in plan.decisions:
        lines.append(f"memory     {plan.decisions['memory']}")
    lines.append("")
    width = max(len(a.flag) for a in plan.args) if plan.args else 10
    vwidth = max((len(" ".join(a.values)) for a in plan.args), default=5)
    lines.append(f"{'flag':<{width}}  {'value':<{vwidth}}  why")
    for a in plan.args:
        lines.append(f"{a.flag:<{width}}  {' '.join(a.values):<{vwidth}}  {a.reason}")
    for w in plan.warnings:
        lines.append(f"\nwarning: {w}")
    if plan.alternatives:
        lines.append("\nalternatives:")
        for alt in plan.alternatives:
            lines.append(f"  - {alt['summary']}")
    import shlex

    lines.append("\nvllm serve " + " ".join(shlex.quote(a) for a in plan.vllm_args))
    return "\n".join(lines)


@click.command()
@click.argument("model")
@click.option("--alias", help="Alias of the server (default served model name).")
@click.option("--served-model-name", help="Name clients send as \"model\" (default: the alias, else the model).")
@click.option("--port", type=int, default=8000, show_default=True, help="Requested port.")
@site_options
@workload_options
@click.option("--probe", "probe", is_flag=True,
              help="Plan for the GPUs of the node this runs on (pynvml probe: count, memory, NVLink or PCIe) "
                   "instead of the profile's numbers.")
@click.option("--probe-file", type=click.Path(dir_okay=False), default=None,
              help="Like --probe, from a probe saved with 'pbsvllm probe --raw' on the node.")
@json_option
def command(model: str, as_json: bool, probe: bool, probe_file: Any, **kwargs: Any) -> None:
    """Plan tuned vLLM flags for MODEL on one node of a profile: a table of
    flag, value and why, plus the predicted KV-cache capacity."""
    from pbsvllm.api import Client
    from pbsvllm.plan import Hardware

    flags, options = split_kwargs(kwargs)
    probed = None
    if probe or probe_file:
        from pbsvllm import gpu

        probed = gpu.planner_hardware(gpu.build_report(gpu.load_raw(probe_file) if probe_file else gpu.probe_raw()))
        for key in ("gpus_per_node", "gpu_memory_gib", "interconnect", "gpu_name"):
            flags.setdefault(key, probed[key])  # an explicit --gpus / --gpu-memory / --interconnect still wins
        flags.setdefault("device", "cuda")
    api = Client.from_flags(flags)
    settings = api.settings
    options["served_model_name"] = kwargs.get("served_model_name") or kwargs.get("alias")
    facts, plan = api.plan(model, options)
    if as_json:
        out = plan.to_json()
        out["profile"] = settings.profile.name
        out["facts"] = facts.to_json()
        if probed:
            out["probed_hardware"] = probed
        echo_json(out)
        return
    hw_text = Hardware.from_profile(settings.profile).describe()
    if probed:
        hw_text += f" [{probed['source']}]"
    click.echo(format_plan(plan, facts, hw_text))
    for note in (probed or {}).get("notes", []):
        click.echo(f"note: {note}")
