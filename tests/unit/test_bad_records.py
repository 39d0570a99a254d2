"""One bad record must not take down the rest (issue 11 class 2).

Real CLI processes over a PBSVLLM_HOME holding one good job and every kind
of bad record (garbage bytes, empty, half-written, wrong JSON types, a
JSON array, deep nesting, a FIFO, a folder): ``status``, ``cancel`` of the
good alias and ``watch`` keep working for the good job, name each bad file
once with the fix, and never show a traceback; asking for the bad job by
id gives one line naming its file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pbsvllm.jobs import JobRecord, JobStore
from pbsvllm.models import JobState
from pbsvllm.scheduler.base import JobStatus

BAD = {
    "garbage.json": b"\x00\xff\xfe garbage",
    "empty.json": b"",
    "half.json": b'{"job_id": "half", "alias": "h", "submitted_at": 12',
    "types.json": json.dumps({"job_id": "types", "alias": "t", "submitted_at": "yesterday"}).encode(),
    "port.json": json.dumps({"job_id": "port", "alias": "p", "port": "eighty"}).encode(),
    "watch.json": json.dumps({"job_id": "watch", "alias": "w", "watch": [1, 2]}).encode(),
    "array.json": b"[1, 2, 3]",
    "noid.json": b'{"alias": "x"}',
    "deep.json": b'{"job_id": "deep", "plan": ' + b"[" * 100000 + b"]" * 100000 + b"}",
    "latin1.json": '{"job_id": "latin1", "alias": "Müller"}'.encode("latin-1"),
}


@pytest.fixture
def home(tmp_path, fake_sched):
    home = tmp_path / "home"
    store = JobStore(str(home))
    store.save(JobRecord(job_id="7.pbs01", alias="good", scheduler="pbspro", submitted_at=100.0,
                         last_status=JobStatus("7.pbs01", JobState.RUNNING, raw_state="R")))
    jobs = home / "jobs"
    for name, data in BAD.items():
        (jobs / name).write_bytes(data)
    os.mkfifo(str(jobs / "fifo.json"))
    (jobs / "folder.json").mkdir()
    os.chmod(home, 0o700)
    fake_sched.answer("qstat", {"rc": 0, "out": json.dumps({"Jobs": {"7.pbs01": {"job_state": "R"}}})})
    fake_sched.answer("qdel", {"rc": 0})
    return str(home)


def _cli(home: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PBSVLLM_HOME=home, PBSVLLM_CONFIG=os.devnull)
    return subprocess.run([sys.executable, "-m", "pbsvllm", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def _names_each_bad_file_once(home: str, stderr: str) -> None:
    assert "Traceback" not in stderr
    for name in list(BAD) + ["fifo.json", "folder.json"]:
        path = os.path.join(home, "jobs", name)
        assert stderr.count(path + " ") + stderr.count(path + ":") >= 1, (name, stderr)
        assert stderr.count(f"mv {path} {path}.broken") == 1, (name, stderr)


def test_status_lists_the_good_job_and_names_each_bad_file_once(home):
    for args in (["status", "--offline"], ["status"], ["status", "--json"]):
        out = _cli(home, *args)
        assert out.returncode == 0, out.stderr
        assert "7.pbs01" in out.stdout and "good" in out.stdout
        _names_each_bad_file_once(home, out.stderr)


def test_cancel_of_the_good_alias_works(home, fake_sched):
    out = _cli(home, "cancel", "good")
    assert out.returncode == 0, out.stderr
    assert fake_sched.calls("qdel") == [["qdel", "7.pbs01"]]
    assert JobStore(home).get("7.pbs01").cancelled_at > 0
    _names_each_bad_file_once(home, out.stderr)


def test_watch_follows_the_good_job(home):
    out = _cli(home, "watch", "--timeout", "2")
    assert "Traceback" not in out.stderr
    assert "good" in out.stdout + out.stderr
    _names_each_bad_file_once(home, out.stderr)


@pytest.mark.parametrize("name", ["types", "half", "watch"])
def test_asking_for_the_bad_job_is_one_line_naming_its_file(home, name):
    out = _cli(home, "status", name, "--offline")
    path = os.path.join(home, "jobs", f"{name}.json")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    err = [ln for ln in out.stderr.splitlines() if ln.startswith("pbsvllm: error:")]
    assert len(err) == 1 and path in err[0] and f"mv {path} {path}.broken" in err[0]
    assert out.stderr.count(f"mv {path} {path}.broken") == 1
