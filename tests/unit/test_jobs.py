"""Job records: atomic 0600 files in a 0700 folder, lookups, and real
concurrent CLI-like processes that never lose a record or a field."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from pbsvllm.errors import JobNotFoundError, PbsvllmError
from pbsvllm.jobs import JobRecord, JobStore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_save_get_modes_and_roundtrip(tmp_path):
    store = JobStore(str(tmp_path / "home"))
    rec = JobRecord(job_id="123.pbs01", alias="qwen", model="Qwen/Qwen3-VL-2B-Instruct", submitted_at=1.0,
                    plan={"tensor_parallel_size": 1}, registries=["~/endpoints.toml"], port=8000)
    store.save(rec)
    path = tmp_path / "home" / "jobs" / "123.pbs01.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "home" / "jobs").stat().st_mode) == 0o700
    got = store.get("123.pbs01")
    assert got == rec
    assert json.loads(path.read_text())["plan"] == {"tensor_parallel_size": 1}
    assert not [n for n in os.listdir(tmp_path / "home" / "jobs") if n.startswith(".tmp")]


def test_find_by_alias_newest_short_id_and_unknown(tmp_path):
    store = JobStore(str(tmp_path))
    store.save(JobRecord(job_id="10.srv", alias="a", submitted_at=1))
    store.save(JobRecord(job_id="11.srv", alias="a", submitted_at=2))
    store.save(JobRecord(job_id="local-3", alias="b", submitted_at=3))
    assert store.find("a").job_id == "11.srv"
    assert store.find("10").job_id == "10.srv"
    assert store.find("10.srv").job_id == "10.srv"
    assert store.find("local-3").alias == "b"
    assert [r.job_id for r in store.list()] == ["10.srv", "11.srv", "local-3"]
    with pytest.raises(JobNotFoundError) as ei:
        store.find("nope")
    assert "known aliases: a, b" in str(ei.value)


def test_update_keeps_unknown_fields(tmp_path):
    store = JobStore(str(tmp_path))
    store.save(JobRecord(job_id="1", alias="x"))
    store.update("1", server_state="ready", url="http://n:8000/v1", metrics={"running": 2})
    rec = store.get("1")
    assert rec.server_state == "ready" and rec.extra["metrics"] == {"running": 2}
    assert json.loads((tmp_path / "jobs" / "1.json").read_text())["metrics"] == {"running": 2}
    with pytest.raises(JobNotFoundError):
        store.update("2", url="x")


def test_bad_ids_cannot_escape_the_folder(tmp_path):
    store = JobStore(str(tmp_path))
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(PbsvllmError):
            store.save(JobRecord(job_id=bad))


WORKER = r"""
import sys
from pbsvllm.jobs import JobStore, JobRecord
home, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = JobStore(home)
for i in range(n):
    store.update("shared", **{f"{who}_{i}": i})
    store.save(JobRecord(job_id=f"{who}-{i}", alias=who))
"""


def test_concurrent_processes_never_lose_a_record_or_field(tmp_path):
    home = str(tmp_path / "home")
    JobStore(home).save(JobRecord(job_id="shared", alias="s"))
    n, workers = 40, 4
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, home, f"w{k}", str(n)], env=env) for k in range(workers)]
    assert [p.wait(timeout=120) for p in procs] == [0] * workers
    store = JobStore(home)
    rec = store.get("shared")
    for k in range(workers):
        for i in range(n):
            assert rec.extra.get(f"w{k}_{i}") == i, f"lost field w{k}_{i}"
    assert len(store.list()) == 1 + n * workers
