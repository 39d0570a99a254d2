"""Shell completion (bash, zsh, fish) on click's completion protocol.

``pbsvllm completion SHELL`` prints the script to source; on each TAB the
shell runs ``pbsvllm`` with ``_PBSVLLM_COMPLETE=<shell>_complete`` and click
asks the parameter being completed for its candidates. The candidates this
module adds:

- aliases and job ids of tracked jobs (``[ALIAS|JOB]`` arguments of
  ``status``, ``cancel``, ``logs``, ``watch``, ``doctor``, ``swap-endpoint``
  and ``--alias``), newest first, read from ``$PBSVLLM_HOME/jobs`` without
  asking any scheduler;
- profile names (built-in and the user config's ``[profiles.*]``) for
  ``--profile``.

:func:`attach` wires them to a command's parameters by name, so command
modules need no completion code; the CLI calls it when it loads a command.
Completion never fails loudly: an unreadable config or job store gives no
candidates rather than an error in the middle of the user's command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, List

if TYPE_CHECKING:  # pragma: no cover
    import click
    from click.shell_completion import CompletionItem

SHELLS = ("bash", "zsh", "fish")
PROG = "pbsvllm"
COMPLETE_VAR = "_PBSVLLM_COMPLETE"


def _settings_home() -> str:
    from pbsvllm.config import resolve

    return resolve({}).home


def _records() -> List[object]:
    """Tracked job records, newest first ([] when the store cannot be read)."""
    try:
        from pbsvllm.jobs import JobStore

        recs = JobStore(_settings_home()).list()
    except Exception:  # completion must never raise into the shell
        return []
    return sorted(recs, key=lambda r: float(getattr(r, "submitted_at", 0.0) or 0.0), reverse=True)


def alias_and_job_candidates(incomplete: str) -> List[CompletionItem]:
    """Aliases (with their newest job as help) then job ids, that start with ``incomplete``."""
    from click.shell_completion import CompletionItem

    # help texts carry no comma: click's fish script splits each answer on commas
    items: List[CompletionItem] = []
    seen = set()
    recs = _records()
    for r in recs:
        alias = str(getattr(r, "alias", "") or "")
        if alias and alias not in seen and alias.startswith(incomplete):
            seen.add(alias)
            items.append(CompletionItem(alias, help=f"alias (newest job {getattr(r, 'job_id', '')})"))
    for r in recs:
        job_id = str(getattr(r, "job_id", "") or "")
        if job_id and job_id not in seen and job_id.startswith(incomplete):
            seen.add(job_id)
            items.append(CompletionItem(job_id, help=f"job of {getattr(r, 'alias', '') or 'no alias'}"))
    return items


def alias_candidates(incomplete: str) -> List[CompletionItem]:
    return [c for c in alias_and_job_candidates(incomplete) if str(c.help or "").startswith("alias")]


def profile_candidates(incomplete: str) -> List[CompletionItem]:
    """Built-in profiles and the user config's ``[profiles.*]``."""
    from click.shell_completion import CompletionItem

    from pbsvllm.config import builtin_profile_names

    names: Dict[str, str] = {n: "built-in profile" for n in builtin_profile_names()}
    try:
        from pbsvllm.config import resolve, user_profile_tables

        path = resolve({}).config_path
        for n in user_profile_tables(path):
            names[str(n)] = f"profile from {path}"
    except Exception:  # a broken config: the built-in names are still useful
        pass
    return [CompletionItem(n, help=h) for n, h in sorted(names.items()) if n.startswith(incomplete)]


Completer = Callable[["click.Context", "click.Parameter", str], List["CompletionItem"]]


def _wrap(fn: Callable[[str], List[CompletionItem]]) -> Completer:
    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> List[CompletionItem]:
        return fn(incomplete)
    return complete


def log_file_or_job_candidates(incomplete: str) -> List[CompletionItem]:
    """doctor's LOG|ALIAS|JOB: tracked aliases and jobs, and the shell's own file completion."""
    from click.shell_completion import CompletionItem

    # the file item first: bash resets its list on it, then falls back to files only when no alias matches
    return [CompletionItem(incomplete, type="file")] + alias_and_job_candidates(incomplete)


#: parameter name -> completer, for every command; arguments named target(s) take an alias or a job id
BY_PARAM: Dict[str, Completer] = {
    "target": _wrap(alias_and_job_candidates),
    "targets": _wrap(alias_and_job_candidates),
    "profile": _wrap(profile_candidates),
}
#: per command: parameters whose meaning differs there
PER_COMMAND: Dict[str, Dict[str, Completer]] = {
    "bench": {"target": _wrap(alias_candidates), "other": _wrap(alias_candidates)},  # an alias or a URL
    "swap-endpoint": {"alias": _wrap(alias_candidates)},
    "cleanup": {"aliases": _wrap(alias_candidates)},
    "doctor": {"target": _wrap(log_file_or_job_candidates)},
    "profiles": {"name": _wrap(profile_candidates)},
    "url": {"alias": _wrap(alias_candidates)},
}


def attach(command: click.Command, name: str) -> click.Command:
    """Give ``command``'s parameters their completers (those without one already).

    Sets click 8's per-parameter ``shell_complete`` callback after the fact
    (``Parameter._custom_shell_complete``, what ``shell_complete=`` stores),
    so command modules stay free of completion code."""
    table = {**BY_PARAM, **PER_COMMAND.get(name, {})}
    for param in command.params:
        fn = table.get(param.name or "")
        if fn is not None and getattr(param, "_custom_shell_complete", None) is None:
            param._custom_shell_complete = fn
    return command


def script(shell: str) -> str:
    """The completion script for ``shell`` (what ``eval "$(pbsvllm completion bash)"`` runs)."""
    from click.shell_completion import get_completion_class

    from pbsvllm.cli import cli

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - SHELLS are click's own
        raise ValueError(shell)
    return str(cls(cli, {}, PROG, COMPLETE_VAR).source())


def install_hint(shell: str, home: str = "~") -> str:
    """Where to put the script so new shells pick it up."""
    return {
        "bash": f"pbsvllm completion bash > {home}/.local/share/bash-completion/completions/pbsvllm",
        "zsh": f"pbsvllm completion zsh > {home}/.zfunc/_pbsvllm   "
               f"# with fpath+=({home}/.zfunc) before compinit in ~/.zshrc",
        "fish": f"pbsvllm completion fish > {home}/.config/fish/completions/pbsvllm.fish",
    }[shell]
