"""One hierarchy of domain errors.

The CLI maps every :class:`PbsvllmError` to one line on stderr and the
error's ``exit_code`` in exactly one place (``pbsvllm.cli.main``). Library
code raises these; it never prints and never calls ``sys.exit``.

Messages are complete sentences that say what went wrong, where (file, key,
command, host) and what to do about it.

Every exit status pbsvllm uses is in :data:`EXIT_CODES` (docs/exit-codes.md
shows the same table; a test keeps the two equal). No domain error uses 2,
which click keeps for a usage error (unknown option, missing argument).
"""

from __future__ import annotations

from typing import Dict, Tuple

#: Exit status of a click usage error (bad option, missing argument): no
#: domain error may use it.
USAGE = 2
#: Interrupted (Ctrl-C) or aborted at a prompt: 128 + SIGINT, as shells do.
INTERRUPTED = 130


class PbsvllmError(Exception):
    """Base of every error the CLI reports as one line."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(PbsvllmError):
    """Bad or unknown configuration: names the file and the key."""

    exit_code = 10


class ModelFactsError(PbsvllmError):
    """No facts for a model: says which override to pass."""

    exit_code = 11


class PlanError(PbsvllmError):
    """The model cannot be served on the requested hardware as asked."""

    exit_code = 12


class FlagError(PbsvllmError):
    """A vLLM flag unknown to, or removed in, the target vLLM version."""

    exit_code = 13


class TemplateError(PbsvllmError):
    """A job-script template could not be found or rendered."""

    exit_code = 14


class TransportError(PbsvllmError):
    """Running a command or moving a file on the target host failed."""

    exit_code = 3


class SchedulerError(PbsvllmError):
    """A scheduler command failed; the message quotes command, rc and output."""

    exit_code = 4


class JobNotFoundError(PbsvllmError):
    """No tracked job (or scheduler job) by that alias or id."""

    exit_code = 5


class RegistryError(PbsvllmError):
    """An endpoint registry could not be read, parsed or written safely."""

    exit_code = 6


class ServerError(PbsvllmError):
    """A vLLM server failed to start or is not ready."""

    exit_code = 7


class ProbeError(PbsvllmError):
    """No NVIDIA driver or no GPU on this node (distinct exit code)."""

    exit_code = 8


class LogParseError(PbsvllmError):
    """A log file could not be read."""

    exit_code = 9


class ParseError(PbsvllmError):
    """Scheduler output could not be parsed: quotes what was expected and the raw text."""

    exit_code = 4


#: exit status -> (error class or origin, meaning). The one table of exit codes.
EXIT_CODES: Dict[int, Tuple[str, str]] = {
    0: ("-", "success"),
    1: ("PbsvllmError", "any other error pbsvllm reports in one line (and an unexpected failure)"),
    USAGE: ("click usage error", "the command line itself is wrong: unknown option, missing or bad argument"),
    TransportError.exit_code: ("TransportError", "a command or a file on the target host (SSH or local) failed; "
                               "also `status` when a job could not be refreshed"),
    SchedulerError.exit_code: ("SchedulerError, ParseError",
                               "qsub/qstat/qdel failed or printed something pbsvllm cannot read"),
    JobNotFoundError.exit_code: ("JobNotFoundError", "no tracked job (or scheduler job) by that alias or id"),
    RegistryError.exit_code: ("RegistryError", "an endpoint registry could not be read, parsed or written; "
                              "a registration that was asked for did not happen"),
    ServerError.exit_code: ("ServerError",
                            "the vLLM server failed, was not ready in time, or every bench request failed"),
    ProbeError.exit_code: ("ProbeError", "no NVIDIA driver or no GPU on this node (`probe`)"),
    LogParseError.exit_code: ("LogParseError", "a vLLM log could not be found or read (`doctor`, `logs`)"),
    ConfigError.exit_code: ("ConfigError", "bad or unknown configuration: a config file, profile, flag value or "
                            "environment variable; names the file and the key"),
    ModelFactsError.exit_code: ("ModelFactsError", "no facts for the model: pass --params or a local config.json"),
    PlanError.exit_code: ("PlanError", "the model cannot be served on the requested hardware as asked"),
    FlagError.exit_code: ("FlagError", "a vLLM flag unknown to, or removed in, the target vLLM version"),
    TemplateError.exit_code: ("TemplateError", "a job-script template could not be found or rendered"),
    INTERRUPTED: ("KeyboardInterrupt, click Abort", "interrupted (Ctrl-C) or aborted at a prompt"),
}


def error_classes() -> Tuple[type, ...]:
    """Every subclass of :class:`PbsvllmError` defined here."""
    return tuple(c for c in globals().values()
                 if isinstance(c, type) and issubclass(c, PbsvllmError))
