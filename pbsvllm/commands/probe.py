"""``pbsvllm probe``: this node's GPUs, their links, and what CUDA_VISIBLE_DEVICES names."""

from __future__ import annotations

import os
from typing import Optional

import click

from pbsvllm.commands._common import echo_json, json_option


@click.command(help=__doc__)
@json_option
@click.option("--raw", "as_raw", is_flag=True,
              help="Print the raw NVML answers as JSON (save them to re-read with --from).")
@click.option("--from", "from_file", type=click.Path(dir_okay=False), default=None,
              help="Read a raw probe saved with --raw instead of asking the driver.")
@click.option("--visible", "visible", default=None, metavar="VALUE",
              help="Resolve this CUDA_VISIBLE_DEVICES value (default: the environment's).")
@click.option("--expect-gpus", "expect", type=int, default=None, metavar="N",
              help="Pre-launch check: fail (exit 8) unless CUDA_VISIBLE_DEVICES names exactly "
                   "N distinct GPUs of this node.")
def command(as_json: bool, as_raw: bool, from_file: Optional[str], visible: Optional[str],
            expect: Optional[int]) -> None:
    """Describe this node's GPUs (pynvml): index, UUID, name, memory, compute
    capability, MIG, the link between every pair, driver and CUDA versions,
    and the physical GPUs that CUDA_VISIBLE_DEVICES names."""
    from pbsvllm import gpu

    raw = gpu.load_raw(from_file) if from_file else gpu.probe_raw()
    if as_raw:
        echo_json(raw)
        return
    report = gpu.build_report(raw)
    value = visible if visible is not None else os.environ.get("CUDA_VISIBLE_DEVICES")
    if expect is not None:
        res = gpu.check_visible(report, value, expect)
    else:
        res = gpu.resolve_visible_devices(value, report)
    if as_json:
        doc = report.to_json()
        doc["visible"] = res.to_json()
        doc["planner_hardware"] = gpu.planner_hardware(report) if report.gpus else None
        echo_json(doc)
        return
    click.echo(gpu.format_report(report))
    click.echo("")
    shown = "unset (all GPUs)" if value is None else repr(value)
    click.echo(f"CUDA_VISIBLE_DEVICES={shown} -> " + (", ".join(
        f"cuda:{d.ordinal}=GPU {d.index} ({d.mig_uuid or d.uuid})" for d in res.devices) or "no GPU"))
    for p in res.problems:
        click.echo(f"warning: {p}")
    if expect is not None:
        click.echo(f"pre-launch check passed: {expect} GPU(s) as planned")
