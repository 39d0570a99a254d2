"""End to end through a real scheduler: the Slurm stand-in's Torque wrappers
(``qsub``/``qstat``/``qdel`` of slurm-wlm-torque, started by the suite) run
the rendered job script, which starts a real vLLM 0.32 CPU server of the tiny
model. ``pbsvllm submit --wait`` follows the job through the scheduler,
registers it in endpoints.toml once it answers, a chat completion through the
URL read back from the registry succeeds, and ``pbsvllm cancel`` ends it
through ``qdel`` (the registry entry is then removed by ``pbsvllm status``).
"""

from __future__ import annotations

import os
import time

import psutil
import pytest

from tests.integration.test_e2e_local import WAIT_S, entries, free_port_base, status_rows
from tests.plugins.vllm import chat

pytestmark = [pytest.mark.vllm, pytest.mark.slurm]


def test_submit_through_slurm_torque_registers_serves_and_cancels(slurm_cluster, pbsvllm_site):
    site = pbsvllm_site
    site.env["SLURM_CONF"] = slurm_cluster.conf
    registry = os.path.join(site.root, "endpoints.toml")
    r = site.cli("submit", site.vllm.model_dir, "--alias", "tiny-slurm", "--profile", "e2e-slurm",
                 "--max-model-len", "256", "--vllm-arg=--enforce-eager", "--port", str(free_port_base()),
                 "--wait", "--timeout", WAIT_S, "--registry", registry, timeout=600)
    assert r.returncode == 0, "submit through Slurm failed (rc %s):\n%s\n%s" % (r.returncode, r.stdout, r.stderr)
    assert "registered tiny-slurm in" in r.stdout, r.stdout
    row = status_rows(site)["tiny-slurm"]
    assert row["scheduler"] == "slurm-torque" and row["state"] == "RUNNING" and row["server_state"] == "ready", row
    job_id = row["job_id"]
    assert not job_id.startswith("local-")
    [entry] = entries(registry, "tiny-slurm")
    assert entry["key"] == "VLLM_API_KEY" and entry["model"] == "tiny-slurm"
    status, body = chat(entry["url"], entry["model"], api_key=site.api_key, max_tokens=8)
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] is not None
    assert chat(entry["url"], entry["model"], api_key=None)[0] == 401
    # the key reached vLLM through the job's environment only
    for proc in psutil.process_iter(["cmdline"]):
        assert site.api_key not in " ".join(proc.info.get("cmdline") or [])
    # cancel goes through qdel; the job leaves the scheduler and its entry the registry
    r = site.cli("cancel", "tiny-slurm", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    deadline = time.monotonic() + 90
    while True:
        row = status_rows(site)["tiny-slurm"]
        if row["state"] in ("CANCELLED", "COMPLETED", "FAILED", "UNKNOWN") or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert row["state"] in ("CANCELLED", "COMPLETED", "FAILED", "UNKNOWN") and row["server_state"] == "stopped", row
    assert entries(registry, "tiny-slurm") == []
