"""One hierarchy of domain errors.

The CLI maps every :class:`PbsvllmError` to one line on stderr and the
error's ``exit_code`` in exactly one place (``pbsvllm.cli.main``). Library
code raises these; it never prints and never calls ``sys.exit``.

Messages are complete sentences that say what went wrong, where (file, key,
command, host) and what to do about it.
"""

from __future__ import annotations


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

    exit_code = 2


class ModelFactsError(PbsvllmError):
    """No facts for a model: says which override to pass."""

    exit_code = 2


class PlanError(PbsvllmError):
    """The model cannot be served on the requested hardware as asked."""

    exit_code = 2


class FlagError(PbsvllmError):
    """A vLLM flag unknown to, or removed in, the target vLLM version."""

    exit_code = 2


class TemplateError(PbsvllmError):
    """A job-script template could not be found or rendered."""

    exit_code = 2


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
