"""``pbsvllm status``: every tracked job in one view (one scheduler call per host)."""

from __future__ import annotations

from typing import Optional

import click

from pbsvllm.commands._common import client, echo_json, exit_with, home_option, json_option


@click.command()
@click.argument("target", required=False, metavar="[ALIAS|JOB]")
@json_option
@click.option("--offline", is_flag=True, help="Do not ask any scheduler or server; show the cached states.")
@click.option("--keep-ended", is_flag=True,
              help="Do not remove registry entries that point at servers of jobs that have ended.")
@click.option("--timeout", "timeout_s", type=float, default=None, metavar="SECONDS",
              help="Give up on a scheduler that has not answered after this long (its jobs show cached states).")
@home_option
def command(target: Optional[str], as_json: bool, offline: bool, keep_ended: bool, timeout_s: Optional[float],
            home: Optional[str]) -> None:
    """Show tracked jobs: alias, job id, scheduler state, queue, node,
    walltime used and left, exit status; then each server: its state
    (probed now), URL, engine metrics from the end of its log, and the
    registry entries that point at it; then each alias's router (its
    stable URL, members, whether each is routed, their /health). All jobs on one host are asked for
    in ONE scheduler call; jobs already finished are not asked again. A `*`
    marks a cached state (--offline, or the host did not answer).

    \b
    Registry clean-up: entries that point at the server of a job that has
    ended are REMOVED from their registries (each removal is reported on
    stderr; an entry of a live server is never touched). --keep-ended and
    --offline leave every registry as it is."""
    from pbsvllm import statusview

    report = client(home).status(target, offline=offline, remove_ended=not keep_ended, timeout_s=timeout_s)
    if as_json:
        echo_json(report.rows)
    else:
        click.echo(statusview.format_table(report.rows))
        if report.live and report.rows:
            click.echo("")
            click.echo(statusview.format_table(report.rows, statusview.SERVER_COLUMNS))
        if report.routers:
            from pbsvllm.commands.router import format_status

            click.echo("")
            for r in report.routers:
                click.echo(format_status(r))
    for n in report.notes:
        click.echo(f"pbsvllm: {n}", err=True)
    for e in report.errors:
        click.echo(f"pbsvllm: warning: could not refresh {e}", err=True)
    exit_with(3 if report.errors else 0)
