"""LiteLLM proxy ``config.yaml``: the ``model_list`` of deployments.

One deployment per server::

  - model_name: <alias>                      # what clients ask the proxy for
    litellm_params:
      model: hosted_vllm/<served model name>
      api_base: http://<node>:<port>/v1
      api_key: os.environ/<VAR>              # the variable NAME, never the key
    model_info:
      id: <job id>                           # stable id: later update/delete

Several deployments with one ``model_name`` are load-balanced replicas.

Reading uses PyYAML's ``safe_load`` (a dependency: a hand-written YAML
*reader* would be a liability). Writing is surgical: the items of the alias
inside a block-style ``model_list`` are replaced in place (or appended), all
other lines -- comments, ``router_settings``, ``general_settings``, other
deployments -- stay byte-for-byte. Our items are emitted with JSON-quoted
scalars, which YAML reads back exactly; the result is parsed again and must
hold exactly the intended deployments. LiteLLM reads this file at start-up:
restart the proxy (or use its database mode) for a change to take effect.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Tuple

from pbsvllm.errors import RegistryError
from pbsvllm.registry.base import (
    MAX_DEPTH,
    Endpoint,
    Entries,
    Registry,
    double_quoted,
    location,
    not_parsable,
    split_lines,
)

PROVIDER = "hosted_vllm"
ENV_PREFIX = "os.environ/"
_MODEL_LIST = re.compile(r"^model_list[ \t]*:[ \t]*(#.*)?\r?$")
_MODEL_LIST_EMPTY = re.compile(r"^model_list[ \t]*:[ \t]*(\[[ \t]*\]|null|~)?[ \t]*(#.*)?\r?$")
_ITEM = re.compile(r"^([ \t]*)-([ \t]|$)")


#: Most scalars and collections a registry document may stand for, aliases expanded.
MAX_NODES = 200_000


def _expanded(root: Any) -> Tuple[int, int]:
    """(values the node graph stands for with every alias expanded, nesting
    depth), computed without expanding: a shared node is sized once (iterative
    post-order; an alias loop counts as too big)."""
    size: Dict[int, int] = {}
    depth: Dict[int, int] = {}
    on_path = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            kids = _children(node)
            size[key] = min(MAX_NODES + 1, 1 + sum(size[id(k)] for k in kids))
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            continue
        if key in size:
            continue
        if key in on_path:
            return MAX_NODES + 1, 0
        on_path.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in size)
    return size[id(root)], depth[id(root)]


def _children(node: Any) -> List[Any]:
    value = node.value
    if not isinstance(value, list):
        return []
    out: List[Any] = []
    for item in value:
        if isinstance(item, tuple):
            out.extend(item)
        else:
            out.append(item)
    return out


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _printable(c: int) -> bool:
    """Code points written as they are: YAML 1.1's printable set minus its line
    breaks (NEL, LS, PS) and the BOM; anything else is escaped."""
    return (0x20 <= c <= 0x7E or 0xA0 <= c <= 0xD7FF or 0xE000 <= c <= 0xFFFD
            or 0x10000 <= c <= 0x10FFFF) and c not in (0xFEFF, 0x2028, 0x2029)


def _yaml_str(s: str) -> str:
    return double_quoted(s, _printable)


def _q(v: Any) -> str:
    """A YAML scalar or flow collection that reads back as exactly ``v``."""
    if isinstance(v, str):
        return _yaml_str(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_q(str(k))}: {_q(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_q(x) for x in v) + "]"
    return json.dumps(v)


def _k(k: Any) -> str:
    k = str(k)
    return (
        k
        if _PLAIN_KEY.match(k) and k.lower() not in ("true", "false", "null", "yes", "no", "on", "off", "y", "n")
        else _q(k)
    )


class LiteLLMRegistry(Registry):
    fmt = "litellm"
    supports_replicas = True
    stores_job_id = True

    def _load(self, text: str) -> Any:
        import copy

        import yaml

        memo = self.__dict__.setdefault("_memo", {})
        if text in memo:
            return copy.deepcopy(memo[text])
        loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when the wheel has it: ~10x faster
        try:
            loader = loader_cls(text)
            try:
                node = loader.get_single_node()
                if node is not None:
                    # aliases make a small text stand for a huge document ("billion
                    # laughs"): count what it stands for before building it
                    size, depth = _expanded(node)
                    if size > MAX_NODES or depth > MAX_DEPTH:
                        what = (f"it expands to more than {MAX_NODES} values through anchors and aliases"
                                if size > MAX_NODES else f"it is nested deeper than {MAX_DEPTH} levels")
                        raise not_parsable(self.path, self.path, what + ", more than a registry can be")
                data = loader.construct_document(node) if node is not None else None
            finally:
                loader.dispose()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = location(self.path, mark.line + 1, mark.column + 1) if mark else self.path
            detail = " ".join(str(x) for x in (getattr(exc, "problem", None), getattr(exc, "context", None)) if x)
            raise not_parsable(self.path, where, detail or str(exc)) from None
        if len(memo) >= 4:
            memo.clear()
        memo[text] = copy.deepcopy(data)
        return data

    def _model_list(self, text: str) -> List[Any]:
        data = self._load(text)
        if data is None:
            return []
        if not isinstance(data, dict):
            raise not_parsable(self.path, self.path, "the top level must be a mapping with a model_list key")
        ml = data.get("model_list")
        if ml is None:
            return []
        if not isinstance(ml, list):
            raise not_parsable(self.path, self.path, "model_list must be a list")
        return ml

    def parse(self, text: str) -> Entries:
        out: Entries = {}
        for i, item in enumerate(self._model_list(text), 1):
            where = f"{self.path}, model_list item {i}"
            if not isinstance(item, dict) or not isinstance(item.get("model_name"), str):
                raise not_parsable(self.path, where, "needs a string model_name")
            params = item.get("litellm_params")
            if not isinstance(params, dict) or not isinstance(params.get("model"), str):
                raise not_parsable(self.path, where, "needs litellm_params with a string model")
            params = dict(params)
            provider_model = params.pop("model")
            served = provider_model.split("/", 1)[1] if "/" in provider_model else provider_model
            url = params.pop("api_base", "")
            api_key = params.pop("api_key", None)
            key = ""
            if isinstance(api_key, str) and api_key.startswith(ENV_PREFIX):
                key = api_key[len(ENV_PREFIX):]
            elif api_key is not None:
                params["api_key"] = api_key  # a literal key the user wrote: passed through, never logged
            info = item.get("model_info")
            info = dict(info) if isinstance(info, dict) else {}
            job_id = _job_of_id(info.pop("id", None), str(url))
            extra: Dict[str, Any] = {}
            if params:
                extra["litellm_params"] = params
            if info:
                extra["model_info"] = info
            if provider_model.split("/", 1)[0] != PROVIDER and "/" in provider_model:
                extra["provider"] = provider_model.split("/", 1)[0]
            rest = {k: v for k, v in item.items() if k not in ("model_name", "litellm_params", "model_info")}
            if rest:
                extra["item"] = rest
            out.setdefault(item["model_name"], []).append(
                Endpoint(alias=item["model_name"], model=served, url=str(url), key=key,
                         job_id=None if job_id is None else str(job_id), extra=extra)
            )
        return out

    @staticmethod
    def item_text(ep: Endpoint, indent: str, server_id: Optional[str] = None) -> str:
        extra = ep.extra
        provider = extra.get("provider", PROVIDER)
        pad = indent + "  "
        lines = [f"{indent}- model_name: {_q(ep.alias)}", f"{pad}litellm_params:"]
        lines.append(f"{pad}  model: {_q(provider + '/' + ep.model)}")
        lines.append(f"{pad}  api_base: {_q(ep.url)}")
        if ep.key:
            lines.append(f"{pad}  api_key: {_q(ENV_PREFIX + ep.key)}")
        for k, v in (extra.get("litellm_params") or {}).items():
            if k in ("model", "api_base") or (k == "api_key" and ep.key):
                continue
            lines.append(f"{pad}  {_k(k)}: {_q(v)}")
        info = dict(extra.get("model_info") or {})
        if ep.job_id is not None:
            info = {"id": server_id or ep.job_id, **{k: v for k, v in info.items() if k != "id"}}
        if info:
            lines.append(f"{pad}model_info:")
            for k, v in info.items():
                lines.append(f"{pad}  {_k(k)}: {_q(v)}")
        for k, v in (extra.get("item") or {}).items():
            lines.append(f"{pad}{_k(k)}: {_q(v)}")
        return "\n".join(lines) + "\n"

    def _items(self, lines: List[str]) -> Tuple[Optional[int], int, str, List[Tuple[int, int]]]:
        """(model_list line, end of its section, item indent, [(start, end)] per item)."""
        ml_line = None
        for i, line in enumerate(lines):
            if _MODEL_LIST_EMPTY.match(line):
                ml_line = i
        if ml_line is None:
            return None, len(lines), "  ", []
        # the section ends at the next line that starts a top-level key
        stop = len(lines)
        for j in range(ml_line + 1, len(lines)):
            s = lines[j]
            if s.strip() and not s.startswith((" ", "\t", "#", "-")):
                stop = j
                break
        starts: List[int] = []
        indent = None
        for j in range(ml_line + 1, stop):
            m = _ITEM.match(lines[j])
            if m and (indent is None or m.group(1) == indent):
                indent = m.group(1)
                starts.append(j)
        items: List[Tuple[int, int]] = []
        for n, first in enumerate(starts):
            e = starts[n + 1] if n + 1 < len(starts) else stop
            while e > first + 1 and (not lines[e - 1].strip() or lines[e - 1].lstrip().startswith("#")):
                e -= 1
            items.append((first, e))
        return ml_line, stop, "  " if indent is None else indent, items

    def render(self, text: str, alias: str, entries: List[Endpoint]) -> str:
        current = self._model_list(text)
        lines = split_lines(text)
        ml_line, stop, indent, spans = self._items(lines)
        if ml_line is not None and not _MODEL_LIST.match(lines[ml_line]):
            # "model_list: []" or "model_list:" with null: make it a block list
            if current:
                raise RegistryError(
                    f"cannot edit {location(self.path, ml_line + 1, 1)} in place: model_list is in flow style",
                    hint="write model_list as a block list (one '- model_name:' item per deployment)",
                )
            nl = "\n" if lines[ml_line].endswith("\n") else ""
            lines[ml_line] = "model_list:" + nl
        if len(spans) != len(current):
            raise RegistryError(
                f"cannot edit {self.path} in place: found {len(spans)} model_list items in the text "
                f"but YAML reads {len(current)}",
                hint="write model_list as a block list (one '- model_name:' item per deployment)",
            )
        new_chunk = "".join(self.item_text(e, indent, _server_id(e, entries)) for e in entries)
        mine = [spans[i] for i, it in enumerate(current) if isinstance(it, dict) and it.get("model_name") == alias]
        if mine:
            pieces, pos = [], 0
            for idx, (s, e) in enumerate(mine):
                pieces.append("".join(lines[pos:s]))
                if idx == 0:
                    pieces.append(new_chunk)
                pos = e
            pieces.append("".join(lines[pos:]))
            return "".join(pieces)
        if not entries:
            return "".join(lines)
        if ml_line is None:
            out = "".join(lines)
            if out and not out.endswith("\n"):
                out += "\n"
            return out + "model_list:\n" + new_chunk
        insert_at = spans[-1][1] if spans else ml_line + 1
        if insert_at > 0 and not lines[insert_at - 1].endswith("\n"):
            lines[insert_at - 1] += "\n"
        return "".join(lines[:insert_at]) + new_chunk + "".join(lines[insert_at:])


def _server_id(ep: Endpoint, entries: List[Endpoint]) -> Optional[str]:
    """LiteLLM's ``model_info.id`` must differ per deployment, or the router tracks
    only one: the job id, plus ``#host:port`` when one job has several servers
    (replicas mode). Read back by :func:`_job_of_id`."""
    if ep.job_id is None or sum(1 for e in entries if e.job_id == ep.job_id) < 2:
        return None
    return f"{ep.job_id}#{_host_port(ep.url)}"


def _job_of_id(value: Any, url: str) -> Any:
    if isinstance(value, str) and "#" in value and value.endswith("#" + _host_port(url)):
        return value[: -len(_host_port(url)) - 1]
    return value


def _host_port(url: str) -> str:
    return re.sub(r"^[a-z]+://", "", url).split("/", 1)[0]
