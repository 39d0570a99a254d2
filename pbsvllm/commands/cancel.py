"""``pbsvllm cancel``: end a tracked job (qdel; --force: qdel -W force)."""

from __future__ import annotations

from typing import Optional

import click

from pbsvllm.commands._common import client, echo_json, home_option, json_option


@click.command()
@click.argument("target", metavar="ALIAS|JOB")
@click.option("--force", is_flag=True, help="qdel -W force (PBS Pro), qdel -p (Torque), SIGKILL (local).")
@json_option
@home_option
def command(target: str, force: bool, as_json: bool, home: Optional[str]) -> None:
    """Cancel the newest job of ALIAS (or the job JOB). The scheduler sends
    the job SIGTERM (the script forwards it to vLLM), then SIGKILL after its
    grace period; `pbsvllm status` shows when it is gone. A server behind
    its alias's router leaves it first and finishes its requests (drain;
    not with --force), so clients of the alias's URL see no failure."""
    say = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    rec, message = client(home).cancel(target, force=force, say=say)
    if as_json:
        echo_json({"alias": rec.alias, "job_id": rec.job_id, "host": rec.host or "localhost",
                   "scheduler": rec.scheduler, "forced": force, "message": message})
    else:
        click.echo(f"{rec.alias or '-'} {rec.job_id}: {message}")
