"""The command line: parse, call the library, print.

Commands live one per module in ``pbsvllm.commands`` and are imported only
when invoked, so ``pbsvllm --help`` imports neither paramiko, jinja2 nor
pynvml (a test checks ``sys.modules``). Command modules import only click
and the standard library at module level; anything heavy is imported inside
the command function.

Domain errors (:class:`pbsvllm.errors.PbsvllmError`) become one line on
stderr and the error's exit code here, in ``main`` and nowhere else.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Dict, List, Optional, Tuple

import click

from pbsvllm import __version__
from pbsvllm.errors import PbsvllmError

# name -> (module under pbsvllm.commands, one-line help shown by --help)
COMMANDS: Dict[str, Tuple[str, str]] = {
    "plan": ("plan", "Plan tuned vLLM flags for a model on a node (flag, value, why)."),
    "submit": ("submit", "Render the PBS script for a model and submit it (--dry-run prints it)."),
    "status": ("status", "One view of every tracked server: job state, readiness, URL, metrics."),
    "watch": ("watch", "Follow pending jobs until ready; register them in endpoint registries."),
    "cancel": ("cancel", "Cancel a tracked job (qdel; --force for qdel -W force)."),
    "logs": ("logs", "Show or follow a job's realtime vLLM log (--stats for engine stats)."),
    "swap-endpoint": ("swap", "Move an alias to another server with zero failed requests."),
    "doctor": ("doctor", "Read a vLLM log: what is slow, why, and exactly what to change."),
    "probe": ("probe", "Describe this node's GPUs and their links (pynvml)."),
    "cleanup": ("cleanup", "End this user's leftover pbsvllm servers on this node."),
    "bench": ("bench", "Load-test an endpoint: throughput and latency per concurrency."),
    "router": ("router", "The alias's router: one stable URL for all its servers (start|stop|status)."),
    "url": ("url", "Print an alias's stable base URL (its router's); --json: url, model, api_key_var."),
    "scale": ("scale", "Submit or cancel jobs until N servers of an alias run (behind its router)."),
    "profiles": ("profiles", "List built-in and user site profiles."),
    "models": ("models", "Browse the built-in model catalog and what plan would do for each."),
    "completion": ("completion", "Print the shell-completion script (bash, zsh, fish)."),
    "keepalive": ("keepalive", "Keep an alias served across walltime and failed jobs (start, stop, status)."),
    "top": ("top", "Live view of every server: tokens/s, running/waiting, KV use, prefix hits, TTFT."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> List[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        cmd = super().get_command(ctx, name)
        if cmd is not None:
            return cmd
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"pbsvllm.commands.{COMMANDS[name][0]}")
        cmd = module.command
        cmd.name = name
        if os.environ.get("_PBSVLLM_COMPLETE"):  # a TAB in the shell: aliases, job ids, profiles
            from pbsvllm.completion import attach

            attach(cmd, name)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Show the help from the table without importing any command module.
        rows = [(name, COMMANDS[name][1]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="pbsvllm")
def cli() -> None:
    """Serve LLMs with vLLM on PBS clusters, correctly and fast.

    Plans tuned vLLM flags for the model and the node, renders and submits
    PBS job scripts (PBS Pro, Torque, or this machine alone), waits until
    the server really answers, and keeps endpoint registries up to date.
    """


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point: the one place where domain errors become exit codes."""
    from pbsvllm.safety import clean, install_output_filter

    install_output_filter()  # API keys are redacted from everything printed
    said = ""
    try:
        try:
            rv = cli.main(args=argv, prog_name="pbsvllm", standalone_mode=False)
        except PbsvllmError as exc:
            # one line, whatever a server, a log or a scheduler put into the message
            said = clean(str(exc), one_line=True)
            click.echo(f"pbsvllm: error: {said}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("pbsvllm: aborted", err=True)
            sys.exit(130)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("pbsvllm: interrupted", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)
    finally:
        _name_bad_records(said)


def _name_bad_records(already_said: str) -> None:
    """Name each job record this command had to skip, once, with the fix."""
    jobs = sys.modules.get("pbsvllm.jobs")
    if jobs is None:
        return
    for path, note in zip(sorted(jobs.BAD_RECORDS), jobs.bad_record_notes()):
        if path not in already_said:
            click.echo(f"pbsvllm: warning: {note}", err=True)
