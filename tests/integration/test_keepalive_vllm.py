"""Keep-alive with real vLLM CPU servers of the tiny model and the real
vllm-router: the real ``pbsvllm`` CLI (``submit --keep-alive``,
``keepalive status|stop``, ``url``), the supervisor as its own process.

On the Slurm stand-in (a real scheduler: qsub/qstat/qdel of slurm-wlm-torque),
a client sending completions steadily through the alias's stable URL sees
zero failed requests across a hand-over. The serving vLLM is then killed
with ``kill -9``: its job ends, the chain records ``server-died`` and the
alias recovers. ``keepalive stop --cancel`` ends the chain; the scheduler
then reports every job of it ended (no orphan). The same chain on the local
backend, with stand-in servers (two hand-overs, the supervisor killed, a
start failing the same way twice), is test_keepalive_local.py.

Each server takes one of the two cores (``cpu_cores_per_server = 1``, one
CPU requested per job so that two jobs fit the node): a hand-over has two
servers up at once. About 3 min on a quiet 2-core machine (start-to-ready
~55-65 s).
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from pbsvllm import router
from tests.integration.test_keepalive_local import SteadyClient, wait_for
from tests.plugins.vllm import make_site

pytestmark = [pytest.mark.vllm, pytest.mark.router, pytest.mark.slow]

# The margin makes the lead longer than any job's life, so each successor is
# submitted as soon as the serving job is ready: a hand-over every start time
# (the lead-time arithmetic itself is tested in test_keepalive_local.py and the
# unit tests). The walltime only has to outlast two starts (~70 s each quiet,
# 150-210 s on a loaded machine).
WALLTIME = "00:10:00"
MARGIN = "3600"


PROFILE = "e2e-slurm-ka"


def add_profile(site) -> None:
    """The site's Slurm profile with one core (and one CPU requested) per server and a short walltime."""
    with open(site.config) as fh:
        text = fh.read()
    block = text[text.index("[profiles.e2e-slurm]"):]
    block = block[:block.index("\n\n") if "\n\n" in block else None]
    block = block.replace("[profiles.e2e-slurm]", f"[profiles.{PROFILE}]", 1)
    block = block.replace("[profiles.e2e-slurm.env]", f"[profiles.{PROFILE}.env]", 1)
    block = block.replace('base = "local"',
                          f'base = "local"\ncpu_cores_per_server = 1\ncpus_per_node = 1\nwalltime = "{WALLTIME}"', 1)
    with open(site.config, "w") as fh:
        fh.write(text + "\n" + block + "\n")


def chain(site):
    r = site.cli("keepalive", "status", "tiny", "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[0]


def handed_over(site) -> int:
    return sum(1 for j in chain(site)["jobs"] if j["end_cause"] == "handed-over")


def run_chain(site) -> None:
    r = site.cli("submit", site.vllm.model_dir, "--alias", "tiny", "--profile", PROFILE, "--max-model-len", "256",
                 "--keep-alive", "--keep-alive-margin", MARGIN, "--budget", "5", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "keep-alive:" in r.stdout
    wait_for(lambda: any(j["joined_at"] for j in chain(site)["jobs"]), 600, "the first server to join", step=3)
    url = router.url("tiny", home=site.home)  # the alias's stable URL (what `pbsvllm url tiny` prints)
    client = SteadyClient(url, key=site.api_key)
    client.start()
    try:
        wait_for(lambda: handed_over(site) >= 1, 300, "a hand-over", step=5)
        assert client.failures == [], client.failures[:5]
        serving = [j for j in chain(site)["jobs"] if j["joined_at"] and not j["ended_at"] and not j["drained_at"]]
        assert serving, chain(site)
        info_path = os.path.join(site.home, "run", f"{serving[-1]['job_id']}.server.json")
        with open(info_path) as fh:
            pid = json.load(fh)["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: any(j["end_cause"] == "server-died" for j in chain(site)["jobs"]), 300,
                 "the killed server's job to be recorded as server-died", step=3)
        client.mark()
        wait_for(lambda: client.ok_since_mark() >= 20, 600, "the alias to recover", step=3)
    finally:
        client.stop()
    c = chain(site)
    assert c["state"] == "running" and c["consecutive_failures"] == 0, c
    assert "measured" in c["lead_time"]
    assert client.ok > 100
    r = site.cli("keepalive", "stop", "tiny", "--cancel", timeout=300)
    assert r.returncode == 0, r.stderr
    ids = [j["job_id"] for j in c["jobs"]]

    def all_ended() -> bool:
        rows = json.loads(site.cli("status", "--json", timeout=120).stdout)
        states = {row["job_id"]: row["state"] for row in rows}
        return all(states.get(i) in ("COMPLETED", "FAILED", "CANCELLED") for i in ids)

    wait_for(all_ended, 180, "every job of the chain to end (no orphans)", step=3)


@pytest.mark.slurm
def test_slurm_handover_and_a_killed_server(vllm_env, router_ready, slurm_cluster, tmp_path_factory):
    site = make_site(vllm_env, str(tmp_path_factory.mktemp("kas")))
    site.env["PBSVLLM_ROUTER_PYTHON"] = router_ready
    add_profile(site)
    site.env["SLURM_CONF"] = slurm_cluster.conf
    try:
        run_chain(site)
    finally:
        site.cli("keepalive", "stop", "tiny", "--cancel", timeout=300)
        site.cancel_all()
        site.cli("router", "stop", "tiny", timeout=120)
