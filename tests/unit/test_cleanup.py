"""pbsvllm.cleanup with real processes on this machine.

Each test starts its own processes: a process tree started like a server
(the job script's marker environment; a child "engine core" and grandchild
inheriting it; a "Ray worker" child with a cleared environment), an
unrelated process named ``vllm`` with ``vllm serve`` in its argv, a process
of another user (``nobody``) carrying the same marker, and a marked process
of another pbsvllm home. Scans are restricted to the processes a test
started (``processes=``) or, through the CLI, to a job id unique to the test,
so that nothing else running on this machine is ever touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from pbsvllm import cleanup

SERVER = r"""
import json, os, signal, subprocess, sys, time
pidfile, mode = sys.argv[1], sys.argv[2]
grand = "import time; time.sleep(120)"
core = subprocess.Popen([sys.executable, "-c",
    "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', %r]); time.sleep(120)" % grand])
ray = subprocess.Popen([sys.executable, "-c", grand], env={"PATH": os.environ.get("PATH", "")})
if mode == "ignore-term":  # after the children start: an ignored signal stays ignored across exec
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(pidfile + ".tmp", "w") as fh:
    json.dump({"server": os.getpid(), "core": core.pid, "ray": ray.pid}, fh)
os.replace(pidfile + ".tmp", pidfile)
time.sleep(120)
"""

LEADER = r"""
import os, subprocess, sys, time
m = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open(sys.argv[1] + ".tmp", "w").write(str(m.pid))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
"""


class Procs:
    """Processes started by one test; all ended at teardown."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.popens = []

    def start(self, argv, env, **kw):
        p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        self.popens.append(p)
        return p

    def server_tree(self, job_id, home, mode="normal", alias="demo"):
        env = dict(os.environ, PBSVLLM_JOB_ID=job_id, PBSVLLM_ALIAS=alias, PBSVLLM_HOME=str(home))
        pidfile = str(self.tmp / f"tree-{uuid.uuid4().hex}.json")
        p = self.start([sys.executable, "-c", SERVER, pidfile, mode], env, start_new_session=True)
        deadline = time.monotonic() + 20
        while not os.path.exists(pidfile):
            assert p.poll() is None, "the server-like process died at start"
            assert time.monotonic() < deadline, "the server-like process tree did not start"
            time.sleep(0.02)
        pids = json.load(open(pidfile))
        core = psutil.Process(pids["core"])
        deadline = time.monotonic() + 20
        while not core.children():
            assert time.monotonic() < deadline, "the engine-core grandchild did not start"
            time.sleep(0.02)
        pids["grandchild"] = core.children()[0].pid
        return pids

    def unrelated_vllm(self):
        link = self.tmp / "vllm"
        if not link.exists():
            os.symlink(os.path.realpath(sys.executable), link)
        env = {"PATH": os.environ.get("PATH", "")}
        p = self.start([str(link), "-c", "import time; time.sleep(120)", "serve", "Qwen/Qwen2.5-0.5B"], env)
        deadline = time.monotonic() + 10
        while psutil.Process(p.pid).name() != "vllm":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        return p.pid

    def as_nobody(self, job_id, home):
        assert os.geteuid() == 0, "this test needs root to start a process as another user (nobody)"
        env = {"PATH": "/usr/bin:/bin", "PBSVLLM_JOB_ID": job_id, "PBSVLLM_HOME": str(home)}

        def drop():
            os.setgid(65534)
            os.setuid(65534)

        p = self.start(["sleep", "120"], env, preexec_fn=drop, cwd="/")
        deadline = time.monotonic() + 10
        while psutil.Process(p.pid).uids().real != 65534:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        return p.pid

    def plain(self, **kw):
        p = self.start([sys.executable, "-c", "import time; time.sleep(120)"],
                       {"PATH": os.environ.get("PATH", "")}, **kw)
        return p.pid

    def stop(self):
        for p in self.popens:
            for q in _tree(p.pid):
                try:
                    q.kill()
                except psutil.Error:
                    pass
            p.kill()
            p.wait(timeout=10)


def _tree(pid):
    try:
        root = psutil.Process(pid)
        return root.children(recursive=True)
    except psutil.Error:
        return []


@pytest.fixture
def procs(tmp_path):
    ps = Procs(tmp_path)
    yield ps
    ps.stop()


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    (h / "run").mkdir(parents=True)
    return h


def alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def plist(*pids):
    return [psutil.Process(p) for p in pids]


def job():
    return f"{uuid.uuid4().hex[:8]}.pbs-test"


def test_selects_the_marked_tree_and_nothing_else(procs, home, tmp_path):
    j = job()
    tree = procs.server_tree(j, home)
    vllm = procs.unrelated_vllm()
    nobody = procs.as_nobody(j, home)
    other_home = procs.server_tree(j, tmp_path / "elsewhere")
    scan = cleanup.find_targets(str(home), processes=plist(*tree.values(), vllm, nobody,
                                                         *other_home.values()))
    got = {t.pid: t for t in scan.targets}
    assert set(got) == set(tree.values())
    assert got[tree["server"]].reason == f"environment PBSVLLM_JOB_ID={j}"
    assert got[tree["server"]].alias == "demo" and got[tree["server"]].job_id == j
    assert got[tree["grandchild"]].reason == f"environment PBSVLLM_JOB_ID={j}"  # inherited
    assert got[tree["ray"]].reason == f"descendant of pid {tree['server']}"    # cleared env
    assert all(t.action == "would end" for t in scan.targets)
    assert all(alive(p) for p in [*tree.values(), vllm, nobody])  # a scan signals nothing


def test_job_and_alias_filters(procs, home):
    j1, j2 = job(), job()
    t1 = procs.server_tree(j1, home, alias="a1")
    t2 = procs.server_tree(j2, home, alias="a2")
    every = plist(*t1.values(), *t2.values())
    assert {t.pid for t in cleanup.find_targets(str(home), job_ids=[j1], processes=every).targets} == set(t1.values())
    short = j2.split(".")[0]
    assert {t.pid for t in cleanup.find_targets(str(home), job_ids=[short], processes=every).targets} == set(t2.values())
    assert {t.pid for t in cleanup.find_targets(str(home), aliases=["a2"], processes=every).targets} == set(t2.values())


def test_end_terminates_tree_and_spares_the_rest(procs, home):
    j = job()
    tree = procs.server_tree(j, home)
    vllm = procs.unrelated_vllm()
    nobody = procs.as_nobody(j, home)
    scan = cleanup.find_targets(str(home), processes=plist(*tree.values(), vllm, nobody))
    cleanup.end_targets(scan.targets, grace_s=5)
    assert {t.action for t in scan.targets} == {"terminated"}
    assert not any(alive(p) for p in tree.values())
    assert alive(vllm) and alive(nobody)


def test_sigkill_after_grace_when_sigterm_is_ignored(procs, home):
    tree = procs.server_tree(job(), home, mode="ignore-term")
    scan = cleanup.find_targets(str(home), processes=plist(*tree.values()))
    t0 = time.monotonic()
    cleanup.end_targets(scan.targets, grace_s=1.0)
    actions = {t.pid: t.action for t in scan.targets}
    assert actions[tree["server"]] == "killed"
    assert actions[tree["core"]] == "terminated"
    assert time.monotonic() - t0 >= 1.0
    assert not any(alive(p) for p in tree.values())


def write_info(home, job_id, node, pid=None, pgid=None, replicas=()):
    path = home / "run" / f"{job_id}.server.json"
    doc = {"job_id": job_id, "host": node, "port": 8000, "url": f"http://{node}:8000/v1",
           "pid": pid, "pgid": pgid, "model": "m", "served_model_name": "m", "alias": "rec",
           "start_time": time.time(), "log_path": "/dev/null", "replicas": list(replicas)}
    path.write_text(json.dumps(doc))
    return path


def test_recorded_pid_and_group_in_server_info(procs, home):
    import socket
    node = socket.gethostname()
    # a group leader and a member of its group, neither carrying a marker
    pidfile = procs.tmp / "group.pid"
    leader = procs.start([sys.executable, "-c", LEADER, str(pidfile)],
                         {"PATH": os.environ.get("PATH", "")}, start_new_session=True).pid
    deadline = time.monotonic() + 20
    while not pidfile.exists():
        assert time.monotonic() < deadline, "the group leader did not start its member"
        time.sleep(0.02)
    member = int(pidfile.read_text())
    assert os.getpgid(member) == leader
    replica = procs.plain(start_new_session=True)
    stranger = procs.plain()
    j = job()
    info = write_info(home, j, node, pid=leader, pgid=leader,
                      replicas=[{"port": 8001, "pid": replica, "pgid": replica}])
    everyone = plist(leader, member, replica, stranger)
    got = {t.pid: t for t in cleanup.find_targets(str(home), processes=everyone).targets}
    assert set(got) == {leader, member, replica}
    assert got[leader].reason == f"pid recorded in {info}" and got[leader].job_id == j
    assert got[member].reason == f"process group {leader} recorded in {info}"
    assert got[replica].alias == "rec"

    # a file written before these processes existed: the pids were reused, not ours
    old = time.time() - 3600
    os.utime(info, (old, old))
    assert cleanup.find_targets(str(home), processes=everyone).targets == []
    # a server-info file of another node is ignored
    info.unlink()
    write_info(home, j, "some-other-node", pid=leader, pgid=leader)
    assert cleanup.find_targets(str(home), processes=everyone).targets == []


def test_unreadable_server_info_is_a_warning(home):
    (home / "run" / "broken.server.json").write_text("{")
    scan = cleanup.find_targets(str(home), processes=[])
    assert scan.targets == [] and "broken.server.json" in scan.warnings[0]


def run_cli(args, home, extra_env=None):
    env = dict(os.environ, PBSVLLM_HOME=str(home), **(extra_env or {}))
    return subprocess.run([sys.executable, "-m", "pbsvllm", "cleanup", *args],
                          capture_output=True, text=True, env=env, timeout=60)


def test_cli_dry_run_then_cleanup(procs, home):
    j = job()
    tree = procs.server_tree(j, home)
    vllm = procs.unrelated_vllm()
    dry = run_cli(["--dry-run", "--json", "--job", j], home)
    assert dry.returncode == 0, dry.stderr
    doc = json.loads(dry.stdout)
    assert doc["dry_run"] is True
    assert {p["pid"] for p in doc["processes"]} == set(tree.values())
    assert {p["action"] for p in doc["processes"]} == {"would end"}
    assert all(alive(p) for p in tree.values())

    # run from a process that carries the same marker (a job's exit trap):
    # it must not end itself or its parents
    real = run_cli(["--job", j, "--grace", "5"], home, {"PBSVLLM_JOB_ID": j})
    assert real.returncode == 0, real.stderr
    assert "terminated" in real.stdout and str(tree["server"]) in real.stdout
    assert not any(alive(p) for p in tree.values())
    assert alive(vllm)
    again = run_cli(["--job", j], home)
    assert again.returncode == 0 and again.stdout.startswith("nothing to clean up on ")
