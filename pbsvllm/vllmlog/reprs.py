"""Python-literal reprs in vLLM logs (the config line, ``non-default args``,
``Namespace(...)``) taken apart safely, and the value coercions the scanner
uses on them."""

from __future__ import annotations

import ast
from typing import Any, Dict, List, Optional

from pbsvllm.vllmlog.lines import _i


def _split_top(s: str, sep: str = ",") -> List[str]:
    """Split at ``sep`` outside brackets and quotes (tolerates truncation)."""
    parts: List[str] = []
    depth = 0
    quote = ""
    start = 0
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c in "([{<":
            depth += 1
        elif c in ")]}>":
            if depth > 0:
                depth -= 1
        elif c == sep and depth == 0:
            parts.append(s[start:i].strip())
            start = i + 1
        i += 1
    tail = s[start:].strip()
    if tail:
        parts.append(tail)
    return parts


def _literal(v: str) -> Any:
    v = v.strip()
    if not v:
        return v
    try:
        return ast.literal_eval(v)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return v


def parse_kv_repr(s: str) -> Dict[str, Any]:
    """``a=1, b='x', c=torch.bfloat16`` -> dict (non-literals kept as text)."""
    out: Dict[str, Any] = {}
    for part in _split_top(s):
        k, eq, v = part.partition("=")
        k = k.strip()
        if eq and k.isidentifier():
            out[k] = _literal(v)
    return out


def parse_dict_repr(s: str) -> Dict[str, Any]:
    """``{'host': '0.0.0.0', 'port': 8011, ...}`` -> dict, safely.

    ``ast.literal_eval`` first; when the text is truncated or holds a
    non-literal, fall back to splitting the pairs one by one."""
    s = s.strip()
    try:
        v = ast.literal_eval(s)
        if isinstance(v, dict):
            return {str(k): val for k, val in v.items()}
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    if s.startswith("{"):
        s = s[1:]
    if s.endswith("}"):
        s = s[:-1]
    out: Dict[str, Any] = {}
    for part in _split_top(s):
        k, colon, v = part.partition(":")
        if not colon:
            continue
        key = _literal(k)
        if isinstance(key, str) and key.isidentifier():
            out[key] = _literal(v)
    return out


def _scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool)) or v is None


def _to_int(v: Any) -> Optional[int]:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        try:
            return _i(v)
        except ValueError:
            return None
    return None


def _to_bool(v: Any) -> Optional[bool]:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v in ("True", "False"):
        return v == "True"
    return None


def _to_float(v: Any) -> Optional[float]:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _clean_dtype(v: Any) -> Optional[str]:
    if v is None:
        return None
    s = str(v)
    if s.startswith("torch."):
        s = s[6:]
    return s or None
