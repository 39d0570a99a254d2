"""A log with a huge single line (200 MB of junk, no newline for all of it) is read in bounded memory:
only the head of an over-long line is kept (issue 11, class 10: doctor held the whole line)."""

from __future__ import annotations

import gzip
import os
import tracemalloc

from pbsvllm import vllmlog as V
from pbsvllm.vllmlog import fastpath
from tests.paths import DATA

MB = 1024 * 1024
REAL = os.path.join(DATA, "vllm", "vllm-0.32.0-cpu-dp2-1apiserver.log")


def _real() -> bytes:
    with open(REAL, "rb") as fh:
        return fh.read()


def _write_with_long_line(path: str, size: int) -> bytes:
    """The real log cut in two with one ``size``-byte line between the halves."""
    data = _real()
    half = data.index(b"\n", len(data) // 2) + 1
    with open(path, "wb") as fh:
        fh.write(data[:half])
        chunk = b"x" * (8 * MB)
        left = size
        while left > 0:
            fh.write(chunk[:left])
            left -= len(chunk)
        fh.write(b"\n")
        fh.write(data[half:])
    return data


def _traced(parse):
    """``parse()``'s result and its tracemalloc peak."""
    tracemalloc.start()
    try:
        facts = parse()
        return facts, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_200_mb_single_line_is_read_in_bounded_memory(tmp_path):
    path = str(tmp_path / "server.log")
    data = _write_with_long_line(path, 200 * MB)
    facts, peak = _traced(lambda: V.parse_file(path))
    # chunk (8 MiB) + the kept head (1 MiB) + their concatenation, not 200 MB
    assert peak < 40 * MB, f"peak {peak / MB:.1f} MiB"
    whole = V.parse_file(REAL)
    # the long line counts as one line; every fact of the real log around it is still there
    assert facts.lines == whole.lines + 1
    assert facts.engine_stats_lines == whole.engine_stats_lines == 36
    assert facts.to_json_facts() == whole.to_json_facts()
    assert len(data) > 0


def test_long_line_across_polls_keeps_only_its_head(tmp_path):
    """A follower with a small limit: the over-long line is cut to its head even when it arrives over several
    polls, and the lines after it are numbered and parsed as usual."""
    log = tmp_path / "server.log"
    head = b'INFO 01-01 00:00:00 [api_server.py:1] vLLM API server version 0.32.0 ' + b"y" * 5000
    log.write_bytes(b"first line\n" + head[:3000])
    fl = V.LogFollower(str(log), chunk_size=1024, max_line=2048)
    assert fl.poll() == 11 + 3000  # the complete line, and the over-long line's bytes (skipped as they come)
    with open(log, "ab") as fh:
        fh.write(head[3000:] + b"\nlast line\n")
    fl.poll(final=True)
    assert fl.facts.lines == 3
    assert fl.facts.vllm_version == "0.32.0"  # read from the kept head
    assert fl.offset == os.path.getsize(log)


def test_gzip_long_line_bounded(tmp_path):
    path = str(tmp_path / "server.log.gz")
    data = _real()
    with gzip.open(path, "wb") as fh:
        fh.write(b"z" * (3 * fastpath.MAX_LINE_BYTES) + b"\n" + data)
    facts = V.parse_file(path)
    assert facts.lines == V.parse_file(REAL).lines + 1
    assert facts.engine_stats_lines == 36


def test_200_mb_single_line_through_the_transport_is_read_in_bounded_memory(tmp_path):
    """doctor's path for a job on another host: range reads through the job's transport (here the local one)
    into the same bytes parser."""
    from pbsvllm.logtail import RangeReader
    from pbsvllm.transport.local import LocalTransport

    path = str(tmp_path / "server.log")
    _write_with_long_line(path, 200 * MB)
    facts, peak = _traced(lambda: V.parse_stream(RangeReader(LocalTransport(), path)))
    assert peak < 40 * MB, f"peak {peak / MB:.1f} MiB"
    whole = V.parse_file(REAL)
    assert facts.lines == whole.lines + 1
    assert facts.to_json_facts() == whole.to_json_facts()
