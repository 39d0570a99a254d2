"""The server-info file: the one home of its contract.

A job writes ``$PBSVLLM_HOME/run/<job_id>.server.json`` once its vLLM
process(es) started (the writer is the ``server_info`` block of
``templates/base.sh.j2``; a test renders it, runs it and parses the result
with :func:`parse`). It is replaced atomically (temp file, fsync, rename), so
a reader sees the old file, the new one, or none. Keys::

    job_id, host, port, url, pid, pgid, model, served_model_name, alias,
    start_time (ISO 8601, UTC), log_path,
    replicas: [{index, host, port, url, pid, pgid, gpus, log_path}, ...]

``host`` is the node's name plus the profile's ``hostname_suffix`` (or the
profile's ``url_host``); ``url`` is the profile's ``url_template`` filled on
the node. With one server, ``replicas`` holds it once; in replicas mode one
entry per vLLM process.

Everything that reads the file goes through :func:`read` (or
:func:`try_read`), over the job's transport: a job on a remote host has its
file read there, never on this machine's disk. :func:`endpoint_url` is the
rule that turns it into the URL clients use.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

from pbsvllm.errors import PbsvllmError, ServerError
from pbsvllm.transport.base import Transport

#: Addresses a server binds to that are never a destination.
WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")
DEFAULT_URL_TEMPLATE = "http://{host}:{port}/v1"
SUFFIX = ".server.json"


class ServerInfoMissing(ServerError):
    """The job has not written its server-info file (yet)."""


@dataclasses.dataclass(frozen=True)
class Replica:
    """One vLLM server process of a job."""

    index: int
    host: str
    port: Optional[int]
    url: str = ""
    pid: Optional[int] = None
    pgid: Optional[int] = None
    gpus: str = ""
    log_path: str = ""


@dataclasses.dataclass(frozen=True)
class ServerInfo:
    """The parsed server-info file of one job."""

    job_id: str
    host: str
    port: Optional[int]
    url: str = ""
    pid: Optional[int] = None
    pgid: Optional[int] = None
    model: str = ""
    served_model_name: str = ""
    alias: str = ""
    start_time: str = ""
    log_path: str = ""
    hostname: str = ""  # the node's own name, when the writer adds it (used when host is a bind address)
    replicas: Tuple[Replica, ...] = ()
    path: str = ""  # where it was read from ("" when parsed from text)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], path: str = "") -> ServerInfo:
        """Validate a decoded file; ServerError names what is wrong."""
        where = path or "the server-info file"
        if not isinstance(doc, Mapping):
            raise ServerError(f"{where} is not a JSON object")
        reps: List[Replica] = []
        raw_reps = doc.get("replicas")
        if raw_reps is not None and not isinstance(raw_reps, list):
            raise ServerError(f"{where}: 'replicas' is not a list")
        for i, r in enumerate(raw_reps or []):
            if not isinstance(r, Mapping):
                raise ServerError(f"{where}: replica {i} is not an object")
            reps.append(Replica(
                index=_int(r.get("index"), f"{where}: replicas[{i}].index", i) or i,
                host=_str(r.get("host", doc.get("host"))),
                port=_port(r.get("port"), f"{where}: replicas[{i}].port"),
                url=_str(r.get("url")),
                pid=_int(r.get("pid"), f"{where}: replicas[{i}].pid"),
                pgid=_int(r.get("pgid"), f"{where}: replicas[{i}].pgid"),
                gpus=_str(r.get("gpus")),
                log_path=_str(r.get("log_path")),
            ))
        return cls(
            job_id=_str(doc.get("job_id")),
            host=_str(doc.get("host")),
            port=_port(doc.get("port"), f"{where}: port"),
            url=_str(doc.get("url")),
            pid=_int(doc.get("pid"), f"{where}: pid"),
            pgid=_int(doc.get("pgid"), f"{where}: pgid"),
            model=_str(doc.get("model")),
            served_model_name=_str(doc.get("served_model_name")),
            alias=_str(doc.get("alias")),
            start_time=_str(doc.get("start_time")),
            log_path=_str(doc.get("log_path")),
            hostname=_str(doc.get("hostname")),
            replicas=tuple(reps),
            path=path,
        )

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("path")
        if not d["hostname"]:
            d.pop("hostname")
        return d

    def servers(self) -> List[ServerInfo]:
        """One ServerInfo per server of the job: the replicas when there are
        several (replicas mode), else the job's one server."""
        if len(self.replicas) > 1:
            return [dataclasses.replace(self, host=r.host or self.host, port=r.port, url=r.url, pid=r.pid,
                                        pgid=r.pgid, log_path=r.log_path or self.log_path, replicas=())
                    for r in self.replicas]
        return [self]


def _str(v: Any) -> str:
    return "" if v is None else str(v)


def _int(v: Any, where: str, default: Optional[int] = None) -> Optional[int]:
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise ServerError(f"{where} is {v!r}, not an integer")
    return v


def _port(v: Any, where: str) -> Optional[int]:
    p = _int(v, where)
    if p is not None and not 0 < p < 65536:
        raise ServerError(f"{where} is {p}, not a TCP port")
    return p


def default_path(home: str, job_id: str) -> str:
    """Where a job writes its server-info file: ``<home>/run/<job_id>.server.json``."""
    return os.path.join(home, "run", f"{job_id}{SUFFIX}")


def parse(text: str, path: str = "") -> ServerInfo:
    """The file's text as a ServerInfo; ServerError if it is not one."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ServerError(f"{path or 'the server-info file'} is not valid JSON: {exc}") from None
    return ServerInfo.from_dict(doc, path)


def read(transport: Transport, path: str) -> ServerInfo:
    """Read and validate the server-info file at ``path`` on the job's host.

    :class:`ServerInfoMissing` when it does not exist (yet); ServerError when
    it cannot be read or is not a server-info file.
    """
    if not path:
        raise ServerInfoMissing("the job record names no server-info file")
    try:
        if not transport.exists(path):
            raise ServerInfoMissing(f"{path} does not exist on {transport.host} (yet)")
        if transport.is_local:
            _check_owner(transport.expanduser(path))
        text = transport.read_text(path)
    except ServerInfoMissing:
        raise
    except PbsvllmError as exc:  # TransportError: unreadable, connection lost
        raise ServerError(f"cannot read the server-info file {path} on {transport.host}: {exc.message}") from None
    return parse(text, path)


def _check_owner(path: str) -> None:
    """A server-info file someone else wrote is never believed: its URL would
    receive your API key and take over your registry entry."""
    import os

    try:
        st = os.stat(path)
    except OSError:
        return  # read_text reports it
    if st.st_uid != os.geteuid():
        from pbsvllm.fileio import user_name

        raise ServerError(f"the server-info file {path} belongs to {user_name(st.st_uid)}, not to you; pbsvllm "
                          "ignores it (its URL would receive your API key)",
                          hint="remove it, and keep PBSVLLM_HOME private (chmod 700)")


def try_read(transport: Transport, path: str) -> Optional[ServerInfo]:
    """:func:`read`, or None while the file is missing, unreadable or
    invalid (followers try again on their next tick)."""
    try:
        return read(transport, path)
    except PbsvllmError:
        return None


# ------------------------------------------------------------------ the URL rule

def endpoint_url(info: ServerInfo, *, hostname_suffix: str = "",
                 url_template: str = DEFAULT_URL_TEMPLATE, alias: str = "") -> str:
    """The URL clients use, from the server-info file and the profile.

    The job's own ``url`` is used when it was built with the same profile
    (and is no bind-all address). Otherwise ``url_template`` is filled:
    ``{host}`` is the node's short name plus ``hostname_suffix`` (e.g.
    ``.hsn.cm.polaris.alcf.anl.gov``), ``{hostname}`` the name as the job
    wrote it, ``{port}``, ``{alias}``. A bind-all address (``0.0.0.0``) is
    never a destination.
    """
    url = info.url.strip()
    if url and not _wildcard_url(url) and not hostname_suffix_changes(info, hostname_suffix):
        return url.rstrip("/")  # the job built it with the same profile
    host = info.host.strip()
    if host in WILDCARD_HOSTS:
        host = info.hostname.strip()
    if host in WILDCARD_HOSTS or not info.port:
        raise ServerError(
            f"the server-info file of job {info.job_id or '?'} gives no reachable host "
            f"(host={info.host!r}, url={info.url!r})",
            hint="the job must write the node's hostname, not a bind address such as 0.0.0.0",
        )
    full = host
    if hostname_suffix and not _is_ip(host):
        short = host.split(".", 1)[0]
        full = host if host.endswith(hostname_suffix) else short + hostname_suffix
    try:
        return url_template.format(host=full, port=int(info.port), hostname=host, alias=alias).rstrip("/")
    except (KeyError, IndexError, ValueError) as exc:
        raise ServerError(f"url_template {url_template!r} cannot be filled: {exc}",
                          hint="use only {host}, {port}, {hostname}, {alias}") from None


def endpoint_urls(info: ServerInfo, *, hostname_suffix: str = "",
                  url_template: str = DEFAULT_URL_TEMPLATE, alias: str = "") -> List[str]:
    """:func:`endpoint_url` of every server of the job (replicas: several)."""
    return [endpoint_url(s, hostname_suffix=hostname_suffix, url_template=url_template, alias=alias)
            for s in info.servers()]


def _wildcard_url(url: str) -> bool:
    return any(f"//{w}:" in url or url.rstrip("/").endswith(f"//{w}") for w in WILDCARD_HOSTS if w) or "//:" in url


def hostname_suffix_changes(info: ServerInfo, suffix: str) -> bool:
    """True when the profile asks for a suffix the job's own URL lacks."""
    host = info.host
    return bool(suffix) and bool(host) and not _is_ip(host) and not host.endswith(suffix)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False
