"""No lost updates, no silent overwrites, no orphaned jobs (issue 11 classes 3 and 4).

* Ten ``swap-endpoint`` processes at once on one job: its record keeps all
  ten registries and aliases (each read-modify-write holds the record lock),
  and a watcher saving its progress meanwhile keeps them too.
* A reused job id (a restarted PBS counter) never overwrites the earlier
  job's record: it is moved to ``jobs/replaced/`` and the user is told.
* Records on a real read-only or full file system (a tmpfs mounted for the
  test): ``submit`` refuses before ``qsub`` (the fake qsub is never run);
  when the file system turns read-only between ``qsub`` and the record
  (the fake qsub remounts it), the user gets the job id, the exact cancel
  command and where the record was kept, never a traceback.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from pbsvllm.config import resolve
from pbsvllm.health import Readiness
from pbsvllm.jobs import JobRecord, JobStore, WatchState
from pbsvllm.models import Phase, ServerState
from pbsvllm.registry import open_registry

JID = "4242.pbs01"
MODEL = "Qwen/Qwen3-VL-2B-Instruct"


def _ready(url, model):
    return Readiness(url, model, True, "ready")


def _swap(home: str, i: int, reg: str) -> None:
    from pbsvllm.swap import swap_endpoint

    settings = resolve({"home": home, "profile": "local"}, {"PBSVLLM_CONFIG": os.devnull})
    swap_endpoint(settings, f"alias{i}", JID, store=JobStore(home), registries=[f"json:{reg}"], probe=_ready)


def test_concurrent_swaps_lose_no_registry_in_the_record(tmp_path):
    home = str(tmp_path / "home")
    store = JobStore(home)
    store.save(JobRecord(job_id=JID, alias="svc", url="http://127.0.0.1:9/v1", server_state=ServerState.READY,
                         watch=WatchState(phase=Phase.READY, registered=["json:/elsewhere.json"])))
    regs = [str(tmp_path / f"r{i}.json") for i in range(10)]
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_swap, args=(home, i, regs[i])) for i in range(10)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rec = store.get(JID)
    assert set(rec.watch.registered) == {"json:/elsewhere.json", *regs}
    assert set(rec.registered_aliases) == {f"alias{i}" for i in range(10)}
    for i, r in enumerate(regs):
        assert open_registry(r).read()[f"alias{i}"][0].job_id == JID


def test_a_watcher_saving_meanwhile_keeps_what_swap_added(tmp_path):
    from pbsvllm.watcher import JobProgress, merge_saved

    home = str(tmp_path / "home")
    store = JobStore(home)
    store.save(JobRecord(job_id=JID, alias="svc", url="http://127.0.0.1:9/v1", server_state=ServerState.READY,
                         watch=WatchState(phase=Phase.READY, registered=["json:/a.json"])))
    progress = JobProgress.from_record(store.get(JID))  # a watcher read the record...
    reg = str(tmp_path / "swap.json")
    _swap(home, 0, reg)  # ...a swap added a registry...
    store.modify(JID, lambda rec: merge_saved(rec, progress.saved_fields()))  # ...the watcher saves
    rec = store.get(JID)
    assert set(rec.watch.registered) == {"json:/a.json", reg}
    assert rec.registered_aliases == ["alias0"] and rec.server_state == ServerState.READY


# ------------------------------------------------------------------ submit through the real CLI

def _qsub(bin_dir, body: str) -> None:
    path = os.path.join(bin_dir, "qsub")
    with open(path, "w") as fh:
        fh.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)


@pytest.fixture
def site(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    home = tmp_path / "home"
    (home / "jobs").mkdir(parents=True)
    os.chmod(home, 0o700)
    qstat = bin_dir / "qstat"  # detection says PBS Pro (the machine may have Slurm's wrappers too)
    qstat.write_text("#!/bin/sh\necho 'pbs_version = 2022.1.0'\n")
    qstat.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return str(bin_dir), str(home)


def _submit(home: str, alias: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PBSVLLM_HOME=home, PBSVLLM_CONFIG=os.devnull)
    return subprocess.run([sys.executable, "-m", "pbsvllm", "submit", MODEL, "--alias", alias, "--profile", "pbspro"],
                          capture_output=True, text=True, env=env, timeout=120)


def test_reused_job_id_keeps_the_earlier_record(site):
    bin_dir, home = site
    _qsub(bin_dir, f"echo {JID}\n")
    assert _submit(home, "first").returncode == 0
    out = _submit(home, "second")
    assert out.returncode == 0, out.stderr
    assert f"job id {JID} was used before" in out.stderr and "replaced" in out.stderr
    assert JobStore(home).get(JID).alias == "second"
    kept = os.listdir(os.path.join(home, "jobs", "replaced"))
    assert len(kept) == 1
    with open(os.path.join(home, "jobs", "replaced", kept[0])) as fh:
        assert json.load(fh)["alias"] == "first"


@pytest.fixture
def tmpfs(site):
    if os.geteuid() != 0:
        pytest.fail("these tests mount a tmpfs and need root (the suite runs as root)")
    jobs = os.path.join(site[1], "jobs")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", jobs], check=True)
    yield jobs
    subprocess.run(["umount", "-l", jobs], check=False)


def test_read_only_records_refuse_before_qsub(site, tmpfs):
    bin_dir, home = site
    marker = os.path.join(bin_dir, "qsub-ran")
    _qsub(bin_dir, f"touch {marker}\necho {JID}\n")
    subprocess.run(["mount", "-o", "remount,ro", tmpfs], check=True)
    out = _submit(home, "a")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "nothing was submitted" in out.stderr
    assert not os.path.exists(marker), "qsub ran although the record could not be written"


def test_full_disk_refuses_before_qsub(site, tmpfs):
    bin_dir, home = site
    marker = os.path.join(bin_dir, "qsub-ran")
    _qsub(bin_dir, f"touch {marker}\necho {JID}\n")
    with open(os.path.join(tmpfs, "filler"), "wb") as fh:
        try:
            fh.write(b"x" * (1 << 20))
        except OSError:
            pass
    out = _submit(home, "a")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "no space left" in out.stderr and "nothing was submitted" in out.stderr
    assert not os.path.exists(marker)


def test_record_failing_after_qsub_names_the_job_and_how_to_cancel(site, tmpfs):
    bin_dir, home = site
    _qsub(bin_dir, f"mount -o remount,ro {tmpfs}\necho {JID}\n")  # the file system fails right after qsub
    out = _submit(home, "a")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    err = [ln for ln in out.stderr.splitlines() if ln.startswith("pbsvllm: error:")]
    assert len(err) == 1
    assert f"job {JID} WAS SUBMITTED" in err[0] and f"qdel {JID}" in err[0]
    kept = err[0].split("its record was kept at ", 1)[1].split(" ", 1)[0]
    with open(kept) as fh:
        assert json.load(fh)["job_id"] == JID
    os.unlink(kept)


def test_records_lock_times_out_naming_its_holder(tmp_path, monkeypatch):
    """A `pbsvllm` process stuck holding the records' lock does not hang every
    other command forever: they give up after the timeout and name it."""
    import time

    from pbsvllm import fileio
    from pbsvllm.errors import PbsvllmError

    home = str(tmp_path / "home")
    store = JobStore(home)
    store.save(JobRecord(job_id=JID, alias="svc"))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pbsvllm.jobs import JobStore\n"
         f"with JobStore({home!r}).lock():\n    print('held', flush=True)\n    time.sleep(60)\n", "stuck-status"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(fileio, "LOCK_TIMEOUT_S", 0.5)
        t0 = time.monotonic()
        with pytest.raises(PbsvllmError) as info:
            store.update(JID, url="http://x:1/v1")
        assert time.monotonic() - t0 < 20
        assert f"locked by pid {holder.pid}" in str(info.value) and "stuck-status" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    assert store.update(JID, url="http://x:1/v1").url == "http://x:1/v1"
