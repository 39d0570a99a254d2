"""``pbsvllm doctor``: read a vLLM log, say what is slow, why, and what to change."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import click

from pbsvllm.commands._common import json_option


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
@click.option("--home", default=None, metavar="DIR", help="PBSVLLM_HOME to read job records from.")
def command(target: str, fmt: str, as_json: bool, home: Optional[str], **opts: Any) -> None:
    """Diagnose a vLLM server from its log: LOG is a log file; ALIAS or JOB a
    tracked job (its log, profile and model come from the job record).

    Prints findings (id, severity, evidence lines, cost, change) and the
    planner's flags for the same model and node as a diff against what the
    log shows, with the exact `pbsvllm submit` command that applies them.
    """
    from pbsvllm import doctor, report
    from pbsvllm.config import resolve
    from pbsvllm.errors import LogParseError, PbsvllmError

    if as_json:
        fmt = "json"
    record = None
    log_path = target
    if not os.path.isfile(target):
        from pbsvllm.jobs import JobStore

        from pbsvllm.commands.status import _home

        if os.sep in target or target.endswith((".log", ".gz", ".txt")):
            raise LogParseError(f"vLLM log not found: {target}",
                                hint="pass an existing log file, or the alias/id of a tracked job")
        record = JobStore(_home(home)).find(target)
        if not record.log_path:
            raise LogParseError(f"job {record.job_id} has no log path in its record")
        log_path = record.log_path
    facts = _read_facts(log_path, record)

    profile_name = opts.get("profile") or (record.profile if record is not None and record.profile else None)
    profile = None
    if profile_name:
        profile = resolve({"profile": profile_name}).profile
    node = doctor.node_shape(facts, profile, opts.get("gpus_per_node"), opts.get("gpu_memory_gib"),
                             opts.get("interconnect"), opts.get("device"))
    model = opts.get("model") or (record.model if record is not None and record.model else None)
    alias = opts.get("alias") or (record.alias if record is not None and record.alias else None)
    extra: Dict[str, Any] = {}
    if opts.get("params"):
        extra["params"] = opts["params"]
    req = doctor.plan_request(facts, node, model=model, alias=alias, profile_name=profile_name,
                              vllm_version=opts.get("vllm_version"), extra_options=extra,
                              profile_device=profile.device if profile is not None else None)
    if opts.get("params"):
        req.submit_argv += ["--params", str(opts["params"])]
    plan, plan_error = None, ""
    if not req.model:
        plan_error = "the log names no model; pass --model"
    elif node.device != "cpu" and not node.gpu_memory_gib:
        plan_error = ("the GPUs' memory is unknown: pass --profile (a site profile) or --gpu-memory GiB to get the "
                      "planner's flags")
    else:
        try:
            from pbsvllm.render import plan_for

            settings = resolve(req.resolve_flags)
            _facts, plan = plan_for(settings, req.model, req.options)
        except PbsvllmError as exc:
            plan_error = f"the planner could not plan {req.model}: {exc}"
    diag = doctor.diagnose(facts, node, plan=plan, plan_req=req, plan_error=plan_error, log_path=log_path)
    if record is not None and isinstance(record.plan, dict) and record.plan.get("vllm_args"):
        diag.recommendation.notes.append(doctor.recorded_plan_note(record.job_id, record.plan, facts))
    if fmt == "html":
        from pbsvllm.plots import doctor_html

        click.echo(doctor_html(diag), nl=False)
        return
    click.echo(report.render(diag, fmt))


def _read_facts(log_path: str, record: Any) -> Any:
    """The fast local path for files on this machine; a job on a remote host
    has its log read over the job's transport."""
    from pbsvllm import vllmlog

    host = getattr(record, "host", None) if record is not None else None
    if host is None:
        return vllmlog.parse_file(log_path)
    from pbsvllm.errors import LogParseError
    from pbsvllm.transport import get_transport
    from pbsvllm.watcher import LogTail

    tail = LogTail(log_path, get_transport(host))
    if not tail.exists():
        raise LogParseError(f"the log {log_path} of job {record.job_id} does not exist on {host} (yet)",
                            hint="`pbsvllm status` shows whether the job has started")
    return vllmlog.parse_log(tail.read_lines(final=True))
