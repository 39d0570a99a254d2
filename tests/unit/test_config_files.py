"""Bad config files get one line, never a traceback, never a hang (issue 11 class 6,
the config-file part): binary files, deep nesting, FIFOs, devices, huge files,
non-finite numbers. Through the real CLI (``pbsvllm profiles``), as a user runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pbsvllm.config import resolve
from pbsvllm.errors import ConfigError

CASES = {
    "binary": (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4, "is not UTF-8 text"),
    "deep arrays": (b"x = " + b"[" * 50000 + b"]" * 50000 + b"\n", "nested too deeply"),
    "deep tables": (b"[" + b".".join([b"a"] * 40) + b"]\nz = 1\n", "nested deeper than 8 levels"),
    "deep inline": (b"x = " + b"{a = " * 300 + b"1" + b"}" * 300 + b"\n", "nested"),
    "not toml": (b"this is = = not toml\n", "is not valid TOML"),
    "NUL": (b'queue = "a\x00b"\n', "not valid TOML"),
    "huge": (b"# " + b"x" * (5 << 20) + b"\n", "more than the"),
    "inf memory": (b'[profiles.mine]\ngpu_memory_gib = inf\n', "gpu_memory_gib"),
    "nan memory": (b'[profiles.mine]\ngpu_memory_gib = nan\n', "gpu_memory_gib"),
}


def _cli(env_config: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PBSVLLM_CONFIG=env_config, PBSVLLM_HOME=os.path.dirname(env_config))
    return subprocess.run([sys.executable, "-m", "pbsvllm", "profiles", *args], capture_output=True,
                          text=True, env=env, timeout=60)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_file_is_one_line(tmp_path, case):
    data, words = CASES[case]
    path = tmp_path / "config.toml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        resolve({"profile": "mine"}, {"PBSVLLM_CONFIG": str(path)})
    assert words in str(info.value) and str(path) in str(info.value)
    out = _cli(str(path), "mine")
    assert out.returncode == ConfigError.exit_code, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert words in out.stderr


def test_fifo_config_is_refused_without_hanging(tmp_path):
    path = str(tmp_path / "config.toml")
    os.mkfifo(path)
    out = _cli(path)  # a regression would hang until the subprocess timeout
    assert out.returncode == ConfigError.exit_code and "is a FIFO (named pipe), not a regular file" in out.stderr
    assert "Traceback" not in out.stderr


def test_device_config_is_refused_but_dev_null_means_none(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("needs root to create a device node (the suite runs as root)")
    dev = str(tmp_path / "zero.toml")
    os.mknod(dev, 0o020666, os.makedev(1, 5))  # what /dev/zero is: an endless read
    out = _cli(dev)
    assert out.returncode == ConfigError.exit_code and "is a character device" in out.stderr
    assert resolve({}, {"PBSVLLM_CONFIG": os.devnull}).config_path == os.devnull
