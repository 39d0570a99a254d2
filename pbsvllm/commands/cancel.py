"""``pbsvllm cancel``: end a tracked job (qdel; --force: qdel -W force)."""

from __future__ import annotations

from typing import Optional

import click

from pbsvllm.commands._common import echo_json, json_option


@click.command()
@click.argument("target", metavar="ALIAS|JOB")
@click.option("--force", is_flag=True, help="qdel -W force (PBS Pro), qdel -p (Torque), SIGKILL (local).")
@json_option
@click.option("--home", default=None, metavar="DIR", help="PBSVLLM_HOME to read job records from.")
def command(target: str, force: bool, as_json: bool, home: Optional[str]) -> None:
    """Cancel the newest job of ALIAS (or the job JOB). The scheduler sends
    the job SIGTERM (the script forwards it to vLLM), then SIGKILL after its
    grace period; `pbsvllm status` shows when it is gone."""
    from pbsvllm.commands.status import _home
    from pbsvllm.jobs import JobStore
    from pbsvllm.launch import cancel_job

    store = JobStore(_home(home))
    rec, message = cancel_job(store, target, force=force)
    if as_json:
        echo_json({"alias": rec.alias, "job_id": rec.job_id, "host": rec.host or "localhost",
                   "scheduler": rec.scheduler, "forced": force, "message": message})
    else:
        click.echo(f"{rec.alias or '-'} {rec.job_id}: {message}")
