"""Supervisor of one local-backend job (``python -m pbsvllm.scheduler._localrun JOBDIR``).

Started detached (own session) by :class:`pbsvllm.scheduler.local.LocalScheduler`;
it forks once so the CLI that started it can exit (and reap it) at once.
The grandchild runs the job script in its own process group with the PBS
environment from ``JOBDIR/meta.json``, enforces the walltime like PBS
(SIGTERM, then SIGKILL after the grace period; exit status -29), handles a
cancel request (SIGTERM to this supervisor -> SIGTERM to the job's group,
SIGKILL after the grace period) and records the exit status atomically in
``JOBDIR/exit.json``. The exit status follows PBS: the script's own code,
256+N when the script was killed by signal N.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from pbsvllm.fileio import atomic_write


def _write_json(path: str, data: dict) -> None:
    atomic_write(path, json.dumps(data), 0o600)


def _interpreter(script: str) -> list:
    try:
        with open(script, "rb") as fh:
            first = fh.readline(256).decode("utf-8", "replace").strip()
    except OSError:
        first = ""
    if first.startswith("#!"):
        import shlex

        return shlex.split(first[2:]) + [script]
    return ["/bin/bash", script]


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def supervise(jobdir: str) -> int:
    with open(os.path.join(jobdir, "meta.json"), encoding="utf-8") as fh:
        meta = json.load(fh)
    cancel = {"requested": False, "at": 0.0}

    def on_term(signum: int, frame: object) -> None:
        if not cancel["requested"]:
            cancel["requested"] = True
            cancel["at"] = time.monotonic()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    out_path = meta["stdout"]
    err_path = meta.get("stderr")
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    out = open(out_path, "ab", buffering=0)
    err = subprocess.STDOUT if not err_path else open(err_path, "ab", buffering=0)
    env = dict(os.environ)
    env.update(meta["env"])
    grace = float(meta.get("grace_s", 10))
    walltime = meta.get("walltime_s")
    start = time.time()
    child = subprocess.Popen(
        _interpreter(meta["script"]),
        cwd=meta.get("workdir") or None,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        start_new_session=True,  # own group: cancel signals the job, not us
        close_fds=True,
    )
    _write_json(
        os.path.join(jobdir, "run.json"),
        {"pgid": child.pid, "child_pid": child.pid, "supervisor_pid": os.getpid(), "start_time": start},
    )
    deadline = time.monotonic() + float(walltime) if walltime else None
    term_sent_at = None
    walltime_exceeded = False
    while True:
        try:
            rc = child.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if term_sent_at is None and cancel["requested"]:
            _kill_group(child.pid, signal.SIGTERM)
            term_sent_at = now
        if term_sent_at is None and deadline is not None and now >= deadline:
            walltime_exceeded = True
            msg = f"=>> PBS: job killed: walltime {int(time.time() - start)} exceeded limit {int(walltime)}\n"
            try:
                (err if not isinstance(err, int) else out).write(msg.encode())
            except (OSError, AttributeError):
                pass
            _kill_group(child.pid, signal.SIGTERM)
            term_sent_at = now
        if term_sent_at is not None and now - term_sent_at >= grace:
            _kill_group(child.pid, signal.SIGKILL)
            term_sent_at = float("inf")  # only once
    # the script is gone; end whatever it left in its group
    _kill_group(child.pid, signal.SIGKILL)
    exit_status = rc if rc >= 0 else 256 + (-rc)
    if walltime_exceeded:
        exit_status = -29
    _write_json(
        os.path.join(jobdir, "exit.json"),
        {
            "exit_status": exit_status,
            "script_rc": rc,
            "walltime_exceeded": walltime_exceeded,
            "cancelled": bool(cancel["requested"]) and not walltime_exceeded,
            "start_time": start,
            "end_time": time.time(),
        },
    )
    return 0


def main(argv: list) -> int:
    jobdir = argv[1]
    pid = os.fork()
    if pid > 0:
        # parent: record the supervisor's pid and leave (the CLI reaps us)
        _write_json(os.path.join(jobdir, "supervisor.json"), {"pid": pid})
        os._exit(0)
    try:
        return supervise(jobdir)
    except BaseException as exc:  # record why, then fail
        try:
            _write_json(
                os.path.join(jobdir, "exit.json"), {"exit_status": -1, "error": repr(exc), "end_time": time.time()}
            )
        finally:
            os._exit(1)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
