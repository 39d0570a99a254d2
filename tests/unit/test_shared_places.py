"""Shared and hostile places (issue 11 class 8): a PBSVLLM_HOME that another
user can write, own or redirect is refused before anything is read from it
or written to it, through the real CLI; a run file another user wrote is
refused by the shared reader. Another user is simulated with chown/lchown to
an unused uid (the suite runs as root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pbsvllm.config import resolve
from pbsvllm.errors import ConfigError, PbsvllmError
from pbsvllm.fileio import check_private_dir, read_regular

OTHER = 4321


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.fail("these tests chown files to another uid and need root (the suite runs as root)")


def _cli(home: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PBSVLLM_HOME=home, PBSVLLM_CONFIG=os.devnull)
    return subprocess.run([sys.executable, "-m", "pbsvllm", "profiles"], capture_output=True, text=True,
                          env=env, timeout=60)


def _refused(home: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve({"home": home}, {"PBSVLLM_CONFIG": os.devnull})
    assert words in str(info.value)
    out = _cli(home)
    assert out.returncode == ConfigError.exit_code and words in out.stderr and "Traceback" not in out.stderr


def _accepted(home: str) -> None:
    assert resolve({"home": home}, {"PBSVLLM_CONFIG": os.devnull}).home == home
    out = _cli(home)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("mode,words", [(0o777, "writable by others"), (0o770, "writable by its group"),
                                        (0o702, "writable by others")])
def test_home_writable_by_others_is_refused(tmp_path, mode, words):
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, mode)
    _refused(str(home), words)
    os.chmod(home, 0o700)
    _accepted(str(home))


def test_home_owned_by_another_user_is_refused(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    os.chown(home, OTHER, OTHER)
    _refused(str(home), f"belongs to uid {OTHER}")


def test_home_through_another_users_symlink_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    os.symlink(str(real), str(link))
    _accepted(str(link / "sub"))
    os.lchown(str(link), OTHER, OTHER)
    _refused(str(link / "sub"), "symbolic link")


def test_home_to_be_created_inside_a_world_writable_folder(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    _refused(str(shared / "me" / ".pbsvllm"), "which every user may write")
    os.chmod(shared, 0o1777)  # sticky, like /tmp: others cannot rename what is mine
    _accepted(str(shared / "me" / ".pbsvllm"))


def test_home_to_be_created_in_another_users_writable_folder(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o775)
    os.chmod(theirs, 0o775)
    os.chown(theirs, OTHER, OTHER)
    _refused(str(theirs / "pbsvllm"), f"belongs to uid {OTHER}")


def test_remote_home_is_not_checked_here(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o777)
    assert resolve({"home": str(home), "host": "login.example"}, {"PBSVLLM_CONFIG": os.devnull}).home == str(home)


def test_run_file_of_another_user_is_refused_by_the_reader(tmp_path):
    f = tmp_path / "local-1.server.json"
    f.write_text('{"url": "http://evil.example:80/v1"}')
    assert read_regular(str(f), "server-info file", mine_only=True) is not None
    os.chown(f, OTHER, OTHER)
    with pytest.raises(PbsvllmError, match=f"belongs to uid {OTHER}, not to you"):
        read_regular(str(f), "server-info file", mine_only=True)


def test_check_private_dir_on_a_fresh_private_home(tmp_path):
    check_private_dir(str(tmp_path / "a" / "b"), "PBSVLLM_HOME")


def test_server_info_planted_by_another_user_never_gets_the_key(tmp_path):
    """A server-info file in the home that another user wrote is refused by the
    one reader (watch, status and swap all read through it): its URL is never probed."""
    from pbsvllm import serverinfo
    from pbsvllm.errors import ServerError
    from pbsvllm.transport.local import LocalTransport

    f = tmp_path / "7.server.json"
    f.write_text(json.dumps({"job_id": "7", "host": "evil", "port": 80, "url": "http://evil.example:80/v1",
                             "pid": 1, "pgid": 1, "model": "m", "served_model_name": "m", "alias": "a",
                             "start_time": 0, "log_path": "/x", "replicas": []}))
    os.chown(f, OTHER, OTHER)
    with pytest.raises(ServerError, match=f"belongs to uid {OTHER}, not to you"):
        serverinfo.read(LocalTransport(), str(f))
    assert serverinfo.try_read(LocalTransport(), str(f)) is None
