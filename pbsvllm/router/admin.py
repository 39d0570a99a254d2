"""HTTP calls to a running ``vllm-router`` (0.1.17): its admin endpoints.

``POST /add_worker?url=U`` (the router first waits for ``U/health``),
``POST /remove_worker?url=U`` (requests already sent to U finish),
``GET /list_workers`` -> ``{"urls": [...]}``, ``GET /liveness`` -> 200.
Standard library only, no proxies (a login node's ``http_proxy`` must not
swallow loopback or compute-node URLs).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import List, Tuple

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class RouterAdminError(OSError):
    """The router did not do what was asked (its answer is in the message)."""


class RouterAdmin:
    """The admin side of one router at ``base`` (``http://host:port``)."""

    def __init__(self, base: str, timeout: float = 10.0) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, timeout: float) -> Tuple[int, str]:
        req = urllib.request.Request(self.base + path, method=method, data=b"" if method == "POST" else None)
        try:
            with _OPENER.open(req, timeout=timeout) as resp:
                return resp.status, resp.read(65536).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(65536).decode("utf-8", "replace")

    def alive(self) -> bool:
        try:
            status, _ = self._call("GET", "/liveness", 2.0)
        except OSError:
            return False
        return status == 200

    def list_workers(self) -> List[str]:
        status, body = self._call("GET", "/list_workers", self.timeout)
        if status != 200:
            raise RouterAdminError(f"GET /list_workers answered {status}: {body[:200]}")
        urls = json.loads(body).get("urls") or []
        return [str(u) for u in urls]

    def add_worker(self, worker: str, timeout: float = 0.0) -> None:
        q = urllib.parse.urlencode({"url": worker})
        status, body = self._call("POST", "/add_worker?" + q, timeout or self.timeout)
        if status != 200:
            raise RouterAdminError(f"the router refused worker {worker}: {status} {body[:300]}")

    def remove_worker(self, worker: str) -> None:
        q = urllib.parse.urlencode({"url": worker})
        status, body = self._call("POST", "/remove_worker?" + q, self.timeout)
        # 0.1.17 answers 200 also for a worker it does not have ("skipping removal" in its log)
        if status != 200:
            raise RouterAdminError(f"the router did not remove worker {worker}: {status} {body[:300]}")
