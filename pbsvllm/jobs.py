"""Job records: one JSON file per job at ``$PBSVLLM_HOME/jobs/<job_id>.json``.

Files are 0600 in a 0700 folder and replaced atomically (temp file in the
same folder, fsync, ``os.replace``). Every read-modify-write holds an
exclusive ``flock`` on ``jobs/.lock``, so two CLI processes (``status``
caching a state while ``watch`` records the URL) never lose each other's
fields. Unknown fields written by newer code are kept (``extra``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import time
from typing import Any, Dict, Iterator, List, Optional

from pbsvllm.errors import JobNotFoundError, PbsvllmError
from pbsvllm.transport.local import atomic_write_text, makedirs_private

_SAFE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@\[\]-]*$")


def pbsvllm_home(home: Optional[str] = None) -> str:
    """``home``, else ``$PBSVLLM_HOME``, else ``~/.pbsvllm`` (absolute)."""
    return os.path.abspath(os.path.expanduser(home or os.environ.get("PBSVLLM_HOME") or "~/.pbsvllm"))


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
    registries: List[Any] = dataclasses.field(default_factory=list)
    api_key_env: str = "VLLM_API_KEY"
    plan: Dict[str, Any] = dataclasses.field(default_factory=dict)
    last_status: Dict[str, Any] = dataclasses.field(default_factory=dict)  # JobStatus.to_dict(), cached for --offline
    last_status_at: float = 0.0
    server_state: str = "none"
    url: str = ""
    cancelled_at: float = 0.0
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        extra = d.pop("extra") or {}
        for k, v in extra.items():
            d.setdefault(k, v)
        return d

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "JobRecord":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and k != "extra"}
        extra.update(data.get("extra") or {})
        if "job_id" not in known:
            raise ValueError("job record has no job_id")
        return cls(extra=extra, **known)

    def get(self, key: str, default: Any = None) -> Any:
        if key in {f.name for f in dataclasses.fields(self)}:
            return getattr(self, key)
        return self.extra.get(key, default)


class JobStore:
    """The folder of job records under ``home`` (default ``$PBSVLLM_HOME``)."""

    def __init__(self, home: Optional[str] = None) -> None:
        self.home = pbsvllm_home(home)
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
        atomic_write_text(self.path(record.job_id), json.dumps(record.to_dict(), indent=2, sort_keys=True, default=str) + "\n", 0o600)

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
                        setattr(rec, k, v)
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
