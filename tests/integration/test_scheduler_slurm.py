"""Against the real Slurm stand-in (slurm-wlm-torque wrappers), started by
the suite: real jobs go Q -> R -> C, cancel really ends the processes, a
walltime overrun is reported as walltime, an unknown queue is a clear error.
The CLI (`pbsvllm status`, `pbsvllm cancel`) runs as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from pbsvllm.errors import SchedulerError
from pbsvllm.jobs import JobStore
from pbsvllm.launch import SubmitJob, SubmitTarget, submit_job
from pbsvllm.models import JobState
from pbsvllm.scheduler import get_scheduler
from pbsvllm.scheduler.base import SubmitOptions
from pbsvllm.transport import LocalTransport

pytestmark = pytest.mark.slurm
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _submit_from_tmp(tmp_path, monkeypatch):
    """qsub (and the local backend) write default job output files into the
    submit directory, like PBS: keep them out of the repository."""
    monkeypatch.chdir(tmp_path)


def wait_for(sched, jid, states, timeout):
    seen = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st = sched.status([jid])[jid]
        if not seen or seen[-1] != st.state:
            seen.append(st.state)
        if st.state in states:
            return st, seen
        time.sleep(0.3)
    raise AssertionError(f"job {jid} never reached {states}; states seen {seen}")


@pytest.fixture(scope="module")
def slurm(slurm_cluster):
    return get_scheduler("auto", LocalTransport(), retries=2, backoff_s=0.5)


@pytest.fixture(scope="module")
def walltime_job(slurm, tmp_path_factory):
    """Started first so its >= 60 s overrun overlaps the other tests."""
    d = tmp_path_factory.mktemp("wall")
    script = d / "wall.pbs"
    script.write_text("#!/bin/bash\n#PBS -N wall\n#PBS -l walltime=00:01:00\n#PBS -j oe\n"
                      f"#PBS -o {d}/wall.out\necho started\nsleep 600\n")
    return slurm.submit(str(script)), d


def test_detects_slurm_torque(slurm, walltime_job):
    assert slurm.name == "slurm-torque"


def test_job_goes_q_r_c_with_exit_status(slurm, tmp_path):
    script = tmp_path / "qrc.pbs"
    script.write_text(f"#!/bin/bash\n#PBS -N qrc\n#PBS -l walltime=00:05:00\n#PBS -j oe\n#PBS -o {tmp_path}/qrc.out\n"
                      "echo \"id=$PBS_JOBID nodefile=$(cat $PBS_NODEFILE)\"\nsleep 2\nexit 3\n")
    # -a: do not start before 3 s from now, so the queued state is observed for sure
    jid = slurm.submit(str(script), {"extra_args": ["-a", "now+3"]})
    assert jid.isdigit()
    st, seen = wait_for(slurm, jid, {JobState.COMPLETED, JobState.FAILED}, timeout=240)
    assert seen[0] is JobState.PENDING and JobState.RUNNING in seen, seen
    assert st.raw_state == "C" and st.exit_status == 3 and st.state is JobState.FAILED
    assert st.queue == "debug" and st.exec_host
    out = (tmp_path / "qrc.out").read_text()  # the script's own -o/-j oe were honoured
    assert f"id={jid} nodefile=" in out


def test_one_scheduler_call_for_many_jobs_unknown_ids_are_unknown(slurm, tmp_path):
    script = tmp_path / "s.pbs"
    script.write_text("#!/bin/bash\n#PBS -l walltime=00:02:00\nsleep 30\n")
    ids = [slurm.submit(str(script)) for _ in range(3)]
    t = slurm.transport
    before = t.calls
    got = slurm.status(ids + ["999999"])
    assert t.calls - before == 1
    assert got["999999"].state is JobState.UNKNOWN
    assert all(got[i].state in (JobState.PENDING, JobState.RUNNING) for i in ids)
    for i in ids:
        slurm.cancel(i)


def test_unknown_queue_is_a_clear_error(slurm, tmp_path):
    script = tmp_path / "q.pbs"
    script.write_text("#!/bin/bash\necho hi\n")
    with pytest.raises(SchedulerError) as ei:
        slurm.submit(str(script), {"queue": "nosuchqueue"})
    msg = str(ei.value)
    assert "qsub refused the job" in msg and "nosuchqueue" in msg
    assert "Invalid partition" in msg and "qstat -Q" in msg


def cli(*args, home):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "pbsvllm", *args, "--home", home], capture_output=True, text=True,
                          timeout=120, env=env)


def test_submit_status_cancel_through_the_cli_really_kills(slurm, tmp_path):
    home = str(tmp_path / "home")
    pids = tmp_path / "pids"
    prepared = SubmitJob(
        alias="sleepy", model="tiny", served_model_name="sleepy", plan={"tensor_parallel_size": 1}, port=8123,
        script_text=f"#!/bin/bash\n#PBS -N sleepy\n#PBS -l walltime=00:10:00\nsleep 300 &\necho $$ $! > {pids}\nwait\n",
        script_path=os.path.join(home, "scripts", "sleepy-1.pbs"),
        log_path=os.path.join(home, "logs", "sleepy.{job_id}.log"),
        server_info_path=os.path.join(home, "run", "{job_id}.server.json"),
    )
    rec = submit_job(SubmitTarget(home=home, profile="test"), prepared)
    assert rec.scheduler == "slurm-torque" and rec.log_path.endswith(f"sleepy.{rec.job_id}.log")
    assert os.path.exists(rec.script_path)
    end = time.monotonic() + 240  # the shared 2-CPU node may be busy with other runs' jobs
    while not (pids.exists() and len(pids.read_text().split()) == 2):
        assert time.monotonic() < end, "the job never started"
        time.sleep(0.3)
    procs = [int(p) for p in pids.read_text().split()]
    r = cli("status", "--json", home=home)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert rows[0]["alias"] == "sleepy" and rows[0]["state"] == "RUNNING" and rows[0]["queue"] == "debug"
    assert rows[0]["walltime_limit_s"] == 600 and rows[0]["walltime_left_s"] <= 600
    r = cli("cancel", "sleepy", home=home)
    assert r.returncode == 0 and "asked slurm-torque" in r.stdout, r.stdout + r.stderr
    end = time.monotonic() + 30
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in procs):
        assert time.monotonic() < end, "cancel did not end the job's processes"
        time.sleep(0.2)
    st, _ = wait_for(slurm, rec.job_id, {JobState.CANCELLED}, timeout=30)
    r = cli("status", "sleepy", home=home)
    assert "CANCELLED" in r.stdout, r.stdout
    r = cli("status", "--offline", "--json", home=home)
    assert json.loads(r.stdout)[0]["state"] == "CANCELLED" and json.loads(r.stdout)[0]["stale"] is True
    r = cli("cancel", "nosuchalias", home=home)
    assert r.returncode == 5 and "no tracked job" in r.stderr
    assert JobStore(home).get(rec.job_id).cancelled_at > 0


def test_qsub_failure_keeps_the_script_and_says_where(slurm, tmp_path):
    home = str(tmp_path / "home")
    prepared = SubmitJob(alias="bad", model="m", served_model_name="bad", port=1,
                                     script_text="#!/bin/bash\n#PBS -l walltime=abc\necho\n",
                                     script_path=os.path.join(home, "scripts", "bad.pbs"), log_path="", server_info_path="")
    with pytest.raises(SchedulerError) as ei:
        submit_job(SubmitTarget(home=home, scheduler="slurm-torque"), prepared, options=SubmitOptions(walltime="abc"))
    assert f"kept at {home}/scripts/bad.pbs" in str(ei.value)
    assert os.path.exists(os.path.join(home, "scripts", "bad.pbs"))
    assert JobStore(home).list() == []


def test_walltime_overrun_is_reported(slurm, walltime_job):
    jid, d = walltime_job
    st, seen = wait_for(slurm, jid, {JobState.FAILED, JobState.COMPLETED, JobState.CANCELLED}, timeout=300)
    assert st.state is JobState.FAILED and st.exit_status == -29, st
    assert "walltime exceeded" in st.exit_reason and "TIMEOUT" in st.comment


def test_torque_profile_on_slurm_wrappers_and_output_folder(slurm, tmp_path):
    home = str(tmp_path / "home")
    logs = tmp_path / "logs"
    logs.mkdir()
    prepared = SubmitJob(alias="folder", model="m", served_model_name="folder", port=1,
                                     script_text=f"#!/bin/bash\n#PBS -N folderjob\n#PBS -l walltime=00:02:00\n#PBS -j oe\n#PBS -o {logs}/\necho out-here\n",
                                     script_path=os.path.join(home, "scripts", "f.pbs"), log_path="", server_info_path="")
    rec = submit_job(SubmitTarget(home=home, scheduler="torque"), prepared)
    assert rec.scheduler == "slurm-torque"  # detected once at submit, kept in the record
    st, _ = wait_for(slurm, rec.job_id, {JobState.COMPLETED, JobState.FAILED}, timeout=240)
    assert st.exit_status == 0
    assert (logs / f"folderjob.o{rec.job_id}").read_text() == "out-here\n"


def test_bring_up_is_reused_concurrently(slurm_cluster):
    script = os.path.join(ROOT, "scripts", "slurm-up.sh")
    procs = [subprocess.Popen(["bash", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert all(o.splitlines()[-1] == f"SLURM_CONF={slurm_cluster.conf}" for o, _ in outs)
    assert all("reusing the running cluster" in e for _, e in outs)


def test_force_cancel_kills_a_job_that_ignores_sigterm(slurm, tmp_path):
    script = tmp_path / "stubborn.pbs"
    script.write_text("#!/bin/bash\n#PBS -l walltime=00:05:00\ntrap 'echo ignored' TERM\nwhile true; do sleep 0.2; done\n")
    jid = slurm.submit(str(script))
    wait_for(slurm, jid, {JobState.RUNNING}, timeout=240)
    assert "forced" in slurm.cancel(jid, force=True)
    st, _ = wait_for(slurm, jid, {JobState.CANCELLED, JobState.FAILED}, timeout=30)
    assert st.state is JobState.CANCELLED and st.exit_status is not None, st  # Slurm reports 0:9 or 1:0 here
