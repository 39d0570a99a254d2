"""``pbsvllm doctor``: read a vLLM log, say what is slow, why, and what to change."""

from __future__ import annotations

from typing import Optional

import click

from pbsvllm.commands._common import client, home_option, json_option


@click.command()
@click.argument("target", metavar="LOG|ALIAS|JOB")
@click.option("--profile", "-P", help="Site profile of the node the log comes from (GPUs, memory, interconnect).")
@click.option("--gpus", "gpus_per_node", type=int, help="GPUs on the node (overrides the profile).")
@click.option("--gpu-memory", "gpu_memory_gib", type=float, help="Memory per GPU in GiB (overrides the profile).")
@click.option("--interconnect", type=click.Choice(["nvlink", "pcie", "none"]),
              help="How the node's GPUs are linked (the log's PCIe warning is used when present).")
@click.option("--device", type=click.Choice(["cuda", "cpu"]), help="cuda or cpu, when the log does not say.")
@click.option("--vllm-version", help="Plan for this vLLM version instead of the one in the log.")
@click.option("--model", help="Model to plan for when the log names a path that is not on this machine.")
@click.option("--params", help="Parameter count when no config.json for the model is on this machine, e.g. 2B.")
@click.option("--alias", help="Alias for the recommended `pbsvllm submit` command.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json", "html"]), default="text",
              show_default=True,
              help="Report format; html: one self-contained page with timelines of the stats lines beside the "
                   "findings (needs the plot extra: pip install 'pbsvllm[plot]').")
@json_option
@home_option
def command(target: str, fmt: str, as_json: bool, home: Optional[str], profile: Optional[str],
            gpus_per_node: Optional[int], gpu_memory_gib: Optional[float], interconnect: Optional[str],
            device: Optional[str], vllm_version: Optional[str], model: Optional[str], params: Optional[str],
            alias: Optional[str]) -> None:
    """Diagnose a vLLM server from its log: LOG is a log file; ALIAS or JOB a
    tracked job (its log, profile and model come from the job record).

    Prints findings (id, severity, evidence lines, cost, change) and the
    planner's flags for the same model and node as a diff against what the
    log shows, with the exact `pbsvllm submit` command that applies them.
    """
    from pbsvllm import report
    from pbsvllm.api import DoctorOptions

    options = DoctorOptions(profile=profile, gpus_per_node=gpus_per_node, gpu_memory_gib=gpu_memory_gib,
                            interconnect=interconnect, device=device, vllm_version=vllm_version, model=model,
                            params=params, alias=alias)
    diag = client(home).doctor(target, options)
    if fmt == "html" and not as_json:
        from pbsvllm.plots import doctor_html

        click.echo(doctor_html(diag), nl=False)
        return
    click.echo(report.render(diag, "json" if as_json else fmt))
