"""Run commands and move files on another host over SSH (paramiko).

paramiko is imported only inside this class's methods, so nothing pays for
it unless a remote host is used. One connection serves every call of one
CLI invocation (see :func:`pbsvllm.transport.get_transport`); a dropped
connection is re-opened a bounded number of times.

Host keys are checked against known_hosts; an unknown host is refused
unless the caller opts in with ``accept_unknown_host=True`` (then the key
is added to known_hosts, like ``StrictHostKeyChecking=accept-new``).
"""

from __future__ import annotations

import getpass
import os
import posixpath
import select
import shlex
import time
import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pbsvllm.errors import TransportError
from pbsvllm.transport.base import RunResult, Transport


def parse_host_spec(spec: str) -> Tuple[Optional[str], str, Optional[int]]:
    """``[user@]host[:port]`` -> (user, host, port)."""
    user: Optional[str] = None
    port: Optional[int] = None
    rest = spec.strip()
    if rest.startswith("ssh://"):
        rest = rest[len("ssh://"):]
    if "@" in rest:
        user, rest = rest.rsplit("@", 1)
    if rest.startswith("["):  # [ipv6]:port
        end = rest.find("]")
        host, tail = rest[1:end], rest[end + 1:]
        if tail.startswith(":"):
            port = _port(tail[1:], spec)
    elif rest.count(":") == 1:
        host, p = rest.split(":")
        port = _port(p, spec)
    else:
        host = rest
    if not host:
        raise TransportError(f"bad SSH host {spec!r}: expected [user@]host[:port]")
    return user or None, host, port


def _port(text: str, spec: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise TransportError(f"bad SSH port in {spec!r}: expected [user@]host[:port]")
    return port


class SSHTransport(Transport):
    """A host reached over SSH. Commands are quoted with ``shlex.join``."""

    is_local = False

    def __init__(
        self,
        host: str,
        *,
        user: Optional[str] = None,
        port: Optional[int] = None,
        identity_file: Optional[str] = None,
        ssh_config: Optional[str] = "~/.ssh/config",
        known_hosts: Optional[str] = None,
        accept_unknown_host: bool = False,
        connect_timeout: float = 15.0,
        keepalive: int = 30,
        reconnect_attempts: int = 2,
        proxy_jump: Optional[str] = None,
    ) -> None:
        super().__init__()
        spec_user, alias, spec_port = parse_host_spec(host)
        self.spec = host
        self._alias = alias
        self._ssh_config = os.path.expanduser(ssh_config) if ssh_config else None
        opts = self._lookup_config(alias)
        self.hostname = opts.get("hostname", alias)
        self.user = user or spec_user or opts.get("user") or getpass.getuser()
        self.port = port or spec_port or int(opts.get("port", 22))
        files: List[str] = []
        if identity_file:
            files.append(identity_file)
        files += list(opts.get("identityfile", []) or [])
        self.identity_files = [os.path.expanduser(f) for f in files]
        self.proxy_jump = proxy_jump if proxy_jump is not None else opts.get("proxyjump")
        if self.proxy_jump and self.proxy_jump.lower() == "none":
            self.proxy_jump = None
        kh = known_hosts or opts.get("userknownhostsfile")
        if isinstance(kh, list):
            kh = kh[0] if kh else None
        self.known_hosts = os.path.expanduser(kh.split()[0]) if kh else None
        self.accept_unknown_host = accept_unknown_host
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.reconnect_attempts = reconnect_attempts
        self.host = f"{self.user}@{self.hostname}" + (f":{self.port}" if self.port != 22 else "")
        self._client: Any = None
        self._sftp: Any = None
        self._jump: Optional[SSHTransport] = None
        self._home: Optional[str] = None
        self._closed = False

    # -- connection -----------------------------------------------------
    def _lookup_config(self, alias: str) -> Dict[str, Any]:
        if not self._ssh_config or not os.path.exists(self._ssh_config):
            return {}
        import paramiko

        try:
            cfg = paramiko.SSHConfig.from_path(self._ssh_config)
        except Exception as exc:  # paramiko raises several types for bad configs
            raise TransportError(f"cannot read SSH config {self._ssh_config}: {exc}") from None
        return dict(cfg.lookup(alias))

    def _connect(self) -> Any:
        import paramiko

        if self._closed:
            raise TransportError(f"the SSH transport to {self.host} was already closed")
        client = paramiko.SSHClient()
        if os.path.exists("/etc/ssh/ssh_known_hosts"):
            try:
                client.load_system_host_keys("/etc/ssh/ssh_known_hosts")  # the site's GlobalKnownHostsFile
            except (OSError, paramiko.SSHException):
                pass
        if self.known_hosts:
            if not os.path.exists(self.known_hosts) and self.accept_unknown_host:
                os.makedirs(os.path.dirname(self.known_hosts) or ".", mode=0o700, exist_ok=True)
                with open(self.known_hosts, "a"):
                    pass
                os.chmod(self.known_hosts, 0o600)
            if os.path.exists(self.known_hosts):
                client.load_host_keys(self.known_hosts)
        else:
            client.load_system_host_keys()
            default = os.path.expanduser("~/.ssh/known_hosts")
            if self.accept_unknown_host:
                os.makedirs(os.path.dirname(default), mode=0o700, exist_ok=True)
                if not os.path.exists(default):
                    with open(default, "a"):
                        pass
                    os.chmod(default, 0o600)
                client.load_host_keys(default)
        policy = paramiko.AutoAddPolicy() if self.accept_unknown_host else paramiko.RejectPolicy()
        client.set_missing_host_key_policy(policy)
        sock = None
        if self.proxy_jump:
            sock = self._open_jump_channel()
        kwargs: Dict[str, Any] = dict(
            hostname=self.hostname,
            port=self.port,
            username=self.user,
            timeout=self.connect_timeout,
            banner_timeout=self.connect_timeout,
            auth_timeout=self.connect_timeout,
            sock=sock,
            allow_agent=True,
            look_for_keys=not self.identity_files,
        )
        if self.identity_files:
            kwargs["key_filename"] = [f for f in self.identity_files if os.path.exists(f)] or self.identity_files
        where = f"{self.host}" + (f" (via {self.proxy_jump})" if self.proxy_jump else "")
        try:
            client.connect(**kwargs)
        except paramiko.BadHostKeyException:
            client.close()
            raise TransportError(
                f"the host key of {where} does not match known_hosts"
                f" ({self.known_hosts or '~/.ssh/known_hosts'}): possible man-in-the-middle",
                hint=f"if the host was re-installed, remove its old key with `ssh-keygen -R {self.hostname}`",
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise TransportError(
                f"SSH authentication to {where} failed: {exc}",
                hint="check User and IdentityFile in ~/.ssh/config, or load your key into ssh-agent",
            ) from None
        except paramiko.SSHException as exc:
            client.close()
            text = str(exc)
            if "not found in known_hosts" in text:
                raise TransportError(
                    f"refusing to connect to {where}: its host key is not in known_hosts"
                    f" ({self.known_hosts or '~/.ssh/known_hosts'})",
                    hint="connect once with `ssh` to check and record the key, or opt in with"
                    " PBSVLLM_SSH_ACCEPT_NEW=1",
                ) from None
            raise TransportError(f"SSH connection to {where} failed: {text}",
                                 hint="check the host and that sshd runs") from None
        except OSError as exc:
            client.close()
            raise TransportError(
                f"cannot reach {where}: {exc.strerror or exc}",
                hint="check the host name, the port and your network",
            ) from None
        tr = client.get_transport()
        if tr is not None and self.keepalive:
            tr.set_keepalive(self.keepalive)
        self.connections += 1
        return client

    def _open_jump_channel(self) -> Any:
        hops = [h.strip() for h in str(self.proxy_jump).split(",") if h.strip()]
        last, before = hops[-1], ",".join(hops[:-1]) or "none"
        if self._jump is None:
            self._jump = SSHTransport(
                last,
                ssh_config=self._ssh_config,
                known_hosts=self.known_hosts,
                accept_unknown_host=self.accept_unknown_host,
                connect_timeout=self.connect_timeout,
                keepalive=self.keepalive,
                reconnect_attempts=self.reconnect_attempts,
                proxy_jump=before,
            )
        jump_client = self._jump._ensure()
        try:
            return jump_client.get_transport().open_channel(
                "direct-tcpip", (self.hostname, self.port), ("127.0.0.1", 0), timeout=self.connect_timeout
            )
        except Exception as exc:
            raise TransportError(
                f"ProxyJump {last} could not open a channel to {self.hostname}:{self.port}: {exc}") from None

    def _ensure(self) -> Any:
        client = self._client
        if client is not None:
            tr = client.get_transport()
            if tr is not None and tr.is_active():
                return client
            self._drop()
        self._client = self._connect()
        return self._client

    def _drop(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:
                pass
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
        self._sftp = None
        self._client = None

    def _with_retry(self, what: str, fn: Any) -> Any:
        """Run ``fn(client)``; on a dropped connection re-connect and retry
        (bounded, with backoff). Only for operations safe to repeat."""
        import paramiko

        last: Optional[BaseException] = None
        for attempt in range(self.reconnect_attempts + 1):
            client = self._ensure()
            try:
                return fn(client)
            except (paramiko.SSHException, EOFError, ConnectionError, OSError) as exc:
                if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
                    raise
                if isinstance(exc, OSError) and not isinstance(exc, ConnectionError) \
                        and exc.errno not in (None, 32, 104, 110):
                    raise
                last = exc
                self._drop()
                if attempt < self.reconnect_attempts:
                    time.sleep(min(0.2 * (2 ** attempt), 2.0))
        err = TransportError(
            f"the SSH connection to {self.host} dropped during {what} and did not come back"
            f" after {self.reconnect_attempts} reconnects: {last}",
            hint="check the network and that sshd on the host accepts connections",
        )
        err.transient = True  # type: ignore[attr-defined]
        raise err

    # -- commands -------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        timeout: float,
        input: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
    ) -> RunResult:
        self.calls += 1
        args = [str(a) for a in argv]
        if env:
            args = ["env"] + [f"{k}={v}" for k, v in env.items()] + args
        command = shlex.join(args)

        def start(client: Any) -> Any:
            chan = client.get_transport().open_session(timeout=self.connect_timeout)
            chan.exec_command(command)
            return chan

        chan = self._with_retry(f"`{command}`", start)
        try:
            return self._collect(chan, command, timeout, input)
        finally:
            chan.close()

    def _collect(self, chan: Any, command: str, timeout: float, input: Optional[str]) -> RunResult:
        out: List[bytes] = []
        err: List[bytes] = []
        try:
            if input is not None:
                chan.sendall(input.encode("utf-8"))
            chan.shutdown_write()
        except (OSError, EOFError) as exc:
            self._dropped_mid_command(command, exc)
        deadline = time.monotonic() + timeout
        while True:
            drained = False
            while chan.recv_ready():
                out.append(chan.recv(65536))
                drained = True
            while chan.recv_stderr_ready():
                err.append(chan.recv_stderr(65536))
                drained = True
            if chan.exit_status_ready() and (chan.eof_received or chan.closed) and not drained:
                if not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
            if chan.closed and not chan.exit_status_ready():
                self._dropped_mid_command(command, None)
            tr = self._client.get_transport() if self._client is not None else None
            if tr is None or not tr.is_active():
                if not chan.exit_status_ready():
                    self._dropped_mid_command(command, None)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransportError(
                    f"`{command}` on {self.host} did not finish within {timeout:g} s",
                    hint="the scheduler may be overloaded; try again or raise the timeout",
                )
            if not drained:
                select.select([chan], [], [], min(0.2, remaining))
        rc = chan.recv_exit_status()
        stdout, stderr = b"".join(out).decode("utf-8", "replace"), b"".join(err).decode("utf-8", "replace")
        if rc == -1:  # paramiko: the server sent no exit status
            tr = self._client.get_transport() if self._client is not None else None
            settle = time.monotonic() + 1.0  # let paramiko's reader notice a closed socket
            while tr is not None and tr.is_active() and time.monotonic() < settle:
                time.sleep(0.05)
            if tr is None or not tr.is_active():
                self._dropped_mid_command(command, None)
            # the connection is fine: the remote command died of a signal (like ssh, report 255)
            return 255, stdout, stderr + f"\n{command}: ended by a signal on {self.host}"
        return rc, stdout, stderr

    def _dropped_mid_command(self, command: str, exc: Optional[BaseException]) -> None:
        self._drop()
        e = TransportError(
            f"the SSH connection to {self.host} dropped while `{command}` was running;"
            " it may or may not have completed",
            hint="re-run the command; read-only queries are retried automatically",
        )
        e.transient = True  # type: ignore[attr-defined]
        raise e

    # -- files ----------------------------------------------------------
    def _sftp_client(self, client: Any) -> Any:
        if self._sftp is None or self._client is not client:
            self._sftp = client.open_sftp()
        return self._sftp

    def expanduser(self, path: str) -> str:
        if path == "~" or path.startswith("~/"):
            if self._home is None:
                self._home = self._with_retry("finding the home directory",
                                              lambda c: self._sftp_client(c).normalize("."))
            return self._home + path[1:]
        return path

    def read_text(self, path: str) -> str:
        p = self.expanduser(path)

        def read(client: Any) -> str:
            with self._sftp_client(client).open(p, "r") as fh:
                return fh.read().decode("utf-8", "replace")

        try:
            return self._with_retry(f"reading {p}", read)
        except (OSError, FileNotFoundError, PermissionError) as exc:
            if isinstance(exc, TransportError):
                raise
            raise TransportError(f"cannot read {p} on {self.host}: {getattr(exc, 'strerror', None) or exc}") from None

    def exists(self, path: str) -> bool:
        p = self.expanduser(path)

        def stat(client: Any) -> bool:
            try:
                self._sftp_client(client).stat(p)
                return True
            except FileNotFoundError:
                return False

        return bool(self._with_retry(f"checking {p}", stat))

    def size(self, path: str) -> Optional[int]:
        p = self.expanduser(path)

        def stat(client: Any) -> Optional[int]:
            try:
                return int(self._sftp_client(client).stat(p).st_size or 0)
            except FileNotFoundError:
                return None

        try:
            got: Optional[int] = self._with_retry(f"checking {p}", stat)
            return got
        except (OSError, PermissionError) as exc:
            if isinstance(exc, TransportError):
                raise
            why = getattr(exc, "strerror", None) or exc
            raise TransportError(f"cannot look at {p} on {self.host}: {why}") from None

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError("offset and length must not be negative")
        p = self.expanduser(path)

        def read(client: Any) -> bytes:
            with self._sftp_client(client).open(p, "rb") as fh:
                n = min(length, max(0, int(fh.stat().st_size or 0) - offset))
                if n <= 0:
                    return b""
                # readv pipelines the requests: one round trip's latency, not one per 32 KiB
                return b"".join(fh.readv([(offset, n)]))

        try:
            data: bytes = self._with_retry(f"reading {p}", read)
            return data
        except (OSError, FileNotFoundError, PermissionError) as exc:
            if isinstance(exc, TransportError):
                raise
            raise TransportError(f"cannot read {p} on {self.host}: {getattr(exc, 'strerror', None) or exc}") from None

    def write_text(self, path: str, text: str, mode: int = 0o600) -> None:
        p = self.expanduser(path)
        folder = posixpath.dirname(p) or "."
        data = text.encode("utf-8")

        def write(client: Any) -> None:
            sftp = self._sftp_client(client)
            self._makedirs(sftp, folder)
            tmp = posixpath.join(folder, f".tmp-{posixpath.basename(p)}.{uuid.uuid4().hex[:8]}~")
            try:
                with sftp.open(tmp, "w") as fh:
                    sftp.chmod(tmp, mode)
                    fh.write(data)
                    fh.flush()
                sftp.posix_rename(tmp, p)
            except BaseException:
                try:
                    sftp.remove(tmp)
                except Exception:
                    pass
                raise

        try:
            self._with_retry(f"writing {p}", write)
        except (OSError, PermissionError, FileNotFoundError) as exc:
            if isinstance(exc, TransportError):
                raise
            raise TransportError(f"cannot write {p} on {self.host}: {getattr(exc, 'strerror', None) or exc}") from None

    @staticmethod
    def _makedirs(sftp: Any, folder: str) -> None:
        parts: List[str] = []
        cur = folder
        while cur not in ("", "/", "."):
            try:
                sftp.stat(cur)
                break
            except FileNotFoundError:
                parts.append(cur)
                cur = posixpath.dirname(cur)
        for d in reversed(parts):
            sftp.mkdir(d, 0o700)

    def close(self) -> None:
        self._drop()
        if self._jump is not None:
            self._jump.close()
            self._jump = None
        self._closed = True
