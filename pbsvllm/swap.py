"""swap-endpoint: point an alias at another job's server, without failed requests.

Order matters for zero failed requests (a client that re-reads the registry
before each request):

1. the target server must be READY (``/v1/models`` lists its model and a
   one-token completion succeeds) -- checked now, not taken from a record;
2. every registry that holds the alias (and the configured ones) is
   rewritten to the new server in one locked atomic write each (``--add``:
   the new server is added as a replica instead);
3. only then, with ``cancel_old``, the old servers are drained: after a short
   grace (a client may have read the old URL just before the swap) we wait
   until ``/metrics`` shows no running and no waiting request twice in a row,
   bounded by ``drain_timeout_s``; then the old job is cancelled through its
   scheduler.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from pbsvllm.errors import RegistryError, ServerError

DRAIN_GRACE_S = 2.0


@dataclasses.dataclass
class SwapResult:
    alias: str
    to_job: str
    url: str
    registries: List[Dict[str, Any]]  # {"registry", "old_urls", "changed"}
    old_jobs: List[Dict[str, Any]]     # {"job_id", "url", "drained", "drain", "cancelled", "message"}
    added: bool = False

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _target_url(record: Any, transport: Any = None) -> str:
    """The new server's URL: the job record's, else its server-info file."""
    url = getattr(record, "url", "") or ""
    if url:
        return url
    path = getattr(record, "server_info_path", "") or ""
    if path:
        try:
            if transport is not None and not getattr(transport, "is_local", True):
                text = transport.read_text(path)
            else:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
            info = json.loads(text)
        except (OSError, ValueError) as exc:
            raise ServerError(
                f"job {record.job_id} has no server yet: cannot read its server-info file {path} ({exc})",
                hint=f"wait for it: `pbsvllm watch {record.job_id}`",
            ) from None
        from pbsvllm.watcher import endpoint_url

        return endpoint_url(info, alias=getattr(record, "alias", ""))
    raise ServerError(f"job {record.job_id} has no known server URL",
                      hint=f"wait for it: `pbsvllm watch {record.job_id}`")


def _candidate_registries(settings: Any, alias: str, store: Any, explicit: Optional[Sequence[str]]) -> List[str]:
    if explicit:
        return list(explicit)
    specs: List[str] = []
    regs_for = getattr(settings, "registries_for", None)
    if callable(regs_for):
        specs.extend(regs_for(alias))
    for rec in store.list():
        specs.extend(str(r) for r in (rec.registries or []))
        specs.extend(str(r) for r in ((rec.get("watch") or {}).get("registered") or []))
    seen, out = set(), []
    for s in specs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def swap_endpoint(
    settings: Any,
    alias: str,
    to_job: str,
    *,
    store: Any = None,
    registries: Optional[Sequence[str]] = None,
    add: bool = False,
    cancel_old: bool = False,
    drain_timeout_s: float = 120.0,
    probe: Optional[Callable[[str, str], Any]] = None,
    cancel: Optional[Callable[[str], str]] = None,
    drain: Optional[Callable[[str, float], Any]] = None,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = lambda s: None,
) -> SwapResult:
    """Point ``alias`` at job ``to_job``'s server in every registry holding it.

    ``probe``/``cancel``/``drain`` are seams (defaults: the real health probe,
    the job's scheduler, ``/metrics`` draining).
    """
    from pbsvllm.jobs import JobStore
    from pbsvllm.registry import Endpoint, open_registries, spec_of

    store = store if store is not None else JobStore(getattr(settings, "home", None))
    target = store.find(to_job)
    url = _target_url(target)
    model = target.served_model_name or target.alias or target.model
    if probe is None:
        from pbsvllm.watcher import make_probe

        probe = make_probe(settings, timeout=3.0, completion_timeout=30.0)
    r = probe(url, model)
    if not getattr(r, "ready", False):
        raise ServerError(
            f"job {target.job_id} at {url} is not ready, so {alias!r} was not moved: {getattr(r, 'detail', '')}",
            hint=f"wait for it with `pbsvllm watch {target.job_id}`, then swap again",
        )
    say(f"{target.job_id} at {url} is ready ({model} listed, one-token completion ok)")

    specs = _candidate_registries(settings, alias, store, registries)
    regs = open_registries(specs) if specs else []
    # the registries that hold the alias; if none does, the configured ones get it
    holding = [reg for reg in regs if reg.lookup(alias)]
    if not holding:
        holding = open_registries(list(registries)) if registries else \
            open_registries(list(getattr(settings, "registries_for", lambda a: ())(alias)))
    if not holding:
        raise RegistryError(
            f"no registry holds {alias!r} and none is configured for it",
            hint="pass --registry PATH, or set registries in the profile or [aliases." + alias + "] of the config",
        )
    key_env = target.api_key_env or getattr(settings, "api_key_env", "VLLM_API_KEY") or "VLLM_API_KEY"
    ep = Endpoint(alias=alias, model=model, url=url, key=key_env, job_id=target.job_id)
    reg_results = []
    old_urls: List[str] = []
    for reg in holding:
        before = [e.url for e in reg.lookup(alias)]
        changed = reg.register(ep, replace=not add)
        reg_results.append({"registry": spec_of(reg), "old_urls": before, "changed": changed})
        say(f"{'added to' if add else 'pointed'} {alias} in {reg.path} -> {url}" + ("" if changed else " (already so)"))
        for u in before:
            if u.rstrip("/") != url.rstrip("/") and u not in old_urls:
                old_urls.append(u)
    # remember, in the target's record, where it is registered (status, and removal when it ends)
    watch = dict(target.get("watch") or {})
    registered = list(watch.get("registered") or [])
    for item in reg_results:
        if item["registry"] not in registered:
            registered.append(item["registry"])
    watch["registered"] = registered
    aliases = list(target.get("registered_aliases") or [])
    if alias not in aliases:
        aliases.append(alias)
    store.update(target.job_id, watch=watch, registered_aliases=aliases,
                 server_state="ready", url=url)

    old_jobs: List[Dict[str, Any]] = []
    if add:
        return SwapResult(alias, target.job_id, url, reg_results, old_jobs, added=True)
    by_url: Dict[str, Any] = {}
    final = ("COMPLETED", "FAILED", "CANCELLED")
    for rec in store.list():  # oldest first; a job still running wins over an ended one at the same URL
        for u in [rec.url] + list((rec.get("watch") or {}).get("urls") or []):
            if not u:
                continue
            prev = by_url.get(u.rstrip("/"))
            if prev is None or (rec.last_status or {}).get("state") not in final or \
                    (prev.last_status or {}).get("state") in final:
                by_url[u.rstrip("/")] = rec
    for u in old_urls:
        rec = by_url.get(u.rstrip("/"))
        item: Dict[str, Any] = {"job_id": rec.job_id if rec else None, "url": u, "drained": None,
                                "drain": "", "cancelled": False, "message": ""}
        if cancel_old:
            if rec is None:
                item["message"] = "no tracked job serves this URL; not cancelled"
            elif rec.job_id == target.job_id:
                item["message"] = "same job as the target; not cancelled"
            else:
                sleep(DRAIN_GRACE_S)
                if drain is None:
                    from pbsvllm.health import wait_for_drain

                    ok, how = _drain_twice(wait_for_drain, u, drain_timeout_s, sleep)
                else:
                    ok, how = drain(u, drain_timeout_s)
                item["drained"], item["drain"] = ok, how
                say(f"old server {u} ({rec.job_id}): {how}")
                if cancel is None:
                    from pbsvllm.launch import cancel_job

                    _rec, msg = cancel_job(store, rec.job_id)
                else:
                    msg = cancel(rec.job_id)
                item["cancelled"], item["message"] = True, msg
                say(f"cancelled {rec.job_id}: {msg}")
        old_jobs.append(item)
    return SwapResult(alias, target.job_id, url, reg_results, old_jobs)


def _drain_twice(wait_for_drain: Any, url: str, timeout_s: float, sleep: Callable[[float], None]) -> Any:
    """Idle on two scrapes a moment apart (a request may be on its way)."""
    deadline = time.monotonic() + timeout_s
    ok, how = wait_for_drain(url, timeout_s=timeout_s, sleep=sleep)
    if not ok:
        return ok, how
    sleep(0.5)
    left = max(0.0, deadline - time.monotonic())
    return wait_for_drain(url, timeout_s=left, sleep=sleep)

