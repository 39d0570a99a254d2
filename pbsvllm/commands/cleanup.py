"""``pbsvllm cleanup``: end this user's leftover pbsvllm servers on this node."""

from __future__ import annotations

from typing import Tuple

import click

from pbsvllm.commands._common import client, echo_json, json_option


@click.command(help=__doc__)
@json_option
@click.option("--dry-run", is_flag=True, help="List what would be ended; signal nothing.")
@click.option("--job", "job_ids", multiple=True, metavar="JOB_ID",
              help="Only processes of this job (repeatable).")
@click.option("--alias", "aliases", multiple=True, metavar="ALIAS",
              help="Only processes of this alias (repeatable).")
@click.option("--grace", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds between SIGTERM and SIGKILL.")
def command(as_json: bool, dry_run: bool, job_ids: Tuple[str, ...], aliases: Tuple[str, ...],
            grace: float) -> None:
    """End the processes this user started through pbsvllm on this node (vLLM
    servers, their engine cores and Ray workers): SIGTERM, wait, SIGKILL.

    A process qualifies through the PBSVLLM_JOB_ID marker in its environment
    or a pid / process group recorded in $PBSVLLM_HOME/run/*.server.json for
    this node. Other users' processes and processes that merely have "vllm"
    in their name are never touched.
    """
    from pbsvllm import cleanup
    from pbsvllm.errors import PbsvllmError

    settings = client().settings
    scan = cleanup.find_targets(settings.home, job_ids=job_ids, aliases=aliases)
    if not dry_run:
        cleanup.end_targets(scan.targets, grace_s=grace)
    failed = [t for t in scan.targets if t.action.startswith("failed")]
    if as_json:
        doc = scan.to_json()
        doc["dry_run"] = dry_run
        echo_json(doc)
    else:
        for w in scan.warnings:
            click.echo(f"warning: {w}", err=True)
        if not scan.targets:
            click.echo(f"nothing to clean up on {scan.node} (home {scan.home})")
        else:
            rows = [("PID", "JOB", "ALIAS", "ACTION", "WHY", "COMMAND")]
            rows += [(str(t.pid), t.job_id, t.alias, t.action, t.reason, t.cmdline[:80])
                     for t in scan.targets]
            widths = [max(len(r[i]) for r in rows) for i in range(5)]
            for r in rows:
                click.echo("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5])
    if failed:
        raise PbsvllmError(
            f"{len(failed)} process(es) on {scan.node} could not be ended: "
            + ", ".join(f"pid {t.pid} ({t.action})" for t in failed),
            hint="check them with 'ps -o pid,user,stat,cmd -p PID'",
        )
