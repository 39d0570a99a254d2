"""LocalTransport: argv lists (no shell), rc 127 for a missing program,
timeouts as TransportError, atomic file replacement with modes."""

from __future__ import annotations

import os
import stat

import pytest

from pbsvllm.errors import TransportError
from pbsvllm.transport import get_transport
from pbsvllm.transport.local import LocalTransport


def test_run_argv_no_shell(tmp_path):
    t = get_transport(None)
    assert isinstance(t, LocalTransport) and t.is_local
    marker = tmp_path / "pwned"
    rc, out, err = t.run(["echo", f"$(touch {marker}); `id`"], timeout=10)
    assert rc == 0 and out == f"$(touch {marker}); `id`\n"
    assert not marker.exists()
    rc, out, _ = t.run(["cat"], timeout=10, input="hello")
    assert out == "hello"
    rc, out, _ = t.run(["sh", "-c", 'echo "$FOO"'], timeout=10, env={"FOO": "bar baz"})
    assert out == "bar baz\n"
    assert t.calls == 3


def test_missing_program_is_127_and_timeout_raises():
    t = LocalTransport()
    rc, _, err = t.run(["no-such-program-pbsvllm"], timeout=5)
    assert rc == 127 and "not found" in err
    with pytest.raises(TransportError) as ei:
        t.run(["sleep", "5"], timeout=0.3)
    assert "did not finish within 0.3 s" in str(ei.value)


def test_atomic_write_modes_and_read(tmp_path):
    t = LocalTransport()
    p = tmp_path / "a" / "b" / "script.pbs"
    t.write_text(str(p), "one\n", mode=0o700)
    assert stat.S_IMODE(p.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    t.write_text(str(p), "two\n")
    assert t.read_text(str(p)) == "two\n" and stat.S_IMODE(p.stat().st_mode) == 0o600
    assert t.exists(str(p)) and not t.exists(str(tmp_path / "nope"))
    assert os.listdir(p.parent) == ["script.pbs"]
    with pytest.raises(TransportError):
        t.read_text(str(tmp_path / "nope"))


def test_size_and_range_reads(tmp_path):
    """The log tailer's seam: size (None when missing) and byte ranges (short at
    the end, empty past it); a folder is an error, not an empty file."""
    from pbsvllm.logtail import LogTail, RangeReader, read_end

    t = LocalTransport()
    p = tmp_path / "x.log"
    assert t.size(str(p)) is None
    p.write_bytes(b"one\ntwo\nthree\n")
    assert t.size(str(p)) == 14
    assert t.read_range(str(p), 4, 3) == b"two" and t.read_range(str(p), 8, 100) == b"three\n"
    assert t.read_range(str(p), 100, 5) == b""
    with pytest.raises(ValueError):
        t.read_range(str(p), -1, 5)
    with pytest.raises(TransportError):
        t.read_range(str(tmp_path), 0, 5)
    r = RangeReader(t, str(p), 4, 8)
    assert r.read(3) == b"two" and r.read(100) == b"\n" and r.read(5) == b""
    assert read_end(t, str(p), 6) == ["three"] and read_end(t, str(p), 5) == []  # a cut first line is dropped
    assert read_end(t, str(tmp_path / "missing"), 6) == []
    tail = LogTail(t, str(p), chunk_bytes=5)  # lines longer than a chunk are joined across reads
    assert tail.read_lines() == ["one", "two", "three"] and tail.offset == 14 and tail.line_no == 3
