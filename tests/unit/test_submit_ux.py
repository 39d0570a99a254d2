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
