"""The keep-alive process: one detached supervisor per alias, revived by
any later pbsvllm command.

``spawn(home, alias)`` starts ``python -m pbsvllm.keepalive.daemon HOME ALIAS``
in its own session (it outlives the shell and the login session that
started it; its output goes to ``$PBSVLLM_HOME/keepalive/<alias>.log``).
The process holds an exclusive lock on ``.<alias>.run`` for its whole life,
so at most one supervisor runs per alias whatever starts them; it writes a
heartbeat into the chain file on every step.

``ensure(home, alias)`` is what ``status``, ``url`` and ``keepalive status``
call: if the chain is not stopped and no process holds the run lock, a new
supervisor is spawned. A supervisor killed with ``kill -9`` therefore costs
nothing but the time until the next pbsvllm command (serving goes on: the
jobs and the router do not depend on it), and the new one resumes from the
chain file.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from typing import Callable, Optional

from pbsvllm.keepalive.state import ChainStore, check_alias


def _run_lock_path(store: ChainStore, alias: str) -> str:
    return os.path.join(store.dir, f".{check_alias(alias)}.run")


def is_running(store: ChainStore, alias: str) -> bool:
    """True when a supervisor process holds the alias's run lock."""
    path = _run_lock_path(store, alias)
    if not os.path.exists(path):
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def spawn(home: str, alias: str) -> int:
    """Start a detached supervisor for ``alias``; its pid."""
    store = ChainStore(home)
    os.makedirs(store.dir, mode=0o700, exist_ok=True)
    log = open(os.path.join(store.dir, f"{check_alias(alias)}.log"), "ab")
    try:
        env = dict(os.environ)
        env["PBSVLLM_HOME"] = home
        proc = subprocess.Popen(
            [sys.executable, "-m", "pbsvllm.keepalive.daemon", home, alias],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, env=env,
        )
    finally:
        log.close()
    return proc.pid


def ensure(home: str, alias: str) -> Optional[int]:
    """Revive the alias's supervisor if its chain runs and no process serves it.

    Returns the new pid, or None when nothing had to be started.
    """
    store = ChainStore(home)
    st = store.load(alias)
    if st is None or st.stopped or is_running(store, alias):
        return None
    return spawn(home, alias)


def stop(home: str, alias: str, timeout_s: float = 10.0) -> bool:
    """SIGTERM the alias's supervisor (the chain's jobs are left as they are)."""
    store = ChainStore(home)
    st = store.load(alias)
    pid = st.supervisor_pid if st else None
    if not pid or not is_running(store, alias):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and is_running(store, alias):
        time.sleep(0.1)
    return not is_running(store, alias)


def serve(home: str, alias: str, make_ports: Callable[[], object], *,
          sleep: Callable[[float], None] = time.sleep) -> int:
    """The supervisor's loop (run inside the detached process)."""
    from pbsvllm.errors import PbsvllmError
    from pbsvllm.keepalive.supervisor import Supervisor

    store = ChainStore(home)
    os.makedirs(store.dir, mode=0o700, exist_ok=True)
    fd = os.open(_run_lock_path(store, alias), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"keepalive {alias}: another supervisor runs; leaving", flush=True)
        return 0
    stopping = {"now": False}

    def _term(signum: int, _frame: object) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    with store.lock(alias):
        st = store.load(alias)
        if st is None:
            print(f"keepalive {alias}: no chain file; leaving", flush=True)
            return 1
        st.supervisor_pid = os.getpid()
        store.save(st)
    sup = Supervisor(store, alias, make_ports())  # type: ignore[arg-type]
    errors = 0
    while not stopping["now"]:
        try:
            result = sup.step()
            errors = 0
        except PbsvllmError as exc:
            errors += 1
            print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} keepalive {alias}: {exc}", flush=True)
            time.sleep(min(60.0, 5.0 * errors))
            continue
        for a in result.actions:
            if a.kind.value != "wait":
                print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {a.kind.value} {a.job_id} {a.reason}", flush=True)
        if result.state.stopped:
            print(f"keepalive {alias}: chain stopped: {result.state.stop_reason}", flush=True)
            return 0
        delay = max(0.5, result.next_at - time.time())
        end = time.monotonic() + delay
        while not stopping["now"] and time.monotonic() < end:
            sleep(min(0.5, end - time.monotonic()) if end > time.monotonic() else 0)
    return 0


def main(argv: list) -> int:
    home, alias = argv[1], argv[2]
    from pbsvllm.keepalive.ports import LivePorts

    return serve(home, alias, lambda: LivePorts(home, alias))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
