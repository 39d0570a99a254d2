"""Job records: one JSON file per job at ``$PBSVLLM_HOME/jobs/<job_id>.json``.

Files are 0600 in a 0700 folder and replaced atomically (temp file in the
same folder, fsync, ``os.replace``). Every read-modify-write holds an
exclusive ``flock`` on ``jobs/.lock``, so two CLI processes (``status``
caching a state while ``watch`` records the URL) never lose each other's
fields. Unknown fields written by newer code are kept (``extra``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import re
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional

from pbsvllm.errors import JobNotFoundError, PbsvllmError
from pbsvllm.models import JobState, Phase, ServerState
from pbsvllm.scheduler.base import JobStatus
from pbsvllm.transport.local import atomic_write_text, makedirs_private

if TYPE_CHECKING:
    from pbsvllm.config import Settings

_SAFE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@\[\]-]*$")


@dataclasses.dataclass
class WatchState:
    """What the watcher has learnt about one job: the record's ``watch``
    object. Saved after every change, so a watcher started later resumes
    (log offset and line number) instead of starting over.

    Keys this version does not know (written by a newer one) are kept in
    ``extra`` and written back unchanged.
    """

    phase: Phase = Phase.SUBMITTED
    urls: List[str] = dataclasses.field(default_factory=list)  # every replica's URL (the record's url is the first)
    exec_host: str = ""
    log_offset: int = 0
    log_line_no: int = 0
    registered: List[str] = dataclasses.field(default_factory=list)  # registry specs that hold the server
    failure: str = ""
    failure_detail: str = ""
    evidence: List[str] = dataclasses.field(default_factory=list)
    ready_after_s: Optional[float] = None
    add_replica: bool = False
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)

    #: Keys older versions also wrote here; the record's own fields are the truth.
    _MIRRORED = ("server_state", "url")

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = dict(self.extra)
        d.update(phase=self.phase.value, urls=list(self.urls), exec_host=self.exec_host,
                 log_offset=self.log_offset, log_line_no=self.log_line_no, registered=list(self.registered),
                 failure=self.failure, failure_detail=self.failure_detail, evidence=list(self.evidence),
                 ready_after_s=self.ready_after_s, add_replica=self.add_replica)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WatchState:
        """The ``watch`` object of a stored record (old ones included)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"'watch' is {type(data).__name__}, not an object")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        extra = {k: v for k, v in data.items() if k not in names and k not in cls._MIRRORED}
        ready_after = data.get("ready_after_s")
        if isinstance(ready_after, bool) or not isinstance(ready_after, (int, float)):
            ready_after = None
        return cls(
            phase=Phase.parse(data.get("phase"), Phase.SUBMITTED),
            urls=_strs(data.get("urls")),
            exec_host=str(data.get("exec_host") or ""),
            log_offset=_nonneg_int(data.get("log_offset")),
            log_line_no=_nonneg_int(data.get("log_line_no")),
            registered=_strs(data.get("registered")),
            failure=str(data.get("failure") or ""),
            failure_detail=str(data.get("failure_detail") or ""),
            evidence=_strs(data.get("evidence")),
            ready_after_s=None if ready_after is None else float(ready_after),
            add_replica=bool(data.get("add_replica", False)),
            extra=extra,
        )


def _strs(value: Any) -> List[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else []


def _nonneg_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


@dataclasses.dataclass
class JobRecord:
    job_id: str
    alias: str = ""
    model: str = ""
    served_model_name: str = ""
    profile: str = ""
    scheduler: str = ""
    host: Optional[str] = None          # None: this machine; else the SSH target
    submitted_at: float = 0.0           # epoch seconds
    script_path: str = ""
    log_path: str = ""
    server_info_path: str = ""
    port: Optional[int] = None
    registries: List[str] = dataclasses.field(default_factory=list)
    api_key_env: str = "VLLM_API_KEY"
    api_key_file: str = ""              # the key file given at submit: later watch/status probe with it
    plan: Dict[str, Any] = dataclasses.field(default_factory=dict)  # Plan.to_json(), as submitted
    last_status: Optional[JobStatus] = None  # the scheduler's last answer, cached for --offline
    last_status_at: float = 0.0
    server_state: ServerState = ServerState.NONE
    url: str = ""
    cancelled_at: float = 0.0
    watch: WatchState = dataclasses.field(default_factory=WatchState)
    registered_aliases: List[str] = dataclasses.field(default_factory=list)  # aliases swap-endpoint pointed here
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)  # fields of newer versions, kept

    def __post_init__(self) -> None:
        # ServerState is a str enum: "ready" given by a caller is validated into it here
        self.server_state = ServerState(self.server_state)

    @property
    def served_name(self) -> str:
        """The name clients send as ``model``."""
        return self.served_model_name or self.alias or self.model

    @property
    def name(self) -> str:
        return f"{self.alias} ({self.job_id})" if self.alias else self.job_id

    @property
    def last_state(self) -> Optional[JobState]:
        """The scheduler's last known state of the job (None: never asked)."""
        return self.last_status.state if self.last_status is not None else None

    @property
    def urls(self) -> List[str]:
        """Every URL of the job's server(s), the record's own first."""
        return list(dict.fromkeys(u for u in [self.url, *self.watch.urls] if u))

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("extra", "watch", "registered_aliases"):
                continue
            v = getattr(self, f.name)
            d[f.name] = copy.deepcopy(v) if isinstance(v, (list, dict)) else v
        d["server_state"] = self.server_state.value
        d["last_status"] = self.last_status.to_dict() if self.last_status is not None else {}
        # left out while empty: a fresh record reads exactly as before these fields existed
        if self.watch != WatchState():
            d["watch"] = self.watch.to_dict()
        if self.registered_aliases:
            d["registered_aliases"] = list(self.registered_aliases)
        for k, v in self.extra.items():
            d.setdefault(k, v)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRecord:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and k != "extra"}
        extra.update(data.get("extra") or {})
        if "job_id" not in known:
            raise ValueError("job record has no job_id")
        _check_types(known)
        known["job_id"] = str(known["job_id"])
        known["server_state"] = ServerState.parse(known.get("server_state"))
        last = known.get("last_status")
        known["last_status"] = JobStatus.from_dict({"job_id": known["job_id"], **last}) \
            if isinstance(last, Mapping) and last else None
        known["watch"] = WatchState.from_dict(known.get("watch") or {})
        known["registered_aliases"] = _strs(known.get("registered_aliases"))
        known["registries"] = _strs(known.get("registries"))
        return cls(extra=extra, **known)


_STR_FIELDS = ("alias", "model", "served_model_name", "profile", "scheduler", "script_path", "log_path",
               "server_info_path", "api_key_env", "api_key_file", "url")
_NUM_FIELDS = ("submitted_at", "last_status_at", "cancelled_at")


def _check_types(known: Dict[str, Any]) -> None:
    """Refuse a record whose fields have the wrong JSON types (a hand edit, another
    tool), naming the field, instead of failing later in a comparison."""
    jid = known.get("job_id")
    if not isinstance(jid, (str, int)) or isinstance(jid, bool) or not str(jid):
        raise ValueError(f"field 'job_id' must be a non-empty string, not {type(jid).__name__}")
    for k in _STR_FIELDS:
        if k in known and known[k] is not None and not isinstance(known[k], str):
            raise ValueError(f"field {k!r} must be a string, not {type(known[k]).__name__}")
        if known.get(k, "") is None:
            known[k] = ""
    for k in _NUM_FIELDS:
        v = known.get(k, 0)
        if v is None:
            known[k] = 0.0
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
            raise ValueError(f"field {k!r} must be a number, not {type(v).__name__} {str(v)[:40]!r}")
    if known.get("host") is not None and not isinstance(known["host"], str):
        raise ValueError(f"field 'host' must be a string or null, not {type(known['host']).__name__}")
    port = known.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
        raise ValueError(f"field 'port' must be an integer or null, not {type(port).__name__}")
    for k in ("plan", "last_status"):
        if k in known and not isinstance(known[k], dict):
            raise ValueError(f"field {k!r} must be an object, not {type(known[k]).__name__}")
    if "extra" in known and not isinstance(known["extra"], dict):
        raise ValueError("field 'extra' must be an object")


#: Records that could not be read in this process: path -> one-line reason.
#: Commands skip them and keep working for every other job; the CLI names
#: each once, with the fix (see :func:`bad_record_notes`).
BAD_RECORDS: Dict[str, str] = {}


def bad_record_notes() -> List[str]:
    """One warning per unreadable record met by this process, with the fix."""
    return [f"skipped the unreadable job record {path} ({why}); move it away to silence this: "
            f"mv {path} {path}.broken" for path, why in sorted(BAD_RECORDS.items())]


def _coerce(name: str, value: Any) -> Any:
    """A field value given to :meth:`JobStore.update`, as its type."""
    if name == "server_state":
        return ServerState(value)
    if name == "watch" and not isinstance(value, WatchState):
        return WatchState.from_dict(value)
    return value


class JobStore:
    """The folder of job records under ``home`` (``Settings.home``: the one
    default for ``$PBSVLLM_HOME`` lives in :mod:`pbsvllm.config`)."""

    def __init__(self, home: str) -> None:
        self.home = os.path.abspath(os.path.expanduser(home))
        self.dir = os.path.join(self.home, "jobs")
        #: Where :meth:`create` last moved an earlier record with the same job id.
        self.last_replaced: Optional[str] = None

    # -- locking and paths
    def _ensure_dir(self) -> None:
        if not os.path.isdir(self.dir):
            makedirs_private(self.dir)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock over all records (:func:`pbsvllm.fileio.file_lock`:
        flock with a timeout, then an error naming the holder)."""
        from pbsvllm.fileio import file_lock

        self._ensure_dir()
        # waits at most fileio.LOCK_TIMEOUT_S, then names the process holding it
        with file_lock(os.path.join(self.dir, ".lock"), f"the job records in {self.dir}"):
            yield

    def path(self, job_id: str) -> str:
        jid = str(job_id)
        if not _SAFE_ID_RE.match(jid) or ".." in jid:
            raise PbsvllmError(f"job id {jid!r} cannot name a record file (allowed: letters, digits, . _ @ [ ] -)")
        return os.path.join(self.dir, f"{jid}.json")

    # -- reading
    def _read(self, path: str) -> Optional[JobRecord]:
        from pbsvllm.fileio import read_regular

        try:
            data = read_regular(path, "job record", max_bytes=16 << 20)
            if data is None:
                return None
            doc = json.loads(data.decode("utf-8"))
            if not isinstance(doc, dict):
                raise ValueError(f"it holds a JSON {type(doc).__name__}, not an object")
            rec = JobRecord.from_dict(doc)
        except PbsvllmError as exc:
            why = exc.message
        except (ValueError, TypeError, RecursionError) as exc:
            why = f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc).splitlines()[0][:200]
        else:
            BAD_RECORDS.pop(path, None)
            return rec
        BAD_RECORDS[path] = why
        raise PbsvllmError(
            f"job record {path} is unreadable: {why}",
            hint=f"move it away (mv {path} {path}.broken); pbsvllm never writes records partially",
        )

    def _read_quiet(self, path: str) -> Optional[JobRecord]:
        """``_read``, with an unreadable record skipped (remembered in BAD_RECORDS)."""
        try:
            return self._read(path)
        except PbsvllmError:
            return None

    def get(self, job_id: str) -> JobRecord:
        rec = self._read(self.path(job_id))
        if rec is None:
            raise JobNotFoundError(
                f"no job record {self.path(job_id)}",
                hint="`pbsvllm status` lists tracked jobs",
            )
        return rec

    def list(self) -> List[JobRecord]:
        """Every record, oldest first."""
        try:
            names = sorted(n for n in os.listdir(self.dir) if n.endswith(".json") and not n.startswith("."))
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            rec = self._read_quiet(os.path.join(self.dir, n))  # one bad record never hides the others
            if rec is not None:
                out.append(rec)
        out.sort(key=lambda r: (r.submitted_at, r.job_id))
        return out

    def find(self, alias_or_id: str) -> JobRecord:
        """A job by exact id, by short id (``123`` for ``123.server``), or by
        alias (its newest job)."""
        key = str(alias_or_id).strip()
        if _SAFE_ID_RE.match(key) and ".." not in key:
            rec = self._read(self.path(key))
            if rec is not None:
                return rec
        records = self.list()
        by_alias = [r for r in records if r.alias == key]
        if by_alias:
            return by_alias[-1]
        short = [r for r in records if r.job_id.split(".", 1)[0] == key or key.split(".", 1)[0] == r.job_id]
        if len(short) == 1:
            return short[0]
        aliases = sorted({r.alias for r in records if r.alias})
        raise JobNotFoundError(
            f"no tracked job with alias or id {key!r} in {self.dir}",
            hint=("known aliases: " + ", ".join(aliases)) if aliases else "no jobs are tracked yet",
        )

    # -- writing
    def save(self, record: JobRecord) -> JobRecord:
        with self.lock():
            self._write(record)
        return record

    def create(self, record: JobRecord) -> Optional[str]:
        """Save a NEW job's record. A record already stored under the same id
        (a restarted PBS counter, two clusters handing out bare numbers) is
        never overwritten silently: it is moved to ``jobs/replaced/`` first and
        its new path returned (the caller tells the user), else None."""
        with self.lock():
            path = self.path(record.job_id)
            moved: Optional[str] = None
            if os.path.lexists(path):
                old = self._read_quiet(path)
                stamp = int(old.submitted_at) if old is not None and old.submitted_at else int(time.time())
                folder = os.path.join(self.dir, "replaced")
                makedirs_private(folder)
                moved = os.path.join(folder, f"{record.job_id}.{stamp}.json")
                n = 1
                while os.path.lexists(moved):
                    moved = os.path.join(folder, f"{record.job_id}.{stamp}.{n}.json")
                    n += 1
                os.replace(path, moved)
                BAD_RECORDS.pop(path, None)
            self._write(record)
            self.last_replaced = moved
            return moved

    def check_writable(self) -> None:
        """Raise unless a record can be written now (folder writable, space
        left): checked BEFORE qsub, so that a job never runs untracked."""
        from pbsvllm.fileio import atomic_write, write_error_text

        try:
            self._ensure_dir()
            with self.lock():
                probe = os.path.join(self.dir, f".write-check-{os.getpid()}")
                atomic_write(probe, "{}\n" + " " * 4096, 0o600)
                os.unlink(probe)
        except (OSError, PbsvllmError) as exc:
            why = exc.message if isinstance(exc, PbsvllmError) else write_error_text(self.dir, exc)
            raise PbsvllmError(
                f"cannot write job records in {self.dir}: {why}; nothing was submitted",
                hint="free space or fix the folder's permissions (PBSVLLM_HOME), then submit again",
            ) from None

    def modify(self, job_id: str, change: Callable[[JobRecord], JobRecord]) -> JobRecord:
        """Read the stored record, apply ``change`` and write it, all under the
        lock: no concurrent writer's fields are lost."""
        with self.lock():
            rec = change(self.get(job_id))
            self._write(rec)
            return rec

    def _write(self, record: JobRecord) -> None:
        text = json.dumps(record.to_dict(), indent=2, sort_keys=True, default=str) + "\n"
        atomic_write_text(self.path(record.job_id), text, 0o600)

    def update(self, job_id: str, **fields: Any) -> JobRecord:
        """Set ``fields`` on the stored record under the lock (read-modify-write)."""
        return self.update_many({job_id: fields})[0]

    def update_many(self, updates: Dict[str, Dict[str, Any]]) -> List[JobRecord]:
        """``update`` for several records under ONE lock (e.g. ``status``
        caching the states of 1,000 jobs)."""
        names = {f.name for f in dataclasses.fields(JobRecord)} - {"extra", "job_id"}
        out = []
        with self.lock():
            for job_id, fields in updates.items():
                rec = self.get(job_id)
                for k, v in fields.items():
                    if k in names:
                        setattr(rec, k, _coerce(k, v))
                    elif k == "job_id":
                        raise PbsvllmError("a job record's job_id cannot be changed")
                    else:
                        rec.extra[k] = v
                self._write(rec)
                out.append(rec)
        return out

    def delete(self, job_id: str) -> None:
        with self.lock():
            try:
                os.unlink(self.path(job_id))
            except FileNotFoundError:
                pass


def with_record_key_file(settings: Settings, records: Iterable[JobRecord]) -> Settings:
    """``settings`` whose ``api_key_file`` is, when none is configured now, the
    one the jobs were submitted with: a later ``watch``/``status`` probes with
    the key the server really has."""
    if settings.api_key_file:
        return settings
    files = [r.api_key_file for r in records if r.api_key_file]
    return dataclasses.replace(settings, api_key_file=files[-1]) if files else settings


def now() -> float:
    return time.time()
