"""The router's state and membership rules: pure data in, data out.

One router per alias. What pbsvllm knows about it is one typed record,
:class:`RouterState`, kept as ``$PBSVLLM_HOME/routers/<alias>/state.json``
(see :mod:`pbsvllm.router.store`); the running ``vllm-router`` only holds a
copy of the member list in memory, which the supervisor re-creates from this
record after a restart.

Membership rule (:func:`desired_workers`): the router's workers are the
alias's *active* members; when there are none, the router holds one
placeholder worker (a loopback responder of the supervisor) that answers
every request with ``503`` and a message naming the alias, so a client of
the alias's URL gets a clear error instead of vLLM-router's anonymous
"No available workers" (and never a fallback elsewhere).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from pbsvllm.errors import ConfigError

_ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_URL_RE = re.compile(r"^https?://[A-Za-z0-9._\-\[\]:]+(/v\d+)?/?$")

POLICIES = ("cache_aware", "round_robin", "random", "power_of_two", "consistent_hash")
PLACEMENTS = ("local",)
MODES = ("auto", "on", "off")
STATE_VERSION = 1


class MemberState(str, enum.Enum):
    """Where a server stands in its alias's router."""

    ACTIVE = "active"      # a worker of the router: new requests go to it
    DRAINING = "draining"  # taken out of the router; finishing the requests it had


@dataclasses.dataclass(frozen=True)
class Member:
    """One server of an alias, as its router knows it."""

    url: str                      # the server's base URL, ending in /v1
    state: MemberState = MemberState.ACTIVE
    job_id: str = ""              # the pbsvllm job serving it ("" when added by URL only)
    joined_at: float = 0.0        # epoch seconds

    @property
    def worker_url(self) -> str:
        """The URL the router routes to (``http://host:port``, no ``/v1``)."""
        return worker_url(self.url)

    def to_dict(self) -> Dict[str, object]:
        return {"url": self.url, "state": self.state.value, "job_id": self.job_id, "joined_at": self.joined_at}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Member:
        url = data.get("url")
        if not isinstance(url, str) or not url:
            raise ValueError("router member without a url")
        state = data.get("state", MemberState.ACTIVE.value)
        job_id = data.get("job_id", "")
        joined = data.get("joined_at", 0.0)
        return cls(url=url, state=MemberState(str(state)), job_id=str(job_id or ""),
                   joined_at=float(joined) if isinstance(joined, (int, float)) else 0.0)


@dataclasses.dataclass(frozen=True)
class RouterSettings:
    """How an alias's router is started (from the profile; see docs/router.md)."""

    host: str = "127.0.0.1"          # address it binds and clients use
    policy: str = "cache_aware"      # vllm-router --policy
    placement: str = "local"         # local: where pbsvllm runs (the login node); see docs/router.md
    port: int = 0                    # 0: pick a free port on first start, then keep it
    python: str = ""                 # a Python with vllm-router ("": pbsvllm's own interpreter)
    health_check_interval_s: int = 10
    request_timeout_s: int = 1800    # one long generation must not be cut by the router

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(f"router policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if self.placement not in PLACEMENTS:
            raise ConfigError(f"router placement must be one of {', '.join(PLACEMENTS)}, got {self.placement!r}")
        if not re.match(r"^[A-Za-z0-9._:\-\[\]]+$", self.host):
            raise ConfigError(f"router host must be a host name or address, got {self.host!r}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"router port must be 0..65535, got {self.port}")


@dataclasses.dataclass(frozen=True)
class RouterState:
    """Everything pbsvllm records about one alias's router."""

    alias: str
    host: str = "127.0.0.1"
    port: int = 0
    policy: str = "cache_aware"
    model: str = ""                   # the served model name clients send
    api_key_var: str = "VLLM_API_KEY"  # the environment variable clients read the key from
    placeholder_port: int = 0         # the supervisor's 503 responder (0: not up yet)
    metrics_port: int = 0             # vllm-router's Prometheus /metrics (loopback; picked on first start)
    python: str = ""                  # the Python that runs vllm-router ("": the supervisor's)
    health_check_interval_s: int = 10
    request_timeout_s: int = 1800
    members: Tuple[Member, ...] = ()

    @property
    def url(self) -> str:
        """The alias's stable base URL (ends in ``/v1``)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def admin_url(self) -> str:
        """Where pbsvllm talks to the router (same address as clients)."""
        return self.url[: -len("/v1")]

    @property
    def placeholder_url(self) -> str:
        return f"http://127.0.0.1:{self.placeholder_port}" if self.placeholder_port else ""

    def active(self) -> List[Member]:
        return [m for m in self.members if m.state is MemberState.ACTIVE]

    def find(self, url: str) -> Optional[Member]:
        key = worker_url(url)
        return next((m for m in self.members if m.worker_url == key), None)

    def to_dict(self) -> Dict[str, object]:
        d = dataclasses.asdict(self)
        d["members"] = [m.to_dict() for m in self.members]
        d["version"] = STATE_VERSION
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RouterState:
        alias = data.get("alias")
        if not isinstance(alias, str):
            raise ValueError("router state without an alias")
        raw_members = data.get("members") or []
        if not isinstance(raw_members, list):
            raise ValueError("router state: members is not a list")

        def num(key: str, default: int) -> int:
            v = data.get(key, default)
            return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default

        def text(key: str, default: str) -> str:
            v = data.get(key, default)
            return v if isinstance(v, str) else default

        return cls(
            alias=alias, host=text("host", "127.0.0.1"), port=num("port", 0), policy=text("policy", "cache_aware"),
            model=text("model", ""), api_key_var=text("api_key_var", "VLLM_API_KEY"),
            placeholder_port=num("placeholder_port", 0), metrics_port=num("metrics_port", 0),
            python=text("python", ""),
            health_check_interval_s=num("health_check_interval_s", 10),
            request_timeout_s=num("request_timeout_s", 1800),
            members=tuple(Member.from_dict(m) for m in raw_members if isinstance(m, dict)),
        )


def check_alias(alias: str) -> str:
    """An alias usable as a folder name and in URLs; else ConfigError."""
    if not isinstance(alias, str) or not _ALIAS_RE.match(alias):
        raise ConfigError(f"alias {alias!r} must be 1-128 characters of letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    return alias


def check_server_url(url: str) -> str:
    """A server base URL as pbsvllm records them: ``http(s)://host:port[/v1]``."""
    if not isinstance(url, str) or not _URL_RE.match(url.strip()):
        raise ConfigError(f"server URL {url!r} is not of the form http://HOST:PORT/v1")
    return url.strip().rstrip("/")


def worker_url(url: str) -> str:
    """``http://h:p`` from ``http://h:p/v1`` or ``http://h:p/`` (what vllm-router routes to)."""
    return re.sub(r"/v\d+$", "", url.strip().rstrip("/"))


def with_member(state: RouterState, member: Member) -> RouterState:
    """``state`` with ``member`` added or replacing the one at the same URL."""
    rest = tuple(m for m in state.members if m.worker_url != member.worker_url)
    return dataclasses.replace(state, members=rest + (member,))


def without_member(state: RouterState, url: str) -> RouterState:
    key = worker_url(url)
    return dataclasses.replace(state, members=tuple(m for m in state.members if m.worker_url != key))


def set_member_state(state: RouterState, url: str, new: MemberState) -> RouterState:
    key = worker_url(url)
    return dataclasses.replace(state, members=tuple(
        dataclasses.replace(m, state=new) if m.worker_url == key else m for m in state.members))


def desired_workers(state: RouterState) -> List[str]:
    """The router's worker URLs for this state: active members, else the placeholder."""
    active = [m.worker_url for m in state.active()]
    if active:
        return active
    return [state.placeholder_url] if state.placeholder_url else []


def reconcile_steps(current: Sequence[str], desired: Sequence[str]) -> Tuple[List[str], List[str]]:
    """(to add, to remove) to turn the router's ``current`` workers into ``desired``.

    Adds come before removes when applied (see :func:`pbsvllm.router.apply`),
    so the router is never left without a worker while one is wanted: the
    placeholder leaves only after the first real server joined, and the last
    real server leaves only after the placeholder is back (its in-flight
    requests finish; vllm-router does not cut them on removal).
    """
    cur = {worker_url(u) for u in current}
    want = [worker_url(u) for u in desired]
    adds = [u for u in want if u not in cur]
    removes = sorted(u for u in cur if u not in set(want))
    return adds, removes


def no_server_message(alias: str) -> str:
    """The 503 body's message at an alias's URL when it has no server."""
    return (f"pbsvllm: alias {alias!r} has no ready server behind its router right now "
            f"(nothing was sent anywhere else); start one with `pbsvllm submit MODEL --alias {alias}` "
            f"or `pbsvllm scale {alias} 1`, and see `pbsvllm status`")
