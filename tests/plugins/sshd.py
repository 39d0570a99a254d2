"""A real OpenSSH server on 127.0.0.1 (its own config, host key, client key).

``sshd_server`` (session) starts ``/usr/sbin/sshd -D`` on a free high port
with a generated host key and client key, an ``authorized_keys``, a
``known_hosts`` holding the host key and an ``ssh_config`` with a ``Host
pbstest`` entry (HostName, Port, User, IdentityFile, UserKnownHostsFile).
Sessions get ``SLURM_CONF`` (SetEnv) so the Slurm wrappers work over SSH.
The server is stopped at the end of the session. If it cannot start, the
tests that need it FAIL.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import shutil
import socket
import subprocess
import time
from typing import List

import pytest


@dataclasses.dataclass
class SSHD:
    port: int
    dir: str
    ssh_config: str
    known_hosts: str
    client_key: str
    host_pub: str
    pid: int
    alias: str = "pbstest"

    def opts(self) -> dict:
        """Options for get_transport(self.alias, **opts)."""
        return {"ssh_config": self.ssh_config}

    def session_children(self) -> List[int]:
        """pids of the per-connection sshd processes (kill one to drop a connection)."""
        import psutil

        try:
            return [c.pid for c in psutil.Process(self.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_banner(port: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return True
        except OSError:
            time.sleep(0.1)
    return False


class SSHDError(RuntimeError):
    pass


def start_sshd(d: str) -> tuple[SSHD, subprocess.Popen]:
    """Start sshd with everything under folder ``d``; raise SSHDError if it cannot.
    Used by the fixture and by benchmarks/bench_ssh.py."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd) or not shutil.which("ssh-keygen"):
        raise SSHDError("OpenSSH server is not installed: run `bash scripts/setup-system.sh` (openssh-server)")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o700)
    for name, kind in (("host_key", "ed25519"), ("client_key", "ed25519")):
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", os.path.join(d, name)], check=True)
    with open(os.path.join(d, "client_key.pub")) as fh:
        client_pub = fh.read()
    auth = os.path.join(d, "authorized_keys")
    with open(auth, "w") as fh:
        fh.write(client_pub)
    os.chmod(auth, 0o600)
    with open(os.path.join(d, "host_key.pub")) as fh:
        host_pub = fh.read().strip()
    port = _free_port()
    known = os.path.join(d, "known_hosts")
    key_type, key_b64 = host_pub.split()[:2]
    with open(known, "w") as fh:
        fh.write(f"[127.0.0.1]:{port} {key_type} {key_b64}\n")
    user = getpass.getuser()
    slurm_conf = os.environ.get("SLURM_CONF") or "/tmp/pbsvllm-slurm/slurm.conf"
    cfg = os.path.join(d, "sshd_config")
    with open(cfg, "w") as fh:
        fh.write(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n"
            f"AuthorizedKeysFile {auth}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n"
            "AllowTcpForwarding yes\nSubsystem sftp internal-sftp\nMaxSessions 64\nMaxStartups 64\n"
            f"SetEnv SLURM_CONF={slurm_conf}\nLogLevel VERBOSE\n"
        )
    client_cfg = os.path.join(d, "ssh_config")
    with open(client_cfg, "w") as fh:
        fh.write(
            f"Host pbstest\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n"
            f"  IdentityFile {d}/client_key\n  UserKnownHostsFile {known}\n"
            f"Host pbsjump\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n"
            f"  IdentityFile {d}/client_key\n  UserKnownHostsFile {known}\n  ProxyJump pbstest\n"
        )
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    log = open(os.path.join(d, "sshd.log"), "ab")
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", cfg], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    log.close()
    if not _wait_banner(port, 20):
        proc.kill()
        with open(os.path.join(d, "sshd.log"), errors="replace") as fh:
            raise SSHDError(f"sshd did not start on 127.0.0.1:{port}:\n{fh.read()[-3000:]}")
    server = SSHD(port=port, dir=d, ssh_config=client_cfg, known_hosts=known, client_key=os.path.join(d, "client_key"), host_pub=host_pub, pid=proc.pid)
    return server, proc


def stop_sshd(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory) -> SSHD:
    try:
        server, proc = start_sshd(str(tmp_path_factory.mktemp("sshd")))
    except SSHDError as exc:
        pytest.fail(str(exc))
    yield server
    stop_sshd(proc)


@pytest.fixture
def ssh(sshd_server):
    """A fresh SSH transport to the loopback sshd, closed after the test."""
    from pbsvllm.transport import get_transport

    t = get_transport(sshd_server.alias, fresh=True, ssh_config=sshd_server.ssh_config)
    yield t
    t.close()
