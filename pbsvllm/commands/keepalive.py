"""``pbsvllm keepalive start|stop|status|ensure``: always-on aliases."""

from __future__ import annotations

from typing import Optional

import click

from pbsvllm.commands._common import client, echo_json, home_option, json_option


@click.group()
def command() -> None:
    """Keep an alias served across walltime and failed jobs (docs/keepalive.md)."""


@command.command("start")
@click.argument("alias")
@click.option("--until", "until", default=None, metavar="DATE|DURATION",
              help="End of the chain: 2026-12-09T18:00, 12h, 3d, 1h30m.")
@click.option("--budget", default=None, metavar="NODE_HOURS", help="Never start a job past this many node-hours.")
@click.option("--job", "job", default=None, metavar="JOB", help="The job to copy (default: the alias's newest).")
@click.option("--margin", "margin_s", type=float, default=None, metavar="SECONDS",
              help="Safety margin added to the lead time (default 120 s; docs/keepalive.md).")
@home_option
@json_option
def start_cmd(alias: str, until: Optional[str], budget: Optional[str], job: Optional[str],
              margin_s: Optional[float], home: Optional[str], as_json: bool) -> None:
    """Start keeping ALIAS alive (its newest job becomes the chain's first)."""
    summary = client(home).keepalive_start(alias, until=until, budget=budget, job=job, margin_s=margin_s)
    if as_json:
        echo_json(summary)
    else:
        click.echo(f"{alias}: kept alive from job {summary['jobs'][0]['job_id']}; {summary['lead_time']}")


@command.command("stop")
@click.argument("alias")
@click.option("--cancel", "cancel_jobs", is_flag=True, help="Also drain and cancel the chain's jobs.")
@home_option
def stop_cmd(alias: str, cancel_jobs: bool, home: Optional[str]) -> None:
    """Stop the chain of ALIAS (its serving job is left running unless --cancel)."""
    msg = client(home).keepalive_stop(alias, cancel=cancel_jobs)
    click.echo(f"{alias}: {msg}")


@command.command("status")
@click.argument("alias", required=False)
@home_option
@json_option
def status_cmd(alias: Optional[str], home: Optional[str], as_json: bool) -> None:
    """Each chain: state, lead time and how it is computed, jobs, why the last one ended."""
    chains = client(home).keepalive_status(alias)
    if as_json:
        echo_json(chains)
        return
    if not chains:
        click.echo("no keep-alive chains")
        return
    for c in chains:
        state = c["state"] + (f" ({c['stop_reason']})" if c["stop_reason"] else "")
        click.echo(f"{c['alias']}: {state}; supervisor {'running' if c['supervisor_running'] else 'not running'}")
        click.echo(f"  {c['lead_time']}")
        budget = f" of {c['budget_node_hours']:g}" if c["budget_node_hours"] else ""
        click.echo(
            f"  node-hours used: {c['node_hours_used']:.2f}{budget}; consecutive failures: {c['consecutive_failures']}"
        )
        for j in c["jobs"]:
            end = f" ended: {j['end_cause']} ({j['end_detail']})" if j["ended_at"] else ""
            ready = " ready" if j["ready_at"] else ""
            click.echo(f"  job {j['job_id']}{ready}{end}")
        for h in c["handovers"]:
            click.echo(
                f"  hand-over {h['from_job']} -> {h['to_job']}: overlap {h['overlap_s']:.1f} s, gap {h['gap_s']:.1f} s"
            )
        if c["last_event"]:
            e = c["last_event"]
            click.echo(f"  last: {e['kind']} {e['job_id']} {e['reason']}")


@command.command("ensure")
@home_option
def ensure_cmd(home: Optional[str]) -> None:
    """Revive the supervisor of every running chain (for cron)."""
    for alias, pid in client(home).keepalive_ensure().items():
        if pid:
            click.echo(f"{alias}: supervisor restarted (pid {pid})")
