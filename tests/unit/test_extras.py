"""submit --directive / --env: checked where they enter, quoted where they are
written, placed so they win; the server process really gets the variables."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from pbsvllm.errors import ConfigError
from pbsvllm.extras import directive_line, env_pair, parse
from tests.fakes.vllm import free_port
from tests.unit.test_watcher_submit import pbsvllm, site  # noqa: F401  (site is a fixture)


def test_directives():
    assert directive_line("-l mem=200gb") == "#PBS -l mem=200gb"
    assert directive_line("#PBS   -m   abe ") == "#PBS -m abe"
    assert directive_line("-W depend=afterok:123.pbs01") == "#PBS -W depend=afterok:123.pbs01"
    assert directive_line("-r") == "#PBS -r"
    for bad, why in (("-l mem=1;rm -rf /", "one scheduler option"), ("-l a\n#PBS -l b", "one line"),
                     ("mem=200gb", "one scheduler option"), ("-o /tmp/x", "-o is set by pbsvllm"),
                     ("-N other", "-N is set by pbsvllm"), ("-l $(id)", "one scheduler option")):
        with pytest.raises(ConfigError, match=why):
            directive_line(bad)


def test_env():
    assert env_pair("NCCL_DEBUG=INFO") == ("NCCL_DEBUG", "INFO")
    assert env_pair("X=a=b c") == ("X", "a=b c")
    assert env_pair("EMPTY=") == ("EMPTY", "")
    for bad, why in (("NOEQUALS", "NAME=VALUE"), ("1X=y", "not a valid"), ("X=a\nb", "one line"),
                     ("PBSVLLM_HOME=/x", "set by pbsvllm"), ("VLLM_API_KEY=sk", "set by pbsvllm"),
                     ("HF_TOKEN=hf_x", "looks like a secret"), ("MY_SECRET=x", "looks like a secret")):
        with pytest.raises(ConfigError, match=why):
            env_pair(bad)
    assert parse(["-m n"], ["A=1", "A=2"]) == (["#PBS -m n"], {"A": "2"})


def test_dry_run_places_them_first_and_last(site):  # noqa: F811
    r = pbsvllm(site, "submit", site["model"], "--alias", "x", "--dry-run", "--directive", "-l mem=8gb",
                "--env", "HF_HOME=/scratch/a b", "--env", "PYTHONHASHSEED=0")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    pbs = [ln for ln in lines if ln.startswith("#PBS ")]
    assert pbs[0] == "#PBS -l mem=8gb"  # before every generated directive: PBS keeps the first
    i = lines.index("# --- this submit's own variables (--env): the last word ---")
    assert lines[i + 1:i + 3] == ["export HF_HOME='/scratch/a b'", "export PYTHONHASHSEED=0"]
    assert all(not ln.startswith("export HF_HOME") for ln in lines[:i])


def test_the_server_process_gets_the_variables_verbatim(site):  # noqa: F811
    site["jobs"].append("envtest")
    odd = "a b $(touch /tmp/pbsvllm-should-not-exist) it's"
    r = pbsvllm(site, "submit", site["model"], "--alias", "envtest", "--port", str(free_port()), "--wait",
                "--timeout", "90", "--env", f"PBSVLLM_TEST_ODD={odd}".replace("PBSVLLM_", "UX_"),
                "--directive", "-l mem=1gb")
    assert r.returncode == 0, r.stdout + r.stderr
    deadline = time.monotonic() + 10
    env = None
    while env is None and time.monotonic() < deadline:
        for p in psutil.process_iter(["cmdline"]):
            cmd = " ".join(p.info.get("cmdline") or [])
            if "--fake-startup-log" in cmd and "envtest" in cmd:
                env = p.environ()
        time.sleep(0.2)
    assert env is not None and env.get("UX_TEST_ODD") == odd
    assert not os.path.exists("/tmp/pbsvllm-should-not-exist")


def test_example_script():
    import subprocess
    import sys

    from tests.paths import EXAMPLES

    r = subprocess.run(["bash", os.path.join(EXAMPLES, "escape-hatches.sh")], capture_output=True, text=True,
                       env={**os.environ, "PYTHON": sys.executable}, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["#PBS -l walltime=00:30:00", "#PBS -m abe"]
    assert lines[-1] == "export HF_HOME='/eagle/My Project/hf'"  # after the profile's HF_HOME: it wins
    assert "looks like a secret" in r.stderr and "-o is set by pbsvllm" in r.stderr
