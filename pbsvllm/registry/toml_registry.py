"""verifiers ``endpoints.toml``: ``[[endpoint]]`` tables, one per server.

Loader rules followed (verifiers ``eval_utils.py``, 2026): every entry needs a
non-empty string ``endpoint_id`` and string ``model``, ``url``, ``key``;
``api_base_url`` / ``api_key_var`` are accepted spellings of ``url`` / ``key``
(both spellings with different values is an error); other keys pass through;
entries sharing an ``endpoint_id`` are replicas.

Writing is surgical: the ``[[endpoint]]`` blocks of the alias are replaced in
place (or appended), every other line -- other entries, comments, other
tables -- stays byte-for-byte; the lines written are quoted by tomlkit. The
inline form ``endpoint = [{...}, ...]`` is edited with tomlkit's
style-preserving document model. (Replacing whole ``[[endpoint]]`` tables
through tomlkit would move a comment that precedes the next table along with
the removed one, so the block edges are found here and tomlkit quotes.)
tomlkit is imported only when writing.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Dict, List, Optional, Tuple

from pbsvllm.errors import RegistryError
from pbsvllm.registry.base import Endpoint, Entries, Registry, location, not_parsable, split_lines

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10
    import tomli as tomllib

_HEADER = re.compile(r"^[ \t]*\[")
_ENDPOINT_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*endpoint[ \t]*\]\][ \t]*(#.*)?$")
_ENDPOINT_HEADER_ANY = re.compile(r"^[ \t]*\[\[[ \t]*endpoint[ \t]*\]\]", re.M)
_SUB_HEADER = re.compile(r"^[ \t]*\[\[?[ \t]*endpoint[ \t]*\.")
_LINE_COL = re.compile(r"line (\d+), column (\d+)")
_SPELLINGS = (("url", "api_base_url"), ("key", "api_key_var"))


def _tomlkit() -> Any:
    """tomlkit, imported only when a TOML registry is written (start-up stays fast)."""
    import tomlkit

    return tomlkit


def _inline(v: Any) -> Any:
    """A tomlkit item for ``v``; tables become inline tables (this flat format
    writes every value on its key's line)."""
    tk = _tomlkit()
    if isinstance(v, dict):
        table = tk.inline_table()
        for k, x in v.items():
            table.append(str(k), _inline(x))
        return table
    if isinstance(v, (list, tuple)):
        arr = tk.array()
        for x in v:
            arr.append(_inline(x))
        return arr
    try:
        return tk.item(v)
    except (ValueError, TypeError):
        raise RegistryError(f"cannot write a {type(v).__name__} value ({v!r}) into a TOML registry") from None


def _fields(ep: Endpoint) -> List[Tuple[str, Any]]:
    out: List[Tuple[str, Any]] = [("endpoint_id", ep.alias), ("model", ep.model), ("url", ep.url), ("key", ep.key)]
    for k, v in ep.extra.items():
        if k not in ("endpoint_id", "model", "url", "key", "api_base_url", "api_key_var"):
            out.append((str(k), v))
    return out


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
        """One ``[[endpoint]]`` table, each value on its key's line (tomlkit quotes)."""
        tk = _tomlkit()
        lines = ["[[endpoint]]"]
        for k, v in _fields(ep):
            lines.append(f"{tk.key(k).as_string()} = {_inline(v).as_string()}")
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
        if "endpoint" in self._loads(text) and not _ENDPOINT_HEADER_ANY.search(text):
            return self._render_inline(text, alias, entries)
        return self._render_tables(text, alias, entries)

    def _render_inline(self, text: str, alias: str, entries: List[Endpoint]) -> str:
        """``endpoint = [{...}, ...]`` (an inline array of tables, valid TOML that
        verifiers reads like ``[[endpoint]]``): edited with tomlkit, which keeps
        every other part of the document as written."""
        tk = _tomlkit()
        doc = tk.parse(text)
        arr = doc["endpoint"]
        mine = [i for i, item in enumerate(arr) if isinstance(item, dict) and item.get("endpoint_id") == alias]
        new = []
        for ep in entries:
            table = tk.inline_table()
            for k, v in _fields(ep):
                table.append(k, _inline(v))
            new.append(table)
        at = mine[0] if mine else len(arr)
        for i in reversed(mine):
            del arr[i]
        for j, table in enumerate(new):
            arr.insert(at + j, table)
        return str(tk.dumps(doc))

    def _render_tables(self, text: str, alias: str, entries: List[Endpoint]) -> str:
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
