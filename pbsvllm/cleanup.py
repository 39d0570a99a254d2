"""Find and end this user's pbsvllm-started processes on this node.

The seed's clean-up was ``pkill -9 -u $USER vllm``: it kills every process of
the user whose name contains "vllm" (other servers, an editor on
``vllm.log``...), with no chance to shut down. This module ends only what
pbsvllm started, gracefully:

A process is a target when it belongs to this user (real and effective uid)
and one of these holds:

1. **marker**: its environment (``/proc/<pid>/environ``, read through psutil)
   holds ``PBSVLLM_JOB_ID``, which the job script exports before it starts
   vLLM, so vLLM's engine cores, Ray workers and any other children carry it
   too. When the environment also holds ``PBSVLLM_HOME``, it must be this
   home: servers of another pbsvllm home are left alone.
2. **recorded**: its pid, or its process group, is recorded (``pid``/``pgid``,
   also under ``replicas``) in a server-info file
   ``$PBSVLLM_HOME/run/<job_id>.server.json`` written for this node. To be
   safe against pid reuse, a recorded pid counts only if the process already
   existed when the file was last written, and a recorded group only if one
   of its members did (a group id cannot be reused while a member lives).
3. **descendant** of a target (owned by this user, whatever its environment).

Never selected: processes of other users, the process running the clean-up
and its ancestors (a job script may call ``pbsvllm cleanup`` from its exit
trap), and anything merely because of its name.

Targets get SIGTERM, then, after a grace period, SIGKILL if still alive.
"""

from __future__ import annotations

import glob
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

MARKER_JOB = "PBSVLLM_JOB_ID"
MARKER_ALIAS = "PBSVLLM_ALIAS"
MARKER_HOME = "PBSVLLM_HOME"
REUSE_SLACK_S = 2.0  # clock granularity between a process's start time and a file's mtime


@dataclass(frozen=True)
class NodeServers:
    """What one server-info file records for this node: its pids and groups."""

    path: str
    job_id: str
    alias: str
    host: str
    mtime: float
    pids: Tuple[int, ...]
    pgids: Tuple[int, ...]


@dataclass
class Target:
    pid: int
    ppid: int
    name: str
    cmdline: str
    job_id: str
    alias: str
    reason: str
    create_time: float
    action: str = "would end"
    proc: Any = field(default=None, repr=False, compare=False)

    def to_json(self) -> Dict[str, Any]:
        return {"pid": self.pid, "ppid": self.ppid, "name": self.name, "cmdline": self.cmdline,
                "job_id": self.job_id, "alias": self.alias, "reason": self.reason,
                "action": self.action}


@dataclass
class Scan:
    node: str
    home: str
    targets: List[Target]
    server_info: List[NodeServers]
    warnings: List[str]

    def to_json(self) -> Dict[str, Any]:
        return {
            "node": self.node, "home": self.home,
            "processes": [t.to_json() for t in self.targets],
            "server_info_files": [s.path for s in self.server_info],
            "warnings": list(self.warnings),
        }


def _short(host: str) -> str:
    return (host or "").split(".")[0].lower()


def _ints(*values: Any) -> List[int]:
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v > 1]


def node_servers(home: str, node: str, warnings: List[str]) -> List[NodeServers]:
    """Server-info files under ``home/run`` written for ``node`` (read with
    :func:`pbsvllm.serverinfo.read`; this runs on the node itself)."""
    from pbsvllm import serverinfo
    from pbsvllm.errors import PbsvllmError
    from pbsvllm.transport.local import LocalTransport

    local = LocalTransport()
    out: List[NodeServers] = []
    for path in sorted(glob.glob(serverinfo.default_path(home, "*"))):
        try:
            mtime = os.stat(path).st_mtime
            info = serverinfo.read(local, path)
        except OSError as exc:
            warnings.append(f"skipped server-info file {path}: {exc}")
            continue
        except PbsvllmError as exc:
            warnings.append(f"skipped server-info file {path}: {exc.message}")
            continue
        if info.host and _short(info.host) != _short(node):
            continue
        pids = _ints(info.pid)
        pgids = _ints(info.pgid)
        for rep in info.replicas:
            if rep.host and _short(rep.host) != _short(node):
                continue
            pids += _ints(rep.pid)
            pgids += _ints(rep.pgid)
        out.append(NodeServers(path=path, job_id=info.job_id, alias=info.alias, host=info.host, mtime=mtime,
                               pids=tuple(pids), pgids=tuple(pgids)))
    return out


def _same_path(a: str, b: str) -> bool:
    return os.path.realpath(os.path.expanduser(a)) == os.path.realpath(os.path.expanduser(b))


def _wanted(job_id: str, alias: str, job_ids: Sequence[str], aliases: Sequence[str]) -> bool:
    if job_ids and job_id not in job_ids and job_id.split(".")[0] not in job_ids:
        return False
    if aliases and alias not in aliases:
        return False
    return True


def find_targets(home: str, *, uid: Optional[int] = None, node: Optional[str] = None,
                 job_ids: Sequence[str] = (), aliases: Sequence[str] = (),
                 processes: Optional[Iterable[Any]] = None) -> Scan:
    """Scan this node's processes; return what :func:`end_targets` would end.

    ``processes`` defaults to every process (``psutil.process_iter()``);
    tests pass the few they started. ``job_ids``/``aliases`` narrow the scan.
    """
    import psutil

    uid = os.getuid() if uid is None else uid
    node = node or socket.gethostname()
    warnings: List[str] = []
    infos = node_servers(home, node, warnings)
    me = psutil.Process()
    protected: Set[int] = {me.pid} | {p.pid for p in me.parents()}

    owned: List[Tuple[Any, float, int]] = []
    for p in (psutil.process_iter() if processes is None else processes):
        try:
            uids = p.uids()
            if uids.real != uid or uids.effective != uid or p.pid in protected:
                continue
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            owned.append((p, p.create_time(), os.getpgid(p.pid)))
        except (psutil.Error, ProcessLookupError):
            continue

    # groups that have existed since a server-info file was written
    oldest_in_group: Dict[int, float] = {}
    for _p, ctime, pgid in owned:
        oldest_in_group[pgid] = min(ctime, oldest_in_group.get(pgid, ctime))

    chosen: Dict[int, Target] = {}
    for p, ctime, pgid in owned:
        try:
            env = p.environ()
        except psutil.AccessDenied:
            env = {}
        except psutil.Error:
            continue
        job_id, alias, reason = "", "", ""
        if env.get(MARKER_JOB):
            if env.get(MARKER_HOME) and not _same_path(env[MARKER_HOME], home):
                continue
            job_id, alias = env[MARKER_JOB], env.get(MARKER_ALIAS, "")
            reason = f"environment {MARKER_JOB}={job_id}"
        else:
            for info in infos:
                if p.pid in info.pids and ctime <= info.mtime + REUSE_SLACK_S:
                    reason = f"pid recorded in {info.path}"
                elif pgid in info.pgids and oldest_in_group.get(pgid, 1e100) <= info.mtime + REUSE_SLACK_S:
                    reason = f"process group {pgid} recorded in {info.path}"
                if reason:
                    job_id, alias = info.job_id, info.alias
                    break
        if not reason or not _wanted(job_id, alias, job_ids, aliases):
            continue
        chosen[p.pid] = _target(p, job_id, alias, reason, ctime)

    for parent in list(chosen.values()):
        try:
            children = parent.proc.children(recursive=True)
        except psutil.Error:
            continue
        for c in children:
            if c.pid in chosen or c.pid in protected:
                continue
            try:
                u = c.uids()
                if u.real != uid or u.effective != uid:
                    continue
                chosen[c.pid] = _target(c, parent.job_id, parent.alias,
                                        f"descendant of pid {parent.pid}", c.create_time())
            except psutil.Error:
                continue
    targets = sorted(chosen.values(), key=lambda t: (t.job_id, t.create_time, t.pid))
    return Scan(node=node, home=home, targets=targets, server_info=infos, warnings=warnings)


def _target(p: Any, job_id: str, alias: str, reason: str, ctime: float) -> Target:
    import psutil

    try:
        cmd = " ".join(p.cmdline())
        name = p.name()
        ppid = p.ppid()
    except psutil.Error:
        cmd, name, ppid = "", "", 0
    return Target(pid=p.pid, ppid=ppid, name=name, cmdline=cmd[:300], job_id=job_id,
                  alias=alias, reason=reason, create_time=ctime, proc=p)


def _running(p: Any) -> bool:
    """Alive and not a zombie (a zombie has exited; only its parent's reaping is left)."""
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait(procs: List[Any], timeout: float) -> List[Any]:
    deadline = time.monotonic() + timeout
    procs = [p for p in procs if _running(p)]
    while procs and time.monotonic() < deadline:
        time.sleep(0.05)
        procs = [p for p in procs if _running(p)]
    return procs


def end_targets(targets: List[Target], grace_s: float = 10.0) -> List[Target]:
    """SIGTERM every target, wait up to ``grace_s``, SIGKILL the survivors.

    Sets each target's ``action`` to ``terminated`` (ended after SIGTERM),
    ``killed`` (needed SIGKILL), ``already gone``, or ``failed: ...``.
    psutil refuses to signal a pid that now belongs to another process
    (it checks the start time), so a reused pid is never hit.
    """
    import psutil

    signalled = []
    for t in targets:
        try:
            t.proc.send_signal(signal.SIGTERM)
            t.action = "terminated"
            signalled.append(t)
        except psutil.NoSuchProcess:
            t.action = "already gone"
        except psutil.AccessDenied as exc:
            t.action = f"failed: permission denied ({exc})"
    by_pid = {t.pid: t for t in signalled}
    still = _wait([t.proc for t in signalled], grace_s)
    for p in still:
        try:
            p.send_signal(signal.SIGKILL)
            by_pid[p.pid].action = "killed"
        except psutil.NoSuchProcess:
            pass
        except psutil.AccessDenied as exc:
            by_pid[p.pid].action = f"failed: permission denied ({exc})"
    for p in _wait(still, 5.0):
        by_pid[p.pid].action = "failed: still running after SIGKILL (uninterruptible sleep?)"
    return targets
