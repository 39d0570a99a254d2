"""doctor's log reading for a job on another host: the bytes parser over range reads through the real SSH
transport (loopback OpenSSH started by the suite) gives the same facts as the local file path, also with a line
far longer than the per-line limit."""

from __future__ import annotations

import os

import pytest

from pbsvllm import vllmlog
from pbsvllm.logtail import RangeReader
from pbsvllm.vllmlog import fastpath
from tests.paths import DATA

pytestmark = pytest.mark.sshd
REAL = os.path.join(DATA, "vllm", "vllm-0.32.0-cpu-dp2-1apiserver.log")


def test_remote_log_read_over_ssh_matches_the_local_parse(ssh, tmp_path):
    with open(REAL, "rb") as fh:
        data = fh.read()
    half = data.index(b"\n", len(data) // 2) + 1
    path = str(tmp_path / "server.log")
    with open(path, "wb") as fh:
        fh.write(data[:half] + b"j" * (3 * fastpath.MAX_LINE_BYTES) + b"\n" + data[half:])
    got = vllmlog.parse_stream(RangeReader(ssh, path, chunk_bytes=1024 * 1024))
    local = vllmlog.parse_file(path)
    assert got.to_json_facts() == local.to_json_facts()
    assert got.lines == local.lines == vllmlog.parse_file(REAL).lines + 1
    assert got.engine_stats_lines == 36
