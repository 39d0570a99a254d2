"""``pbsvllm router start|stop|status``: the supervised vllm-router of an alias."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import click

from pbsvllm.commands._common import echo_json, json_option

if TYPE_CHECKING:
    from pbsvllm.router import RouterStatus


@click.group()
def command() -> None:
    """The alias's router: one stable URL in front of all its servers
    (vLLM's vllm-router; `pip install 'pbsvllm[router]'`). Servers join it
    after their readiness check and leave it (drained first) before their
    job ends; see docs/router.md."""


_home_option = click.option("--home", default=None, metavar="DIR", help="PBSVLLM_HOME (default: from the config).")


@command.command("start")
@click.argument("alias")
@click.option("--model", default="", help="Served model name clients send (default: the alias's latest job's).")
@click.option("--port", type=click.IntRange(0, 65535), default=0,
              help="Port for a router started for the first time (default: a free one, then kept).")
@_home_option
@json_option
def start(alias: str, model: str, port: int, home: Optional[str], as_json: bool) -> None:
    """Start ALIAS's router (or find it running) and print its URL."""
    import dataclasses

    from pbsvllm import router
    from pbsvllm.config import resolve

    settings = resolve({"home": home} if home else {"alias": alias})
    cfg = dataclasses.replace(router.settings_for(settings.profile), port=port)
    st = router.ensure_running(alias, cfg, home=settings.home, model=model or _latest_model(settings.home, alias),
                               api_key_var=settings.api_key_env)
    if as_json:
        echo_json({"alias": alias, "url": st.url, "members": [m.to_dict() for m in st.members]})
    else:
        click.echo(f"{alias}: router at {st.url} ({len(st.active())} active member(s))")


@command.command("stop")
@click.argument("alias")
@_home_option
def stop(alias: str, home: Optional[str]) -> None:
    """Stop ALIAS's router. Its port and members are kept for the next start;
    clients of its URL get connection errors meanwhile (nothing is redirected)."""
    from pbsvllm import router
    from pbsvllm.config import resolve

    if router.stop(alias, home=resolve({"home": home} if home else {}).home):
        click.echo(f"{alias}: router stopped")
    else:
        click.echo(f"{alias}: router was not running")


@command.command("status")
@click.argument("alias", required=False)
@_home_option
@json_option
def status(alias: Optional[str], home: Optional[str], as_json: bool) -> None:
    """The router of ALIAS (default: every alias with one): URL, supervisor,
    members, whether the router routes to each, and their /health."""
    import sys

    from pbsvllm import router
    from pbsvllm.config import resolve

    h = resolve({"home": home} if home else {}).home
    names = [alias] if alias else router.aliases(home=h)
    reports = [router.status(a, home=h) for a in names]
    if as_json:
        echo_json([r.to_dict() for r in reports])
    else:
        if not reports:
            click.echo("no alias has a router (start one with `pbsvllm router start ALIAS`)")
        for r in reports:
            click.echo(format_status(r))
    if any(not r.router_up for r in reports):
        sys.exit(7)


def format_status(r: RouterStatus) -> str:
    up = f"up (supervisor pid {r.supervisor_pid})" if r.router_up else \
        ("supervisor running, router not answering" if r.supervisor_pid else "stopped")
    lines = [f"{r.alias}: {r.url}  router {up}"]
    if not r.members:
        lines.append("  no member: requests get 503 naming the alias")
    for m in r.members:
        where = "routed" if m.in_router else "not routed"
        lines.append(
            f"  {m.member.url}  job {m.member.job_id or '-'}  {m.member.state.value}, {where}, health {m.health}"
        )
    return "\n".join(lines)


def _latest_model(home: str, alias: str) -> str:
    from pbsvllm.jobs import JobStore

    recs = [r for r in JobStore(home).list() if r.alias == alias]
    return (recs[-1].served_model_name or recs[-1].model) if recs else ""

