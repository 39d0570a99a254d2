"""SSHTransport against a real OpenSSH server on loopback (started by the
suite): ssh_config, known_hosts refusal/opt-in, SFTP files, ProxyJump,
dropped connections survived, and submit/status/cancel over SSH on the
real Slurm stand-in with one connection and one round trip per status."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time

import pytest

from pbsvllm.errors import TransportError
from pbsvllm.launch import SubmitJob, SubmitTarget, submit_job
from pbsvllm.models import JobState
from pbsvllm.scheduler import get_scheduler
from pbsvllm.transport import get_transport
from pbsvllm.transport.ssh import SSHTransport, parse_host_spec

pytestmark = pytest.mark.sshd
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_host_spec_parsing():
    assert parse_host_spec("me@polaris.alcf.anl.gov") == ("me", "polaris.alcf.anl.gov", None)
    assert parse_host_spec("host:2222") == (None, "host", 2222)
    assert parse_host_spec("u@[::1]:22") == ("u", "::1", 22)
    with pytest.raises(TransportError):
        parse_host_spec("u@h:notaport")


def test_config_run_quoting_and_one_connection(ssh, sshd_server, tmp_path):
    assert ssh.hostname == "127.0.0.1" and ssh.port == sshd_server.port
    rc, out, err = ssh.run(["echo", "a b", "$(id)", "it's"], timeout=20)
    assert (rc, out) == (0, "a b $(id) it's\n")
    rc, out, _ = ssh.run(["cat"], timeout=20, input="stdin text")
    assert out == "stdin text"
    rc, out, _ = ssh.run(["sh", "-c", 'echo "$X"; exit 7'], timeout=20, env={"X": "v w"})
    assert (rc, out) == (7, "v w\n")
    rc, _, err = ssh.run(["no-such-program-pbsvllm"], timeout=20)
    assert rc == 127
    rc, out, _ = ssh.run(["sh", "-c", "echo $SLURM_CONF"], timeout=20)
    assert out.strip()  # sshd SetEnv reaches sessions
    with pytest.raises(TransportError) as ei:
        ssh.run(["sleep", "5"], timeout=0.5)
    assert "did not finish within" in str(ei.value)
    assert ssh.connections == 1 and ssh.calls == 6


def test_sftp_files_atomic_with_modes(ssh, tmp_path):
    p = str(tmp_path / "deep" / "dir" / "f.txt")
    ssh.write_text(p, "hello\n", mode=0o700)
    assert open(p).read() == "hello\n" and stat.S_IMODE(os.stat(p).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "deep").st_mode) == 0o700
    ssh.write_text(p, "again\n")
    assert ssh.read_text(p) == "again\n" and stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert sorted(os.listdir(tmp_path / "deep" / "dir")) == ["f.txt"]
    assert ssh.exists(p) and not ssh.exists(p + ".nope")
    with pytest.raises(TransportError):
        ssh.read_text(p + ".nope")
    assert ssh.expanduser("~/x") == os.path.expanduser("~") + "/x"


def test_unknown_host_key_is_refused_unless_opted_in(sshd_server, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    t = SSHTransport(f"127.0.0.1:{sshd_server.port}", identity_file=sshd_server.client_key, known_hosts=str(empty), ssh_config=None)
    with pytest.raises(TransportError) as ei:
        t.run(["true"], timeout=10)
    assert "refusing to connect" in str(ei.value) and "not in known_hosts" in str(ei.value)
    t2 = SSHTransport(f"127.0.0.1:{sshd_server.port}", identity_file=sshd_server.client_key, known_hosts=str(empty),
                      ssh_config=None, accept_unknown_host=True)
    assert t2.run(["true"], timeout=10)[0] == 0
    assert sshd_server.host_pub.split()[1] in empty.read_text()
    t2.close()
    wrong = tmp_path / "wrong_known_hosts"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    kt, kb = open(tmp_path / "other.pub").read().split()[:2]
    wrong.write_text(f"[127.0.0.1]:{sshd_server.port} {kt} {kb}\n")
    t3 = SSHTransport(f"127.0.0.1:{sshd_server.port}", identity_file=sshd_server.client_key, known_hosts=str(wrong), ssh_config=None)
    with pytest.raises(TransportError) as ei:
        t3.run(["true"], timeout=10)
    assert "does not match" in str(ei.value)


def test_proxyjump(sshd_server):
    t = get_transport("pbsjump", fresh=True, ssh_config=sshd_server.ssh_config)
    assert t.proxy_jump == "pbstest"
    rc, out, _ = t.run(["echo", "via jump"], timeout=20)
    assert (rc, out) == (0, "via jump\n")
    assert t._jump is not None and t._jump.connections == 1
    t.close()


def test_dropped_connection_between_calls_is_reopened(ssh, sshd_server):
    assert ssh.run(["true"], timeout=10)[0] == 0
    kids = sshd_server.session_children()
    assert kids
    for pid in kids:
        os.kill(pid, 9)
    time.sleep(0.3)
    rc, out, _ = ssh.run(["echo", "back"], timeout=20)
    assert (rc, out) == (0, "back\n")
    assert ssh.connections == 2


def test_dropped_connection_mid_command_then_status_retried(ssh, sshd_server):
    ssh.run(["true"], timeout=10)
    kids = sshd_server.session_children()

    def kill_soon():
        time.sleep(1.0)
        for pid in kids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass

    threading.Thread(target=kill_soon).start()
    with pytest.raises(TransportError) as ei:
        ssh.run(["sleep", "10"], timeout=30)
    assert getattr(ei.value, "transient", False) and "dropped while" in str(ei.value)
    assert ssh.run(["echo", "ok"], timeout=20) == (0, "ok\n", "")


@pytest.mark.slurm
def test_submit_status_cancel_over_ssh_on_slurm(slurm_cluster, sshd_server, tmp_path):
    t = get_transport(sshd_server.alias, fresh=True, ssh_config=sshd_server.ssh_config)
    sched = get_scheduler("auto", t, retries=2, backoff_s=0.2)
    assert sched.name == "slurm-torque"
    home = str(tmp_path / "home")
    remote_dir = tmp_path / "remote"
    prepared = SubmitJob(
        alias="viassh", model="m", served_model_name="viassh", port=9000,
        script_text=f"#!/bin/bash\n#PBS -N viassh\n#PBS -l walltime=00:05:00\n#PBS -j oe\n#PBS -o {remote_dir}/o.log\necho on $(hostname)\nsleep 120\n",
        script_path=str(remote_dir / "scripts" / "viassh.pbs"), log_path=str(remote_dir / "viassh.{job_id}.log"),
        server_info_path="~/.pbsvllm-test-run/{job_id}.server.json",
    )
    rec = submit_job(SubmitTarget(home=home, host=sshd_server.alias), prepared, transport=t, scheduler=sched)
    assert rec.host == "pbstest" and rec.scheduler == "slurm-torque"
    assert rec.server_info_path == os.path.expanduser("~") + f"/.pbsvllm-test-run/{rec.job_id}.server.json"
    assert (remote_dir / "scripts" / "viassh.pbs").exists()
    calls = t.calls
    st = sched.status([rec.job_id])[rec.job_id]
    assert st.state in (JobState.PENDING, JobState.RUNNING)
    assert t.calls - calls == 1
    # the CLI, in another process, over its own single connection
    env = dict(os.environ, PYTHONPATH=ROOT, PBSVLLM_SSH_CONFIG=sshd_server.ssh_config)
    log = os.path.join(sshd_server.dir, "sshd.log")
    accepted = lambda: open(log, errors="replace").read().count("Accepted publickey")  # noqa: E731
    before = accepted()
    r = subprocess.run([sys.executable, "-m", "pbsvllm", "status", "--json", "--home", home], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    time.sleep(0.3)
    assert accepted() - before == 1  # one connection for the whole CLI invocation, as sshd saw it
    row = json.loads(r.stdout)[0]
    assert row["host"] == "pbstest" and row["state"] in ("PENDING", "RUNNING")
    r = subprocess.run([sys.executable, "-m", "pbsvllm", "cancel", "viassh", "--home", home], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    end = time.monotonic() + 40
    while sched.status([rec.job_id])[rec.job_id].state is not JobState.CANCELLED:
        assert time.monotonic() < end, "cancel over SSH did not end the job"
        time.sleep(0.5)
    assert t.connections == 1
    t.close()
