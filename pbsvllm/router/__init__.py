"""One stable URL per alias: a supervised ``vllm-router`` in front of the alias's servers.

The interface other parts of pbsvllm use (``keepalive``, ``swap-endpoint``,
``scale``, the watcher, ``status``)::

    ensure_running(alias, ...) -> RouterState   # start (or find) the alias's router
    url(alias) -> str                           # its base URL, ending in /v1
    members(alias) -> list[Member]
    add_member(alias, server_url, job_id=...)   # only after the readiness check
    drain_member(alias, server_url, timeout_s)  # out of the router, then wait for its requests
    remove_member(alias, server_url)
    status(alias) -> RouterStatus               # supervisor, router, members and their health
    stop(alias)

Every function takes ``home=`` (default ``$PBSVLLM_HOME``). The router is
optional: ``pip install 'pbsvllm[router]'`` installs ``vllm-router``;
:func:`available` says whether it is there. See docs/router.md.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

from pbsvllm.errors import ConfigError, PbsvllmError, ServerError
from pbsvllm.router.admin import RouterAdmin, RouterAdminError
from pbsvllm.router.model import (
    Member,
    MemberState,
    RouterSettings,
    RouterState,
    check_alias,
    check_server_url,
    desired_workers,
    reconcile_steps,
    set_member_state,
    with_member,
    without_member,
    worker_url,
)
from pbsvllm.router.store import RouterStore, list_aliases

if TYPE_CHECKING:
    from pbsvllm.config import Profile

__all__ = [
    "Member", "MemberState", "RouterSettings", "RouterState", "RouterStatus", "MemberHealth",
    "RouterUnavailableError", "NoRouterError",
    "available", "install_hint", "settings_for", "enabled", "ensure_running", "url", "members", "add_member",
    "drain_member",
    "remove_member", "status", "stop", "aliases", "apply_state",
]

INSTALL_HINT = "pip install 'pbsvllm[router]' installs vllm-router, vLLM's own router"
START_TIMEOUT_S = 30.0


class RouterUnavailableError(ConfigError):
    """``vllm-router`` is not installed in pbsvllm's environment."""


class NoRouterError(PbsvllmError):
    """The alias has no router (never started with ``pbsvllm router start``)."""

    exit_code = 7


@dataclasses.dataclass(frozen=True)
class MemberHealth:
    member: Member
    in_router: bool          # the running router lists it as a worker
    health: str              # "ok", "unreachable: ...", "HTTP 500"


@dataclasses.dataclass(frozen=True)
class RouterStatus:
    alias: str
    url: str
    supervisor_pid: Optional[int]
    router_up: bool
    workers: Tuple[str, ...]           # what the running router routes to right now
    members: Tuple[MemberHealth, ...]
    serving: bool                      # at least one active member is in the router
    log_path: str

    def to_dict(self) -> Dict[str, object]:
        return {
            "alias": self.alias, "url": self.url, "supervisor_pid": self.supervisor_pid,
            "router_up": self.router_up, "workers": list(self.workers), "serving": self.serving,
            "log_path": self.log_path,
            "members": [dict(m.member.to_dict(), in_router=m.in_router, health=m.health) for m in self.members],
        }


def _home(home: Optional[str]) -> str:
    if home:
        return os.path.abspath(os.path.expanduser(home))
    from pbsvllm.config import resolve  # the one default of PBSVLLM_HOME (flags > env > config file)

    return os.path.abspath(resolve({}).home)


_AVAILABLE: Dict[str, bool] = {}


def available(python: str = "") -> bool:
    """Whether ``vllm-router`` is importable: by this Python (the optional extra
    ``pbsvllm[router]``), or by ``python`` (the profile's ``router_python``)."""
    if not python:
        return importlib.util.find_spec("vllm_router") is not None
    if python not in _AVAILABLE:
        try:
            rc = subprocess.run([python, "-c", "import vllm_router"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60).returncode
        except (OSError, subprocess.SubprocessError):
            rc = 1
        _AVAILABLE[python] = rc == 0
    return _AVAILABLE[python]


def install_hint() -> str:
    return INSTALL_HINT


def settings_for(profile: Profile) -> RouterSettings:
    """The router settings of a site profile (``router_host``, ``router_policy``, ``router_placement``)."""
    return RouterSettings(host=profile.router_host, policy=profile.router_policy, placement=profile.router_placement,
                          python=os.path.expanduser(profile.router_python) if profile.router_python else "")


def enabled(profile: Profile) -> bool:
    """Whether aliases get a router under this profile: ``router = "auto"`` (the default: when
    ``pbsvllm[router]`` is installed in pbsvllm's own environment), ``"on"`` (vllm-router must be
    importable, by ``router_python`` when set) or ``"off"``."""
    if profile.router == "off":
        return False
    if profile.router == "auto":  # the optional extra, in pbsvllm's own environment
        return available()
    python = settings_for(profile).python
    if not available(python):
        raise RouterUnavailableError(f"profile '{profile.name}' sets router = \"on\" but vllm-router is not installed"
                                     + (f" for {python}" if python else ""),
                                     hint=INSTALL_HINT + "; or set router = \"off\"")
    return True


def aliases(home: Optional[str] = None) -> List[str]:
    """Aliases that have a router (started at least once)."""
    return list_aliases(_home(home))


def _state(alias: str, home: Optional[str]) -> Tuple[RouterStore, RouterState]:
    store = RouterStore(_home(home), alias)
    st = store.read()
    if st is None:
        raise NoRouterError(f"alias {alias!r} has no router",
                            hint=f"start one with `pbsvllm router start {alias}`")
    return store, st


def _free_port(host: str) -> int:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host.strip("[]"), 0))
        return int(s.getsockname()[1])


def apply_state(admin: RouterAdmin, state: RouterState) -> Optional[str]:
    """Make the running router's workers match ``state``: adds first, then removes.

    Returns a one-line note of the changes (None: nothing to do). Raises
    OSError (RouterAdminError included) when the router does not answer or
    refuses a worker.
    """
    current = admin.list_workers()
    adds, removes = reconcile_steps(current, desired_workers(state))
    for u in adds:
        admin.add_worker(u)
    for u in removes:
        admin.remove_worker(u)
    if not adds and not removes:
        return None
    return f"workers of {state.alias}: +{adds} -{removes}"


def _apply_now(store: RouterStore, state: RouterState) -> bool:
    """Apply ``state`` to the router if it runs (caller holds the lock); False when it is down."""
    admin = RouterAdmin(state.admin_url, timeout=15.0)
    if not admin.alive():
        return False
    apply_state(admin, state)
    return True


def ensure_running(alias: str, settings: Optional[RouterSettings] = None, *, home: Optional[str] = None,
                   model: str = "", api_key_var: str = "", timeout_s: float = START_TIMEOUT_S) -> RouterState:
    """Start the alias's router supervisor unless it runs; wait until the router answers.

    ``settings`` default: the configured profile's. The first start picks
    the port (``settings.port`` or a free one) and
    records it, with the address, in ``$PBSVLLM_HOME/routers/<alias>/state.json``;
    later starts reuse them, so the URL never changes. ``model`` and
    ``api_key_var`` are recorded for ``pbsvllm url`` and the registries.
    """
    check_alias(alias)
    if settings is None:  # the configured profile's (router_host, router_policy, router_python)
        from pbsvllm.config import resolve

        settings = settings_for(resolve({}).profile)
    cfg = settings
    if not available(cfg.python):
        raise RouterUnavailableError(f"vllm-router is not installed for {cfg.python or sys.executable}",
                                     hint=INSTALL_HINT + " (or set the profile's router_python)")
    if cfg.placement != "local":
        raise ConfigError(f"router placement {cfg.placement!r} is not supported by this version; "
                          "use placement = \"local\" (see docs/router.md)")
    store = RouterStore(_home(home), alias)

    def change(old: Optional[RouterState]) -> RouterState:
        if old is None:
            old = RouterState(alias=alias, host=cfg.host, policy=cfg.policy,
                              health_check_interval_s=cfg.health_check_interval_s,
                              request_timeout_s=cfg.request_timeout_s)
        new = old
        if new.port == 0:
            new = dataclasses.replace(new, port=cfg.port or _free_port(cfg.host))
        if new.metrics_port == 0:  # vllm-router's default (29000) would clash between two routers
            new = dataclasses.replace(new, metrics_port=_free_port("127.0.0.1"))
        if model:
            new = dataclasses.replace(new, model=model)
        if api_key_var:
            new = dataclasses.replace(new, api_key_var=api_key_var)
        if cfg.python:
            new = dataclasses.replace(new, python=cfg.python)
        return new

    state = store.update(change)
    admin = RouterAdmin(state.admin_url)
    if store.supervisor_alive() is not None and admin.alive():
        return state
    if store.supervisor_alive() is None:
        with open(store.log_path, "ab") as logf:
            os.chmod(store.log_path, 0o600)
            subprocess.Popen(
                [sys.executable, "-m", "pbsvllm.router.supervisor", "--home", store.home, "--alias", alias],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                close_fds=True, cwd=store.dir,
            )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cur = store.read() or state
        if cur.placeholder_port and admin.alive():
            try:
                if set(admin.list_workers()) >= set(desired_workers(cur)):
                    return cur
            except OSError:
                pass
        time.sleep(0.1)
    raise ServerError(f"the router of {alias!r} did not come up on {state.host}:{state.port} in {timeout_s:.0f} s",
                      hint=f"see {store.log_path}")


def stop(alias: str, *, home: Optional[str] = None, timeout_s: float = 15.0) -> bool:
    """Stop the alias's router (its state, members included, is kept). False if none ran."""
    import signal

    store, _st = _state(alias, home)
    pid = store.supervisor_alive()
    if pid is None or pid <= 0:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if store.supervisor_alive() is None:
            return True
        time.sleep(0.1)
    raise ServerError(f"the router supervisor of {alias!r} (pid {pid}) did not stop in {timeout_s:.0f} s",
                      hint=f"see {store.log_path}")


def url(alias: str, *, home: Optional[str] = None) -> str:
    """The alias's stable base URL (``http://host:port/v1``)."""
    return _state(alias, home)[1].url


def members(alias: str, *, home: Optional[str] = None) -> List[Member]:
    return list(_state(alias, home)[1].members)


def _change(alias: str, home: Optional[str], change: Callable[[RouterState], Optional[RouterState]],
            *, refused_undo: bool = False) -> Optional[RouterState]:
    """Under the state lock: ``change`` the state (None: nothing to do), write it, apply it.

    A router that is down gets the change from its supervisor when it is back.
    ``refused_undo``: when the router refuses the change, restore the old state and raise.
    """
    store, _st = _state(alias, home)
    with store.lock():
        cur = store.read()
        if cur is None:
            raise NoRouterError(f"alias {alias!r} has no router")
        new = change(cur)
        if new is None:
            return None
        store.write(new)
        try:
            _apply_now(store, new)
        except RouterAdminError:
            if not refused_undo:
                raise
            store.write(cur)
            raise
        except OSError:
            pass  # the router stopped answering: its supervisor applies the state when it is back
    return new


def add_member(alias: str, server_url: str, *, job_id: str = "", home: Optional[str] = None,
               clock: Callable[[], float] = time.time) -> Member:
    """Put a server behind the alias's router. Call only after the readiness check passed.

    Recorded first, then applied to the running router (which checks the
    server's ``/health`` before routing to it); a router that is down gets
    it when its supervisor restarts it. A server the router refuses is not
    kept (ServerError).
    """
    base = check_server_url(server_url)
    member = Member(url=base, state=MemberState.ACTIVE, job_id=job_id, joined_at=clock())
    try:
        _change(alias, home, lambda cur: with_member(cur, member), refused_undo=True)
    except RouterAdminError as exc:
        raise ServerError(f"{base} could not join the router of {alias!r}: {exc}") from None
    return member


def _drain_wait(url: str, timeout_s: float) -> Tuple[bool, str]:
    """Idle on two ``/metrics`` scrapes half a second apart (a request may be on its way)."""
    from pbsvllm.health import wait_for_drain

    deadline = time.monotonic() + timeout_s
    ok, how = wait_for_drain(url, timeout_s=timeout_s, poll_s=0.5)
    if not ok:
        return ok, how
    time.sleep(0.5)
    return wait_for_drain(url, timeout_s=max(0.0, deadline - time.monotonic()), poll_s=0.5)


def drain_member(alias: str, server_url: str, timeout_s: float = 120.0, *, home: Optional[str] = None,
                 wait: Callable[[str, float], Tuple[bool, str]] = _drain_wait) -> Tuple[bool, str]:
    """Take a server out of the router, then wait (at most ``timeout_s``) until it has no request left.

    New requests stop going to it at once; those already sent finish (the
    router does not cut them). Returns (drained, how). The member stays
    recorded as ``draining`` until :func:`remove_member`.
    """
    base = check_server_url(server_url)

    def change(cur: RouterState) -> Optional[RouterState]:
        return None if cur.find(base) is None else set_member_state(cur, base, MemberState.DRAINING)

    if _change(alias, home, change) is None:
        return True, f"{base} is not a member of {alias!r}"
    return wait(worker_url(base), timeout_s)


def remove_member(alias: str, server_url: str, *, home: Optional[str] = None) -> bool:
    """Forget a server and take it out of the router. False when it was not a member."""
    base = check_server_url(server_url)

    def change(cur: RouterState) -> Optional[RouterState]:
        return None if cur.find(base) is None else without_member(cur, base)

    return _change(alias, home, change) is not None


def _member_health(m: Member, timeout: float = 2.0) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(m.worker_url + "/health", timeout=timeout) as resp:
            return "ok" if resp.status == 200 else f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"unreachable: {reason}"


def status(alias: str, *, home: Optional[str] = None) -> RouterStatus:
    """The alias's router: supervisor, router, workers, members and their health."""
    store, st = _state(alias, home)
    admin = RouterAdmin(st.admin_url, timeout=3.0)
    workers: List[str] = []
    up = admin.alive()
    if up:
        try:
            workers = admin.list_workers()
        except (OSError, ValueError):
            up = False
    wset = {worker_url(w) for w in workers}
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        healths = list(pool.map(_member_health, st.members))
    mh = tuple(MemberHealth(m, m.worker_url in wset, h) for m, h in zip(st.members, healths))
    serving = any(m.in_router and m.member.state is MemberState.ACTIVE for m in mh)
    return RouterStatus(alias=alias, url=st.url, supervisor_pid=store.supervisor_alive(), router_up=up,
                        workers=tuple(workers), members=mh, serving=serving, log_path=store.log_path)
