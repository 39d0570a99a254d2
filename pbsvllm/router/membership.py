"""Membership follows readiness: what the watcher, ``cancel``, ``swap-endpoint``
and ``scale`` do to an alias's router.

* a server **joins** only after pbsvllm's readiness check passed (model
  listed, one-token completion): :meth:`RouterMembership.join`;
* it **leaves before its job is cancelled**: out of the router first (new
  requests go to the others), then its in-flight requests finish (drain,
  bounded), then the job is cancelled: :func:`leave_then_cancel`;
* it **leaves as soon as its job ends or fails** (the watcher sees it):
  :meth:`RouterMembership.leave`. Until then vllm-router's retries and
  health checks keep requests away from a dead server;
* ``swap-endpoint`` = join new, drain old, remove old, cancel old:
  :func:`swap_via_router`.

Registries hold the alias's stable URL (the router's), written once; they
are not rewritten when servers come and go, and an alias with no server
left answers 503 naming itself at that URL.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

from pbsvllm import router
from pbsvllm.jobs import JobRecord, JobStore
from pbsvllm.router.model import worker_url

if TYPE_CHECKING:
    from pbsvllm.config import Settings


def uses_router(settings: Settings, alias: str) -> bool:
    """The alias has a router already, or gets one under this profile."""
    if alias in router.aliases(home=settings.home):
        return True
    return router.enabled(settings.profile)


class RouterMembership:
    """The watcher's seam to the routers: join after readiness, leave at the end."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def wants(self, alias: str) -> bool:
        return uses_router(self.settings, alias)

    def join(self, alias: str, model: str, key_env: str, urls: Sequence[str], job_id: str) -> str:
        """Start the alias's router if needed, put ``urls`` behind it; returns its stable URL."""
        st = router.ensure_running(alias, router.settings_for(self.settings.profile), home=self.settings.home,
                                   model=model, api_key_var=key_env)
        for u in urls:
            router.add_member(alias, u, job_id=job_id, home=self.settings.home)
        return st.url

    def leave(self, alias: str, urls: Sequence[str]) -> List[str]:
        """Take ``urls`` out of the alias's router (no drain: the job is over). Returns those removed."""
        if alias not in router.aliases(home=self.settings.home):
            return []
        return [u for u in urls if router.remove_member(alias, u, home=self.settings.home)]


@dataclasses.dataclass(frozen=True)
class LeaveResult:
    job_id: str
    urls: Tuple[str, ...]        # the job's servers that were members
    drained: bool
    drain: str                   # how the drain went
    cancelled: bool
    message: str                 # the scheduler's answer

    def to_dict(self) -> Dict[str, object]:
        return dataclasses.asdict(self)


def member_urls(record: JobRecord, home: str) -> List[str]:
    """The record's server URLs that are members of its alias's router."""
    if not record.alias or record.alias not in router.aliases(home=home):
        return []
    members = {m.worker_url for m in router.members(record.alias, home=home)}
    return [u for u in record.urls if worker_url(u) in members]


def leave_then_cancel(home: str, record: JobRecord, cancel: Callable[[], str], *, drain_timeout_s: float = 120.0,
                      say: Callable[[str], None] = lambda s: None,
                      drain: Optional[Callable[[str, float], Tuple[bool, str]]] = None) -> LeaveResult:
    """Drain the job's servers out of the router, remove them, then ``cancel`` the job.

    A job that is not behind a router is just cancelled.
    """
    urls = member_urls(record, home)
    drained, how = True, "not behind a router"
    for u in urls:
        ok, how = router.drain_member(record.alias, u, drain_timeout_s, home=home,
                                      **({"wait": drain} if drain is not None else {}))
        drained = drained and ok
        say(f"{u} ({record.job_id}) out of the {record.alias} router; {how}")
    for u in urls:
        router.remove_member(record.alias, u, home=home)
    message = cancel()
    say(f"cancelled {record.job_id}: {message}")
    return LeaveResult(record.job_id, tuple(urls), drained, how, True, message)


def swap_via_router(settings: Settings, store: JobStore, alias: str, target: JobRecord, url: str, *,
                    cancel_old: bool, add: bool, drain_timeout_s: float,
                    cancel: Callable[[JobRecord], str],
                    drain: Optional[Callable[[str, float], Tuple[bool, str]]] = None,
                    say: Callable[[str], None] = lambda s: None) -> Tuple[str, List[Dict[str, object]]]:
    """Join new, drain old, remove old, cancel old (``cancel_old``). Returns (router URL, old servers).

    ``url`` is the target's server, already checked ready by the caller.
    ``add``: join only (one more replica). Without ``cancel_old`` the old
    servers leave the router (drained) but their jobs keep running.
    """
    stable = RouterMembership(settings).join(alias, target.served_name,
                                             target.api_key_env or settings.api_key_env, target.urls or [url],
                                             target.job_id)
    say(f"{target.job_id} joined the {alias} router at {stable}")
    if add:
        return stable, []
    mine = {worker_url(u) for u in (target.urls or [url])}
    olds = [m for m in router.members(alias, home=settings.home) if m.worker_url not in mine]
    by_job = {r.job_id: r for r in store.list()}
    out: List[Dict[str, object]] = []
    for m in olds:
        ok, how = router.drain_member(alias, m.url, drain_timeout_s, home=settings.home,
                                      **({"wait": drain} if drain is not None else {}))
        router.remove_member(alias, m.url, home=settings.home)
        say(f"old server {m.url} ({m.job_id or 'no job'}) left the router: {how}")
        item: Dict[str, object] = {"job_id": m.job_id or None, "url": m.url, "drained": ok, "drain": how,
                                   "cancelled": False, "message": ""}
        old = by_job.get(m.job_id)
        if cancel_old and old is not None and old.job_id != target.job_id:
            item["message"] = cancel(old)
            item["cancelled"] = True
            say(f"cancelled {old.job_id}: {item['message']}")
        elif cancel_old:
            item["message"] = "no tracked job serves this URL; not cancelled"
        out.append(item)
    return stable, out


def prune_ended(home: str, records: Sequence[JobRecord], ended: Sequence[str]) -> List[str]:
    """Take the servers of jobs that have ended (``ended``: their ids) out of their
    aliases' routers; returns one note per server removed."""
    notes: List[str] = []
    gone = set(ended)
    for rec in records:
        if rec.job_id not in gone:
            continue
        for u in member_urls(rec, home):
            if router.remove_member(rec.alias, u, home=home):
                notes.append(f"{u} ({rec.job_id}, ended) left the {rec.alias} router")
    return notes
