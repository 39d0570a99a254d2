"""Transports: where scheduler commands run and files are written.

``get_transport(None)`` is this machine; ``get_transport("me@polaris")`` is
SSH. Within one process the same host (and options) gets the same transport
back, so one CLI invocation opens one SSH connection however many calls it
makes. ``close()`` (or :func:`close_all`) ends it.
"""

from __future__ import annotations

import atexit
from typing import Any, Dict, Optional, Tuple

from pbsvllm.transport.base import Transport
from pbsvllm.transport.local import LocalTransport

__all__ = ["Transport", "LocalTransport", "get_transport", "close_all", "is_local_host", "configure"]

_LOCAL_NAMES = ("", "local", "localhost")
_cache: Dict[Tuple[str, Tuple[Tuple[str, Any], ...]], Transport] = {}
_defaults: Dict[str, Any] = {}


def configure(**defaults: Any) -> None:
    """SSH options every later :func:`get_transport` call gets unless it
    names its own (``Settings.transport_options()``: the API sets them once,
    so the environment is read only in :mod:`pbsvllm.config`)."""
    _defaults.clear()
    _defaults.update(defaults)


def is_local_host(host: Optional[str]) -> bool:
    return host is None or host.strip().lower() in _LOCAL_NAMES


def get_transport(host: Optional[str] = None, *, fresh: bool = False, **opts: Any) -> Transport:
    """The transport for ``host`` (None/"local"/"localhost": this machine).

    SSH options (``port``, ``user``, ``identity_file``, ``ssh_config``,
    ``known_hosts``, ``accept_unknown_host``, ``keepalive``, ...) are passed
    to :class:`pbsvllm.transport.ssh.SSHTransport`. ``fresh=True`` bypasses
    the per-process cache. Options not given come from :func:`configure`
    (``ssh_config``: another file than ``~/.ssh/config``;
    ``accept_unknown_host``: record an unknown host key instead of refusing
    it, like ``StrictHostKeyChecking=accept-new``).
    """
    if is_local_host(host):
        return LocalTransport()
    opts = {**_defaults, **opts}
    key = (str(host), tuple(sorted(opts.items())))
    if not fresh:
        cached = _cache.get(key)
        if cached is not None and not getattr(cached, "_closed", False):
            return cached
    tr: Transport
    if str(host).startswith("openssh://"):  # the system ssh over a shared master (profile ssh_client = "openssh")
        from pbsvllm.transport.openssh import OpenSSHTransport

        tr = OpenSSHTransport(str(host), **opts)
    else:
        from pbsvllm.transport.ssh import SSHTransport

        tr = SSHTransport(str(host), **opts)
    if not fresh:
        _cache[key] = tr
    return tr


def close_all() -> None:
    """Close every cached transport (called at interpreter exit)."""
    while _cache:
        _, tr = _cache.popitem()
        try:
            tr.close()
        except Exception:
            pass


atexit.register(close_all)
