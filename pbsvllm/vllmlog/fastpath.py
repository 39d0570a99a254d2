"""The fast bytes path for files: whole windows of a big log searched with
``bytes.find`` and one regex, and :class:`LogFollower` for growing files."""

from __future__ import annotations

import os
import re
from typing import List, Optional, Protocol, Tuple

from pbsvllm.vllmlog.facts import LogFacts
from pbsvllm.vllmlog.scanner import LogScanner
from pbsvllm.vllmlog.stats import _FAST_STATS_BRE

CHUNK_SIZE = 8 * 1024 * 1024


class Readable(Protocol):
    """A binary file: an open file, a gzip stream..."""

    def read(self, size: int = ..., /) -> bytes: ...


#: Only the first this many bytes of a line are examined, and at most this
#: much of one line is held in memory, whatever its length (a 200 MB line of
#: binary junk must not cost 200 MB): vLLM's longest real lines (the config
#: line, a full ``Namespace(...)``) are a few KB.
MAX_LINE_BYTES = 1024 * 1024


def _decode(b: bytes) -> str:
    return b.decode("utf-8", "replace")


STEADY_WINDOW_MIN = 64 * 1024
STEADY_WINDOW_MAX = 4 * 1024 * 1024


def scan_bytes(sc: LogScanner, data: bytes, first_line_no: int) -> int:
    """Feed every complete line of ``data`` (which must end at a line
    boundary) to ``sc``; return the number of lines it held.

    Before startup completes each line is decoded and examined. Afterwards,
    window by window, ``bytes.find`` locates the only lines that can matter
    (those holding :data:`STEADY_KEYWORDS`) and one regex over the window
    parses the common stats-line shape, so the bulk (uvicorn access lines,
    routes, warnings) is never decoded. The facts are the same as
    :func:`parse_log` on the same text (tests check it).
    """
    end = len(data)
    pos = 0
    line_no = first_line_no  # number of the line starting at pos
    find = data.find
    rfind = data.rfind
    count = data.count
    window = STEADY_WINDOW_MIN  # grows while no restart shows up
    while pos < end:
        if not sc.steady:
            window = STEADY_WINDOW_MIN
            nl = find(b"\n", pos)
            stop = end if nl < 0 else nl
            sc.feed(_decode(data[pos:min(stop, pos + MAX_LINE_BYTES)]), line_no)
            line_no += 1
            pos = stop + 1
            continue
        # one window of whole lines
        if end - pos <= window:
            wend = end
        else:
            nl = find(b"\n", pos + window)
            wend = end if nl < 0 else nl + 1
        window = min(window * 2, STEADY_WINDOW_MAX)
        general = set()
        for kw in sc.steady_bytes:
            i = find(kw, pos, wend)
            while i >= 0:
                s = rfind(b"\n", pos, i) + 1
                general.add(s if s >= pos else pos)
                nl = find(b"\n", i, wend)
                if nl < 0:
                    break
                i = find(kw, nl + 1, wend)
        # every stats line: the common shape ("Engine NNN: ..." with the usual fields) or another one
        common: List[re.Match[bytes]] = []
        other: List[int] = []  # line starts of the other shapes (V0, optional fields, no engine number)
        for m in _FAST_STATS_BRE.finditer(data, pos, wend):
            at = m.start()
            head = data[at - 12 : at]  # "Engine NNN: " cannot span a newline, so this stays in the line
            if m.group(1) is None or head[:7] != b"Engine " or head[10:] != b": " or not head[7:10].isdigit():
                s = rfind(b"\n", pos, at) + 1
                other.append(s if s >= pos else pos)
            else:
                common.append(m)
        cur = pos
        restarted = False
        if not general and not other:
            # only common-shape stats lines in this window (the usual case): record them in one go; line
            # starts and numbers are worked out only for the lines an aggregate keeps
            if common:
                sc.add_stats_rows(data, [(None, m) for m in common], pos, line_no)
        else:
            found: List[Tuple[int, Optional[re.Match[bytes]]]] = []
            for m in common:
                s = rfind(b"\n", pos, m.start()) + 1
                found.append((s if s >= pos else pos, m))
            for s in other:
                found.append((s, None))
            merged = dict(found)
            for g in general:
                merged.setdefault(g, None)
            order = [(s, merged[s]) for s in sorted(merged)]
            rows: List[Tuple[Optional[int], re.Match[bytes]]] = []  # common-shape stats lines not yet recorded
            base = (0, 0)
            for s, hit in order:
                line_no += count(b"\n", cur, s)
                if hit is not None:
                    m = hit
                    if not rows:
                        base = (s, line_no)
                    stop = m.end()  # the common shape ends at the end of its line
                    rows.append((s, m))
                else:
                    nl = find(b"\n", s, wend)
                    stop = wend if nl < 0 else nl
                    if rows:
                        sc.add_stats_rows(data, rows, base[0], base[1])
                        rows = []
                    sc.feed(_decode(data[s:min(stop, s + MAX_LINE_BYTES)]), line_no)
                line_no += 1
                cur = stop + 1
                if not sc.steady:  # a restart: examine everything again from here
                    restarted = True
                    break
            if rows:
                sc.add_stats_rows(data, rows, base[0], base[1])
        if not restarted:
            if wend > cur:
                line_no += count(b"\n", cur, wend)
                if data[wend - 1 : wend] != b"\n":
                    line_no += 1
            cur = wend
        pos = cur
    sc.advance_to(line_no - 1)
    return line_no - first_line_no


class LogFollower:
    """Reads a growing log: each :meth:`poll` reads only the bytes appended
    since the previous one (complete lines only; a partial last line waits
    for its newline). A file that shrank (rotated or truncated) is read again
    from the start with fresh facts. Memory stays bounded by the chunk size
    plus :data:`MAX_LINE_BYTES` however long a line is: of a longer line only
    the head is kept, the rest is skipped as it is read."""

    def __init__(self, path: str, chunk_size: int = CHUNK_SIZE, max_line: int = MAX_LINE_BYTES) -> None:
        self.path = path
        self.chunk_size = chunk_size
        self.max_line = max_line
        self.offset = 0
        self.next_line = 1
        self.bytes_read = 0
        self.scanner = LogScanner()
        self._ino: Optional[int] = None
        # the head of a line longer than max_line whose end has not been read yet
        self._long_head: Optional[bytes] = None

    @property
    def facts(self) -> LogFacts:
        return self.scanner.facts

    def _scan(self, block: bytes) -> None:
        self.next_line += scan_bytes(self.scanner, block, self.next_line)

    def poll(self, final: bool = False) -> int:
        """Read what was appended; return the number of bytes consumed.
        ``final=True`` also takes a last line that has no newline."""
        from pbsvllm.errors import LogParseError

        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise LogParseError(
                f"cannot read vLLM log {self.path}: {exc}", hint="check the path and permissions"
            ) from exc
        if st.st_size < self.offset or (self._ino is not None and st.st_ino != self._ino):
            self.offset = 0
            self.next_line = 1
            self.scanner = LogScanner()
            self._long_head = None
        self._ino = st.st_ino
        if st.st_size == self.offset and not (final and self._long_head is not None):
            return 0
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                return self.read_from(fh, final)
        except OSError as exc:
            raise LogParseError(
                f"cannot read vLLM log {self.path}: {exc}", hint="check the path and permissions"
            ) from exc

    def read_from(self, fh: Readable, final: bool = False) -> int:
        """Read ``fh`` (positioned at :attr:`offset`) to its end, as :meth:`poll`
        does; return the number of bytes consumed."""
        consumed = 0
        carry = b""
        while True:
            block = fh.read(self.chunk_size)
            self.bytes_read += len(block)
            if not block:
                break
            if self._long_head is not None:
                # the rest of an over-long line: skipped up to its newline
                nl = block.find(b"\n")
                if nl < 0:
                    self.offset += len(block)
                    consumed += len(block)
                    continue
                self._scan(self._long_head + b"\n")
                self._long_head = None
                self.offset += nl + 1
                consumed += nl + 1
                block = block[nl + 1 :]
            if carry:
                block = carry + block
                carry = b""
            cut = block.rfind(b"\n") + 1
            if cut < len(block):
                carry = block[cut:]
                block = block[:cut]
            if block:
                self._scan(block)
                self.offset += len(block)
                consumed += len(block)
            if len(carry) > self.max_line:
                # an unfinished line already over the limit: keep its head, skip the rest as it comes
                self._long_head = carry[: self.max_line]
                self.offset += len(carry)
                consumed += len(carry)
                carry = b""
        if final:
            if self._long_head is not None:
                self._scan(self._long_head)
                self._long_head = None
            elif carry:
                self._scan(carry)
                self.offset += len(carry)
                consumed += len(carry)
        return consumed


def parse_file(path: str) -> LogFacts:
    """Parse a whole log file with the fast bytes path. Raises
    :class:`pbsvllm.errors.LogParseError` when the file cannot be read."""
    from pbsvllm.errors import LogParseError

    if not os.path.isfile(path):
        raise LogParseError(
            f"vLLM log not found: {path}",
            hint="pass the path of the server's realtime log, or a tracked alias",
        )
    if path.endswith(".gz"):
        return _parse_gzip(path)
    fl = LogFollower(path)
    fl.poll(final=True)
    return fl.facts


def parse_stream(fh: Readable) -> LogFacts:
    """Parse a whole log read from ``fh`` (anything with ``read(size)``: a
    file, a gzip stream, a reader over a transport's range reads) with the
    fast bytes path, in bounded memory (at most :data:`MAX_LINE_BYTES` of any
    line is kept)."""
    fl = LogFollower("")
    fl.read_from(fh, final=True)
    return fl.facts


def _parse_gzip(path: str) -> LogFacts:
    """A rotated, gzip-compressed log: decompressed in chunks, same fast path."""
    import gzip

    from pbsvllm.errors import LogParseError

    try:
        with gzip.open(path, "rb") as fh:
            return parse_stream(fh)
    except (OSError, EOFError) as exc:
        raise LogParseError(
            f"cannot read compressed vLLM log {path}: {exc}", hint="check the file is a complete gzip file"
        ) from exc
