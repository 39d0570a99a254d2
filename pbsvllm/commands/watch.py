"""``pbsvllm watch``: follow pending jobs until ready; register them."""

from __future__ import annotations

from typing import Optional, Sequence

import click

from pbsvllm.commands._common import (
    client,
    echo_json,
    exit_with,
    follow_and_report,
    home_option,
    json_option,
    registry_options,
)


@click.command()
@click.argument("targets", nargs=-1, metavar="[ALIAS|JOB]...")
@registry_options
@click.option("--timeout", "timeout_s", type=float, default=None, metavar="SECONDS",
              help="Give up after this long (the jobs keep running; re-run to resume).")
@click.option("--follow", "follow_ready", is_flag=True,
              help="Keep following ready servers too, until their jobs end; their registry entries are then "
                   "removed (also on a crash). Exits when no tracked job is left running.")
@json_option
@home_option
def command(targets: Sequence[str], registries: Sequence[str], registry_format: Optional[str], add_replica: bool,
            timeout_s: Optional[float], follow_ready: bool, as_json: bool, home: Optional[str]) -> None:
    """Follow every tracked job that is not ready yet (or the ones named)
    until its server answers -- /v1/models lists the model and a one-token
    completion succeeds -- then write it to the endpoint registries. Shows
    the phases (queued, starting, loading weights, compiling, KV cache
    allocated, ready); a failure is reported with its cause and the log
    lines that show it. Exits when none is left pending. Safe to interrupt
    and re-run: it resumes from the saved log offset."""
    api = client(home)
    records = [api.find(t) for t in targets] if targets else api.pending(follow_ready=follow_ready)
    if not records:
        if as_json:
            echo_json([])
        else:
            click.echo("no pending jobs: every tracked server is ready, failed or ended")
        return
    exit_with(follow_and_report(api, records, registries=api.registry_specs(registries, registry_format),
                                add_replica=add_replica, timeout_s=timeout_s, as_json=as_json,
                                follow_ready=follow_ready))
