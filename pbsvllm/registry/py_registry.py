"""verifiers legacy ``configs/endpoints.py``: ``ENDPOINTS = {alias: {...}}``.

The file is Python that verifiers *executes*; pbsvllm never does. It is read
with :mod:`ast` (``ENDPOINTS`` must be a dict literal at module level; each
entry a dict ``{"model", "url", "key", ...}`` or a list of them = replicas,
which verifiers accepted between 2026-02 and 2026-05). Writing changes only
the source text of the alias's own entry (found from the AST positions):
every other byte of the file stays as it was, and the result is parsed again
to prove it still is valid Python holding exactly the intended entries.

Entries of other aliases that are not literals (say ``os.environ[...]``) are
left alone; only the alias being written must be a literal.

Note: verifiers removed this format on 2026-05-06 (#1277); prefer
``endpoints.toml``.
"""

from __future__ import annotations

import ast
import json
from typing import Any, Dict, List, Optional, Tuple, cast

from pbsvllm.errors import RegistryError
from pbsvllm.registry.base import Endpoint, Entries, Registry, location, not_parsable, split_lines

_BASE_KEYS = ("model", "url", "key")



def _key(node: ast.Dict, idx: int) -> ast.expr:
    """A key of the ENDPOINTS dict (``_items`` refused ``**`` expansions, the only keys that are None)."""
    return cast(ast.expr, node.keys[idx])

class _Opaque:
    """An entry whose source is not a literal: kept, never rewritten."""


class PyRegistry(Registry):
    fmt = "py"
    supports_replicas = True
    stores_job_id = False

    # -- reading ------------------------------------------------------------------
    def _tree(self, text: str) -> ast.Module:
        import warnings

        try:
            with warnings.catch_warnings():  # e.g. "invalid escape sequence" in the user's own strings
                warnings.simplefilter("ignore")
                return ast.parse(text, filename=self.path)
        except SyntaxError as exc:
            raise not_parsable(self.path, location(self.path, exc.lineno, exc.offset), exc.msg) from None

    def _dict_node(self, tree: ast.Module) -> Optional[ast.Dict]:
        found: Optional[ast.Dict] = None
        for stmt in tree.body:
            target, value = None, None
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target, value = stmt.targets[0], stmt.value
            elif isinstance(stmt, ast.AnnAssign):
                target, value = stmt.target, stmt.value
            if isinstance(target, ast.Name) and target.id == "ENDPOINTS":
                if not isinstance(value, ast.Dict):
                    raise not_parsable(
                        self.path, location(self.path, stmt.lineno, stmt.col_offset + 1),
                        "ENDPOINTS is not a dict literal, so it cannot be edited safely",
                    )
                found = value  # the last assignment wins, as when Python runs it
        return found

    def _items(self, text: str) -> Tuple[Optional[ast.Dict], List[Tuple[str, ast.expr, Any]]]:
        node = self._dict_node(self._tree(text))
        if node is None:
            return None, []
        items = []
        for k, v in zip(node.keys, node.values):
            if k is None:
                raise not_parsable(self.path, location(self.path, v.lineno, v.col_offset + 1),
                                   "'**' expansion inside ENDPOINTS cannot be edited safely")
            if not (isinstance(k, ast.Constant) and isinstance(k.value, str)):
                raise not_parsable(self.path, location(self.path, k.lineno, k.col_offset + 1),
                                   "ENDPOINTS keys must be string literals")
            try:
                value = ast.literal_eval(v)
            except ValueError:
                value = _Opaque()
            items.append((k.value, v, value))
        return node, items

    def parse(self, text: str) -> Entries:
        _node, items = self._items(text)
        out: Entries = {}
        for alias, vnode, value in items:
            if isinstance(value, _Opaque):
                continue
            where = location(self.path, vnode.lineno, vnode.col_offset + 1)
            variants = value if isinstance(value, list) else [value]
            eps = []
            for v in variants:
                if not isinstance(v, dict):
                    raise not_parsable(self.path, where, f"entry {alias!r} must be a dict or a list of dicts")
                v = dict(v)
                vals = {k: v.pop(k, None) for k in _BASE_KEYS}
                for k in _BASE_KEYS:
                    if not isinstance(vals[k], str):
                        raise not_parsable(self.path, where, f"entry {alias!r} needs a string {k!r}")
                eps.append(Endpoint(alias=alias, model=vals["model"], url=vals["url"], key=vals["key"], extra=v))
            out[alias] = eps  # a later duplicate key wins, as in Python
        return out

    # -- writing ------------------------------------------------------------------
    @staticmethod
    def _entry_src(ep: Endpoint) -> str:
        d: Dict[str, Any] = {"model": ep.model, "url": ep.url, "key": ep.key}
        for k, v in ep.extra.items():
            if k not in d:
                d[k] = v
        return "{" + ", ".join(f"{_src(k)}: {_src(v)}" for k, v in d.items()) + "}"

    def _value_src(self, entries: List[Endpoint], indent: str) -> str:
        if len(entries) == 1:
            return self._entry_src(entries[0])
        inner = indent + "    "
        return "[\n" + "".join(f"{inner}{self._entry_src(e)},\n" for e in entries) + indent + "]"

    def render(self, text: str, alias: str, entries: List[Endpoint]) -> str:
        node, items = self._items(text)
        lines = split_lines(text)
        if node is None:
            if not entries:
                return text
            body = f"    {_src(alias)}: {self._value_src(entries, '    ')},\n"
            sep = "" if not text or text.endswith("\n") else "\n"
            return text + sep + "ENDPOINTS = {\n" + body + "}\n"
        offsets = _LineOffsets(lines)
        mine = [(i, k) for i, k in enumerate(items) if k[0] == alias]
        if mine:
            idx, (_a, vnode, value) = mine[-1]  # the entry Python would see
            if isinstance(value, _Opaque):
                raise RegistryError(
                    f"entry {alias!r} in {location(self.path, vnode.lineno, vnode.col_offset + 1)} is not a "
                    "literal, so pbsvllm will not rewrite it",
                    hint="make it a plain dict or switch to endpoints.toml",
                )
            start = offsets.pos(vnode.lineno, vnode.col_offset)
            end = offsets.pos(vnode.end_lineno, vnode.end_col_offset)
            if entries:
                indent = _indent_of(lines[_key(node, idx).lineno - 1])
                return text[:start] + self._value_src(entries, indent) + text[end:]
            # remove "key: value," (and its line, if it had the line to itself)
            knode = _key(node, idx)
            kstart = offsets.pos(knode.lineno, knode.col_offset)
            after = end
            j = _skip_ws_comments(text, after)
            if j < len(text) and text[j] == ",":
                after = j + 1
            line_start = text.rfind("\n", 0, kstart) + 1
            line_end = text.find("\n", after)
            line_end = len(text) if line_end < 0 else line_end + 1
            if not text[line_start:kstart].strip() and not text[after:line_end].strip():
                return text[:line_start] + text[line_end:]
            tail = text[after:]
            return text[:kstart] + tail.lstrip(" \t") if not text[line_start:kstart].strip() else text[:kstart] + tail
        if not entries:
            return text
        # add before the closing brace
        close = offsets.pos(node.end_lineno, node.end_col_offset) - 1  # the "}"
        if text[close] != "}":
            raise RegistryError(f"cannot find the closing brace of ENDPOINTS in {self.path}")
        prefix = text[:close]
        need_comma = False
        if node.values:
            last_end = offsets.pos(node.values[-1].end_lineno, node.values[-1].end_col_offset)
            j = _skip_ws_comments(text, last_end)
            need_comma = not (j < close and text[j] == ",")
            if need_comma:
                prefix = text[:last_end] + "," + text[last_end:close]
        closing_line_start = text.rfind("\n", 0, close) + 1
        brace_alone = not text[closing_line_start:close].strip()
        if brace_alone:
            item_indent = _indent_of(lines[_key(node, -1).lineno - 1]) if node.keys else "    "
            entry = f"{item_indent}{_src(alias)}: {self._value_src(entries, item_indent)},\n"
            cut = closing_line_start + (1 if need_comma else 0)
            return prefix[:cut] + entry + prefix[cut:] + text[close:]
        space = " " if node.values else ""
        return prefix + f"{space}{_src(alias)}: {self._value_src(entries, '    ')}" + text[close:]


class _LineOffsets:
    """Convert ast (line, utf-8 byte column) positions to string offsets."""

    def __init__(self, lines: List[str]) -> None:
        self.lines = lines
        self.starts = []
        pos = 0
        for line in lines:
            self.starts.append(pos)
            pos += len(line)
        self.starts.append(pos)

    def pos(self, lineno: Optional[int], col: Optional[int]) -> int:
        if lineno is None or col is None:
            raise RegistryError("the Python AST gave no source position (Python too old?)")
        line = self.lines[lineno - 1] if lineno - 1 < len(self.lines) else ""
        chars = len(line.encode("utf-8")[:col].decode("utf-8", errors="ignore"))
        return self.starts[lineno - 1] + chars


def _src(v: Any) -> str:
    """Python source for a literal; strings double-quoted like most such files."""
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_src(k)}: {_src(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_src(x) for x in v) + "]"
    return repr(v)


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _skip_ws_comments(text: str, i: int) -> int:
    while i < len(text):
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
        elif ch == "#":
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl
        else:
            break
    return i
