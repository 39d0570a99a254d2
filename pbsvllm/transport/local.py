"""Run commands and move files on this machine (subprocess, argv lists)."""

from __future__ import annotations

import os
import subprocess
from typing import Dict, Optional, Sequence

from pbsvllm.errors import TransportError
from pbsvllm.fileio import atomic_write
from pbsvllm.transport.base import RunResult, Transport, describe_argv


def makedirs_private(folder: str) -> None:
    """Create ``folder`` and any missing parents with mode 0700 (existing ones are left alone)."""
    missing = []
    cur = os.path.abspath(folder)
    while not os.path.isdir(cur):
        missing.append(cur)
        parent = os.path.dirname(cur)
        if parent == cur:
            break
        cur = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
            os.chmod(d, 0o700)  # umask may have narrowed the bits; make them exact
        except FileExistsError:
            pass


def atomic_write_text(path: str, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` atomically (:func:`pbsvllm.fileio.atomic_write`),
    creating missing folders 0700 first. Never half-written."""
    makedirs_private(os.path.dirname(os.path.abspath(path)))
    atomic_write(path, text, mode)


class LocalTransport(Transport):
    """This machine: ``subprocess.run`` with an argv list, no shell."""

    host = "localhost"
    is_local = True

    def run(
        self,
        argv: Sequence[str],
        timeout: float,
        input: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
    ) -> RunResult:
        self.calls += 1
        argv = [str(a) for a in argv]
        full_env = None
        if env:
            full_env = dict(os.environ)
            full_env.update({str(k): str(v) for k, v in env.items()})
        try:
            proc = subprocess.run(
                argv,
                input=input,
                capture_output=True,
                text=True,
                errors="replace",  # a Latin-1 job name must not stop a status
                timeout=timeout,
                env=full_env,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except FileNotFoundError:
            return 127, "", f"{argv[0]}: command not found"
        except PermissionError as exc:
            return 126, "", f"{argv[0]}: {exc.strerror}"
        except subprocess.TimeoutExpired:
            raise TransportError(
                f"`{describe_argv(argv)}` on localhost did not finish within {timeout:g} s",
                hint="the scheduler may be overloaded; try again or raise the timeout",
            ) from None
        return proc.returncode, proc.stdout, proc.stderr

    def read_text(self, path: str) -> str:
        try:
            with open(os.path.expanduser(path), encoding="utf-8") as fh:
                return fh.read()
        except OSError as exc:
            raise TransportError(f"cannot read {path} on localhost: {exc.strerror}") from None

    def write_text(self, path: str, text: str, mode: int = 0o600) -> None:
        try:
            atomic_write_text(os.path.expanduser(path), text, mode)
        except OSError as exc:
            raise TransportError(f"cannot write {path} on localhost: {exc.strerror}") from None

    def exists(self, path: str) -> bool:
        return os.path.exists(os.path.expanduser(path))

    def size(self, path: str) -> Optional[int]:
        try:
            return os.stat(os.path.expanduser(path)).st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TransportError(f"cannot look at {path} on localhost: {exc.strerror}") from None

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError("offset and length must not be negative")
        try:
            with open(os.path.expanduser(path), "rb") as fh:
                fh.seek(offset)
                return fh.read(length)
        except OSError as exc:
            raise TransportError(f"cannot read {path} on localhost: {exc.strerror}") from None

    def expanduser(self, path: str) -> str:
        return os.path.expanduser(path)
