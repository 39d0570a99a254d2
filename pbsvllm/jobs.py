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
import fcntl
import json
import os
import re
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional

from pbsvllm.errors import JobNotFoundError, PbsvllmError
from pbsvllm.models import Phase, ServerState
from pbsvllm.transport.local import atomic_write_text, makedirs_private

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
            ready_after_s=float(ready_after)
            if isinstance(ready_after, (int, float)) and not isinstance(ready_after, bool)
            else None,
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
    plan: Dict[str, Any] = dataclasses.field(default_factory=dict)  # Plan.to_json(), as submitted
    last_status: Dict[str, Any] = dataclasses.field(default_factory=dict)  # JobStatus.to_dict(), cached for --offline
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
        known["job_id"] = str(known["job_id"])
        known["server_state"] = ServerState.parse(known.get("server_state"))
        known["watch"] = WatchState.from_dict(known.get("watch") or {})
        known["registered_aliases"] = _strs(known.get("registered_aliases"))
        known["registries"] = _strs(known.get("registries"))
        return cls(extra=extra, **known)


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

    # -- locking and paths
    def _ensure_dir(self) -> None:
        if not os.path.isdir(self.dir):
            makedirs_private(self.dir)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock over all records (fcntl.flock, released on exit)."""
        self._ensure_dir()
        fd = os.open(os.path.join(self.dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def path(self, job_id: str) -> str:
        jid = str(job_id)
        if not _SAFE_ID_RE.match(jid) or ".." in jid:
            raise PbsvllmError(f"job id {jid!r} cannot name a record file (allowed: letters, digits, . _ @ [ ] -)")
        return os.path.join(self.dir, f"{jid}.json")

    # -- reading
    def _read(self, path: str) -> Optional[JobRecord]:
        try:
            with open(path, encoding="utf-8") as fh:
                return JobRecord.from_dict(json.load(fh))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise PbsvllmError(
                f"job record {path} is unreadable: {exc}",
                hint="move the file away; pbsvllm never writes records partially",
            ) from None

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
            rec = self._read(os.path.join(self.dir, n))
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

    def _write(self, record: JobRecord) -> None:
        atomic_write_text(
            self.path(record.job_id), json.dumps(record.to_dict(), indent=2, sort_keys=True, default=str) + "\n", 0o600
        )

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


def now() -> float:
    return time.time()
