"""The watcher's remote edges over the real loopback sshd: incremental log
tail (only new bytes fetched; truncation), server-info file, status metrics."""

from __future__ import annotations

import json
import os

import pytest

from pbsvllm.transport import get_transport
from pbsvllm.liveview import metrics_from_lines, read_log_end
from pbsvllm.watcher import JobProgress, LogTail, Watcher

pytestmark = pytest.mark.sshd

STATS = ("(APIServer pid=1) INFO 11-28 17:58:00 [loggers.py:259] Engine 000: Avg prompt throughput: 1.5 tokens/s, "
         "Avg generation throughput: 2.5 tokens/s, Running: 3 reqs, Waiting: 4 reqs, CPU KV cache usage: 5.0%, "
         "Prefix cache hit rate: 6.0%\n")


@pytest.fixture
def ssh(sshd_server):
    t = get_transport(sshd_server.alias, fresh=True, ssh_config=sshd_server.ssh_config)
    yield t
    t.close()


def test_remote_tail_reads_only_new_lines(ssh, tmp_path):
    log = str(tmp_path / "remote.log")
    tail = LogTail(log, ssh)
    assert not ssh.is_local
    assert tail.read_lines() == [] and not tail.exists()
    with open(log, "w") as fh:
        fh.write("one\ntwo\nthr")
    assert tail.read_lines() == ["one", "two"] and tail.offset == 8
    with open(log, "a") as fh:
        fh.write("ee\n" + STATS)
    assert tail.read_lines() == ["three", STATS.rstrip("\n")] and tail.line_no == 4
    assert tail.read_lines() == []
    with open(log, "w") as fh:  # replaced by a shorter file
        fh.write("fresh\n")
    assert tail.read_lines() == ["fresh"] and tail.truncated
    with open(log, "a") as fh:
        fh.write(STATS)
    m = metrics_from_lines(read_log_end(log, ssh))
    assert (m["running"], m["waiting"], m["kv_device"], m["kv_cache_usage_pct"]) == (3, 4, "CPU", 5.0)


def test_remote_server_info(ssh, tmp_path):
    info = tmp_path / "9.server.json"
    w = Watcher(None, ssh, probe=lambda u, m: None)
    job = JobProgress(job_id="9", alias="a", served_model="m", info_path=str(info))
    assert w._server_info(job) is None
    info.write_text(json.dumps({"job_id": "9", "host": "n1", "port": 8001, "url": "http://n1:8001/v1"}))
    assert w._server_info(job)["port"] == 8001
