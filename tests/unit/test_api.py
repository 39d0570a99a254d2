"""pbsvllm.api.Client: the library face the commands call (no printing, no
exits; errors raised), on real job records, registries and logs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pbsvllm import transport
from pbsvllm.api import Client, DoctorOptions
from pbsvllm.config import resolve
from pbsvllm.errors import JobNotFoundError, LogParseError
from pbsvllm.jobs import JobRecord, WatchState
from pbsvllm.models import JobState, Phase, ServerState
from pbsvllm.registry import Endpoint, open_registry
from pbsvllm.scheduler.base import JobStatus
from tests.paths import EXAMPLES, ROOT


@pytest.fixture
def api(tmp_path):
    c = Client(resolve({"home": str(tmp_path / "home"), "profile": "local"}, env={"PBSVLLM_CONFIG": os.devnull}))
    yield c
    transport.configure()  # the client set the process's SSH defaults: leave none behind


def test_pending_skips_ready_failed_ended_and_cancelled(api):
    s = api.store
    s.save(JobRecord("1", alias="queued"))
    s.save(JobRecord("2", alias="ready", server_state=ServerState.READY))
    s.save(JobRecord("3", alias="failed", server_state=ServerState.FAILED))
    s.save(JobRecord("4", alias="ended", last_status=JobStatus("4", JobState.COMPLETED)))
    s.save(JobRecord("5", alias="cancelled", cancelled_at=1.0))
    assert [r.alias for r in api.pending()] == ["queued"]
    assert [r.alias for r in api.pending(follow_ready=True)] == ["queued", "ready"]


def test_status_offline_changes_nothing_and_remove_ended_is_its_own_step(api, tmp_path):
    reg = str(tmp_path / "reg.json")
    open_registry(reg).register(Endpoint("gone", "tiny", "http://n9:8000/v1", job_id="9"))
    api.store.save(JobRecord("9", alias="gone", url="http://n9:8000/v1", registries=[reg], scheduler="local",
                             server_state=ServerState.READY, last_status=JobStatus("9", JobState.COMPLETED),
                             watch=WatchState(phase=Phase.READY, registered=[reg])))
    offline = api.status(offline=True)
    assert offline.rows[0]["stale"] and not offline.live and offline.notes == []
    kept = api.status(remove_ended=False)
    assert kept.rows[0]["registries"] == [f"gone@{reg}"] and open_registry(reg).lookup("gone")
    assert kept.rows[0]["server_state"] == "stopped" and api.store.get("9").server_state == ServerState.STOPPED
    cleaned = api.status()
    assert cleaned.rows[0]["registries"] == [] and open_registry(reg).lookup("gone") == []
    assert cleaned.notes == [f"removed gone -> http://n9:8000/v1 from {reg}: job 9 has ended"]


def test_doctor_of_a_log_file_and_of_a_tracked_job(api, tmp_path):
    log = os.path.join(EXAMPLES, "doctor", "qwen3-vl-tp4-eager.log")
    by_file = api.doctor(log, DoctorOptions(profile="polaris"))
    api.store.save(JobRecord("7", alias="vl", profile="polaris", log_path=log))
    by_job = api.doctor("vl")
    assert [f.id for f in by_job.findings] == [f.id for f in by_file.findings] and by_file.findings
    with pytest.raises(LogParseError, match="not found"):
        api.doctor(str(tmp_path / "missing.log"))
    with pytest.raises(JobNotFoundError):
        api.doctor("no-such-alias")


def test_log_tail_and_job_record_errors(api, tmp_path):
    api.store.save(JobRecord("8", alias="nolog"))
    with pytest.raises(LogParseError, match="no log path"):
        api.log_tail("nolog")
    api.store.save(JobRecord("6", alias="later", log_path=str(tmp_path / "later.log")))
    with pytest.raises(LogParseError, match="does not exist"):
        api.log_tail("later")
    rec, tail = api.log_tail("later", must_exist=False)
    (tmp_path / "later.log").write_text("one\ntwo\n")
    assert rec.job_id == "6" and tail.read_lines() == ["one", "two"]


def test_registry_specs_name_the_format():
    assert Client.registry_specs([]) is None
    assert Client.registry_specs(["/x/endpoints.toml", "/x/c.yaml"]) == ["toml:/x/endpoints.toml",
                                                                          "litellm:/x/c.yaml"]


def test_old_records_load_and_keep_unknown_keys(api):
    """A record written before WatchState/ServerState were typed (and one by a
    newer version) loads; unknown keys survive a rewrite."""
    import json

    os.makedirs(api.store.dir, exist_ok=True)
    old = {"job_id": "3.pbs", "alias": "a", "server_state": "ready", "url": "http://n:1/v1",
           "watch": {"phase": "kv_cache_allocated", "server_state": "starting", "url": "", "log_offset": 42,
                     "registered": ["toml:/r.toml"], "urls": ["http://n:1/v1"], "future_key": 1},
           "registered_aliases": ["b"], "newer_field": {"x": 1}}
    with open(api.store.path("3.pbs"), "w") as fh:
        json.dump(old, fh)
    rec = api.store.get("3.pbs")
    assert rec.server_state is ServerState.READY and rec.watch.phase is Phase.KV_CACHE_ALLOCATED
    assert rec.watch.log_offset == 42 and rec.registered_aliases == ["b"] and rec.urls == ["http://n:1/v1"]
    api.store.update("3.pbs", url="http://n:2/v1")
    again = json.load(open(api.store.path("3.pbs")))
    assert again["newer_field"] == {"x": 1} and again["watch"]["future_key"] == 1
    assert "server_state" not in again["watch"]  # the record's own field is the one truth
    assert ServerState.parse("from-the-future") is ServerState.UNKNOWN


def test_python_api_example_runs():
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, "python-api.py")], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, PYTHONPATH=ROOT, PBSVLLM_CONFIG=os.devnull))
    assert r.returncode == 0, r.stderr
    assert "plan: TP=" in r.stdout and "doctor: " in r.stdout and "status: 0 tracked job(s)" in r.stdout


def test_help_names_the_registry_clean_up():
    from click.testing import CliRunner

    from pbsvllm.cli import cli

    out = CliRunner().invoke(cli, ["status", "--help"]).output
    assert "REMOVED from their registries" in out and "--keep-ended" in out
