"""The follow path's remote edges over the real loopback sshd: incremental
log tail (only new bytes fetched; truncation), server-info file, status
metrics, and swap-endpoint reading a remote job's server-info file over SSH."""

from __future__ import annotations

import json
import os

import pytest

from pbsvllm import serverinfo
from pbsvllm.config import resolve
from pbsvllm.health import Readiness
from pbsvllm.jobs import JobRecord, JobStore
from pbsvllm.liveview import metrics_from_lines
from pbsvllm.logtail import LOG_END_BYTES, LogTail, read_end
from pbsvllm.registry import open_registry
from pbsvllm.swap import swap_endpoint
from pbsvllm.transport import get_transport

pytestmark = pytest.mark.sshd

STATS = ("(APIServer pid=1) INFO 11-28 17:58:00 [loggers.py:259] Engine 000: Avg prompt throughput: 1.5 tokens/s, "
         "Avg generation throughput: 2.5 tokens/s, Running: 3 reqs, Waiting: 4 reqs, CPU KV cache usage: 5.0%, "
         "Prefix cache hit rate: 6.0%\n")


def test_remote_tail_reads_only_new_lines(ssh, tmp_path):
    log = str(tmp_path / "remote.log")
    tail = LogTail(ssh, log)
    assert not ssh.is_local
    assert tail.read_lines() == [] and not tail.exists()
    with open(log, "w") as fh:
        fh.write("one\ntwo\nthr")
    assert tail.read_lines() == ["one", "two"] and tail.offset == 8
    with open(log, "a") as fh:
        fh.write("ee\n" + STATS)
    assert tail.read_lines() == ["three", STATS.rstrip("\n")] and tail.line_no == 4
    assert ssh.size(log) == os.path.getsize(log) and ssh.read_range(log, 4, 3) == b"two"
    assert ssh.read_range(log, 10 ** 6, 10) == b""
    assert tail.read_lines() == []
    with open(log, "w") as fh:  # replaced by a shorter file
        fh.write("fresh\n")
    assert tail.read_lines() == ["fresh"] and tail.truncated
    with open(log, "a") as fh:
        fh.write(STATS)
    m = metrics_from_lines(read_end(ssh, log, LOG_END_BYTES))
    assert (m["running"], m["waiting"], m["kv_device"], m["kv_cache_usage_pct"]) == (3, 4, "CPU", 5.0)


def test_remote_server_info(ssh, tmp_path):
    info = tmp_path / "9.server.json"
    assert serverinfo.try_read(ssh, str(info)) is None
    with pytest.raises(serverinfo.ServerInfoMissing):
        serverinfo.read(ssh, str(info))
    info.write_text(json.dumps({"job_id": "9", "host": "n1", "port": 8001, "url": "http://n1:8001/v1"}))
    got = serverinfo.read(ssh, str(info))
    assert got.port == 8001 and serverinfo.endpoint_url(got) == "http://n1:8001/v1"


def test_swap_reads_a_remote_jobs_server_info_over_ssh(sshd_server, ssh, tmp_path, monkeypatch):
    """A remote job with no cached URL: swap-endpoint reads its server-info
    file on the job's host through SSH. The local disk is never opened for
    it (the old code did exactly that, and failed for a real remote host)."""
    home = str(tmp_path / "home")
    info = tmp_path / "remote-run" / "77.server.json"
    info.parent.mkdir()
    info.write_text(json.dumps({"job_id": "77", "host": "n7", "port": 8077, "url": "http://n7:8077/v1",
                                "replicas": [{"index": 0, "host": "n7", "port": 8077, "url": "http://n7:8077/v1"}]}))
    store = JobStore(home)
    store.save(JobRecord(job_id="77", alias="pool-b", served_model_name="tiny", host=sshd_server.alias,
                         scheduler="pbspro", server_info_path=str(info)))
    reg = str(tmp_path / "endpoints.toml")
    settings = resolve({"home": home, "profile": "local", "registries": (reg,)}, env={})
    import builtins

    real_open = builtins.open

    def guarded_open(file, *a, **kw):
        assert str(file) != str(info), "the remote job's server-info file was opened on the local disk"
        return real_open(file, *a, **kw)

    monkeypatch.setattr(builtins, "open", guarded_open)
    probed = []

    def probe(url, model):
        probed.append((url, model))
        return Readiness(url, model, ready=True, stage="ready")

    res = swap_endpoint(settings, "pool", "77", store=store, registries=[reg], probe=probe,
                        transport_for=lambda host: ssh if host == sshd_server.alias else get_transport(host))
    monkeypatch.undo()
    assert probed == [("http://n7:8077/v1", "tiny")] and res.url == "http://n7:8077/v1"
    assert [e.url for e in open_registry(reg).lookup("pool")] == ["http://n7:8077/v1"]
    rec = store.get("77")
    assert rec.server_state == "ready" and rec.registered_aliases == ["pool"] and rec.watch.registered


def test_doctor_and_logs_of_a_remote_job_through_the_cli(sshd_server, tmp_path):
    """`doctor ALIAS` and `logs ALIAS` of a job on an SSH host read its log over
    SSH (size + ranges), with the same facts as the local fast path."""
    import subprocess
    import sys

    from tests.paths import DATA, ROOT

    sample = os.path.join(DATA, "watcher", "vllm-0.32.0-cpu-eager.log")
    log = tmp_path / "remote" / "tiny.5.log"
    log.parent.mkdir()
    log.write_bytes(open(sample, "rb").read())
    home = str(tmp_path / "home")
    JobStore(home).save(JobRecord(job_id="5.pbs", alias="tiny-r", host=sshd_server.alias, scheduler="pbspro",
                                  log_path=str(log)))
    env = dict(os.environ, PYTHONPATH=ROOT, PBSVLLM_SSH_CONFIG=sshd_server.ssh_config, PBSVLLM_CONFIG=os.devnull)
    run = lambda *a: subprocess.run([sys.executable, "-m", "pbsvllm", *a, "--home", home],  # noqa: E731
                                    capture_output=True, text=True, timeout=120, env=env)
    remote = run("doctor", "tiny-r", "--json")
    local = run("doctor", str(log), "--json")
    assert remote.returncode == 0 and local.returncode == 0, remote.stderr + local.stderr
    r, lo = json.loads(remote.stdout), json.loads(local.stdout)
    assert [f["id"] for f in r["findings"]] == [f["id"] for f in lo["findings"]] and r["findings"]
    logs = run("logs", "tiny-r", "-n", "3")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.splitlines() == open(sample).read().splitlines()[-3:]
