"""The embedded local backend, for real: detached jobs with the PBS
environment, PBS-like output files and exit statuses, walltime, cancel that
really ends the process group, and jobs that outlive the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from pbsvllm.errors import ConfigError, JobNotFoundError
from pbsvllm.models import JobState
from pbsvllm.scheduler import get_scheduler
from pbsvllm.scheduler.detect import detect
from pbsvllm.transport import LocalTransport

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _submit_from_tmp(tmp_path, monkeypatch):
    """qsub (and the local backend) write default job output files into the
    submit directory, like PBS: keep them out of the repository."""
    monkeypatch.chdir(tmp_path)


def write(path, text):
    path.write_text(text)
    return str(path)


@pytest.fixture
def local(tmp_path):
    return get_scheduler("local", LocalTransport(), home=str(tmp_path / "home"), grace_s=2)


def wait_state(s, jid, states, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st = s.status([jid])[jid]
        if st.state in states:
            return st
        time.sleep(0.1)
    raise AssertionError(f"{jid} never reached {states}: {s.status([jid])[jid]}")


def test_pbs_environment_outputs_and_exit_status(local, tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()
    script = write(tmp_path / "job.pbs", "#!/bin/bash\n#PBS -N envjob\n#PBS -l select=1:ncpus=3\n"
                   "echo \"$PBS_JOBID|$PBS_JOBNAME|$PBS_O_WORKDIR|$NCPUS|$(cat $PBS_NODEFILE)|$(pwd)\"\necho oops >&2\nexit 3\n")
    jid = local.submit(script, {"workdir": str(wd)})
    assert jid.startswith("local-")
    st = wait_state(local, jid, {JobState.FAILED, JobState.COMPLETED})
    assert st.state is JobState.FAILED and st.exit_status == 3 and "status 3" in st.exit_reason
    n = jid.split("-")[1]
    out = (wd / f"envjob.o{n}").read_text()
    import socket

    assert out.strip() == f"{jid}|envjob|{wd}|3|{socket.gethostname()}|{wd}"
    assert (wd / f"envjob.e{n}").read_text() == "oops\n"
    jid2 = local.submit(script, {"workdir": str(wd)})
    assert int(jid2.split("-")[1]) == int(n) + 1


def test_join_oe_and_explicit_output_path(local, tmp_path):
    out = tmp_path / "logs" / "x.out"
    out.parent.mkdir()
    script = write(tmp_path / "j.pbs", f"#!/bin/bash\n#PBS -j oe\n#PBS -o {out}\necho a\necho b >&2\n")
    jid = local.submit(script)
    st = wait_state(local, jid, {JobState.COMPLETED})
    assert st.exit_status == 0 and out.read_text() == "a\nb\n"


def test_cancel_kills_the_process_group_and_status_says_cancelled(local, tmp_path):
    pidfile = tmp_path / "pids"
    script = write(tmp_path / "s.pbs", f"#!/bin/bash\nsleep 300 &\necho $$ $! > {pidfile}\nwait\n")
    jid = local.submit(script)
    wait_state(local, jid, {JobState.RUNNING})
    end = time.monotonic() + 10
    while not pidfile.exists() or len(pidfile.read_text().split()) < 2:
        assert time.monotonic() < end
        time.sleep(0.05)
    pids = [int(p) for p in pidfile.read_text().split()]
    assert all(psutil.pid_exists(p) for p in pids)
    msg = local.cancel(jid)
    assert "SIGTERM" in msg
    st = wait_state(local, jid, {JobState.CANCELLED})
    assert st.exit_status == 256 + 15  # bash without a trap dies of SIGTERM
    time.sleep(0.2)
    for p in pids:
        assert not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE
    assert "already finished" in local.cancel(jid)
    with pytest.raises(JobNotFoundError):
        local.cancel("local-99999")


def test_trapped_term_gets_sigkill_after_grace(local, tmp_path):
    script = write(tmp_path / "t.pbs", "#!/bin/bash\ntrap 'echo ignoring' TERM\nwhile true; do sleep 0.1; done\n")
    jid = local.submit(script)
    wait_state(local, jid, {JobState.RUNNING})
    t0 = time.monotonic()
    local.cancel(jid)
    st = wait_state(local, jid, {JobState.CANCELLED}, timeout=20)
    assert time.monotonic() - t0 >= 1.5  # grace_s=2
    assert st.exit_status == 256 + 9 and "SIGKILL" in st.exit_reason


def test_walltime_overrun_is_reported_as_walltime(local, tmp_path):
    script = write(tmp_path / "w.pbs", "#!/bin/bash\n#PBS -l walltime=00:00:02\n#PBS -j oe\n#PBS -o w.log\nsleep 60\n")
    jid = local.submit(script, {"workdir": str(tmp_path)})
    st = wait_state(local, jid, {JobState.FAILED}, timeout=30)
    assert st.exit_status == -29 and "walltime exceeded" in st.exit_reason
    assert st.walltime_limit_s == 2
    assert "PBS: job killed: walltime" in (tmp_path / "w.log").read_text()


def test_job_survives_the_cli_that_started_it(tmp_path):
    home = str(tmp_path / "home")
    script = write(tmp_path / "l.pbs", f"#!/bin/bash\nsleep 2\necho done > {tmp_path}/marker\n")
    code = (
        "from pbsvllm.scheduler import get_scheduler; from pbsvllm.transport import LocalTransport;"
        f"print(get_scheduler('local', LocalTransport(), home={home!r}).submit({script!r}))"
    )
    jid = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=ROOT)).stdout.strip()
    s = get_scheduler("local", LocalTransport(), home=home)
    assert s.status([jid])[jid].state is JobState.RUNNING  # the CLI process has exited
    st = wait_state(s, jid, {JobState.COMPLETED})
    assert st.exit_status == 0 and (tmp_path / "marker").read_text() == "done\n"


def test_unknown_and_vanished_jobs_are_unknown(local, tmp_path):
    got = local.status(["local-424242", "123.pbs"])
    assert got["local-424242"].state is JobState.UNKNOWN
    assert got["123.pbs"].state is JobState.UNKNOWN


def test_detect_without_any_qstat_is_local(tmp_path):
    class NoQstat(LocalTransport):
        def run(self, argv, timeout, input=None, env=None):
            return super().run(argv, timeout, input, env={"PATH": str(tmp_path)})

    assert detect(NoQstat()) == "local"


def test_local_backend_refuses_a_remote_transport():
    class Remote(LocalTransport):
        is_local = False
        host = "me@elsewhere"

    with pytest.raises(ConfigError) as ei:
        get_scheduler("local", Remote())
    assert "me@elsewhere" in str(ei.value)
