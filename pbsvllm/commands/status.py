"""``pbsvllm status``: every tracked job in one view (one scheduler call per host)."""

from __future__ import annotations

from typing import Optional

import click

from pbsvllm.commands._common import echo_json, json_option


@click.command()
@click.argument("target", required=False, metavar="[ALIAS|JOB]")
@json_option
@click.option("--offline", is_flag=True, help="Do not ask any scheduler; show the cached states.")
@click.option("--home", default=None, metavar="DIR", help="PBSVLLM_HOME to read job records from.")
def command(target: Optional[str], as_json: bool, offline: bool, home: Optional[str]) -> None:
    """Show tracked jobs: alias, job id, scheduler state, queue, node,
    walltime used and left, exit status. All jobs on one host are asked
    for in ONE scheduler call; jobs already finished are not asked again.
    A `*` marks a cached state (--offline, or the host did not answer)."""
    import sys

    from pbsvllm import statusview
    from pbsvllm.jobs import JobStore
    from pbsvllm.launch import refresh_statuses

    store = JobStore(_home(home))
    records = [store.find(target)] if target else store.list()
    statuses, errors = ({}, []) if offline else refresh_statuses(store, records)
    rows = statusview.build_rows(records, statuses)
    notes = []
    if not offline and records:
        # server state (concurrent probes), URL, engine metrics from the log, registries
        from pbsvllm.config import resolve
        from pbsvllm.liveview import live_rows

        notes = live_rows(resolve({"home": home}), records, rows, store=store)
    if as_json:
        echo_json(rows)
    else:
        click.echo(statusview.format_table(rows))
        if not offline and rows:
            click.echo("")
            click.echo(statusview.format_table(rows, statusview.SERVER_COLUMNS))
    for n in notes:
        click.echo(f"pbsvllm: {n}", err=True)
    for e in errors:
        click.echo(f"pbsvllm: warning: could not refresh {e}", err=True)
    if errors:
        sys.exit(3)


def _home(home: Optional[str]) -> str:
    if home:
        return home
    try:
        from pbsvllm.config import resolve

        return resolve({}).home
    except ImportError:
        from pbsvllm.jobs import pbsvllm_home

        return pbsvllm_home()
