"""The embedded ``local`` backend: no scheduler, the job runs on this machine.

The rendered PBS script runs detached in its own session with the PBS
environment a script expects (``PBS_JOBID=local-<n>``, ``PBS_JOBNAME``,
``PBS_O_WORKDIR``, ``PBS_NODEFILE``, ``NCPUS``, ...), its output goes to the
files a PBS job would write (``#PBS -o/-e/-j oe``, else
``<workdir>/<name>.o<n>``), and it survives the CLI exiting. State lives in
``$PBSVLLM_HOME/local/<job id>/``: ``meta.json`` (what to run),
``supervisor.json`` and ``run.json`` (pids), ``exit.json`` (exit status,
written atomically by the supervisor). Status comes from psutil and that
file; cancel sends SIGTERM to the job's process group and SIGKILL after a
grace period.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Dict, Iterable, Optional

from pbsvllm.errors import ConfigError, SchedulerError
from pbsvllm.fileio import file_lock
from pbsvllm.models import JobState
from pbsvllm.scheduler.base import (
    JobStatus,
    Scheduler,
    SubmitOptions,
    exit_phrase,
    interpret_exit_status,
    not_found,
    parse_duration,
    unknown_status,
)
from pbsvllm.transport.base import Transport
from pbsvllm.transport.local import atomic_write_text, makedirs_private

_LOCAL_ID_RE = re.compile(r"^local-(\d+)$")


class LocalScheduler(Scheduler):
    name = "local"

    def __init__(self, transport: Transport, *, home: Optional[str] = None, grace_s: float = 10.0, **kw: Any) -> None:
        super().__init__(transport, **kw)
        if not transport.is_local:
            raise ConfigError(
                f"the local backend runs jobs on this machine, but the target is {transport.host}",
                hint="use --scheduler pbspro or torque with --host, or drop --host",
            )
        if not home:  # the one default of PBSVLLM_HOME is pbsvllm.config's (Settings.home)
            raise ConfigError("internal: the local backend needs the pbsvllm home (Settings.home)")
        self.home = os.path.abspath(home)
        self.root = os.path.join(self.home, "local")
        self.grace_s = grace_s

    # -- ids and folders
    def _jobdir(self, job_id: str) -> str:
        if not _LOCAL_ID_RE.match(str(job_id)):
            raise not_found(str(job_id), self.describe(), "local job ids look like local-<n>")
        return os.path.join(self.root, str(job_id))

    def _next_id(self) -> str:
        makedirs_private(self.root)
        with file_lock(os.path.join(self.root, ".counter.lock"), f"the local job counter in {self.root}",
                       error=SchedulerError):
            path = os.path.join(self.root, "counter")
            try:
                with open(path, encoding="utf-8") as fh:
                    n = int(fh.read().strip() or 0)
            except (OSError, ValueError):
                n = 0
            while True:
                n += 1
                if not os.path.exists(os.path.join(self.root, f"local-{n}")):
                    break
            atomic_write_text(path, f"{n}\n")
            os.makedirs(os.path.join(self.root, f"local-{n}"), mode=0o700)
        return f"local-{n}"

    # -- submit
    def submit(self, script_path: str, options: Any = None) -> str:
        from pbsvllm.scheduler.torque import script_directives

        opts = SubmitOptions.coerce(options)
        script = os.path.abspath(os.path.expanduser(script_path))
        try:
            with open(script, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise SchedulerError(f"cannot read the job script {script}: {exc.strerror}") from None
        d = script_directives(text)
        job_id = self._next_id()
        seq = job_id.split("-", 1)[1]
        jobdir = os.path.join(self.root, job_id)
        workdir = os.path.abspath(opts.workdir or os.getcwd())
        name = opts.job_name or d.get("-N") or os.path.basename(script)
        walltime = opts.walltime or _resource(d.get("-l", ""), "walltime")
        walltime_s = parse_duration(walltime) if walltime else None
        ncpus = opts.ncpus or _int(_resource(d.get("-l", ""), "ncpus")) or os.cpu_count() or 1
        join = (d.get("-j") or "").startswith("o")
        stdout = _out_path(d.get("-o"), workdir, f"{name}.o{seq}")
        stderr = None if join else _out_path(d.get("-e"), workdir, f"{name}.e{seq}")
        host = socket.gethostname()
        nodefile = os.path.join(jobdir, "nodefile")
        atomic_write_text(nodefile, host + "\n", 0o644)
        # Only the PBS variables are stored; the rest of the environment is
        # inherited from this process (never written to disk).
        env: Dict[str, str] = {}
        env.update(
            {
                "PBS_JOBID": job_id,
                "PBS_JOBNAME": name,
                "PBS_O_WORKDIR": workdir,
                "PBS_O_HOME": os.path.expanduser("~"),
                "PBS_O_HOST": host,
                "PBS_O_PATH": os.environ.get("PATH", ""),
                "PBS_O_SHELL": os.environ.get("SHELL", "/bin/bash"),
                "PBS_O_QUEUE": "local",
                "PBS_QUEUE": "local",
                "PBS_ENVIRONMENT": "PBS_BATCH",
                "PBS_NODEFILE": nodefile,
                "PBS_NODENUM": "0",
                "PBS_TASKNUM": "1",
                "PBS_JOBDIR": workdir,
                "NCPUS": str(ncpus),
                "PBSVLLM_SCHEDULER": "local",
            }
        )
        if opts.account:
            env["PBS_ACCOUNT"] = opts.account
        env.update({str(k): str(v) for k, v in opts.env.items()})
        meta = {
            "job_id": job_id,
            "script": script,
            "name": name,
            "workdir": workdir,
            "stdout": stdout,
            "stderr": stderr,
            "walltime_s": walltime_s,
            "ncpus": ncpus,
            "host": host,
            "grace_s": self.grace_s,
            "submitted_at": time.time(),
            "env": env,
        }
        atomic_write_text(os.path.join(jobdir, "meta.json"), json.dumps(meta), 0o600)
        self.calls += 1
        proc = subprocess.Popen(
            [sys.executable, "-m", "pbsvllm.scheduler._localrun", jobdir],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(jobdir, "supervisor.log"), "ab"),
            start_new_session=True,
            close_fds=True,
            cwd=workdir,
            env=_python_env(),
        )
        rc = proc.wait(timeout=30)
        if rc != 0 or not os.path.exists(os.path.join(jobdir, "supervisor.json")):
            raise SchedulerError(
                f"the local backend could not start job {job_id} (supervisor exited {rc});"
                f" see {os.path.join(jobdir, 'supervisor.log')}",
                hint=f"the script is kept at {script}",
            )
        return job_id

    # -- status
    def status(self, job_ids: Iterable[str]) -> Dict[str, JobStatus]:
        self.calls += 1
        out: Dict[str, JobStatus] = {}
        for jid in dict.fromkeys(str(j) for j in job_ids):
            out[jid] = self._one(jid)
        return out

    def _one(self, job_id: str) -> JobStatus:
        if not _LOCAL_ID_RE.match(job_id):
            return unknown_status(job_id, "not a local job id")
        jobdir = os.path.join(self.root, job_id)
        meta = _read_json(os.path.join(jobdir, "meta.json"))
        if meta is None:
            return unknown_status(job_id, f"no local job folder {jobdir}")
        limit = meta.get("walltime_s")
        base: Dict[str, Any] = dict(
            job_id=job_id,
            queue="local",
            exec_host=str(meta.get("host", "")),
            name=str(meta.get("name", "")),
            walltime_limit_s=limit,
        )
        ex = _read_json(os.path.join(jobdir, "exit.json"))
        run = _read_json(os.path.join(jobdir, "run.json")) or {}
        if ex is not None:
            code = ex.get("exit_status")
            state, reason = interpret_exit_status(code if isinstance(code, int) else None)
            if ex.get("cancelled"):
                state, reason = JobState.CANCELLED, f"cancelled; {exit_phrase(code if isinstance(code, int) else None)}"
            if ex.get("error"):
                reason = f"the local supervisor failed: {ex['error']}"
            used = None
            if ex.get("start_time") and ex.get("end_time"):
                used = int(ex["end_time"] - ex["start_time"])
            return JobStatus(
                state=state, raw_state="F", exit_status=code, exit_reason=reason, walltime_used_s=used, **base
            )
        sup = _read_json(os.path.join(jobdir, "supervisor.json")) or {}
        if _alive(sup.get("pid")):
            started = run.get("start_time")
            if not started:
                return JobStatus(state=JobState.PENDING, raw_state="Q", **base)
            return JobStatus(state=JobState.RUNNING, raw_state="R", walltime_used_s=int(time.time() - started), **base)
        return JobStatus(
            state=JobState.UNKNOWN,
            raw_state="",
            comment="the local supervisor is gone without recording an exit status (killed, or the machine rebooted)",
            **base,
        )

    # -- cancel
    def cancel(self, job_id: str, force: bool = False) -> str:
        jobdir = self._jobdir(job_id)
        if not os.path.exists(os.path.join(jobdir, "meta.json")):
            raise not_found(job_id, self.describe(), f"no folder {jobdir}")
        self.calls += 1
        if os.path.exists(os.path.join(jobdir, "exit.json")):
            return f"job {job_id} had already finished"
        sup = _read_json(os.path.join(jobdir, "supervisor.json")) or {}
        run = _read_json(os.path.join(jobdir, "run.json")) or {}
        pgid = run.get("pgid")
        if force or not _alive(sup.get("pid")):
            if pgid:
                _killpg(int(pgid), signal.SIGKILL)
            if _alive(sup.get("pid")):
                os.kill(int(sup["pid"]), signal.SIGTERM)  # records "cancelled"
            return f"killed job {job_id} (SIGKILL to its process group)"
        os.kill(int(sup["pid"]), signal.SIGTERM)
        return f"asked job {job_id} to end (SIGTERM, then SIGKILL after {self.grace_s:g} s)"

    def wait_gone(self, job_id: str, timeout: float = 30.0) -> bool:
        """Block until the job's exit status is recorded (tests, examples)."""
        end = time.monotonic() + timeout
        path = os.path.join(self._jobdir(job_id), "exit.json")
        while time.monotonic() < end:
            if os.path.exists(path):
                return True
            time.sleep(0.1)
        return False


def _python_env() -> Dict[str, str]:
    env = dict(os.environ)
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _resource(lvalue: str, key: str) -> Optional[str]:
    """``walltime`` / ``ncpus`` from a ``-l`` value such as
    ``select=1:ncpus=4,walltime=01:00:00`` (a value runs until ``,`` or
    ``:<letter>``, so times keep their colons)."""
    m = re.search(r"(?:^|[,:])" + re.escape(key) + r"=([^,]+?)(?=,|:[A-Za-z]|$)", lvalue or "")
    return m.group(1).strip() if m else None


def _int(v: Optional[str]) -> Optional[int]:
    try:
        return int(v) if v else None
    except ValueError:
        return None


def _out_path(value: Optional[str], workdir: str, default_name: str) -> str:
    if not value:
        return os.path.join(workdir, default_name)
    if ":" in value and not value.startswith("/"):
        value = value.split(":", 1)[1]  # host:path
    value = os.path.expanduser(value)
    if not os.path.isabs(value):
        value = os.path.join(workdir, value)
    if value.endswith("/") or os.path.isdir(value):
        value = os.path.join(value, default_name)
    return value


def _read_json(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _alive(pid: Any) -> bool:
    if not pid:
        return False
    import psutil

    try:
        p = psutil.Process(int(pid))
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return any("_localrun" in part for part in p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
