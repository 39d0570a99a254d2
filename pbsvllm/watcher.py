"""The watcher: job -> server -> ready -> registries, resumable.

One loop follows any number of jobs. Everything it touches is passed in --
the scheduler (one batched ``status`` call per status tick), the transport
(server-info file, log), the readiness probe, the registries, the clock and
``sleep`` -- so tests drive it without patching anything.

Per job:

* scheduler says PENDING/HELD: "queued"; status polls back off (1 s growing
  to 30 s) -- queued jobs cost almost nothing;
* RUNNING: the server-info file ``$PBSVLLM_HOME/run/<job_id>.server.json``
  gives host and port; the realtime log is tailed from the last byte offset
  (a log that does not exist yet is fine; a log that shrank is read again
  from the start); lines go through :mod:`pbsvllm.vllmlog` for phases
  (starting, loading weights, compiling / capturing graphs, KV cache
  allocated, ready) and errors (CUDA OOM, KV cache too small, address in
  use, engine core init failed, NCCL...). The log and the probe are checked
  every 0.5 s while the server starts (0.2 s once the KV cache is allocated),
  while the scheduler is asked only every few seconds;
* READY = the probe says so (``/v1/models`` lists the served model, then a
  one-token completion succeeds); only then is the alias written to the
  registries;
* failure: an error in the log, a probe that keeps failing in a way that
  will not fix itself (wrong key, wrong served name), or the job ending
  before it was ready: reported with the cause and the log lines that show
  it, never registered;
* a job that ends after having been ready: STOPPED, its entries removed.

Progress (log offset, line number, phase, URL, where it was registered) is
saved in the job record after every change, so an interrupted watcher
re-run later picks up where things are.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import TYPE_CHECKING, Callable, Deque, Dict, Iterable, List, Optional, Sequence, Tuple

from pbsvllm import serverinfo
from pbsvllm.errors import PbsvllmError, RegistryError, ServerError
from pbsvllm.jobs import JobRecord, JobStore, WatchState, with_record_key_file
from pbsvllm.logtail import LogTail
from pbsvllm.models import JobState, Phase, ServerState
from pbsvllm.serverinfo import ServerInfo
from pbsvllm.transport.base import Transport

if TYPE_CHECKING:  # typing only: these import heavier modules
    from pbsvllm.config import Settings
    from pbsvllm.health import Readiness
    from pbsvllm.registry.base import Registry
    from pbsvllm.router.membership import RouterMembership
    from pbsvllm.scheduler.base import JobStatus, Scheduler
    from pbsvllm.vllmlog import ErrorTracker

QUEUED_POLL_MIN_S = 1.0
QUEUED_POLL_MAX_S = 30.0
RUNNING_STATUS_POLL_S = 5.0
STARTING_CHECK_S = 0.5
NEAR_READY_CHECK_S = 0.2
READY_CHECK_S = 5.0
CONTEXT_LINES = 12
# after the first error line, keep reading this long: the root cause (a traceback's
# last line) is often written just after "EngineCore failed to start."
FAIL_SETTLE_S = 1.5
# consecutive probe results of these kinds, once the log says the server is up, mean failure
STUCK_PROBE_LIMIT = {"unauthorized": 2, "model_missing": 3, "completion_failed": 3, "models_error": 5}


# ------------------------------------------------------------------ per-job progress

@dataclasses.dataclass
class JobProgress:
    """What the watcher knows about one job while it follows it. The part
    worth keeping is saved in the record (:meth:`saved_fields`)."""

    job_id: str
    alias: str
    served_model: str
    log_path: str = ""
    info_path: str = ""
    registries: List[str] = dataclasses.field(default_factory=list)
    key_env: str = "VLLM_API_KEY"
    add_replica: bool = False
    # progress
    job_state: JobState = JobState.UNKNOWN
    phase: Phase = Phase.SUBMITTED
    server_state: ServerState = ServerState.NONE
    url: str = ""
    urls: List[str] = dataclasses.field(default_factory=list)  # every replica's URL (url is the first)
    exec_host: str = ""
    log_offset: int = 0
    log_line_no: int = 0
    registered: List[str] = dataclasses.field(default_factory=list)
    failure: str = ""
    failure_detail: str = ""
    evidence: List[str] = dataclasses.field(default_factory=list)
    ready_after_s: Optional[float] = None
    watch_extra: Dict[str, object] = dataclasses.field(default_factory=dict)  # a newer version's keys, kept
    # not saved
    done: bool = False
    started_at: float = 0.0
    phase_at: float = 0.0
    next_check: float = 0.0
    phases_seen: List[Phase] = dataclasses.field(default_factory=list)
    registration_problems: List[str] = dataclasses.field(default_factory=list)  # registries asked for, not written
    last_probe: Optional[Readiness] = None
    failing_since: Optional[float] = None
    unknown_polls: int = 0
    _stuck: Tuple[str, int] = ("", 0)

    @classmethod
    def from_record(cls, rec: JobRecord, *, registries: Optional[Sequence[str]] = None,
                    add_replica: bool = False) -> JobProgress:
        w = rec.watch
        p = cls(
            job_id=rec.job_id,
            alias=rec.alias,
            served_model=rec.served_name,
            log_path=rec.log_path,
            info_path=rec.server_info_path,
            registries=[str(r) for r in (registries if registries is not None else rec.registries)],
            key_env=rec.api_key_env or "VLLM_API_KEY",
            add_replica=add_replica or w.add_replica,
            phase=w.phase,
            server_state=rec.server_state,
            url=rec.url,
            urls=list(w.urls),
            exec_host=w.exec_host,
            log_offset=w.log_offset,
            log_line_no=w.log_line_no,
            registered=list(w.registered),
            failure=w.failure,
            failure_detail=w.failure_detail,
            evidence=list(w.evidence),
            ready_after_s=w.ready_after_s,
            watch_extra=dict(w.extra),
        )
        p.done = p.server_state.is_final
        return p

    def watch_state(self) -> WatchState:
        return WatchState(phase=self.phase, urls=list(self.urls), exec_host=self.exec_host,
                          log_offset=self.log_offset, log_line_no=self.log_line_no,
                          registered=list(self.registered), failure=self.failure,
                          failure_detail=self.failure_detail, evidence=list(self.evidence),
                          ready_after_s=self.ready_after_s, add_replica=self.add_replica,
                          extra=dict(self.watch_extra))

    def saved_fields(self) -> Dict[str, object]:
        """The record fields this progress sets (for :meth:`JobStore.update`)."""
        return {"server_state": self.server_state, "url": self.url, "watch": self.watch_state()}

    @property
    def name(self) -> str:
        return f"{self.alias} ({self.job_id})" if self.alias else self.job_id


@dataclasses.dataclass
class WatchResult:
    jobs: List[JobProgress]
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return not self.timed_out and all(j.server_state == ServerState.READY for j in self.jobs)

    @property
    def unregistered(self) -> List[JobProgress]:
        """Jobs missing from a registry they were to be written to (ready, or ended when asked)."""
        return [j for j in self.jobs if j.registration_problems]

    def to_dicts(self) -> List[Dict[str, object]]:
        out = []
        for j in self.jobs:
            d: Dict[str, object] = {
                "alias": j.alias, "job_id": j.job_id, "state": j.job_state.value,
                "server_state": j.server_state.value,
                "url": j.url, "phase": j.phase.value, "registered": list(j.registered),
                 "ready_after_s": j.ready_after_s}
            if j.failure:
                d.update(failure=j.failure, failure_detail=j.failure_detail, evidence=list(j.evidence))
            out.append(d)
        return out


# ------------------------------------------------------------------ reporting

class Reporter:
    """Collects what the watcher says; the CLI subclass prints it."""

    def __init__(self) -> None:
        self.lines: List[str] = []

    def phase(self, job: JobProgress, label: str, elapsed_s: float) -> None:
        self.lines.append(f"{job.name}: {label} ({elapsed_s:.0f}s)")

    def event(self, job: JobProgress, text: str) -> None:
        self.lines.append(f"{job.name}: {text}")

    def detail(self, job: JobProgress, text: str, elapsed_s: float) -> None:
        """A progress note within a phase (weight shards, graph capture, estimated start)."""
        self.lines.append(f"{job.name}: {text}")

    def heartbeat(self, job: JobProgress, elapsed_s: float) -> None:
        """Called on every tick for each job still pending (the printer decides what to show)."""

    def close(self) -> None:
        pass


class TextReporter(Reporter):
    """Plain lines (one per phase change) or, on a terminal following one
    job, a single line that grows: ``queued 12s -> running on n1 -> ...``."""

    def __init__(self, write: Callable[[str], None], tty: bool, single_job: bool) -> None:
        super().__init__()
        self.write = write
        self.live = tty and single_job
        self.trail: List[str] = []
        self._open = False

    def phase(self, job: JobProgress, label: str, elapsed_s: float) -> None:
        super().phase(job, label, elapsed_s)
        if self.live:
            if self.trail and self.trail[-1] in ("queued", "held") and label not in ("queued", "held"):
                self.trail[-1] = f"{self.trail[-1]} {elapsed_s:.0f}s"  # how long it waited
            self.trail.append(label)
            self.write("\r\x1b[K   " + " -> ".join(self.trail) + f" ({elapsed_s:.0f}s)")
            self._open = True
        else:
            self.write(f"{job.name}: {label} ({elapsed_s:.0f}s)\n")

    def event(self, job: JobProgress, text: str) -> None:
        super().event(job, text)
        if self._open:
            self.write("\n")
            self._open = False
            self.trail = []
        self.write(f"{job.name}: {text}\n" if not self.live else f"   {text}\n")

    def close(self) -> None:
        if self._open:
            self.write("\n")
            self._open = False


# ------------------------------------------------------------------ the loop

Probe = Callable[[str, str], "Readiness"]  # (url, served model) -> readiness
UrlFor = Callable[[ServerInfo, "JobProgress"], List[str]]  # server-info -> the job's URLs


class Watcher:
    """Follows the jobs of one (scheduler, transport) pair."""

    def __init__(
        self,
        scheduler: Scheduler,
        transport: Transport,
        *,
        probe: Probe,
        open_registry: Optional[Callable[[str], Registry]] = None,
        save: Optional[Callable[[JobProgress], None]] = None,
        reporter: Optional[Reporter] = None,
        clock: Callable[[], float] = time.monotonic,
        url_for: Optional[UrlFor] = None,
        follow_ready: bool = False,
        membership: Optional[RouterMembership] = None,
    ) -> None:
        self.scheduler = scheduler
        self.membership = membership  # the alias's router: join after readiness, leave at the end
        self.transport = transport
        self.probe = probe
        self.open_registry = open_registry or _default_open_registry
        self.save = save or (lambda job: None)
        self.reporter = reporter or Reporter()
        self.clock = clock
        self.url_for: UrlFor = url_for or (lambda info, job: serverinfo.endpoint_urls(info, alias=job.alias))
        self.follow_ready = follow_ready  # keep following ready jobs to unregister them when they end
        self.jobs: List[JobProgress] = []
        self.next_status = 0.0
        self.queued_poll = QUEUED_POLL_MIN_S
        self.status_calls = 0
        self.status_errors = 0
        self._tails: Dict[str, LogTail] = {}
        self._trackers: Dict[str, ErrorTracker] = {}
        self._context: Dict[str, Deque[Tuple[int, str]]] = {}

    # -- set-up
    def add(self, job: JobProgress) -> None:
        now = self.clock()
        job.started_at = job.started_at or now
        job.phase_at = now
        self.jobs.append(job)

    def pending(self) -> List[JobProgress]:
        return [j for j in self.jobs if not j.done and (self.follow_ready or j.server_state != ServerState.READY)]

    # -- one step
    def tick(self) -> float:
        """Do what is due now; return how long to sleep before the next tick."""
        now = self.clock()
        active = self.pending()
        if not active:
            return 0.0
        if now >= self.next_status:
            self._poll_scheduler(active, now)
        now = self.clock()
        for job in self.pending():
            if job.job_state == JobState.RUNNING and now >= job.next_check:
                self._check_running(job)
        now = self.clock()
        for job in self.pending():
            self.reporter.heartbeat(job, now - job.started_at)
        due = [self.next_status] + [j.next_check for j in self.pending() if j.job_state == JobState.RUNNING]
        return max(0.0, min(due) - now) if self.pending() else 0.0

    def _poll_scheduler(self, active: List[JobProgress], now: float) -> None:
        try:
            statuses = self.scheduler.status([j.job_id for j in active])
        except PbsvllmError as exc:
            # the scheduler (or the SSH link) failed after its own retries: say so, try again later
            self.status_errors += 1
            delay = min(QUEUED_POLL_MAX_S, 2.0 * self.status_errors)
            self.reporter.event(active[0], f"could not ask the scheduler ({exc}); retrying in {delay:.0f}s")
            self.next_status = now + delay
            return
        self.status_errors = 0
        self.status_calls += 1
        any_queued = False
        for job in active:
            st = statuses.get(job.job_id)
            state = st.state if st is not None else JobState.UNKNOWN
            if state == JobState.UNKNOWN:
                # UNKNOWN changes nothing: silence, garbage or an unfamiliar letter is no
                # evidence. Only the scheduler saying it does not know the id (gone),
                # twice in a row, with the job's server not answering, ends the job.
                if st is not None and st.gone and not self._server_answers(job):
                    job.unknown_polls += 1
                    if job.unknown_polls >= 2:
                        self._job_ended(job, st)
                else:
                    job.unknown_polls = 0
                continue
            job.unknown_polls = 0
            job.job_state = state
            if state in (JobState.PENDING, JobState.HELD):
                any_queued = True
                self._set_phase(job, Phase.QUEUED if state == JobState.PENDING else Phase.HELD)
                if st is not None and st.estimated_start:
                    from pbsvllm.progress import estimated_start_note

                    note = estimated_start_note(st.estimated_start)
                    self.reporter.detail(job, note, now - job.started_at)
            elif state == JobState.RUNNING:
                if job.phase in (Phase.SUBMITTED, Phase.QUEUED, Phase.HELD):
                    job.exec_host = (st.exec_host if st is not None else "") or ""
                    self._set_phase(job, Phase.RUNNING, f"running on {job.exec_host}" if job.exec_host else "running")
                    job.next_check = now
            elif state == JobState.COMPLETING or state.is_terminal:
                self._job_ended(job, st)
        if any_queued:
            self.next_status = now + self.queued_poll
            self.queued_poll = min(QUEUED_POLL_MAX_S, self.queued_poll * 1.6)
        else:
            self.queued_poll = QUEUED_POLL_MIN_S
            self.next_status = now + RUNNING_STATUS_POLL_S

    def _server_answers(self, job: JobProgress) -> bool:
        """Whether any of the job's servers answers HTTP at all (an unauthorized
        or wrong-model answer still is a live server)."""
        for u in job.urls or ([job.url] if job.url else []):
            try:
                if self.probe(u, job.served_model).stage != "unreachable":
                    return True
            except Exception:  # a probe that breaks proves nothing either way: assume alive
                return True
        return False

    def _set_phase(self, job: JobProgress, phase: Phase, label: Optional[str] = None) -> None:
        if job.phase == phase and phase in job.phases_seen:
            return
        job.phase = phase
        job.phase_at = self.clock()
        job.phases_seen.append(phase)
        self.reporter.phase(job, label or phase.label, self.clock() - job.started_at)
        self.save(job)

    # -- a running job
    def _tail(self, job: JobProgress) -> LogTail:
        t = self._tails.get(job.job_id)
        if t is None:
            t = LogTail(self.transport, job.log_path, job.log_offset, job.log_line_no)
            self._tails[job.job_id] = t
        return t

    def _tracker(self, job: JobProgress) -> ErrorTracker:
        tr = self._trackers.get(job.job_id)
        if tr is None:
            from pbsvllm.vllmlog import ErrorTracker

            tr = self._trackers[job.job_id] = ErrorTracker()
            self._context[job.job_id] = collections.deque(maxlen=CONTEXT_LINES)
        return tr

    def _read_log(self, job: JobProgress, final: bool = False) -> None:
        from pbsvllm.vllmlog import detect_phase, split_line, strip_line

        tail = self._tail(job)
        tracker = self._tracker(job)
        context = self._context[job.job_id]
        first = tail.line_no
        lines = tail.read_lines(final=final)
        if tail.truncated:
            self.reporter.event(job, f"log {job.log_path} was truncated; reading it again from the start")
        job.log_offset, job.log_line_no = tail.offset, tail.line_no
        from pbsvllm.progress import log_detail

        starting = job.server_state != ServerState.READY
        for i, raw in enumerate(lines, first + 1):
            msg = split_line(raw).message
            context.append((i, strip_line(raw)))
            tracker.feed(msg, i)
            note = log_detail(msg) if starting else None
            if note:
                self.reporter.detail(job, note, self.clock() - job.started_at)
            found = detect_phase(msg)
            if found is None:
                continue
            phase = Phase.parse(found, Phase.STARTING)
            if phase.rank >= 0 and job.phase.rank >= 0 and phase.rank > job.phase.rank:
                self._set_phase(job, phase)  # phases only move forward
            if phase == Phase.READY and job.server_state != ServerState.READY:
                job.phase = Phase.LOG_READY
        if lines:
            self.save(job)

    def _server_info(self, job: JobProgress) -> Optional[ServerInfo]:
        """The job's server-info file, read through its transport; None
        while it is missing (or being written: retried on the next tick)."""
        return serverinfo.try_read(self.transport, job.info_path) if job.info_path else None

    def _check_running(self, job: JobProgress) -> None:
        self._read_log(job)
        tracker = self._tracker(job)
        if tracker.failed:
            now = self.clock()
            if job.failing_since is None:
                job.failing_since = now
            if now - job.failing_since >= FAIL_SETTLE_S:
                self._fail(job, tracker.root_cause or "error", self._describe_error(tracker))
            else:
                job.next_check = now + NEAR_READY_CHECK_S
            return
        if not job.url:
            info = self._server_info(job)
            if info is not None:
                job.urls = self.url_for(info, job)
                job.url = job.urls[0]
                if info.host:
                    job.exec_host = info.host
                job.server_state = ServerState.STARTING
                self.reporter.event(job, f"server process started; will answer at {', '.join(job.urls)}")
                self.save(job)
        if job.server_state == ServerState.READY:
            job.next_check = self.clock() + READY_CHECK_S  # followed only for a crash or its end
            return
        near = job.phase in (Phase.KV_CACHE_ALLOCATED, Phase.LOG_READY)
        job.next_check = self.clock() + (NEAR_READY_CHECK_S if near else STARTING_CHECK_S)
        if not job.url:
            return
        results = [self.probe(u, job.served_model) for u in (job.urls or [job.url])]
        bad = [r for r in results if not r.ready]
        if not bad:
            self._became_ready(job)
            return
        result = job.last_probe = bad[0]
        stage = result.stage
        limit = STUCK_PROBE_LIMIT.get(stage)
        if limit is None or job.phase != Phase.LOG_READY:
            # before the log says the server is up, refusals and errors are normal
            job._stuck = ("", 0)
            return
        count = job._stuck[1] + 1 if job._stuck[0] == stage else 1
        job._stuck = (stage, count)
        if count >= limit:
            self._read_log(job)
            if tracker.failed:
                self._fail(job, tracker.root_cause or "error", self._describe_error(tracker))
            else:
                self._fail(job, f"probe_{stage}", result.detail or stage)

    def _became_ready(self, job: JobProgress) -> None:
        from pbsvllm.registry import Endpoint, spec_of

        job.server_state = ServerState.READY
        if job.ready_after_s is None:  # a re-check (watch --registry on a ready server) keeps the first figure
            job.ready_after_s = round(self.clock() - job.started_at, 1)
        job.phase = Phase.READY
        job.phases_seen.append(Phase.READY)
        eps = [Endpoint(alias=job.alias, model=job.served_model, url=u, key=job.key_env, job_id=job.job_id)
               for u in (job.urls or [job.url])]
        problems = []
        replace_first = not job.add_replica
        try:
            if self.membership is not None and self.membership.wants(job.alias):
                stable = self.membership.join(job.alias, job.served_model, job.key_env, job.urls or [job.url],
                                              job.job_id)
                # registries hold the alias's stable URL, whatever servers are behind it
                eps = [Endpoint(alias=job.alias, model=job.served_model, url=stable, key=job.key_env)]
                replace_first = True
                self.reporter.event(job, f"joined the {job.alias} router: clients use {stable}")
        except PbsvllmError as exc:
            problems.append(f"router: {exc} (the server is registered directly instead)")
        for spec in job.registries:
            try:
                reg = self.open_registry(spec)
                for i, ep in enumerate(eps):
                    reg.register(ep, replace=(i == 0 and replace_first))
                spec = spec_of(reg)
                if spec not in job.registered:
                    job.registered.append(spec)
            except RegistryError as exc:
                problems.append(str(exc))
        self.save(job)
        self.reporter.phase(job, f"ready at {', '.join(job.urls or [job.url])}", job.ready_after_s)
        for path in job.registered:
            self.reporter.event(job, f"registered {job.alias} in {path}")
        for p in problems:
            self.reporter.event(job, f"NOT registered: {p}")
        job.registration_problems = problems
        if problems:
            job.failure_detail = "; ".join(problems)
            self.save(job)

    def _describe_error(self, tracker: ErrorTracker) -> str:
        ev = tracker.events
        kind = tracker.root_cause
        first = next((e for e in ev if e.kind == kind), ev[0] if ev else None)
        text = f"{kind}: {first.text} (log line {first.line_no})" if first else str(kind)
        if tracker.suggested_max_model_len:
            text += f"; vLLM estimates the largest max model length that fits is {tracker.suggested_max_model_len}"
        return text

    def _evidence(self, job: JobProgress) -> List[str]:
        tracker = self._trackers.get(job.job_id)
        lines: Dict[int, str] = {}
        if tracker is not None:
            for e in tracker.events[:8]:
                lines[e.line_no] = e.text
        for n, t in list(self._context.get(job.job_id, ()))[-CONTEXT_LINES:]:
            lines.setdefault(n, t)
        return [f"{job.log_path}:{n}: {t}" for n, t in sorted(lines.items())]

    def _fail(self, job: JobProgress, cause: str, detail: str) -> None:
        if job.server_state == ServerState.READY:
            self._unregister(job)  # it was serving (a crash later on): clients must not be sent there
        job.server_state = ServerState.FAILED
        job.failure = cause
        job.failure_detail = detail
        job.evidence = self._evidence(job)
        job.phase = Phase.FAILED
        job.done = True
        self.save(job)
        self.reporter.event(job, f"FAILED: {detail}")
        for line in job.evidence:
            self.reporter.event(job, "  " + line)

    def _job_ended(self, job: JobProgress, st: Optional[JobStatus]) -> None:
        state = st.state if st is not None else JobState.UNKNOWN
        reason = (st.exit_reason or st.comment or "") if st is not None else ""
        if state == JobState.UNKNOWN:
            reason = reason or "the scheduler says it does not know the job and its server does not answer"
        if job.server_state == ServerState.READY:
            self._unregister(job)
            job.server_state = ServerState.STOPPED
            job.phase = Phase.STOPPED
            job.done = True
            self.save(job)
            self.reporter.event(job, f"job ended ({state.value}{': ' + reason if reason else ''}); "
                                     f"removed from {_count(len(job.registered), 'registry', 'registries')}")
            return
        if state == JobState.COMPLETING:
            return  # wait for the final state, it carries the exit status
        self._read_log(job, final=True)
        tracker = self._tracker(job)
        if tracker.failed:
            detail = self._describe_error(tracker)
            cause = tracker.root_cause or "error"
        else:
            detail = f"the job ended before the server was ready ({state.value}{': ' + reason if reason else ''})"
            cause = "job_ended"
        self._fail(job, cause, detail)

    def _unregister(self, job: JobProgress) -> None:
        if self.membership is not None:
            try:
                for u in self.membership.leave(job.alias, job.urls or [job.url]):
                    self.reporter.event(job, f"{u} left the {job.alias} router")
            except PbsvllmError as exc:
                self.reporter.event(job, f"could not take it out of the {job.alias} router: {exc}")
        for path in list(job.registered):
            try:
                reg = self.open_registry(path)
                for u in job.urls or [job.url]:
                    reg.unregister_server(job.alias, u, job.job_id)
            except RegistryError as exc:
                self.reporter.event(job, f"could not remove {job.alias} from {path}: {exc}")


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _default_open_registry(spec: str) -> Registry:
    from pbsvllm.registry import open_registries

    return open_registries([spec])[0]


def run_watchers(watchers: Sequence[Watcher], *, timeout_s: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> bool:
    """Tick every watcher until none has a pending job. False if ``timeout_s`` ran out."""
    start = clock()
    while True:
        waits = [w.tick() for w in watchers if w.pending()]
        if not any(w.pending() for w in watchers):
            return True
        if timeout_s is not None and clock() - start >= timeout_s:
            return False
        delay = min(min(waits) if waits else 0.0, 1.0)  # at least once a second: elapsed time, heartbeats
        if timeout_s is not None:
            delay = min(delay, max(0.0, timeout_s - (clock() - start)))
        sleep(max(delay, 0.01))


# ------------------------------------------------------------------ wiring for the CLI and the e2e tests

def _profile_url_for(settings: Settings) -> UrlFor:
    suffix = settings.profile.hostname_suffix or ""
    template = settings.profile.url_template or serverinfo.DEFAULT_URL_TEMPLATE
    return lambda info, job: serverinfo.endpoint_urls(info, hostname_suffix=suffix, url_template=template,
                                                      alias=job.alias)


def make_probe(settings: Settings, *, timeout: float = 2.0, completion_timeout: float = 30.0) -> Probe:
    from pbsvllm import health

    key = health.resolve_api_key(settings.api_key_file, settings.api_key_env or "VLLM_API_KEY")

    def probe(url: str, model: str) -> Readiness:
        return health.check_ready(url, model, key, timeout=timeout, completion_timeout=completion_timeout)

    return probe


def merge_saved(rec: JobRecord, fields: Dict[str, object]) -> JobRecord:
    """A watcher's progress (:meth:`JobProgress.saved_fields`) written over the
    stored record, under its lock: registries another command (swap-endpoint)
    added meanwhile are kept, so that status still cleans them when the job ends."""
    watch = fields["watch"] if isinstance(fields["watch"], WatchState) else rec.watch
    watch.registered = list(dict.fromkeys([*watch.registered, *rec.watch.registered]))
    rec.watch = watch
    state = fields["server_state"]
    rec.server_state = state if isinstance(state, ServerState) else ServerState.parse(state)
    rec.url = str(fields["url"])
    return rec


def watch_records(
    settings: Settings,
    records: Iterable[JobRecord],
    *,
    store: Optional[JobStore] = None,
    registries: Optional[Sequence[str]] = None,
    add_replica: bool = False,
    timeout_s: Optional[float] = None,
    reporter: Optional[Reporter] = None,
    probe: Optional[Probe] = None,
    transport: Optional[Transport] = None,
    scheduler: Optional[Scheduler] = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    follow_ready: bool = False,
    membership: Optional[RouterMembership] = None,
) -> WatchResult:
    """Follow ``records`` (job records) until each is ready, failed or gone.

    Jobs are grouped by (host, scheduler): one scheduler call per group per
    status tick. ``registries`` overrides the records' own lists. With
    ``follow_ready``, ready jobs are followed too, until they end (their
    entries are then removed). ``membership``: put ready servers behind their
    alias's router and take them out when they end (the API passes
    :class:`pbsvllm.router.membership.RouterMembership`).
    """
    jobstore = store if store is not None else JobStore(settings.home)
    records = list(records)
    probe = probe or make_probe(with_record_key_file(settings, records))
    url_for = _profile_url_for(settings)

    def save(job: JobProgress) -> None:
        fields = job.saved_fields()
        try:
            jobstore.modify(job.job_id, lambda rec: merge_saved(rec, fields))
        except PbsvllmError:
            pass  # the record was deleted meanwhile: nothing to resume

    groups: Dict[Tuple[Optional[str], str], Watcher] = {}
    jobs: List[JobProgress] = []
    for rec in records:
        job = JobProgress.from_record(rec, registries=registries, add_replica=add_replica)
        if not job.info_path:  # the contract's default place
            job.info_path = serverinfo.default_path(settings.home, job.job_id)
        jobs.append(job)
        if job.done and registries:
            ended = job.server_state.value
            why = job.failure or "its job ended"
            job.registration_problems = [f"the server is {ended} ({why}): nothing to register"]
            if reporter is not None:
                reporter.event(job, f"NOT registered: {job.registration_problems[0]}")
            continue
        if job.server_state == ServerState.READY and registries and not follow_ready:
            # `watch ALIAS --registry FILE` on a ready server: check that it still answers, then register it
            job.server_state = ServerState.STARTING
            job.phase = Phase.LOG_READY  # a server that no longer answers fails after a few probes
            job.done = False
        elif job.done or (job.server_state == ServerState.READY and not follow_ready):
            continue
        if job.server_state == ServerState.READY:
            job.job_state = JobState.RUNNING  # resumed: only its end is left to see
        host = rec.host
        sched_name = rec.scheduler
        key = (host, sched_name)
        if key not in groups:
            tr = transport
            sch = scheduler
            if tr is None:
                from pbsvllm.transport import get_transport

                tr = get_transport(host)
            if sch is None:
                from pbsvllm.scheduler import get_scheduler

                # the caller's --timeout bounds every scheduler command too
                sch = get_scheduler(sched_name or settings.scheduler or "auto", tr, home=settings.home,
                                    timeout_s=timeout_s)
            groups[key] = Watcher(sch, tr, probe=probe, save=save, reporter=reporter, clock=clock, url_for=url_for,
                                  follow_ready=follow_ready, membership=membership)
        groups[key].add(job)
    finished = run_watchers(list(groups.values()), timeout_s=timeout_s, clock=clock, sleep=sleep)
    if reporter is not None:
        reporter.close()
    return WatchResult(jobs=jobs, timed_out=not finished)


def wait_until_ready(settings: Settings, record: JobRecord, *, timeout_s: Optional[float] = None,
                     store: Optional[JobStore] = None, registries: Optional[Sequence[str]] = None,
                     add_replica: bool = False, reporter: Optional[Reporter] = None,
                     probe: Optional[Probe] = None) -> JobProgress:
    """Follow one job until its server is ready (and registered) or has failed.

    Raises :class:`ServerError` with the cause and the log lines that show it
    when the server fails, or when ``timeout_s`` runs out.
    """
    res = watch_records(settings, [record], timeout_s=timeout_s, store=store, registries=registries,
                        add_replica=add_replica, reporter=reporter, probe=probe)
    job = res.jobs[0]
    if job.server_state == ServerState.READY:
        return job
    if res.timed_out:
        raise ServerError(
            f"{job.name} is not ready after {timeout_s} s (phase: {job.phase.label})",
            hint="`pbsvllm watch` resumes following it; `pbsvllm logs " + (job.alias or job.job_id) + "` shows its log",
        )
    evidence = "\n".join("  " + e for e in job.evidence)
    raise ServerError(
        f"{job.name} failed: {job.failure_detail}" + (f"\n{evidence}" if evidence else ""),
        hint="`pbsvllm doctor " + (job.alias or job.job_id) + "` explains the log",
    )
