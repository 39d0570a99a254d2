"""``pbsvllm scale ALIAS N``: submit or cancel jobs until N servers of the alias run."""

from __future__ import annotations

from typing import Optional

import click

from pbsvllm.commands._common import client, echo_json, exit_with, home_option, json_option


@click.command()
@click.argument("alias")
@click.argument("n", type=click.IntRange(0, 256))
@click.option("--wait", is_flag=True, help="Follow new jobs until their servers are ready (and behind the router).")
@click.option("--timeout", "timeout_s", type=float, default=None, metavar="SECONDS", help="Longest --wait.")
@click.option("--drain-timeout", "drain_timeout_s", type=float, default=120.0, show_default=True, metavar="SECONDS",
              help="Longest wait for a server leaving the router to finish its requests before its job is cancelled.")
@json_option
@home_option
def command(alias: str, n: int, wait: bool, timeout_s: Optional[float], drain_timeout_s: float, as_json: bool,
            home: Optional[str]) -> None:
    """Submit or cancel jobs of ALIAS until N of its servers run: one job per
    server, copies of the alias's newest job. Scaling down cancels jobs not
    ready yet first, then the oldest ready ones; each leaves the router
    (drained) before it is cancelled. Clients of `pbsvllm url ALIAS` see no
    failed request."""
    say = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    res = client(home, alias=alias).scale(alias, n, wait=wait, timeout_s=timeout_s, drain_timeout_s=drain_timeout_s,
                                          say=say)
    if as_json:
        echo_json(res.to_dict())
    else:
        click.echo(f"{alias}: {res.ready} ready of {n} wanted" + (f"; URL {res.url}" if res.url else "")
                   + (f"; submitted {', '.join(res.submitted)}" if res.submitted else "")
                   + (f"; cancelled {', '.join(str(c['job_id']) for c in res.cancelled)}" if res.cancelled else ""))
    exit_with(7 if res.timed_out else 0)
