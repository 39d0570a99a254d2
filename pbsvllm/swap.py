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
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from pbsvllm.errors import PbsvllmError, RegistryError, ServerError
from pbsvllm.jobs import JobRecord, JobStore, with_record_key_file
from pbsvllm.models import ServerState
from pbsvllm.transport.base import Transport

if TYPE_CHECKING:
    from pbsvllm.config import Settings
    from pbsvllm.health import Readiness

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


def target_url(settings: Settings, record: JobRecord, transport: Transport) -> str:
    """The new server's URL: the job record's, else its server-info file,
    read through ``transport`` (the job's host: over SSH for a remote job)."""
    if record.url:
        return record.url
    from pbsvllm import serverinfo

    try:
        info = serverinfo.read(transport, record.server_info_path)
    except serverinfo.ServerInfoMissing:
        raise ServerError(f"job {record.job_id} has no server yet (no server-info file)",
                          hint=f"wait for it: `pbsvllm watch {record.job_id}`") from None
    except ServerError as exc:
        raise ServerError(f"job {record.job_id}: {exc.message}",
                          hint=f"wait for it: `pbsvllm watch {record.job_id}`") from None
    return serverinfo.endpoint_url(info, hostname_suffix=settings.profile.hostname_suffix or "",
                                   url_template=settings.profile.url_template or serverinfo.DEFAULT_URL_TEMPLATE,
                                   alias=record.alias)


def _candidate_registries(settings: Settings, alias: str, store: JobStore,
                          explicit: Optional[Sequence[str]]) -> List[str]:
    if explicit:
        return list(explicit)
    specs: List[str] = list(settings.registries_for(alias))
    for rec in store.list():
        specs.extend(rec.registries)
        specs.extend(rec.watch.registered)
    return list(dict.fromkeys(specs))


def swap_endpoint(
    settings: Settings,
    alias: str,
    to_job: str,
    *,
    store: Optional[JobStore] = None,
    registries: Optional[Sequence[str]] = None,
    add: bool = False,
    cancel_old: bool = False,
    drain_timeout_s: float = 120.0,
    probe: Optional[Callable[[str, str], Readiness]] = None,
    cancel: Optional[Callable[[str], str]] = None,
    drain: Optional[Callable[[str, float], Tuple[bool, str]]] = None,
    transport_for: Optional[Callable[[Optional[str]], Transport]] = None,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = lambda s: None,
) -> SwapResult:
    """Point ``alias`` at job ``to_job``'s server in every registry holding it.

    ``probe``/``cancel``/``drain``/``transport_for`` are seams (defaults: the
    real health probe, the job's scheduler, ``/metrics`` draining, the job
    host's transport).
    """
    from pbsvllm.registry import Endpoint, open_registries, spec_of

    if transport_for is None:
        from pbsvllm.transport import get_transport

        transport_for = get_transport
    store = store if store is not None else JobStore(settings.home)
    target = store.find(to_job)
    url = target_url(settings, target, transport_for(target.host))
    model = target.served_name
    if probe is None:
        from pbsvllm.watcher import make_probe

        probe = make_probe(with_record_key_file(settings, [target]), timeout=3.0, completion_timeout=30.0)
    r = probe(url, model)
    if not r.ready:
        raise ServerError(
            f"job {target.job_id} at {url} is not ready, so {alias!r} was not moved: {r.detail}",
            hint=f"wait for it with `pbsvllm watch {target.job_id}`, then swap again",
        )
    say(f"{target.job_id} at {url} is ready ({model} listed, one-token completion ok)")

    from pbsvllm import router

    if alias in router.aliases(home=settings.home):  # the alias has a router: move its membership
        return _swap_behind_router(settings, store, alias, target, url, registries=registries, add=add,
                                   cancel_old=cancel_old, drain_timeout_s=drain_timeout_s, cancel=cancel,
                                   drain=drain, say=say)

    specs = _candidate_registries(settings, alias, store, registries)
    regs = open_registries(specs) if specs else []
    # the registries that hold the alias; if none does, the configured ones get it
    holding = [reg for reg in regs if reg.lookup(alias)]
    if not holding:
        holding = open_registries(list(registries)) if registries else \
            open_registries(list(settings.registries_for(alias)))
    if not holding:
        raise RegistryError(
            f"no registry holds {alias!r} and none is configured for it",
            hint="pass --registry PATH, or set registries in the profile or [aliases." + alias + "] of the config",
        )
    key_env = target.api_key_env or settings.api_key_env or "VLLM_API_KEY"
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
    # remember, in the target's record, where it is registered (status, and removal when it ends);
    # read and written under the record lock: concurrent swaps each add their registries
    written = [str(item["registry"]) for item in reg_results]

    def remember(rec: JobRecord) -> JobRecord:
        rec.watch = dataclasses.replace(rec.watch, registered=list(dict.fromkeys([*rec.watch.registered, *written])))
        rec.registered_aliases = list(dict.fromkeys([*rec.registered_aliases, alias]))
        rec.server_state, rec.url = ServerState.READY, url
        return rec

    try:
        store.modify(target.job_id, remember)
    except PbsvllmError as exc:
        done = ", ".join(str(item["registry"]) for item in reg_results)
        raise PbsvllmError(
            f"{alias!r} now points at {url} in {done}, but job {target.job_id}'s record could not be updated "
            f"({exc.message}): `pbsvllm status` will not remove these entries when the job ends",
            hint=f"fix the record, or remove {alias!r} from those registries by hand when the job ends",
        ) from None

    old_jobs: List[Dict[str, Any]] = []
    if add:
        return SwapResult(alias, target.job_id, url, reg_results, old_jobs, added=True)
    by_url: Dict[str, JobRecord] = {}

    def ended(r: JobRecord) -> bool:
        return r.last_state is not None and r.last_state.is_terminal

    for rec in store.list():  # oldest first; a job still running wins over an ended one at the same URL
        for u in rec.urls:
            prev = by_url.get(u.rstrip("/"))
            if prev is None or not ended(rec) or ended(prev):
                by_url[u.rstrip("/")] = rec
    for u in old_urls:
        old = by_url.get(u.rstrip("/"))
        item: Dict[str, Any] = {"job_id": old.job_id if old else None, "url": u, "drained": None,
                                "drain": "", "cancelled": False, "message": ""}
        if cancel_old:
            if old is None:
                item["message"] = "no tracked job serves this URL; not cancelled"
            elif old.job_id == target.job_id:
                item["message"] = "same job as the target; not cancelled"
            else:
                sleep(DRAIN_GRACE_S)
                if drain is None:
                    from pbsvllm.health import wait_for_drain

                    ok, how = _drain_twice(wait_for_drain, u, drain_timeout_s, sleep)
                else:
                    ok, how = drain(u, drain_timeout_s)
                item["drained"], item["drain"] = ok, how
                say(f"old server {u} ({old.job_id}): {how}")
                if cancel is None:
                    from pbsvllm.launch import cancel_job

                    _rec, msg = cancel_job(store, old.job_id)
                else:
                    msg = cancel(old.job_id)
                item["cancelled"], item["message"] = True, msg
                say(f"cancelled {old.job_id}: {msg}")
        old_jobs.append(item)
    return SwapResult(alias, target.job_id, url, reg_results, old_jobs)


def _swap_behind_router(settings: Settings, store: JobStore, alias: str, target: JobRecord, url: str, *,
                        registries: Optional[Sequence[str]], add: bool, cancel_old: bool, drain_timeout_s: float,
                        cancel: Optional[Callable[[str], str]],
                        drain: Optional[Callable[[str, float], Tuple[bool, str]]],
                        say: Callable[[str], None]) -> SwapResult:
    """The alias has a router: join new, drain old, remove old, cancel old; the
    registries hold the router's stable URL (written once, not per server)."""
    from pbsvllm.registry import Endpoint, open_registries, spec_of
    from pbsvllm.router.membership import swap_via_router

    def cancel_record(rec: JobRecord) -> str:
        if cancel is not None:
            return cancel(rec.job_id)
        from pbsvllm.launch import cancel_job

        return cancel_job(store, rec.job_id)[1]

    stable, old_jobs = swap_via_router(settings, store, alias, target, url, cancel_old=cancel_old, add=add,
                                       drain_timeout_s=drain_timeout_s, cancel=cancel_record, drain=drain, say=say)
    specs = list(registries) if registries else list(settings.registries_for(alias))
    ep = Endpoint(alias=alias, model=target.served_name, url=stable,
                  key=target.api_key_env or settings.api_key_env or "VLLM_API_KEY")
    reg_results: List[Dict[str, Any]] = []
    for reg in open_registries(specs) if specs else []:
        before = [e.url for e in reg.lookup(alias)]
        changed = reg.register(ep, replace=True)
        reg_results.append({"registry": spec_of(reg), "old_urls": before, "changed": changed})
        if changed:
            say(f"pointed {alias} in {reg.path} -> {stable} (the router)")
    store.update(target.job_id, server_state=ServerState.READY, url=url,
                 registered_aliases=list(dict.fromkeys([*target.registered_aliases, alias])))
    return SwapResult(alias, target.job_id, stable, reg_results, old_jobs, added=add)


DrainFn = Callable[..., Tuple[bool, str]]  # pbsvllm.health.wait_for_drain(url, timeout_s=, sleep=)


def _drain_twice(wait_for_drain: DrainFn, url: str, timeout_s: float,
                 sleep: Callable[[float], None]) -> Tuple[bool, str]:
    """Idle on two scrapes a moment apart (a request may be on its way)."""
    deadline = time.monotonic() + timeout_s
    ok, how = wait_for_drain(url, timeout_s=timeout_s, sleep=sleep)
    if not ok:
        return ok, how
    sleep(0.5)
    left = max(0.0, deadline - time.monotonic())
    return wait_for_drain(url, timeout_s=left, sleep=sleep)

