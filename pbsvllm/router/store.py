"""The router's files under ``$PBSVLLM_HOME/routers/<alias>/`` (0700 folder, 0600 files).

* ``state.json``     the :class:`~pbsvllm.router.model.RouterState` (port, members...), replaced atomically
* ``supervisor.pid`` the supervisor's pid (it starts and restarts ``vllm-router``)
* ``router.log``     the supervisor's and ``vllm-router``'s output
* ``.lock``          ``flock`` held around every read-modify-write of the state
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from typing import Callable, Iterator, List, Optional

from pbsvllm.errors import PbsvllmError
from pbsvllm.router.model import RouterState, check_alias
from pbsvllm.transport.local import atomic_write_text, makedirs_private


def routers_dir(home: str) -> str:
    return os.path.join(home, "routers")


class RouterStore:
    """One alias's router folder."""

    def __init__(self, home: str, alias: str) -> None:
        self.home = home
        self.alias = check_alias(alias)
        self.dir = os.path.join(routers_dir(home), alias)
        self.state_path = os.path.join(self.dir, "state.json")
        self.pid_path = os.path.join(self.dir, "supervisor.pid")
        self.log_path = os.path.join(self.dir, "router.log")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        makedirs_private(self.dir)
        fd = os.open(os.path.join(self.dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def read(self) -> Optional[RouterState]:
        try:
            with open(self.state_path, encoding="utf-8") as fh:
                return RouterState.from_dict(json.load(fh))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise PbsvllmError(f"router state {self.state_path} is unreadable: {exc}",
                               hint="move the file away and run `pbsvllm router start " + self.alias + "`") from None

    def write(self, state: RouterState) -> None:
        atomic_write_text(self.state_path, state.to_json())

    def update(self, change: Callable[[Optional[RouterState]], RouterState]) -> RouterState:
        """Read, change and write the state under the lock; returns the new state."""
        with self.lock():
            new = change(self.read())
            self.write(new)
            return new

    def pid(self) -> Optional[int]:
        try:
            with open(self.pid_path, encoding="utf-8") as fh:
                return int(fh.read().strip() or "0") or None
        except (FileNotFoundError, ValueError):
            return None

    def supervisor_alive(self) -> Optional[int]:
        """The supervisor's pid while one runs, else None.

        A running supervisor holds an exclusive ``flock`` on
        ``supervisor.pid.lock`` for its whole life, so this test survives pid
        reuse and a stale pid file.
        """
        try:
            fd = os.open(self.pid_path + ".lock", os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return self.pid() or -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


def list_aliases(home: str) -> List[str]:
    """Aliases that have a router folder with a state file."""
    try:
        names = sorted(os.listdir(routers_dir(home)))
    except FileNotFoundError:
        return []
    return [n for n in names if os.path.isfile(os.path.join(routers_dir(home), n, "state.json"))]
