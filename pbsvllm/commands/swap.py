"""``pbsvllm swap-endpoint``: move an alias to another job's server."""

from __future__ import annotations

from typing import Optional, Sequence

import click

from pbsvllm.commands._common import client, echo_json, home_option, json_option, registry_format_option


@click.command()
@click.argument("alias")
@click.option("--to", "to_job", required=True, metavar="JOB", help="The job (id or alias) whose server takes over.")
@click.option("--add", is_flag=True, help="Add the server as one more replica of the alias instead of replacing it.")
@click.option("--cancel-old", is_flag=True,
              help="Drain the old server(s) (no running request on /metrics), then cancel their jobs.")
@click.option("--drain-timeout", "drain_timeout_s", type=float, default=120.0, show_default=True, metavar="SECONDS",
              help="Longest wait for the old server to drain before cancelling it anyway.")
@click.option("--registry", "registries", multiple=True, metavar="PATH",
              help="Only these registries (default: every known registry that holds the alias).")
@registry_format_option
@json_option
@home_option
def command(alias: str, to_job: str, add: bool, cancel_old: bool, drain_timeout_s: float,
            registries: Sequence[str], registry_format: Optional[str], as_json: bool, home: Optional[str]) -> None:
    """Point ALIAS at the server of job JOB in every registry that holds it,
    after checking that server answers (model listed, one-token completion).
    With --cancel-old the old server is drained, then its job cancelled.
    Clients that re-read the registry before each request see no failure."""
    api = client(home)
    say = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    res = api.swap(alias, to_job, registries=api.registry_specs(registries, registry_format), add=add,
                   cancel_old=cancel_old, drain_timeout_s=drain_timeout_s, say=say)
    if as_json:
        echo_json(res.to_dict())
    elif not cancel_old and not add:
        olds = [o for o in res.old_jobs if o["job_id"]]
        for o in olds:
            click.echo(f"old server {o['url']} ({o['job_id']}) still runs; `pbsvllm cancel {o['job_id']}` ends it")
