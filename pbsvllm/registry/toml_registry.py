"""verifiers ``endpoints.toml``: ``[[endpoint]]`` tables, one per server.

Loader rules followed (verifiers ``eval_utils.py``, 2026): every entry needs a
non-empty string ``endpoint_id`` and string ``model``, ``url``, ``key``;
``api_base_url`` / ``api_key_var`` are accepted spellings of ``url`` / ``key``
(both spellings with different values is an error); other keys pass through;
entries sharing an ``endpoint_id`` are replicas.

Writing is surgical: the ``[[endpoint]]`` blocks of the alias are replaced in
place (or appended), every other line -- other entries, comments, other
tables -- stays byte-for-byte. ``tomllib``/``tomli`` only read TOML, so the
few lines written are produced by :func:`toml_value` below (strings, numbers,
booleans, arrays and inline tables: all this flat format uses).
"""

from __future__ import annotations

import math
import re
import sys
from typing import Any, Dict, List, Optional, Tuple

from pbsvllm.errors import RegistryError
from pbsvllm.registry.base import (Endpoint, Entries, Registry, double_quoted, location, not_parsable,
                                   split_lines)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10
    import tomli as tomllib

_HEADER = re.compile(r"^[ \t]*\[")
_ENDPOINT_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*endpoint[ \t]*\]\][ \t]*(#.*)?$")
_SUB_HEADER = re.compile(r"^[ \t]*\[\[?[ \t]*endpoint[ \t]*\.")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_LINE_COL = re.compile(r"line (\d+), column (\d+)")
_SPELLINGS = (("url", "api_base_url"), ("key", "api_key_var"))


def toml_string(s: str) -> str:
    """A TOML basic string (control characters escaped)."""
    return double_quoted(s, lambda c: not (c < 0x20 or c == 0x7F))


def toml_key(k: str) -> str:
    return k if _BARE_KEY.match(k) else toml_string(k)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        if not v:
            return "{}"
        return "{ " + ", ".join(f"{toml_key(str(k))} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise RegistryError(f"cannot write a {type(v).__name__} value ({v!r}) into a TOML registry")


def _split_lines(text: str) -> List[str]:
    return split_lines(text)


def _header_lines(lines: List[str]) -> List[int]:
    """Indices of table-header lines, skipping the inside of multi-line strings."""
    out = []
    in_ml: Optional[str] = None
    for i, line in enumerate(lines):
        if in_ml is None and _HEADER.match(line):
            out.append(i)
            continue
        # track multi-line strings (good enough: verified by re-parsing anyway)
        j = 0
        while j < len(line):
            if in_ml is not None:
                k = line.find(in_ml, j)
                if k < 0:
                    break
                in_ml, j = None, k + 3
                continue
            if line[j] == "#":
                break
            if line.startswith('"""', j) or line.startswith("'''", j):
                in_ml, j = line[j : j + 3], j + 3
                continue
            if line[j] in "\"'":
                q = line[j]
                k = j + 1
                while k < len(line) and line[k] != q:
                    k += 2 if (q == '"' and line[k] == "\\") else 1
                j = k + 1
                continue
            j += 1
    return out


class TomlRegistry(Registry):
    fmt = "toml"
    supports_replicas = True
    stores_job_id = False

    def _loads(self, text: str, what: Optional[str] = None) -> Dict[str, Any]:
        import copy

        memo = self.__dict__.setdefault("_memo", {})
        if text in memo:
            return copy.deepcopy(memo[text])
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = _LINE_COL.search(str(exc))
            where = location(self.path, int(m.group(1)), int(m.group(2))) if m else self.path
            raise not_parsable(self.path, what or where, str(exc)) from None
        if len(memo) >= 4:
            memo.clear()
        memo[text] = copy.deepcopy(data)
        return data

    def parse(self, text: str) -> Entries:
        data = self._loads(text)
        raw = data.get("endpoint", [])
        if not isinstance(raw, list):
            raise not_parsable(self.path, self.path, "'endpoint' must be an array of tables: [[endpoint]]")
        out: Entries = {}
        for i, item in enumerate(raw, 1):
            ep = self._entry(item, i)
            out.setdefault(ep.alias, []).append(ep)
        return out

    def _entry(self, item: Any, n: int) -> Endpoint:
        where = f"{self.path}, [[endpoint]] number {n}"
        if not isinstance(item, dict):
            raise not_parsable(self.path, where, "not a table")
        item = dict(item)
        eid = item.pop("endpoint_id", None)
        if not isinstance(eid, str) or not eid:
            raise not_parsable(self.path, where, "needs a non-empty string endpoint_id")
        vals: Dict[str, Any] = {}
        for main, other in _SPELLINGS:
            a, b = item.pop(main, None), item.pop(other, None)
            if a is not None and b is not None and a != b:
                raise not_parsable(self.path, where, f"{main} and {other} are both given with different values")
            vals[main] = a if a is not None else b
        vals["model"] = item.pop("model", None)
        for k in ("model", "url", "key"):
            if not isinstance(vals[k], str):
                raise not_parsable(self.path, f"{where} (endpoint_id {eid!r})", f"needs a string {k}")
        return Endpoint(alias=eid, model=vals["model"], url=vals["url"], key=vals["key"], extra=item)

    @staticmethod
    def entry_text(ep: Endpoint) -> str:
        lines = ["[[endpoint]]"]
        lines.append(f"endpoint_id = {toml_string(ep.alias)}")
        lines.append(f"model = {toml_string(ep.model)}")
        lines.append(f"url = {toml_string(ep.url)}")
        lines.append(f"key = {toml_string(ep.key)}")
        for k, v in ep.extra.items():
            if k in ("endpoint_id", "model", "url", "key", "api_base_url", "api_key_var"):
                continue
            lines.append(f"{toml_key(str(k))} = {toml_value(v)}")
        return "\n".join(lines) + "\n"

    def _blocks(self, text: str) -> Tuple[List[str], List[Tuple[int, int, str]]]:
        """Lines, and (start, end, endpoint_id) of every [[endpoint]] block.

        A block runs from its header to its last key line (sub-tables such as
        ``[endpoint.headers]`` included); trailing blank and comment lines
        belong to whatever follows. The n-th header is the n-th entry of the
        parsed document (checked; the rendered result is verified anyway).
        """
        lines = _split_lines(text)
        heads = _header_lines(lines)
        parsed = self._loads(text).get("endpoint", [])
        blocks: List[Tuple[int, int, str]] = []
        for hi, start in enumerate(heads):
            if not _ENDPOINT_HEADER.match(lines[start]):
                continue
            stop = len(lines)
            for nxt in heads[hi + 1 :]:
                if not _SUB_HEADER.match(lines[nxt]):
                    stop = nxt
                    break
            end = stop
            while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
                end -= 1
            n = len(blocks)
            eid = parsed[n].get("endpoint_id", "") if n < len(parsed) and isinstance(parsed[n], dict) else None
            if eid is None:
                break
            blocks.append((start, end, str(eid)))
        if len(blocks) != len(parsed):
            raise RegistryError(
                f"cannot edit {self.path} in place: found {len(blocks)} [[endpoint]] headers in the text "
                f"but TOML reads {len(parsed)} entries",
                hint="write each entry as its own [[endpoint]] table",
            )
        return lines, blocks

    def render(self, text: str, alias: str, entries: List[Endpoint]) -> str:
        lines, blocks = self._blocks(text)
        new_chunk = "\n".join(self.entry_text(e) for e in entries)
        mine = [b for b in blocks if b[2] == alias]
        if not mine:
            if not entries:
                return text
            out = text
            if out and not out.endswith("\n"):
                out += "\n"
            if out.strip():
                out += "\n"
            return out + new_chunk
        pieces: List[str] = []
        pos = 0
        for idx, (start, end, _eid) in enumerate(mine):
            pieces.append("".join(lines[pos:start]))
            if idx == 0 and entries:
                pieces.append(new_chunk)
            pos = end
            # a removed block also takes one blank line after it, so gaps don't pile up
            if (idx > 0 or not entries) and pos < len(lines) and not lines[pos].strip():
                pos += 1
        pieces.append("".join(lines[pos:]))
        out = "".join(pieces)
        if out.endswith("\n\n") and not text.endswith("\n\n"):
            out = out.rstrip("\n") + "\n"
        return out
