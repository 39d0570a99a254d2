"""``pbsvllm watch``: follow pending jobs until ready; register them.

Also home of :func:`follow_jobs`, which ``pbsvllm submit --wait`` calls.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import click

from pbsvllm.commands._common import echo_json, json_option

REGISTRY_FORMATS = ["toml", "py", "litellm", "yaml", "json"]


def registry_options(f: Any) -> Any:
    """--registry/--format/--add, shared by watch and submit."""
    f = click.option("--add", "add_replica", is_flag=True,
                     help="Register as one more server (replica) of the alias instead of replacing its entry.")(f)
    f = click.option("--format", "registry_format", type=click.Choice(REGISTRY_FORMATS), default=None,
                     help="Registry format when the file name does not tell (toml = verifiers endpoints.toml, "
                          "py = legacy endpoints.py, litellm/yaml = LiteLLM config.yaml, json).")(f)
    f = click.option("--registry", "registries", multiple=True, metavar="PATH",
                     help="Endpoint registry to update once ready (repeatable; default: the profile's or "
                          "the alias's registries from the config file).")(f)
    return f


def registry_specs(paths: Sequence[str], fmt: Optional[str]) -> Optional[List[str]]:
    """``--registry`` values as specs the watcher understands (None: use the records' own)."""
    if not paths:
        return None
    from pbsvllm.registry import open_registries

    return [f"{r.fmt}:{r.path}" for r in open_registries(list(paths), fmt)]


def follow_jobs(settings: Any, records: Sequence[Any], *, registries: Optional[List[str]] = None,
                add_replica: bool = False, timeout_s: Optional[float] = None, as_json: bool = False,
                store: Any = None, follow_ready: bool = False) -> int:
    """Follow ``records`` with progress on the terminal; return the exit code
    (0 all ready, 7 a server failed or the timeout ran out)."""
    import sys

    from pbsvllm import watcher
    from pbsvllm.errors import ServerError
    from pbsvllm.models import ServerState

    stream = sys.stderr if as_json else sys.stdout
    tty = stream.isatty()

    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    reporter = watcher.TextReporter(write, tty=tty, single_job=len(records) == 1)
    res = watcher.watch_records(settings, records, store=store, registries=registries, add_replica=add_replica,
                                timeout_s=timeout_s, reporter=reporter, follow_ready=follow_ready)
    if as_json:
        echo_json(res.to_dicts())
    if res.timed_out:
        pending = [j.name for j in res.jobs if j.server_state != ServerState.READY and not j.server_state.is_final]
        click.echo(f"pbsvllm: timed out after {timeout_s:g} s; still not ready: {', '.join(pending)} "
                   "(run `pbsvllm watch` to resume)", err=True)
    failed = [j for j in res.jobs if j.server_state == ServerState.FAILED]
    if failed or res.timed_out:
        return ServerError.exit_code
    return 0


@click.command()
@click.argument("targets", nargs=-1, metavar="[ALIAS|JOB]...")
@registry_options
@click.option("--timeout", "timeout_s", type=float, default=None, metavar="SECONDS",
              help="Give up after this long (the jobs keep running; re-run to resume).")
@click.option("--follow", "follow_ready", is_flag=True,
              help="Keep following ready servers too, until their jobs end; their registry entries are then "
                   "removed (also on a crash). Exits when no tracked job is left running.")
@json_option
@click.option("--home", default=None, metavar="DIR", help="PBSVLLM_HOME to read job records from.")
def command(targets: Sequence[str], registries: Sequence[str], registry_format: Optional[str], add_replica: bool,
            timeout_s: Optional[float], follow_ready: bool, as_json: bool, home: Optional[str]) -> None:
    """Follow every tracked job that is not ready yet (or the ones named)
    until its server answers -- /v1/models lists the model and a one-token
    completion succeeds -- then write it to the endpoint registries. Shows
    the phases (queued, starting, loading weights, compiling, KV cache
    allocated, ready); a failure is reported with its cause and the log
    lines that show it. Exits when none is left pending. Safe to interrupt
    and re-run: it resumes from the saved log offset."""
    import sys

    from pbsvllm.config import resolve
    from pbsvllm.jobs import JobStore
    from pbsvllm.models import JobState, ServerState

    settings = resolve({"home": home})
    store = JobStore(settings.home)
    if targets:
        records = [store.find(t) for t in targets]
    else:
        final = {s.value for s in JobState if s.is_terminal}
        records = [r for r in store.list()
                   if not r.server_state.is_final and (follow_ready or r.server_state != ServerState.READY)
                   and (r.last_status or {}).get("state") not in final and not r.cancelled_at]
    if not records:
        if as_json:
            echo_json([])
        else:
            click.echo("no pending jobs: every tracked server is ready, failed or ended")
        return
    code = follow_jobs(settings, records, registries=registry_specs(registries, registry_format),
                       add_replica=add_replica, timeout_s=timeout_s, as_json=as_json, store=store,
                       follow_ready=follow_ready)
    if code:
        sys.exit(code)
