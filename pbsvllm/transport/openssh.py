"""Run commands and move files on another host with the system ``ssh``.

For sites with multi-factor login (ALCF, most DOE centres), where a library
SSH client cannot log in non-interactively: the user opens one
authenticated OpenSSH *master* connection (``ssh -fN polaris``, typing the
passcode once) and every ``ssh`` after it rides that connection through its
control socket, with no new login. This transport runs
``ssh -o ControlPath=... HOST -- COMMAND`` over that master:

- it reuses the user's own master when ``~/.ssh/config`` sets a
  ``ControlPath`` for the host (``ssh -G`` tells, without connecting);
- otherwise it keeps its own (``~/.ssh/pbsvllm-%C``): the first command
  opens it with the user's keys (``ssh -M -f -N``), and later commands and
  later ``pbsvllm`` invocations reuse it until ``ControlPersist`` ends it;
  if it is gone, a command still runs over a connection of its own;
- ``BatchMode=yes``: it never prompts. Without a master and without a key
  that logs in alone, it fails at once with one line saying to open the
  master first.

One command is one ``ssh`` process and one channel on the shared
connection: the same one-connection, one-round-trip shape as the paramiko
transport (``benchmarks/bench_ssh.py`` measures both). Files are read with
``cat``, written atomically with one ``sh -c`` (temporary file in the same
folder, ``chmod``, ``mv``), and tested with ``test -e``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from typing import Dict, List, Optional, Sequence, Tuple

from pbsvllm.errors import TransportError
from pbsvllm.transport.base import RunResult, Transport

#: ssh's own failures (exit status 255 with one of these on stderr), as opposed
#: to a remote command that itself exited 255.
_SSH_FAILURE = re.compile(
    r"^(ssh: |kex_exchange_identification|Connection (closed|reset|timed out)|Permission denied|"
    r"Host key verification failed|No .* host key is known|.*Connection refused|Could not resolve|"
    r"Control socket connect|mux_client_|ControlSocket .* already exists|channel \d+: open failed)",
    re.M)
#: What the transport writes: ``sh -c SCRIPT sh FOLDER TMP PATH MODE`` with the text on stdin.
_WRITE_SCRIPT = ('umask 077; mkdir -p -- "$1" && cat > "$2" && chmod "$4" -- "$2" && mv -f -- "$2" "$3" '
                 '|| { rc=$?; rm -f -- "$2"; exit $rc; }')


class OpenSSHTransport(Transport):
    """A host reached with the system ``ssh`` over a shared master connection."""

    is_local = False

    def __init__(
        self,
        host: str,
        *,
        ssh_config: Optional[str] = None,
        identity_file: Optional[str] = None,
        control_path: Optional[str] = None,
        control_persist: str = "10m",
        connect_timeout: float = 15.0,
        ssh_binary: str = "ssh",
        known_hosts: Optional[str] = None,
        accept_unknown_host: bool = False,
        **_ignored: object,
    ) -> None:
        super().__init__()
        spec = host.strip()
        if spec.startswith("openssh://"):
            spec = spec[len("openssh://"):]
        if not spec or spec.startswith("-") or any(c in spec for c in " \t\n'\"\\"):
            raise TransportError(f"bad SSH host {host!r}: expected [user@]host[:port] or an ssh_config Host alias")
        self.spec = spec
        self.destination, self._port = _destination(spec)
        self.host = spec
        self._binary = ssh_binary
        self._config = os.path.expanduser(ssh_config) if ssh_config else None
        self._identity = os.path.expanduser(identity_file) if identity_file else None
        self._known_hosts = os.path.expanduser(known_hosts) if known_hosts else None
        self._accept_new = accept_unknown_host
        self._control_path = control_path
        self._persist = control_persist
        self._connect_timeout = connect_timeout
        self._effective: Optional[Dict[str, str]] = None
        self._master_checked = False
        self._home: Optional[str] = None
        self._closed = False

    # -- the ssh command line ---------------------------------------------
    def _base(self) -> List[str]:
        exe = shutil.which(self._binary)
        if exe is None:
            raise TransportError(f"the OpenSSH client `{self._binary}` is not installed or not on PATH",
                                 hint="install openssh-client, or use ssh_client = \"paramiko\" in the profile")
        argv = [exe]
        if self._config:
            argv += ["-F", self._config]
        if self._port:
            argv += ["-p", str(self._port)]
        if self._identity:
            argv += ["-i", self._identity]
        if self._known_hosts:
            argv += ["-o", f"UserKnownHostsFile={self._known_hosts}"]
        return argv

    def effective_config(self) -> Dict[str, str]:
        """``ssh -G``: the options ssh would use for this host (no connection is made)."""
        if self._effective is None:
            r = subprocess.run(self._base() + ["-G", self.destination], capture_output=True, text=True, timeout=30,
                               stdin=subprocess.DEVNULL)
            if r.returncode != 0:
                raise TransportError(f"ssh cannot use the host {self.spec!r}: {r.stderr.strip() or r.returncode}")
            eff: Dict[str, str] = {}
            for line in r.stdout.splitlines():
                key, _, value = line.partition(" ")
                eff.setdefault(key.lower(), value)
            self._effective = eff
        return self._effective

    @property
    def control_path(self) -> str:
        """The user's ControlPath for this host if their config sets one, else pbsvllm's own."""
        if self._control_path:
            return self._control_path
        theirs = self.effective_config().get("controlpath", "none")
        if theirs and theirs.lower() != "none":
            return theirs
        folder = os.path.expanduser("~/.ssh")
        os.makedirs(folder, mode=0o700, exist_ok=True)
        return os.path.join(folder, "pbsvllm-%C")

    def _ssh(self, master: str = "no") -> List[str]:
        argv = self._base() + [
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={max(1, int(self._connect_timeout))}",
            "-o", f"ControlMaster={master}",
            "-o", f"ControlPath={self.control_path}",
            "-o", f"ControlPersist={self._persist}",
            "-o", "ServerAliveInterval=30",
            "-o", "LogLevel=ERROR",
        ]
        if self._accept_new:
            argv += ["-o", "StrictHostKeyChecking=accept-new"]
        return argv

    def master_running(self) -> bool:
        """True when a master connection for this host answers on its control socket."""
        r = subprocess.run(self._ssh() + ["-O", "check", self.destination], capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        return r.returncode == 0

    def start_master(self) -> None:
        """Open the shared connection: ``ssh -M -f -N`` goes to the background once logged in and
        stays for ControlPersist. Its output goes to a file, never to a pipe of ours: a pipe held
        by the background master would keep every later read waiting for its end."""
        import tempfile

        with tempfile.TemporaryFile(mode="w+") as errf:
            try:
                r = subprocess.run(self._ssh(master="yes") + ["-f", "-N", self.destination], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=errf, timeout=self._connect_timeout + 30)
            except subprocess.TimeoutExpired:
                raise TransportError(f"ssh to {self.spec} did not log in within {self._connect_timeout + 30:g} s",
                                     hint="check the network and that the host accepts SSH connections") from None
            errf.seek(0)
            stderr = errf.read()
        if r.returncode != 0:
            raise self._failure("ssh -fN (the shared master connection)", stderr or f"ssh exited {r.returncode}")
        self.connections += 1

    # -- commands -----------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        timeout: float,
        input: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
    ) -> RunResult:
        rc, out, err = self._run_bytes(argv, timeout, input, env)
        return rc, out.decode("utf-8", "replace"), err

    def _run_bytes(self, argv: Sequence[str], timeout: float, input: Optional[str] = None,
                   env: Optional[Dict[str, str]] = None) -> Tuple[int, bytes, str]:
        if self._closed:
            raise TransportError(f"the OpenSSH transport to {self.spec} was already closed")
        args = [str(a) for a in argv]
        if env:
            args = ["env"] + [f"{k}={v}" for k, v in env.items()] + args
        command = shlex.join(args)
        if not self._master_checked:  # one login per master: reuse a running one, else open it
            if not self.master_running():
                self.start_master()
            self._master_checked = True
        self.calls += 1
        try:
            r = subprocess.run(self._ssh() + [self.destination, "--", command], input=(input or "").encode("utf-8"),
                               capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TransportError(f"`{command}` on {self.spec} did not finish within {timeout:g} s",
                                 hint="the scheduler may be overloaded; try again or raise the timeout") from None
        stderr = r.stderr.decode("utf-8", "replace")
        if r.returncode == 255 and _SSH_FAILURE.search(stderr):
            raise self._failure(command, stderr)
        return r.returncode, r.stdout, stderr

    def _failure(self, command: str, stderr: str) -> TransportError:
        first = next((ln.strip() for ln in stderr.splitlines() if ln.strip()), "ssh failed")
        if "Permission denied" in stderr or "Host key verification failed" in stderr:
            hint = (f"open an authenticated master connection first: `ssh -fN {self.spec}` "
                    "(it asks for your password or passcode once; pbsvllm never prompts)")
            if "Host key verification failed" in stderr:
                hint = f"the host key of {self.spec} is unknown or changed: connect once with `ssh {self.spec}`"
            err = TransportError(f"ssh to {self.spec} could not log in: {first}", hint=hint)
        else:
            err = TransportError(f"ssh to {self.spec} failed running `{command}`: {first}",
                                 hint="check the network and that the host accepts SSH connections")
            err.transient = True  # type: ignore[attr-defined]
        return err

    # -- files ----------------------------------------------------------------
    def expanduser(self, path: str) -> str:
        if path == "~" or path.startswith("~/"):
            if self._home is None:
                rc, out, err = self.run(["sh", "-c", 'printf %s "$HOME"'], timeout=30)
                if rc != 0 or not out.startswith("/"):
                    raise TransportError(f"cannot find the home directory on {self.spec}: {err.strip() or out}")
                self._home = out
            return self._home + path[1:]
        return path

    def read_text(self, path: str) -> str:
        p = self.expanduser(path)
        rc, out, err = self.run(["cat", "--", p], timeout=60)
        if rc != 0:
            raise TransportError(f"cannot read {p} on {self.spec}: {err.strip() or f'cat exited {rc}'}")
        return out

    def exists(self, path: str) -> bool:
        p = self.expanduser(path)
        rc, _out, err = self.run(["test", "-e", p], timeout=30)
        if rc not in (0, 1):
            raise TransportError(f"cannot check {p} on {self.spec}: {err.strip() or f'test exited {rc}'}")
        return rc == 0

    def size(self, path: str) -> Optional[int]:
        p = self.expanduser(path)
        rc, out, err = self.run(["sh", "-c", 'test -e "$1" || exit 3; wc -c < "$1"', "sh", p], timeout=30)
        if rc == 3:
            return None
        if rc != 0 or not out.strip().isdigit():
            raise TransportError(f"cannot look at {p} on {self.spec}: {err.strip() or f'exit {rc}'}")
        return int(out.strip())

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError("offset and length must not be negative")
        p = self.expanduser(path)
        if length == 0:
            return b""
        rc, out, err = self._run_bytes(
            ["sh", "-c", 'test -r "$1" || exit 3; tail -c "+$2" -- "$1" | head -c "$3"', "sh", p,
             str(offset + 1), str(length)], timeout=60)
        if rc != 0:
            raise TransportError(f"cannot read {p} on {self.spec}: {err.strip() or 'no such file or not readable'}")
        return out

    def write_text(self, path: str, text: str, mode: int = 0o600) -> None:
        p = self.expanduser(path)
        folder = os.path.dirname(p) or "."
        tmp = os.path.join(folder, f".tmp-{os.path.basename(p)}.{os.urandom(4).hex()}~")
        rc, _out, err = self.run(["sh", "-c", _WRITE_SCRIPT, "sh", folder, tmp, p, format(mode & 0o7777, "o")],
                                 timeout=60, input=text)
        if rc != 0:
            raise TransportError(f"cannot write {p} on {self.spec}: {err.strip() or f'exit {rc}'}")

    def stop_master(self) -> bool:
        """End the master connection now (``ssh -O exit``); False if none was running."""
        r = subprocess.run(self._ssh() + ["-O", "exit", self.destination], capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        self._master_checked = False
        return r.returncode == 0

    def close(self) -> None:
        """Mark closed. The master connection is left to ``ControlPersist`` on purpose:
        the next pbsvllm command reuses it instead of logging in again."""
        self._closed = True


def _destination(spec: str) -> tuple[str, Optional[int]]:
    """``[user@]host[:port]`` -> (``[user@]host``, port); an ssh_config alias stays as is."""
    m = re.match(r"^(?:(?P<user>[^@]+)@)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:]+))(?::(?P<port>\d+))?$", spec)
    if not m:
        raise TransportError(f"bad SSH host {spec!r}: expected [user@]host[:port] or an ssh_config Host alias")
    host = m.group("v6") or m.group("host")
    dest = f"{m.group('user')}@{host}" if m.group("user") else host
    port = int(m.group("port")) if m.group("port") else None
    if port is not None and not 0 < port < 65536:
        raise TransportError(f"bad SSH port in {spec!r}")
    return dest, port
