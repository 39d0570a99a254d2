"""``pbsvllm router start|stop|status``: the supervised vllm-router of an alias."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import click

from pbsvllm.commands._common import client, echo_json, exit_with, home_option, json_option

if TYPE_CHECKING:
    from pbsvllm.router import RouterStatus


@click.group()
def command() -> None:
    """The alias's router: one stable URL in front of all its servers
    (vLLM's vllm-router; `pip install 'pbsvllm[router]'`). Servers join it
    after their readiness check and leave it (drained first) before their
    job is cancelled; see docs/router.md."""


@command.command("start")
@click.argument("alias")
@click.option("--model", default="", help="Served model name clients send (default: the alias's newest job's).")
@click.option("--port", type=click.IntRange(0, 65535), default=0,
              help="Port for a router started for the first time (default: a free one; then kept).")
@home_option
@json_option
def start(alias: str, model: str, port: int, home: Optional[str], as_json: bool) -> None:
    """Start ALIAS's router (or find it running) and print its URL."""
    st = client(home, alias=alias).router_start(alias, port=port, model=model)
    if as_json:
        echo_json({"alias": alias, "url": st.url, "members": [m.to_dict() for m in st.members]})
    else:
        click.echo(f"{alias}: router at {st.url} ({len(st.active())} active member(s))")


@command.command("stop")
@click.argument("alias")
@home_option
def stop(alias: str, home: Optional[str]) -> None:
    """Stop ALIAS's router. Its port and members are kept for the next start;
    meanwhile clients of its URL get connection errors (nothing is redirected)."""
    stopped = client(home).router_stop(alias)
    click.echo(f"{alias}: router stopped" if stopped else f"{alias}: router was not running")


@command.command("status")
@click.argument("alias", required=False)
@home_option
@json_option
def status(alias: Optional[str], home: Optional[str], as_json: bool) -> None:
    """The router of ALIAS (default: every alias with one): URL, supervisor,
    members, whether the router routes to each, and their /health.
    Exit status 7 when a router is not answering."""
    reports = client(home).router_status(alias)
    if as_json:
        echo_json([r.to_dict() for r in reports])
    elif not reports:
        click.echo("no alias has a router (start one with `pbsvllm router start ALIAS`)")
    for r in reports if not as_json else []:
        click.echo(format_status(r))
    exit_with(7 if any(not r.router_up for r in reports) else 0)


def format_status(r: RouterStatus) -> str:
    up = f"up (supervisor pid {r.supervisor_pid})" if r.router_up else \
        ("supervisor running, router not answering" if r.supervisor_pid else "stopped")
    lines = [f"{r.alias}: {r.url}  router {up}"]
    if not r.members and r.router_up:
        lines.append("  no member: requests get 503 naming the alias")
    for m in r.members:
        where = "routed" if m.in_router else "not routed"
        lines.append(f"  {m.member.url}  job {m.member.job_id or '-'}  {m.member.state.value}, {where}, "
                     f"health {m.health}")
    return "\n".join(lines)
