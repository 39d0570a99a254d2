"""Pure helpers for what comes from outside: bounds, printable text, secrets.

* :func:`nesting_depth` measures a parsed document without recursion, so a
  hostile file is refused with one line instead of a RecursionError.
* :func:`printable` makes text another side sent (a server's error body, a
  remote log line, a scheduler comment) safe to print on a terminal: escape
  sequences, other control bytes and bidirectional overrides become visible
  ``\\x1b``-style escapes; tabs and newlines are kept (or folded).
* :func:`redact` removes API keys from text pbsvllm prints: the literal key
  (when known) and the values vLLM logs for ``api_key`` in its
  "non-default args" line, plus ``Authorization: Bearer`` headers.

No I/O here; every function is data in, data out.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional, Set

REDACTED = "***"

#: Keys this process has read or sent; :func:`redact` removes them from any text.
_SECRETS: Set[str] = set()


def remember_secret(secret: Optional[str]) -> None:
    """Register a key this process uses, so everything printed is redacted of it."""
    if secret and len(secret) >= 4:
        _SECRETS.add(secret)

# C0 and C1 controls (but TAB and LF), DEL, and the Unicode format characters
# that reorder or hide text on a terminal (bidi overrides/isolates, zero width).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def nesting_depth(value: Any, limit: int) -> int:
    """Nesting depth of dicts/lists/tuples in ``value`` (a scalar is 0), counted
    iteratively; stops early once it passes ``limit``."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            kids: Iterable[Any] = v.values()
        elif isinstance(v, (list, tuple)):
            kids = v
        else:
            continue
        d += 1
        if d > deepest:
            deepest = d
            if deepest > limit:
                return deepest
        stack.extend((k, d) for k in kids)
    return deepest


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group(0))
    return f"\\x{c:02x}" if c <= 0xFF else f"\\u{c:04x}"


def printable(text: str, *, one_line: bool = False, limit: Optional[int] = None) -> str:
    """``text`` with every control or reordering character shown as an escape
    (``\\x1b``), so what a remote side sent cannot move the cursor, recolour,
    retitle or hide parts of the terminal. ``one_line``: line breaks become
    ``\\n`` too. ``limit``: cut to that many characters (with ``...``)."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + "..."
    text = text.replace("\r\n", "\n")
    out = _UNSAFE.sub(_escape, text)
    if one_line:
        out = out.replace("\n", "\\n")
    return out


# api_key / api-key / apiKey followed by = or : and a value, quoted or not:
# vLLM's "non-default args: {..., 'api_key': ['sk-1'], ...}" and
# "--api-key sk-1" on a logged command line.
_KEY_VALUE = re.compile(
    r"""(?P<name>['"]?api[_-]?keys?['"]?\s*[:=]\s*)(?P<value>\[[^\]]*\]|'[^']*'|"[^"]*"|[^\s,}\]]+)""",
    re.IGNORECASE,
)
_KEY_FLAG = re.compile(r"""(?P<name>--api-key(?:=|\s+))(?P<value>'[^']*'|"[^"]*"|\S+)""")
_BEARER = re.compile(r"(?P<name>\bBearer\s+)(?P<value>[A-Za-z0-9._~+/=-]+)", re.IGNORECASE)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with API keys replaced by ``***``: every literal in ``secrets``
    (the key pbsvllm read; values shorter than 4 characters are not matched,
    to keep ordinary words intact), ``api_key`` values in logged arguments,
    ``--api-key VALUE`` and ``Bearer VALUE``."""
    for s in sorted(set(secrets) | _SECRETS, key=len, reverse=True):
        if s and len(s) >= 4 and s in text:
            text = text.replace(s, REDACTED)
    text = _KEY_VALUE.sub(lambda m: m.group("name") + _keep_quotes(m.group("value")), text)
    text = _KEY_FLAG.sub(lambda m: m.group("name") + REDACTED, text)
    text = _BEARER.sub(lambda m: m.group("name") + REDACTED, text)
    return text


def clean(text: str, *, one_line: bool = False, limit: Optional[int] = None) -> str:
    """What to print of text from elsewhere: redacted, then made printable."""
    return printable(redact(text), one_line=one_line, limit=limit)


class RedactingStream:
    """A text stream that redacts keys from everything written through it
    (installed over stdout and stderr by the CLI): the last guard, whatever
    code path prints a server reply or a log line."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if isinstance(text, str):
            self._stream.write(redact(text))
        else:
            self._stream.write(text)
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def install_output_filter() -> None:
    """Redact keys from everything this process prints (idempotent)."""
    import sys

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream))


def _keep_quotes(value: str) -> str:
    if value in ("None", "null", "[]", "''", '""') or value.strip("'\"").startswith("os.environ/"):
        return value  # nothing secret to hide, and "None" tells the reader no key was set
    if value.startswith("[") and value.endswith("]"):
        return "[" + REDACTED + "]"
    if value[:1] in ("'", '"') and value[-1:] == value[:1]:
        return value[0] + REDACTED + value[0]
    return REDACTED
