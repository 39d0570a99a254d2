"""The supervisor's real I/O: job records, schedulers, readiness, the router.

Each method is one effect of :class:`pbsvllm.keepalive.supervisor.Ports`.
Schedulers and transports are built per (host, scheduler) of the chain's
job records and reused; the router is the alias's own (see
``pbsvllm.router``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Dict, List, Optional, Sequence, Tuple

from pbsvllm.errors import PbsvllmError
from pbsvllm.jobs import JobRecord, JobStore
from pbsvllm.scheduler.base import JobStatus, Scheduler
from pbsvllm.transport.base import Transport

#: How long a drained server may keep finishing its in-flight requests.
DRAIN_TIMEOUT_S = 120.0


class LivePorts:
    def __init__(self, home: str, alias: str) -> None:
        self.home = home
        self.alias = alias
        self.store = JobStore(home)
        self._transports: Dict[Optional[str], Transport] = {}
        self._schedulers: Dict[Tuple[Optional[str], str], Scheduler] = {}

    # -- plumbing
    def _transport(self, host: Optional[str]) -> Transport:
        if host not in self._transports:
            from pbsvllm.transport import get_transport

            self._transports[host] = get_transport(host)
        return self._transports[host]

    def _scheduler(self, rec: JobRecord) -> Scheduler:
        key = (rec.host, rec.scheduler or "auto")
        if key not in self._schedulers:
            from pbsvllm.scheduler import get_scheduler

            self._schedulers[key] = get_scheduler(key[1], self._transport(rec.host), home=self.home)
        return self._schedulers[key]

    def _record(self, job_id: str) -> JobRecord:
        return self.store.get(job_id)

    # -- Ports
    def statuses(self, job_ids: Sequence[str]) -> Dict[str, JobStatus]:
        groups: Dict[Tuple[Optional[str], str], List[JobRecord]] = {}
        for jid in job_ids:
            rec = self._record(jid)
            groups.setdefault((rec.host, rec.scheduler or "auto"), []).append(rec)
        out: Dict[str, JobStatus] = {}
        for recs in groups.values():
            out.update(self._scheduler(recs[0]).status([r.job_id for r in recs]))
        return out

    def server_url(self, job_id: str) -> Optional[str]:
        from pbsvllm.serverinfo import read_server_info

        rec = self._record(job_id)
        info = read_server_info(rec, self._transport(rec.host))
        return info.url if info is not None else None

    def is_ready(self, job_id: str, url: str) -> bool:
        from pbsvllm.health import check_ready

        rec = self._record(job_id)
        return check_ready(url, rec.served_model_name or rec.alias, self._api_key(rec)).ready

    def _api_key(self, rec: JobRecord) -> Optional[str]:
        from pbsvllm.health import resolve_api_key

        return resolve_api_key(None, rec.api_key_env or "VLLM_API_KEY")

    def submit_successor(self, template_job: str) -> str:
        """The template job's rendered script, submitted again through the
        same scheduler; the new record copies the template's (paths that
        carried the old job id carry the new one)."""
        rec = self._record(template_job)
        job_id = self._scheduler(rec).submit(rec.script_path)
        old = rec.job_id
        new = dataclasses.replace(
            rec, job_id=job_id, submitted_at=time.time(),
            log_path=rec.log_path.replace(old, job_id),
            server_info_path=rec.server_info_path.replace(old, job_id),
            last_status={}, last_status_at=0.0, url="", cancelled_at=0.0,
            extra={k: v for k, v in rec.extra.items() if k not in ("watch", "registered_aliases")},
        )
        new.server_state = type(rec.server_state)("none") if not isinstance(rec.server_state, str) else "none"
        self.store.save(new)
        return job_id

    def join(self, alias: str, url: str, job_id: str) -> None:
        from pbsvllm import router

        rec = self._record(job_id)
        router.ensure_running(alias, home=self.home, model=rec.served_model_name or alias,
                              api_key_var=rec.api_key_env or "VLLM_API_KEY")
        router.add_member(alias, url, job_id=job_id, home=self.home)

    def drain(self, alias: str, url: str) -> None:
        from pbsvllm import router

        router.drain_member(alias, url, DRAIN_TIMEOUT_S, home=self.home)
        router.remove_member(alias, url, home=self.home)

    def remove(self, alias: str, url: str) -> None:
        from pbsvllm import router

        router.remove_member(alias, url, home=self.home)

    def cancel(self, job_id: str) -> None:
        from pbsvllm.jobs import now

        rec = self._record(job_id)
        try:
            self._scheduler(rec).cancel(job_id)
        except PbsvllmError:
            # Already gone is fine; the next status says so.
            pass
        self.store.update(job_id, cancelled_at=now())

    def failure_signature(self, job_id: str, status: JobStatus) -> str:
        """The first error the log classifies (the doctor's name for it),
        else the scheduler's exit status."""
        from pbsvllm.vllmlog import classify_error

        rec = self._record(job_id)
        if rec.log_path:
            try:
                text = self._transport(rec.host).read_text(rec.log_path)
            except (OSError, PbsvllmError):
                text = ""
            for line in text.splitlines()[-400:]:
                kind = classify_error(line)
                if kind:
                    return kind
        if status.exit_status is not None:
            return f"exit status {status.exit_status}"
        return status.exit_reason or status.state.value

    def queue_waits(self) -> List[float]:
        return []
