"""The transport seam: run a command and move files on the target host.

Files are read whole (``read_text``) or in byte ranges (``size`` +
``read_range``: what :mod:`pbsvllm.logtail` uses to follow a growing log
without reading it again).

Scheduler code talks to a :class:`Transport` and never asks which one it
has. ``run`` takes an argv list (never a shell string); a missing program
reads as exit status 127, the way a shell reports it, on every transport.
"""

from __future__ import annotations

import abc
from typing import Dict, Optional, Sequence, Tuple

RunResult = Tuple[int, str, str]


class Transport(abc.ABC):
    """Run commands and read/write files on one host."""

    #: Human name of the target ("localhost", "me@polaris").
    host: str = "localhost"
    #: True when commands run on this very machine (processes are visible
    #: to psutil here). The local scheduler backend needs that.
    is_local: bool = True

    def __init__(self) -> None:
        #: Number of commands run (benchmarks and tests count round trips).
        self.calls = 0
        #: Number of connections opened (SSH; 0 for the local transport).
        self.connections = 0

    @abc.abstractmethod
    def run(
        self,
        argv: Sequence[str],
        timeout: float,
        input: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
    ) -> RunResult:
        """Run ``argv``; return ``(rc, stdout, stderr)``. rc 127: not found."""

    @abc.abstractmethod
    def read_text(self, path: str) -> str:
        """Return the file's text; TransportError if it cannot be read."""

    @abc.abstractmethod
    def write_text(self, path: str, text: str, mode: int = 0o600) -> None:
        """Replace ``path`` atomically (temp file in the same folder, then
        rename); parent folders are created with mode 0700."""

    @abc.abstractmethod
    def exists(self, path: str) -> bool:
        """True if ``path`` exists on the target."""

    @abc.abstractmethod
    def size(self, path: str) -> Optional[int]:
        """The file's size in bytes; None if it does not exist.
        TransportError if it cannot be looked at."""

    @abc.abstractmethod
    def read_range(self, path: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes of the file from byte ``offset`` (fewer at
        its end; none past it). TransportError if it cannot be read."""

    def expanduser(self, path: str) -> str:
        """Expand a leading ``~`` against the target's home directory."""
        return path

    def close(self) -> None:  # noqa: B027 -- optional: most transports hold nothing to release
        """Release connections; the transport may not be used afterwards."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe_argv(argv: Sequence[str]) -> str:
    """The command as a user would type it (for error messages)."""
    import shlex

    return shlex.join([str(a) for a in argv])
