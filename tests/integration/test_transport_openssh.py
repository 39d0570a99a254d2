"""OpenSSHTransport (the system ssh over a ControlMaster) against the real
loopback sshd: quoting, files, one login shared by every command and by later
processes, a user's own master (the MFA case), refusals that name the fix, the
per-profile choice, and submit/status/cancel on the real Slurm stand-in."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from pbsvllm.errors import TransportError
from pbsvllm.launch import SubmitJob, SubmitTarget, submit_job
from pbsvllm.models import JobState
from pbsvllm.scheduler import get_scheduler
from pbsvllm.transport import get_transport
from pbsvllm.transport.openssh import OpenSSHTransport

pytestmark = pytest.mark.sshd
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def short_home():
    """A HOME with a short path: a control socket path must stay under ~100 characters."""
    d = tempfile.mkdtemp(prefix="ux", dir="/tmp")
    os.makedirs(os.path.join(d, ".ssh"), mode=0o700)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def accepted(server) -> int:
    with open(os.path.join(server.dir, "sshd.log"), errors="replace") as fh:
        return fh.read().count("Accepted publickey")


@pytest.fixture
def ossh(sshd_server, short_home):
    t = OpenSSHTransport(sshd_server.alias, ssh_config=sshd_server.ssh_config,
                         control_path=os.path.join(short_home, ".ssh", "cm-%C"))
    yield t
    t.stop_master()


def test_run_quoting_env_stdin_and_one_login_for_every_command(ossh, sshd_server):
    before = accepted(sshd_server)
    rc, out, _ = ossh.run(["echo", "a b", "$(id)", "it's"], timeout=20)
    assert (rc, out) == (0, "a b $(id) it's\n")
    assert ossh.run(["cat"], timeout=20, input="stdin text")[1] == "stdin text"
    assert ossh.run(["sh", "-c", 'echo "$X"; exit 7'], timeout=20, env={"X": "v w"})[:2] == (7, "v w\n")
    assert ossh.run(["no-such-program-pbsvllm"], timeout=20)[0] == 127
    assert ossh.run(["sh", "-c", "exit 255"], timeout=20)[0] == 255  # the remote's 255 is not ssh failing
    with pytest.raises(TransportError, match="did not finish within"):
        ossh.run(["sleep", "5"], timeout=0.5)
    assert ossh.calls == 6 and ossh.connections == 1
    time.sleep(0.3)
    assert accepted(sshd_server) - before == 1  # sshd saw one login for six commands
    assert ossh.master_running()


def test_files_atomic_with_modes(ossh, tmp_path):
    p = str(tmp_path / "deep" / "dir" / "f.txt")
    ossh.write_text(p, "hello\n", mode=0o700)
    assert open(p).read() == "hello\n" and stat.S_IMODE(os.stat(p).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "deep").st_mode) == 0o700
    ossh.write_text(p, "it's $(again)\n")
    assert ossh.read_text(p) == "it's $(again)\n" and stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert sorted(os.listdir(tmp_path / "deep" / "dir")) == ["f.txt"]  # no temp file left
    assert ossh.exists(p) and not ossh.exists(p + ".nope")
    with pytest.raises(TransportError, match="cannot read"):
        ossh.read_text(p + ".nope")
    os.chmod(tmp_path / "deep" / "dir", 0o500)
    try:
        if os.geteuid() != 0:
            with pytest.raises(TransportError, match="cannot write"):
                ossh.write_text(p, "x")
    finally:
        os.chmod(tmp_path / "deep" / "dir", 0o700)
    assert ossh.expanduser("~/x") == os.path.expanduser("~") + "/x"


def test_size_and_byte_ranges_for_following_a_log(ossh, tmp_path):
    log = tmp_path / "vllm.log"
    data = "line one\nüñí \x00 bytes\n".encode() + bytes(range(256))
    log.write_bytes(data)
    assert ossh.size(str(log)) == len(data) and ossh.size(str(log) + ".none") is None
    assert ossh.read_range(str(log), 0, 8) == b"line one"
    assert ossh.read_range(str(log), 9, 10_000) == data[9:]
    assert ossh.read_range(str(log), len(data), 10) == b"" and ossh.read_range(str(log), 3, 0) == b""
    with pytest.raises(TransportError, match="cannot read"):
        ossh.read_range(str(log) + ".none", 0, 10)


def test_a_later_process_reuses_the_master_without_logging_in(ossh, sshd_server):
    ossh.run(["true"], timeout=20)
    before = accepted(sshd_server)
    again = OpenSSHTransport(sshd_server.alias, ssh_config=sshd_server.ssh_config, control_path=ossh.control_path)
    assert again.run(["echo", "hi"], timeout=20)[1] == "hi\n"
    assert again.connections == 0
    time.sleep(0.3)
    assert accepted(sshd_server) == before


def test_the_users_own_master_is_used_and_without_it_the_error_says_how(sshd_server, short_home):
    """The MFA case: the user logs in once by hand; pbsvllm has no way to log in by itself."""
    cp = os.path.join(short_home, ".ssh", "user-%C")
    user_cfg = os.path.join(short_home, "ssh_config")
    with open(sshd_server.ssh_config) as fh:
        base = fh.read()
    with open(user_cfg, "w") as fh:  # pbsvllm's view: no usable key, the user's ControlPath
        fh.write(f"Host mfa\n  ControlPath {cp}\n  IdentitiesOnly yes\n  IdentityFile /nonexistent/key\n"
                 f"  PubkeyAuthentication no\n" + base.replace("Host pbstest", "Host pbstest mfa", 1))
    t = OpenSSHTransport("mfa", ssh_config=user_cfg)
    assert t.control_path.startswith(cp[:-2])  # theirs, from `ssh -G` (tokens expanded)
    with pytest.raises(TransportError) as ei:
        t.run(["true"], timeout=20)
    assert "could not log in" in str(ei.value) and "ssh -fN mfa" in str(ei.value)
    # the user opens the master with their own credentials (here: the key), once
    opened = subprocess.run(["ssh", "-F", sshd_server.ssh_config, "-o", "ControlMaster=yes", "-o", f"ControlPath={cp}",
                             "-o", "ControlPersist=60", "-o", "BatchMode=yes", "-fN", "pbstest"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    assert opened.returncode == 0
    try:
        t2 = OpenSSHTransport("mfa", ssh_config=user_cfg)
        assert t2.run(["echo", "through the user's master"], timeout=20)[1] == "through the user's master\n"
        assert t2.connections == 0
    finally:
        OpenSSHTransport("mfa", ssh_config=user_cfg).stop_master()


def test_unknown_host_key_is_refused(sshd_server, short_home, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    t = OpenSSHTransport(f"127.0.0.1:{sshd_server.port}", identity_file=sshd_server.client_key,
                         known_hosts=str(empty), control_path=os.path.join(short_home, ".ssh", "k-%C"))
    with pytest.raises(TransportError, match="host key"):
        t.run(["true"], timeout=20)


def test_profile_chooses_the_openssh_client(sshd_server, tmp_path):
    from pbsvllm.config import resolve

    cfg = tmp_path / "config.toml"
    cfg.write_text('[profiles.mfa-site]\nbase = "pbspro"\nssh_client = "openssh"\n')
    s = resolve({"profile": "mfa-site", "host": "pbstest"}, env={"PBSVLLM_CONFIG": str(cfg)})
    assert s.host == "openssh://pbstest"
    assert isinstance(get_transport(s.host, fresh=True, ssh_config=sshd_server.ssh_config), OpenSSHTransport)
    plain = resolve({"profile": "pbspro", "host": "pbstest"}, env={"PBSVLLM_CONFIG": str(cfg)})
    assert plain.host == "pbstest"
    env_pick = resolve({"profile": "pbspro", "host": "pbstest"},
                       env={"PBSVLLM_CONFIG": str(cfg), "PBSVLLM_SSH_CLIENT": "openssh"})
    assert env_pick.host == "openssh://pbstest"


def test_submit_status_cancel_over_openssh_on_slurm(slurm_cluster, sshd_server, short_home, tmp_path):
    """The same figures as paramiko's: one round trip per status; a later CLI process logs in 0 times."""
    cp = os.path.join(short_home, ".ssh", "pbsvllm-%C")  # the default path under this HOME
    t = get_transport("openssh://pbstest", fresh=True, ssh_config=sshd_server.ssh_config, control_path=cp)
    try:
        sched = get_scheduler("auto", t, retries=2, backoff_s=0.2)
        assert sched.name == "slurm-torque"
        home = str(tmp_path / "home")
        remote_dir = tmp_path / "remote"
        prepared = SubmitJob(
            alias="viaossh", model="m", served_model_name="viaossh", port=9000,
            script_text=f"#!/bin/bash\n#PBS -N viaossh\n#PBS -l walltime=00:05:00\n#PBS -j oe\n"
                        f"#PBS -o {remote_dir}/o.log\necho on $(hostname)\nsleep 120\n",
            script_path=str(remote_dir / "scripts" / "viaossh.pbs"), log_path=str(remote_dir / "viaossh.{job_id}.log"),
            server_info_path=str(remote_dir / "{job_id}.server.json"),
        )
        rec = submit_job(SubmitTarget(home=home, host="openssh://pbstest"), prepared, transport=t, scheduler=sched)
        assert rec.host == "openssh://pbstest" and (remote_dir / "scripts" / "viaossh.pbs").exists()
        calls = t.calls
        assert sched.status([rec.job_id])[rec.job_id].state in (JobState.PENDING, JobState.RUNNING)
        assert t.calls - calls == 1 and t.connections == 1
        env = dict(os.environ, PYTHONPATH=ROOT, PBSVLLM_SSH_CONFIG=sshd_server.ssh_config, HOME=short_home)
        before = accepted(sshd_server)
        r = subprocess.run([sys.executable, "-m", "pbsvllm", "status", "--json", "--home", home],
                           capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0, r.stderr
        row = json.loads(r.stdout)[0]
        assert row["host"] == "openssh://pbstest" and row["state"] in ("PENDING", "RUNNING")
        r = subprocess.run([sys.executable, "-m", "pbsvllm", "cancel", "viaossh", "--home", home],
                           capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0, r.stderr
        time.sleep(0.3)
        assert accepted(sshd_server) == before  # two CLI processes, no new login: the master served both
        end = time.monotonic() + 40
        while sched.status([rec.job_id])[rec.job_id].state is not JobState.CANCELLED:
            assert time.monotonic() < end, "cancel over OpenSSH did not end the job"
            time.sleep(0.5)
    finally:
        t.stop_master()


def test_key_file_checked_on_the_cluster_before_qsub(ossh, sshd_server, tmp_path):
    """preflight's key-file check runs as one command over either SSH client."""
    from pbsvllm.preflight import key_file_problem

    key = tmp_path / "api_key"
    key.write_text("sk-remote-0123456789\n")
    key.chmod(0o644)
    para = get_transport(sshd_server.alias, fresh=True, ssh_config=sshd_server.ssh_config)
    try:
        for t in (ossh, para):
            calls = t.calls
            problem = key_file_problem(str(key), t) or ""
            assert "has mode 644: others can read it" in problem and f"on {t.host}" in problem
            assert "sk-remote" not in problem and t.calls - calls == 1
        key.chmod(0o600)
        assert key_file_problem(str(key), ossh) is None and key_file_problem(str(key), para) is None
        assert "does not exist" in (key_file_problem(str(key) + ".none", ossh) or "")
    finally:
        para.close()
