"""One log tailer for every follower: ``watch``, ``status``, ``logs``, ``doctor``.

Reads a (possibly remote) growing log through the job's
:class:`~pbsvllm.transport.base.Transport` -- ``size`` and ``read_range`` --
so the same code follows a log on this machine and one on a login node over
SSH, and only the bytes appended since the last read cross the link.

* :class:`LogTail` remembers a byte offset and a line number (both saved in
  the job record, so a follower started later resumes). Complete lines only:
  a partial last line waits for its newline (``final=True`` takes it). A file
  that shrank was truncated or replaced: it is read again from the start
  (``truncated`` says so).
* :func:`read_end` gives the complete lines among a log's last bytes (the
  engine-stats view of ``status``).
"""

from __future__ import annotations

from typing import Iterator, List, Optional

from pbsvllm.errors import PbsvllmError
from pbsvllm.transport.base import Transport

#: Bytes fetched per read: bounded memory however far behind a follower is.
CHUNK_BYTES = 8 * 1024 * 1024
#: How much of a log's end ``status`` reads for the latest engine stats.
LOG_END_BYTES = 256 * 1024


def split_lines(data: bytes) -> List[str]:
    """Decoded lines of complete-line bytes. Only ``\\n`` ends a line (a form
    feed or U+2028 inside a line is no line end); a trailing ``\\r`` goes."""
    lines = data.decode("utf-8", "replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


class LogTail:
    """Reads only what was appended to a log since the last read."""

    def __init__(self, transport: Transport, path: str, offset: int = 0, line_no: int = 0,
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        self.transport = transport
        self.path = path
        self.offset = offset
        self.line_no = line_no  # lines consumed so far
        self.truncated = False
        self.chunk_bytes = chunk_bytes

    def size(self) -> Optional[int]:
        """The log's size now; None when it does not exist or cannot be looked at."""
        if not self.path:
            return None
        try:
            return self.transport.size(self.path)
        except PbsvllmError:
            return None

    def exists(self) -> bool:
        return self.size() is not None

    def read_blocks(self, final: bool = False) -> Iterator[bytes]:
        """What was appended, as blocks of complete lines (each at most about
        ``chunk_bytes``); advances ``offset`` as each block is taken, not
        ``line_no`` (the byte-level parser counts its own lines)."""
        size = self.size()
        self.truncated = False
        if size is None:
            return
        if size < self.offset:
            self.offset, self.line_no, self.truncated = 0, 0, True
        carry = b""
        pos = self.offset + len(carry)
        while pos < size:
            try:
                block = self.transport.read_range(self.path, pos, min(self.chunk_bytes, size - pos))
            except PbsvllmError:
                return
            if not block:
                break
            pos += len(block)
            data = carry + block
            cut = data.rfind(b"\n") + 1
            carry = data[cut:]
            if cut:
                self.offset += cut
                yield data[:cut]
        if final and carry:
            self.offset += len(carry)
            yield carry

    def read_lines(self, final: bool = False) -> List[str]:
        """The complete lines appended since the last call (``final``: a last
        line without its newline too)."""
        lines: List[str] = []
        for block in self.read_blocks(final=final):
            lines.extend(split_lines(block))
        self.line_no += len(lines)
        return lines


class RangeReader:
    """A read-only, forward-only file over ``Transport.read_range``: what a
    byte-level parser that reads ``fh.read(n)`` in a loop (the vLLM log
    scanner's ``LogFollower.read_from``) needs to parse a log on any host."""

    def __init__(self, transport: Transport, path: str, offset: int = 0, end: Optional[int] = None,
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        self.transport = transport
        self.path = path
        self.pos = offset
        self.end = end  # stop here (the size when the read began); None: the file's end
        self.chunk_bytes = chunk_bytes

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.chunk_bytes
        if self.end is not None:
            n = min(n, self.end - self.pos)
        if n <= 0:
            return b""
        data = self.transport.read_range(self.path, self.pos, n)
        self.pos += len(data)
        return data


def read_end(transport: Transport, path: str, nbytes: int) -> List[str]:
    """The complete lines among the last ``nbytes`` of a log ([] when it is
    missing or unreadable)."""
    if not path:
        return []
    try:
        size = transport.size(path)
        if size is None:
            return []
        start = max(0, size - nbytes)
        # one byte more in front: a newline there means the first line is whole
        before = 1 if start > 0 else 0
        data = transport.read_range(path, start - before, size - start + before)
    except PbsvllmError:
        return []
    cut_first = before and not data.startswith(b"\n")
    lines = split_lines(data[before:])
    return lines[1:] if cut_first and lines else lines

