"""Option groups shared by several commands (declared once here), and output helpers.

Command modules import only click and the standard library at module level;
the API (:mod:`pbsvllm.api`) is imported inside the command function.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, TypeVar

import click

if TYPE_CHECKING:
    from pbsvllm.api import Client
    from pbsvllm.jobs import JobRecord

F = TypeVar("F", bound=Callable[..., Any])

REGISTRY_FORMATS = ["toml", "py", "litellm", "yaml", "json"]


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")(f)


def home_option(f: F) -> F:
    """``--home DIR``: the pbsvllm home whose job records a command reads."""
    return click.option("--home", default=None, metavar="DIR",
                        help="PBSVLLM_HOME to read job records from (default: $PBSVLLM_HOME, the config "
                             "file's home, ~/.pbsvllm).")(f)


def registry_format_option(f: F) -> F:
    return click.option("--format", "registry_format", type=click.Choice(REGISTRY_FORMATS), default=None,
                        help="Registry format when the file name does not tell (toml = verifiers endpoints.toml, "
                             "py = legacy endpoints.py, litellm/yaml = LiteLLM config.yaml, json).")(f)


def registry_options(f: F) -> F:
    """--registry/--format/--add: where a server is registered once ready (watch, submit)."""
    f = click.option("--add", "add_replica", is_flag=True,
                     help="Register as one more server (replica) of the alias instead of replacing its entry.")(f)
    f = registry_format_option(f)
    f = click.option("--registry", "registries", multiple=True, metavar="PATH",
                     help="Endpoint registry to update once ready (repeatable; default: the profile's or "
                          "the alias's registries from the config file).")(f)
    return f


def client(home: Optional[str] = None, **flags: Any) -> Client:
    """The API client for these flags (config resolved once)."""
    from pbsvllm.api import Client

    return Client.from_flags({"home": home, **flags})


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))


def exit_with(code: int) -> None:
    """End the command with ``code`` (its output already printed). The exit
    itself happens in ``pbsvllm.cli.main``, the one place that exits."""
    if code:
        raise click.exceptions.Exit(code)


def follow_and_report(api: Client, records: Sequence[JobRecord], *, registries: Optional[Sequence[str]] = None,
                      add_replica: bool = False, timeout_s: Optional[float] = None, as_json: bool = False,
                      follow_ready: bool = False, quiet: bool = False) -> int:
    """Follow ``records`` with progress on the terminal (watch, submit --wait);
    return the exit code: 0 all ready and registered, 7 a server failed or the
    timeout ran out, 6 a server is ready but a registration asked for did not
    happen. ``quiet``: no progress; failures still get one line on stderr."""
    import sys

    from pbsvllm.errors import RegistryError, ServerError
    from pbsvllm.models import ServerState
    from pbsvllm.progress import ProgressReporter
    from pbsvllm.watcher import Reporter

    stream = sys.stderr if as_json else sys.stdout

    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    reporter: Reporter = Reporter() if quiet else ProgressReporter(write, tty=stream.isatty(),
                                                                     single_job=len(records) == 1)
    res = api.follow(records, registries=registries, add_replica=add_replica, timeout_s=timeout_s,
                     reporter=reporter, follow_ready=follow_ready)
    if as_json:
        echo_json(res.to_dicts())
    if res.timed_out:
        pending = [j.name for j in res.jobs if j.server_state != ServerState.READY and not j.server_state.is_final]
        click.echo(f"pbsvllm: timed out after {timeout_s:g} s; still not ready: {', '.join(pending)} "
                   "(run `pbsvllm watch` to resume)", err=True)
    failed = [j for j in res.jobs if j.server_state == ServerState.FAILED]
    if quiet:
        for j in failed:
            click.echo(f"pbsvllm: {j.name} failed: {j.failure_detail or j.failure}", err=True)
        for j in res.unregistered:
            click.echo(f"pbsvllm: {j.name} is ready but NOT registered: {'; '.join(j.registration_problems)}",
                       err=True)
    if failed or res.timed_out:
        return ServerError.exit_code
    return RegistryError.exit_code if res.unregistered else 0
