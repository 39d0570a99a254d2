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
import json
import os
import time
from typing import Any, Callable, Deque, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from pbsvllm.errors import PbsvllmError, RegistryError, ServerError
from pbsvllm.models import JobState, ServerState

PHASE_LABELS = {
    "submitted": "submitted",
    "queued": "queued",
    "held": "held",
    "running": "running",
    "starting": "starting",
    "loading_weights": "loading weights",
    "compiling": "compiling / capturing graphs",
    "kv_cache_allocated": "KV cache allocated",
    "ready": "ready",
    "failed": "failed",
    "stopped": "stopped",
    "shutting_down": "shutting down",
}
_PHASE_ORDER = ["submitted", "queued", "held", "running", "starting", "loading_weights", "compiling",
                "kv_cache_allocated"]

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
WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")


# ------------------------------------------------------------------ the URL

def endpoint_url(info: Mapping[str, Any], *, hostname_suffix: str = "",
                 url_template: str = "http://{host}:{port}/v1", alias: str = "") -> str:
    """The URL clients use, from the server-info file and the profile.

    ``{host}`` is the node's short name plus ``hostname_suffix`` (e.g.
    ``.hsn.cm.polaris.alcf.anl.gov``), ``{hostname}`` the name as the job
    wrote it. A bind-all address (``0.0.0.0``) is never a destination.
    """
    url = str(info.get("url") or "").strip()
    if url and not _wildcard_url(url) and not hostname_suffix_changes(info, hostname_suffix):
        return url.rstrip("/")  # the job built it with the same profile
    host = str(info.get("host") or "").strip()
    port = info.get("port")
    if host in WILDCARD_HOSTS:
        host = str(info.get("hostname") or "").strip()
    if host in WILDCARD_HOSTS or not port:
        raise ServerError(
            f"the server-info file of job {info.get('job_id', '?')} gives no reachable host "
            f"(host={info.get('host')!r}, url={info.get('url')!r})",
            hint="the job must write the node's hostname, not a bind address such as 0.0.0.0",
        )
    full = host
    if hostname_suffix:
        if not _is_ip(host):
            short = host.split(".", 1)[0]
            full = host if host.endswith(hostname_suffix) else short + hostname_suffix
    try:
        return url_template.format(host=full, port=int(port), hostname=host, alias=alias).rstrip("/")
    except (KeyError, IndexError, ValueError) as exc:
        raise ServerError(f"url_template {url_template!r} cannot be filled: {exc}",
                          hint="use only {host}, {port}, {hostname}, {alias}") from None


def _wildcard_url(url: str) -> bool:
    return any(f"//{w}:" in url or url.rstrip("/").endswith(f"//{w}") for w in WILDCARD_HOSTS if w) or "//:" in url


def hostname_suffix_changes(info: Mapping[str, Any], suffix: str) -> bool:
    """True when the profile asks for a suffix the job's own URL lacks."""
    host = str(info.get("host") or "")
    return bool(suffix) and bool(host) and not _is_ip(host) and not host.endswith(suffix)


def replica_infos(info: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """One server-info dict per server of the job (replicas mode: several)."""
    reps = info.get("replicas")
    if isinstance(reps, list) and len(reps) > 1:
        out = []
        for r in reps:
            if isinstance(r, Mapping):
                d = dict(info)
                d.update(r)
                out.append(d)
        if out:
            return out
    return [dict(info)]


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


# ------------------------------------------------------------------ the log

class LogTail:
    """Reads only what was appended to a (possibly remote) log since last time.

    Complete lines only; a partial last line waits for its newline. A file
    that shrank was truncated or replaced: read again from the start.
    """

    def __init__(self, path: str, transport: Any = None, offset: int = 0, line_no: int = 0) -> None:
        self.path = path
        self.transport = transport
        self.offset = offset
        self.line_no = line_no  # lines consumed so far
        self.truncated = False

    def _local(self) -> bool:
        return self.transport is None or bool(getattr(self.transport, "is_local", False))

    def _size(self) -> Optional[int]:
        if self._local():
            try:
                return os.stat(self.path).st_size
            except FileNotFoundError:
                return None
        rc, out, _err = self.transport.run(["stat", "-c", "%s", self.path], timeout=30)
        if rc != 0:
            return None
        try:
            return int(out.strip())
        except ValueError:
            return None

    def exists(self) -> bool:
        try:
            return self._size() is not None
        except OSError:
            return False

    def _read_from(self, offset: int, size: int) -> bytes:
        if self._local():
            with open(self.path, "rb") as fh:
                fh.seek(offset)
                return fh.read(size - offset)
        rc, out, _err = self.transport.run(["tail", "-c", f"+{offset + 1}", self.path], timeout=60)
        return out.encode("utf-8") if rc == 0 else b""

    def read_lines(self, final: bool = False) -> List[str]:
        if not self.path:
            return []
        try:
            size = self._size()
        except OSError:
            return []
        if size is None:
            return []
        self.truncated = False
        if size < self.offset:
            self.offset, self.line_no, self.truncated = 0, 0, True
        if size == self.offset:
            return []
        try:
            data = self._read_from(self.offset, size)
        except OSError:
            return []
        cut = data.rfind(b"\n") + 1
        if final and cut < len(data):
            cut = len(data)
        data = data[:cut]
        self.offset += len(data)
        text = data.decode("utf-8", "replace")
        lines = text.split("\n")  # not splitlines(): a form feed or U+2028 inside a line is no line end
        if lines and lines[-1] == "":
            lines.pop()
        lines = [l[:-1] if l.endswith("\r") else l for l in lines]
        self.line_no += len(lines)
        return lines


# ------------------------------------------------------------------ per-job progress

@dataclasses.dataclass
class JobProgress:
    """What the watcher knows about one job; saved in the job record."""

    job_id: str
    alias: str
    served_model: str
    log_path: str = ""
    info_path: str = ""
    registries: List[str] = dataclasses.field(default_factory=list)
    key_env: str = "VLLM_API_KEY"
    add_replica: bool = False
    # progress
    job_state: str = "UNKNOWN"
    phase: str = "submitted"
    server_state: str = ServerState.NONE.value
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
    # not saved
    done: bool = False
    started_at: float = 0.0
    phase_at: float = 0.0
    next_check: float = 0.0
    phases_seen: List[str] = dataclasses.field(default_factory=list)
    last_probe: Any = None
    failing_since: Optional[float] = None
    unknown_polls: int = 0
    _stuck: Tuple[str, int] = ("", 0)

    SAVED = ("phase", "server_state", "url", "urls", "log_offset", "log_line_no", "registered", "failure",
             "failure_detail", "evidence", "ready_after_s", "exec_host")

    @classmethod
    def from_record(cls, rec: Any, *, registries: Optional[Sequence[str]] = None,
                    add_replica: bool = False) -> "JobProgress":
        def get(name: str, default: Any = None) -> Any:
            if isinstance(rec, Mapping):
                if name in rec:
                    return rec[name]
                return (rec.get("extra") or {}).get(name, default)
            getter = getattr(rec, "get", None)
            if callable(getter):
                return getter(name, default)
            return getattr(rec, name, default)

        watch = get("watch") or {}
        p = cls(
            job_id=str(get("job_id")),
            alias=str(get("alias") or ""),
            served_model=str(get("served_model_name") or get("alias") or get("model") or ""),
            log_path=str(get("log_path") or ""),
            info_path=str(get("server_info_path") or ""),
            registries=[str(r) for r in (registries if registries is not None else (get("registries") or []))],
            key_env=str(get("api_key_env") or "VLLM_API_KEY"),
            add_replica=add_replica or bool(watch.get("add_replica", False)),
        )
        p.server_state = str(get("server_state") or ServerState.NONE.value)
        p.url = str(get("url") or "")
        for k in cls.SAVED:
            if k in watch:
                setattr(p, k, watch[k])
        if p.server_state in (ServerState.READY.value, ServerState.FAILED.value, ServerState.STOPPED.value):
            p.done = p.server_state != ServerState.READY.value
        return p

    def saved_fields(self) -> Dict[str, Any]:
        watch = {k: getattr(self, k) for k in self.SAVED}
        watch["add_replica"] = self.add_replica
        return {"server_state": self.server_state, "url": self.url, "watch": watch}

    @property
    def name(self) -> str:
        return f"{self.alias} ({self.job_id})" if self.alias else self.job_id


@dataclasses.dataclass
class WatchResult:
    jobs: List[JobProgress]
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return not self.timed_out and all(j.server_state == ServerState.READY.value for j in self.jobs)

    def to_dicts(self) -> List[Dict[str, Any]]:
        out = []
        for j in self.jobs:
            d = {"alias": j.alias, "job_id": j.job_id, "state": j.job_state, "server_state": j.server_state,
                 "url": j.url, "phase": j.phase, "registered": list(j.registered),
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

Probe = Callable[[str, str], Any]  # (url, served model) -> health.Readiness


class Watcher:
    """Follows the jobs of one (scheduler, transport) pair."""

    def __init__(
        self,
        scheduler: Any,
        transport: Any,
        *,
        probe: Probe,
        open_registry: Optional[Callable[[str], Any]] = None,
        save: Optional[Callable[[JobProgress], None]] = None,
        reporter: Optional[Reporter] = None,
        clock: Callable[[], float] = time.monotonic,
        url_for: Optional[Callable[[Mapping[str, Any], JobProgress], str]] = None,
        follow_ready: bool = False,
    ) -> None:
        self.scheduler = scheduler
        self.transport = transport
        self.probe = probe
        self.open_registry = open_registry or _default_open_registry
        self.save = save or (lambda job: None)
        self.reporter = reporter or Reporter()
        self.clock = clock
        self.url_for = url_for or (lambda info, job: endpoint_url(info, alias=job.alias))
        self.follow_ready = follow_ready  # keep following ready jobs to unregister them when they end
        self.jobs: List[JobProgress] = []
        self.next_status = 0.0
        self.queued_poll = QUEUED_POLL_MIN_S
        self.status_calls = 0
        self.status_errors = 0
        self._tails: Dict[str, LogTail] = {}
        self._trackers: Dict[str, Any] = {}
        self._context: Dict[str, Deque[Tuple[int, str]]] = {}

    # -- set-up
    def add(self, job: JobProgress) -> None:
        now = self.clock()
        job.started_at = job.started_at or now
        job.phase_at = now
        self.jobs.append(job)

    def pending(self) -> List[JobProgress]:
        return [j for j in self.jobs if not j.done and (self.follow_ready or j.server_state != ServerState.READY.value)]

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
            if job.job_state == JobState.RUNNING.value and now >= job.next_check:
                self._check_running(job)
        now = self.clock()
        due = [self.next_status] + [j.next_check for j in self.pending() if j.job_state == JobState.RUNNING.value]
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
            if state == JobState.UNKNOWN and job.unknown_polls < 1:
                # a job the scheduler does not know: believe it only on the second asking
                job.unknown_polls += 1
                continue
            job.unknown_polls = 0
            job.job_state = state.value
            if state in (JobState.PENDING, JobState.HELD):
                any_queued = True
                self._set_phase(job, "queued" if state == JobState.PENDING else "held")
            elif state == JobState.RUNNING:
                if job.phase in ("submitted", "queued", "held"):
                    job.exec_host = getattr(st, "exec_host", "") or ""
                    self._set_phase(job, "running", f"running on {job.exec_host}" if job.exec_host else "running")
                    job.next_check = now
            elif state == JobState.COMPLETING or state.is_terminal or state == JobState.UNKNOWN:
                self._job_ended(job, st)
        if any_queued:
            self.next_status = now + self.queued_poll
            self.queued_poll = min(QUEUED_POLL_MAX_S, self.queued_poll * 1.6)
        else:
            self.queued_poll = QUEUED_POLL_MIN_S
            self.next_status = now + RUNNING_STATUS_POLL_S

    def _set_phase(self, job: JobProgress, phase: str, label: Optional[str] = None) -> None:
        if job.phase == phase and phase in job.phases_seen:
            return
        job.phase = phase
        job.phase_at = self.clock()
        job.phases_seen.append(phase)
        self.reporter.phase(job, label or PHASE_LABELS.get(phase, phase), self.clock() - job.started_at)
        self.save(job)

    # -- a running job
    def _tail(self, job: JobProgress) -> LogTail:
        t = self._tails.get(job.job_id)
        if t is None:
            t = LogTail(job.log_path, self.transport, job.log_offset, job.log_line_no)
            self._tails[job.job_id] = t
        return t

    def _tracker(self, job: JobProgress) -> Any:
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
        for i, raw in enumerate(lines, first + 1):
            msg = split_line(raw).message
            context.append((i, strip_line(raw)))
            tracker.feed(msg, i)
            phase = detect_phase(msg)
            if phase in _PHASE_ORDER and job.phase in _PHASE_ORDER:
                if _PHASE_ORDER.index(phase) > _PHASE_ORDER.index(job.phase):  # phases only move forward
                    self._set_phase(job, phase)
            if phase == "ready" and job.server_state != ServerState.READY.value:
                job.phase = "log_ready"
        if lines:
            self.save(job)

    def _server_info(self, job: JobProgress) -> Optional[Dict[str, Any]]:
        if not job.info_path:
            return None
        try:
            if self.transport is None or getattr(self.transport, "is_local", False):
                with open(job.info_path, encoding="utf-8") as fh:
                    text = fh.read()
            else:
                if not self.transport.exists(job.info_path):
                    return None
                text = self.transport.read_text(job.info_path)
            info = json.loads(text)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, PbsvllmError):
            return None  # being written (it is replaced atomically, but be lenient), retry next tick
        return info if isinstance(info, dict) else None

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
                job.urls = [self.url_for(r, job) for r in replica_infos(info)]
                job.url = job.urls[0]
                if info.get("host"):
                    job.exec_host = str(info.get("host"))
                job.server_state = ServerState.STARTING.value
                self.reporter.event(job, f"server process started; will answer at {', '.join(job.urls)}")
                self.save(job)
        if job.server_state == ServerState.READY.value:
            job.next_check = self.clock() + READY_CHECK_S  # followed only for a crash or its end
            return
        near = job.phase in ("kv_cache_allocated", "log_ready")
        job.next_check = self.clock() + (NEAR_READY_CHECK_S if near else STARTING_CHECK_S)
        if not job.url:
            return
        results = [self.probe(u, job.served_model) for u in (job.urls or [job.url])]
        bad = [r for r in results if not getattr(r, "ready", False)]
        if not bad:
            self._became_ready(job)
            return
        result = job.last_probe = bad[0]
        stage = getattr(result, "stage", "unreachable")
        limit = STUCK_PROBE_LIMIT.get(stage)
        if limit is None or job.phase != "log_ready":
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
                self._fail(job, f"probe_{stage}", getattr(result, "detail", stage))

    def _became_ready(self, job: JobProgress) -> None:
        from pbsvllm.registry import Endpoint, spec_of

        job.server_state = ServerState.READY.value
        job.ready_after_s = round(self.clock() - job.started_at, 1)
        job.phase = "ready"
        job.phases_seen.append("ready")
        eps = [Endpoint(alias=job.alias, model=job.served_model, url=u, key=job.key_env, job_id=job.job_id)
               for u in (job.urls or [job.url])]
        problems = []
        for spec in job.registries:
            try:
                reg = self.open_registry(spec)
                for i, ep in enumerate(eps):
                    reg.register(ep, replace=(i == 0 and not job.add_replica))
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
        if problems:
            job.failure_detail = "; ".join(problems)
            self.save(job)

    def _describe_error(self, tracker: Any) -> str:
        ev = tracker.events
        kind = tracker.root_cause
        first = next((e for e in ev if e.kind == kind), ev[0] if ev else None)
        text = f"{kind}: {first.text} (log line {first.line_no})" if first else str(kind)
        if getattr(tracker, "suggested_max_model_len", None):
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
        if job.server_state == ServerState.READY.value:
            self._unregister(job)  # it was serving (a crash later on): clients must not be sent there
        job.server_state = ServerState.FAILED.value
        job.failure = cause
        job.failure_detail = detail
        job.evidence = self._evidence(job)
        job.phase = "failed"
        job.done = True
        self.save(job)
        self.reporter.event(job, f"FAILED: {detail}")
        for line in job.evidence:
            self.reporter.event(job, "  " + line)

    def _job_ended(self, job: JobProgress, st: Any) -> None:
        state = st.state if st is not None else JobState.UNKNOWN
        reason = (getattr(st, "exit_reason", "") or getattr(st, "comment", "") or "") if st is not None else ""
        if state == JobState.UNKNOWN:
            reason = reason or "the scheduler no longer knows the job"
        if job.server_state == ServerState.READY.value:
            self._unregister(job)
            job.server_state = ServerState.STOPPED.value
            job.phase = "stopped"
            job.done = True
            self.save(job)
            self.reporter.event(job, f"job ended ({state.value}{': ' + reason if reason else ''}); "
                                     f"removed from {len(job.registered)} registr{'y' if len(job.registered) == 1 else 'ies'}")
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
        for path in list(job.registered):
            try:
                reg = self.open_registry(path)
                for u in job.urls or [job.url]:
                    reg.unregister_server(job.alias, u, job.job_id)
            except RegistryError as exc:
                self.reporter.event(job, f"could not remove {job.alias} from {path}: {exc}")


def _default_open_registry(spec: str) -> Any:
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
        delay = min(waits) if waits else 0.0
        if timeout_s is not None:
            delay = min(delay, max(0.0, timeout_s - (clock() - start)))
        sleep(max(delay, 0.01))


# ------------------------------------------------------------------ wiring for the CLI and the e2e tests

def _profile_url_for(settings: Any) -> Callable[[Mapping[str, Any], JobProgress], str]:
    profile = getattr(settings, "profile", None)
    suffix = getattr(profile, "hostname_suffix", "") or ""
    template = getattr(profile, "url_template", "") or "http://{host}:{port}/v1"
    return lambda info, job: endpoint_url(info, hostname_suffix=suffix, url_template=template, alias=job.alias)


def make_probe(settings: Any, *, timeout: float = 2.0, completion_timeout: float = 30.0) -> Probe:
    from pbsvllm import health

    key = health.resolve_api_key(getattr(settings, "api_key_file", None),
                                 getattr(settings, "api_key_env", "VLLM_API_KEY") or "VLLM_API_KEY")

    def probe(url: str, model: str) -> Any:
        return health.check_ready(url, model, key, timeout=timeout, completion_timeout=completion_timeout)

    return probe


def watch_records(
    settings: Any,
    records: Iterable[Any],
    *,
    store: Any = None,
    registries: Optional[Sequence[str]] = None,
    add_replica: bool = False,
    timeout_s: Optional[float] = None,
    reporter: Optional[Reporter] = None,
    probe: Optional[Probe] = None,
    transport: Any = None,
    scheduler: Any = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    follow_ready: bool = False,
) -> WatchResult:
    """Follow ``records`` (job records) until each is ready, failed or gone.

    Jobs are grouped by (host, scheduler): one scheduler call per group per
    status tick. ``registries`` overrides the records' own lists. With
    ``follow_ready``, ready jobs are followed too, until they end (their
    entries are then removed).
    """
    from pbsvllm.jobs import JobStore

    store = store if store is not None else JobStore(getattr(settings, "home", None))
    probe = probe or make_probe(settings)
    url_for = _profile_url_for(settings)

    def save(job: JobProgress) -> None:
        try:
            store.update(job.job_id, **job.saved_fields())
        except PbsvllmError:
            pass  # the record was deleted meanwhile: nothing to resume

    groups: Dict[Tuple[Any, Any], Watcher] = {}
    jobs: List[JobProgress] = []
    for rec in records:
        job = JobProgress.from_record(rec, registries=registries, add_replica=add_replica)
        if not job.info_path and getattr(settings, "home", None):  # the contract's default place
            job.info_path = os.path.join(settings.home, "run", f"{job.job_id}.server.json")
        jobs.append(job)
        if job.done or (job.server_state == ServerState.READY.value and not follow_ready):
            continue
        if job.server_state == ServerState.READY.value:
            job.job_state = JobState.RUNNING.value  # resumed: only its end is left to see
        host = getattr(rec, "host", None) if not isinstance(rec, Mapping) else rec.get("host")
        sched_name = getattr(rec, "scheduler", None) if not isinstance(rec, Mapping) else rec.get("scheduler")
        key = (host, sched_name)
        if key not in groups:
            tr = transport
            sch = scheduler
            if tr is None:
                from pbsvllm.transport import get_transport

                tr = get_transport(host)
            if sch is None:
                from pbsvllm.scheduler import get_scheduler

                sch = get_scheduler(sched_name or getattr(settings, "scheduler", "auto"), tr,
                                    home=getattr(settings, "home", None))
            groups[key] = Watcher(sch, tr, probe=probe, save=save, reporter=reporter, clock=clock, url_for=url_for,
                                  follow_ready=follow_ready)
        groups[key].add(job)
    finished = run_watchers(list(groups.values()), timeout_s=timeout_s, clock=clock, sleep=sleep)
    if reporter is not None:
        reporter.close()
    return WatchResult(jobs=jobs, timed_out=not finished)


def wait_until_ready(settings: Any, record: Any, **kwargs: Any) -> JobProgress:
    """Follow one job until its server is ready (and registered) or has failed.

    Raises :class:`ServerError` with the cause and the log lines that show it
    when the server fails, or when ``timeout_s`` runs out.
    """
    res = watch_records(settings, [record], **kwargs)
    job = res.jobs[0]
    if job.server_state == ServerState.READY.value:
        return job
    if res.timed_out:
        raise ServerError(
            f"{job.name} is not ready after {kwargs.get('timeout_s')} s (phase: {PHASE_LABELS.get(job.phase, job.phase)})",
            hint="`pbsvllm watch` resumes following it; `pbsvllm logs " + (job.alias or job.job_id) + "` shows its log",
        )
    evidence = "\n".join("  " + e for e in job.evidence)
    raise ServerError(
        f"{job.name} failed: {job.failure_detail}" + (f"\n{evidence}" if evidence else ""),
        hint="`pbsvllm doctor " + (job.alias or job.job_id) + "` explains the log",
    )
