"""submit --quiet, registration failures in the exit status, and `watch ALIAS
--registry FILE` on a ready server, through the real template and the local
backend with the stand-in launcher (as tests/unit/test_watcher_submit.py)."""

from __future__ import annotations

import re
import time

from pbsvllm.registry import open_registry
from tests.fakes.vllm import free_port
from tests.unit.test_watcher_submit import pbsvllm, site  # noqa: F401  (site is a fixture)


def test_quiet_prints_only_the_job_id_and_wait_quiet_registers(site):  # noqa: F811
    site["jobs"].append("q1")
    r = pbsvllm(site, "submit", site["model"], "--alias", "q1", "--port", str(free_port()), "--quiet")
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"[\w.\-]+\n", r.stdout), r.stdout  # one line: the id, as qsub prints it
    job_id = r.stdout.strip()
    assert pbsvllm(site, "status", job_id, "--json").returncode == 0
    reg = str(site["tmp"] / "endpoints.toml")
    site["jobs"].append("q2")
    r = pbsvllm(site, "submit", site["model"], "--alias", "q2", "--port", str(free_port()), "--quiet", "--wait",
                "--timeout", "90", "--registry", reg)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.fullmatch(r"[\w.\-]+\n", r.stdout) and r.stderr == ""
    assert [e.alias for e in open_registry(reg).lookup("q2")] == ["q2"]


def test_watch_registers_a_ready_unregistered_server_or_says_why_not(site):  # noqa: F811
    site["jobs"].append("tiny")
    r = pbsvllm(site, "submit", site["model"], "--alias", "tiny", "--port", str(free_port()), "--wait",
                "--timeout", "90")
    assert r.returncode == 0, r.stdout + r.stderr
    reg = str(site["tmp"] / "later.toml")
    t0 = time.monotonic()
    r = pbsvllm(site, "watch", "tiny", "--registry", reg, "--timeout", "60")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"registered tiny in {reg}" in r.stdout
    (ep,) = open_registry(reg).lookup("tiny")
    assert ep.url.startswith("http://127.0.0.1:") and time.monotonic() - t0 < 60
    # a registry that cannot be written: said, and exit 6 (RegistryError), the server untouched
    blocker = site["tmp"] / "a-file"
    blocker.write_text("not a folder\n")
    r = pbsvllm(site, "watch", "tiny", "--registry", str(blocker / "endpoints.toml"), "--timeout", "60")
    assert r.returncode == 6, r.stdout + r.stderr
    assert "NOT registered" in r.stdout
    # the job ends: asking to register it says why not, exit 6
    assert pbsvllm(site, "cancel", "tiny").returncode == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if pbsvllm(site, "watch", "tiny", "--follow", "--timeout", "5").returncode == 0:
            break
        time.sleep(0.5)
    r = pbsvllm(site, "watch", "tiny", "--registry", reg, "--timeout", "30")
    assert r.returncode == 6, r.stdout + r.stderr
    assert "NOT registered: the server is stopped" in r.stdout


def test_example_scripts_submit_quiet_and_top(site):  # noqa: F811
    import os
    import subprocess
    import sys

    from tests.paths import EXAMPLES

    bindir = site["tmp"] / "bin"
    bindir.mkdir()
    (bindir / "pbsvllm").write_text(f"#!/bin/sh\nexec {sys.executable} -m pbsvllm \"$@\"\n")
    (bindir / "pbsvllm").chmod(0o755)
    site["jobs"] += ["demo", "demo2"]
    reg = site["tmp"] / "endpoints.toml"
    env = {**site["env"], "PATH": f"{bindir}:{os.environ['PATH']}", "REG": str(reg), "HOME": str(site["tmp"])}
    r = subprocess.run(["bash", os.path.join(EXAMPLES, "submit-quiet.sh"), site["model"], "fake"], env=env,
                       capture_output=True, text=True, timeout=300, cwd=str(site["tmp"]))
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^submitted local-\d+$", r.stdout, re.M) and f"demo2 is up and in {reg}" in r.stdout
    assert f"registered demo in {reg}" in r.stdout
    assert {e.alias for e in open_registry(str(reg)).lookup("demo")} == {"demo"}
    r = subprocess.run(["bash", os.path.join(EXAMPLES, "top.sh")], env=env, capture_output=True, text=True,
                       timeout=120, cwd=str(site["tmp"]))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("ALIAS ") and "demo2" in r.stdout


def test_quiet_excludes_json_and_dry_run(site):  # noqa: F811
    for other in ("--json", "--dry-run"):
        r = pbsvllm(site, "submit", site["model"], "--alias", "x", "--quiet", other)
        assert r.returncode == 10 and f"--quiet and {other} are exclusive" in r.stderr and r.stdout == ""
