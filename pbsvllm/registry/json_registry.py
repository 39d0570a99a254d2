"""Plain JSON registry: ``{alias: entry}`` where an entry is an object
``{"model", "url", "key", "job_id"}`` or a list of such objects (replicas).

Same shape as the legacy verifiers ``ENDPOINTS`` dict, so scripts can load it
with ``json.load`` alone. The whole document is rewritten (JSON has no
comments to keep); the order of the other aliases and their fields is kept.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from pbsvllm.registry.base import Endpoint, Entries, Registry, location, not_parsable

_BASE_KEYS = ("model", "url", "key", "job_id")


class JsonRegistry(Registry):
    fmt = "json"
    supports_replicas = True
    stores_job_id = True

    def _load(self, text: str) -> Dict[str, Any]:
        if not text.strip():
            return {}
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise not_parsable(self.path, location(self.path, exc.lineno, exc.colno), exc.msg) from None
        if not isinstance(data, dict):
            raise not_parsable(self.path, self.path, "the top level must be an object {alias: entry}")
        return data

    def parse(self, text: str) -> Entries:
        out: Entries = {}
        for alias, value in self._load(text).items():
            variants = value if isinstance(value, list) else [value]
            eps = []
            for v in variants:
                if not isinstance(v, dict):
                    raise not_parsable(
                        self.path, f"{self.path}, alias {alias!r}", "entry must be an object or a list of objects"
                    )
                v = dict(v)
                vals = {k: v.pop(k, None) for k in _BASE_KEYS}
                for k in ("model", "url", "key"):
                    if not isinstance(vals[k], str):
                        raise not_parsable(self.path, f"{self.path}, alias {alias!r}", f"needs a string {k!r}")
                job = vals["job_id"]
                eps.append(Endpoint(alias=alias, model=vals["model"], url=vals["url"], key=vals["key"],
                                    job_id=None if job is None else str(job), extra=v))
            if eps:
                out[alias] = eps
        return out

    @staticmethod
    def _entry(ep: Endpoint) -> Dict[str, Any]:
        d: Dict[str, Any] = {"model": ep.model, "url": ep.url, "key": ep.key}
        if ep.job_id is not None:
            d["job_id"] = ep.job_id
        for k, v in ep.extra.items():
            d.setdefault(k, v)
        return d

    def render(self, text: str, alias: str, entries: List[Endpoint]) -> str:
        data = self._load(text)
        if entries:
            value: Any = self._entry(entries[0]) if len(entries) == 1 else [self._entry(e) for e in entries]
            data[alias] = value  # keeps the alias's position when it existed
        else:
            data.pop(alias, None)
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
