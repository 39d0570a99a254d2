"""The lifecycle through the real local backend (no mocks): a job script that
behaves like the rendered one -- realtime log, server-info file written
atomically, an HTTP server -- submitted with submit_prepared, followed by the
watcher, shown by `status`/`logs`, swapped with `swap-endpoint --cancel-old`.
(The same loop with a real vLLM is tests/integration/test_e2e*.py.)"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time

import pytest
from click.testing import CliRunner

from pbsvllm.cli import cli
from pbsvllm.config import resolve
from pbsvllm.jobs import JobStore
from pbsvllm.launch import SubmitJob, SubmitTarget, submit_job
from pbsvllm.registry import open_registry
from pbsvllm.scheduler.local import LocalScheduler
from pbsvllm.transport.local import LocalTransport
from pbsvllm.watcher import Reporter, watch_records
from tests.fakes.vllm import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EAGER = os.path.join(ROOT, "tests", "data", "watcher", "vllm-0.32.0-cpu-eager.log")
KV_FAIL = os.path.join(ROOT, "tests", "data", "watcher", "kv-too-small.log")

SCRIPT = """#!/bin/bash
#PBS -N {alias}
#PBS -j oe
#PBS -o {out}
set -euo pipefail
LOG="{logdir}/{alias}.$PBS_JOBID.log"
INFO="{home}/run/$PBS_JOBID.server.json"
head -n 40 {sample} >> "$LOG"
sleep 0.5
{server}
sed -n '41,99p' {sample} >> "$LOG"
{ready}
wait
"""

SERVER = """cd {root}
{py} tests/fakes/vllm.py tiny --port {port} >> "$LOG" 2>&1 &
{py} -c 'import json,os,sys; t=sys.argv[1]+".tmp"; json.dump({{"job_id": os.environ["PBS_JOBID"], "host": "127.0.0.1", "port": {port}, "url": "http://127.0.0.1:{port}/v1"}}, open(t,"w")); os.replace(t, sys.argv[1])' "$INFO"
for i in $(seq 100); do {py} -c 'import socket,sys; socket.create_connection(("127.0.0.1", {port}), 0.2)' 2>/dev/null && break; sleep 0.1; done"""

READY = """echo "INFO:     Application startup complete." >> "$LOG"
echo "(APIServer pid=1) INFO 11-28 17:58:00 [loggers.py:259] Engine 000: Avg prompt throughput: 78.5 tokens/s, Avg generation throughput: 412.2 tokens/s, Running: 8 reqs, Waiting: 0 reqs, GPU KV cache usage: 1.6%, Prefix cache hit rate: 72.0%" >> "$LOG"
echo "(APIServer pid=1) INFO 11-28 17:58:00 [loggers.py:259] Engine 001: Avg prompt throughput: 21.5 tokens/s, Avg generation throughput: 100.0 tokens/s, Running: 2 reqs, Waiting: 1 reqs, GPU KV cache usage: 2.4%, Prefix cache hit rate: 70.0%" >> "$LOG"
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    for d in ("run", "logs", "scripts"):
        (home / d).mkdir(parents=True)
    monkeypatch.setenv("PBSVLLM_HOME", str(home))
    monkeypatch.setenv("PBSVLLM_CONFIG", str(tmp_path / "config.toml"))
    (tmp_path / "config.toml").write_text('profile = "local"\n')
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    settings = resolve({"home": str(home)})
    tr = LocalTransport()
    sched = LocalScheduler(tr, home=str(home), grace_s=2)
    started = []
    yield settings, home, tr, sched, started, tmp_path
    for jid in started:  # never leave servers behind
        try:
            sched.cancel(jid, force=True)
        except Exception:
            pass


def submit(env_, alias, *, port=None, fail=False, registries=()):
    settings, home, tr, sched, started, tmp = env_
    if fail:
        body = SCRIPT.format(alias=alias, out=tmp / f"{alias}.out", logdir=home / "logs", home=home,
                             sample=shlex.quote(KV_FAIL), server="", ready="exit 1")
    else:
        server = SERVER.format(root=shlex.quote(ROOT), py=shlex.quote(sys.executable), port=port)
        body = SCRIPT.format(alias=alias, out=tmp / f"{alias}.out", logdir=home / "logs", home=home,
                             sample=shlex.quote(EAGER), server=server, ready=READY)
    job = SubmitJob(
        script_text=body, script_path=str(home / "scripts" / f"{alias}.pbs"), alias=alias,
        model="/models/tiny", served_model_name="tiny",
        log_path=str(home / "logs" / f"{alias}.{{job_id}}.log"),
        server_info_path=str(home / "run" / "{job_id}.server.json"),
    )
    target = SubmitTarget(home=settings.home, registries=tuple(registries))
    rec = submit_job(target, job, transport=tr, scheduler=sched, store=JobStore(str(home)))
    started.append(rec.job_id)
    return rec


def test_submit_watch_register_status_logs_swap(env):
    settings, home, tr, sched, started, tmp = env
    reg = str(tmp / "endpoints.toml")
    reg_yaml = str(tmp / "config.yaml")
    a = submit(env, "srv-a", port=free_port(), registries=[reg, reg_yaml])
    rep = Reporter()
    t0 = time.monotonic()
    res = watch_records(settings, [a], scheduler=sched, transport=tr, reporter=rep, timeout_s=60)
    assert res.ok, rep.lines
    job = res.jobs[0]
    assert time.monotonic() - t0 < 30
    entries = open_registry(reg).lookup("srv-a")
    assert [(e.model, e.url, e.key) for e in entries] == [("tiny", job.url, "VLLM_API_KEY")]
    assert open_registry(reg_yaml).lookup("srv-a")[0].job_id == a.job_id
    text = "\n".join(rep.lines)
    assert "loading weights" in text and "ready at" in text

    # ready means the server answers; the job writes its stats lines just after: wait for them
    deadline = time.monotonic() + 20
    while open(a.log_path).read().count("Avg generation throughput") < 2:
        assert time.monotonic() < deadline, "the job never wrote its stats lines"
        time.sleep(0.05)
    runner = CliRunner()
    out = runner.invoke(cli, ["status", "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    row = json.loads(out.output)[0]
    assert row["alias"] == "srv-a" and row["state"] == "RUNNING" and row["server_state"] == "ready"
    assert row["url"] == job.url
    m = row["metrics"]  # summed over the two engines
    assert m["generation_tokens_per_s"] == 512.2 and m["prompt_tokens_per_s"] == 100.0
    assert (m["running"], m["waiting"]) == (10, 1)
    assert m["kv_cache_usage_pct"] == 2.0 and m["prefix_cache_hit_pct"] == 71.0 and m["kv_device"] == "GPU"
    assert sorted(row["registries"]) == sorted([f"srv-a@{reg}", f"srv-a@{reg_yaml}"])
    table = runner.invoke(cli, ["status"], catch_exceptions=False).output
    assert "SERVER" in table and "ready" in table and "512.2" in table

    logs = runner.invoke(cli, ["logs", "srv-a", "--stats"], catch_exceptions=False)
    assert logs.exit_code == 0
    assert [l.split("  ", 1)[1].split(":", 1)[0] for l in logs.output.splitlines()] == ["Engine 000", "Engine 001"]
    assert logs.output.startswith("11-28 17:58:00  Engine 000: Avg prompt throughput: 78.5 tokens/s")
    logs_json = json.loads(runner.invoke(cli, ["logs", "srv-a", "--stats", "--json"]).output)
    assert logs_json[0]["generation_tokens_per_s"] == 412.2 and logs_json[1]["engine"] == 1
    assert "Application startup complete" in runner.invoke(cli, ["logs", "srv-a", "-n", "3"]).output

    # a second server, then swap the alias to it and cancel the first
    b = submit(env, "srv-b", port=free_port())
    res_b = watch_records(settings, [b], scheduler=sched, transport=tr, timeout_s=60)
    assert res_b.ok
    out = runner.invoke(cli, ["swap-endpoint", "srv-a", "--to", b.job_id, "--cancel-old", "--drain-timeout", "10",
                              "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    swap = json.loads(out.stdout if hasattr(out, "stdout") else out.output)
    assert swap["url"] == res_b.jobs[0].url
    assert swap["old_jobs"][0]["job_id"] == a.job_id and swap["old_jobs"][0]["cancelled"]
    assert [e.url for e in open_registry(reg).lookup("srv-a")] == [res_b.jobs[0].url]
    assert [e.url for e in open_registry(reg_yaml).lookup("srv-a")] == [res_b.jobs[0].url]
    assert sched.wait_gone(a.job_id, timeout=20)
    final = sched.status([a.job_id])[a.job_id]
    assert final.state.is_terminal


def test_failing_job_is_reported_and_never_registered(env):
    settings, home, tr, sched, started, tmp = env
    reg = str(tmp / "endpoints.toml")
    bad = submit(env, "bad", fail=True, registries=[reg])
    runner = CliRunner()
    out = runner.invoke(cli, ["watch", "--timeout", "60", "--json"], catch_exceptions=False)
    assert out.exit_code == 7
    res = json.loads(out.stdout if hasattr(out, "stdout") else out.output)
    assert res[0]["job_id"] == bad.job_id and res[0]["server_state"] == "failed"
    assert res[0]["failure"] == "kv_cache_too_small"
    assert any("max seq len" in e for e in res[0]["evidence"])
    assert not os.path.exists(reg)
    # nothing left pending: watch says so
    again = runner.invoke(cli, ["watch"], catch_exceptions=False)
    assert again.exit_code == 0 and "no pending jobs" in again.output


def test_watch_follow_removes_entries_when_the_job_ends(env):
    settings, home, tr, sched, started, tmp = env
    reg = str(tmp / "endpoints.json")
    a = submit(env, "srv-f", port=free_port(), registries=[reg])
    assert watch_records(settings, [a], scheduler=sched, transport=tr, timeout_s=60).ok
    assert open_registry(reg).lookup("srv-f")[0].job_id == a.job_id
    rec = JobStore(str(home)).get(a.job_id)
    import threading

    # the job ends while `watch --follow` runs
    threading.Timer(2.0, lambda: sched.cancel(a.job_id)).start()
    res = watch_records(settings, [rec], scheduler=sched, transport=tr, timeout_s=60, follow_ready=True)
    assert not res.timed_out
    assert res.jobs[0].server_state == "stopped"
    assert open_registry(reg).lookup("srv-f") == []


def test_logs_follow_prints_new_lines_and_stops_when_the_job_ends(env):
    settings, home, tr, sched, started, tmp = env
    a = submit(env, "srv-l", port=free_port())
    assert watch_records(settings, [a], scheduler=sched, transport=tr, timeout_s=60).ok
    import subprocess
    import threading

    threading.Timer(1.5, lambda: sched.cancel(a.job_id)).start()
    r = subprocess.run([sys.executable, "-m", "pbsvllm", "logs", "srv-l", "-f", "--stats", "--interval", "0.2"],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PBSVLLM_HOME=str(home)))
    assert r.returncode == 0, r.stderr
    assert "Engine 001:" in r.stdout
    assert f"job {a.job_id} has ended" in r.stderr
