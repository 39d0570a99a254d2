"""Real multi-node jobs on this machine: two "nodes" (127.0.0.3 = head, 127.0.0.2) in the job's node
file, both loopback addresses of this host, the rendered script run by the local backend with the
``local`` node launcher.

* Ray: the script forms a real two-node Ray cluster (distinct ports and temp dirs per node), waits
  for both nodes, starts ``vllm serve ... -pp 2 --distributed-executor-backend ray``. vLLM 0.32's CPU
  build has no Ray executor (its CPU platform has no Ray device key: "current platform cpu does not
  support ray"), so vLLM stops there; the script then stops Ray on both nodes.
* Data parallel: what the CPU build does run across nodes, vLLM's native multi-node data parallel
  (one engine per node, node 1 headless): it answers the usual readiness check (model listed and a
  one-token completion), and a cancel leaves no vLLM or Ray process of the job.
  (PP=2 over vLLM's own multi-node mp backend, ``--nnodes 2``, starts but its first completion kills
  the engine: tests/data/vllm-real/vllm-0.32.0-cpu-pp2-nnodes-*.log.)

Slow (marked ``multinode``): about 2-4 minutes on a quiet 2-core machine. Timings are printed
(Ray formation, start to ready), never asserted.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shutil
import socket
import tempfile
import time

import psutil
import pytest

from pbsvllm.config import resolve
from pbsvllm.health import check_ready
from pbsvllm.plan import PlanArg
from pbsvllm.render import build_context, plan_for, render_script
from pbsvllm.scheduler.base import SubmitOptions
from pbsvllm.scheduler.local import LocalScheduler
from pbsvllm.transport.local import LocalTransport
from tests.plugins.vllm import START_TIMEOUT_S

pytestmark = [pytest.mark.vllm, pytest.mark.ray, pytest.mark.multinode, pytest.mark.slow]

HEAD, WORKER = "127.0.0.3", "127.0.0.2"


def free_port(host="127.0.0.1"):
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def site(vllm_env, ray_env):
    # not under pytest's basetemp: other pytest runs on the machine prune old basetemps while jobs run
    root = pathlib.Path(tempfile.mkdtemp(prefix="pbsvllm-mn-"))
    home = root / "home"
    cfg = root / "config.toml"
    # each node's engine on its own core (VLLM_CPU_OMP_THREADS_BIND = the node's index): two CPU
    # engines on one machine must not share cores
    cfg.write_text(f'''[profiles.mn]
base = "local"
env_lines = ["source {vllm_env.env_file}", "export VLLM_CPU_OMP_THREADS_BIND=$PBSVLLM_NODE_INDEX"]
ray_port = {free_port()}
dp_rpc_port = {free_port()}
ray_wait_s = 240

[profiles.mn.env]
VLLM_CPU_KVCACHE_SPACE = "1"
HF_HUB_OFFLINE = "1"
''')
    settings = resolve({"profile": "mn", "home": str(home)}, {"PBSVLLM_CONFIG": str(cfg)})
    nodefile = root / "nodefile"
    nodefile.write_text(f"{HEAD}\n{WORKER}\n")
    sched = LocalScheduler(LocalTransport(), home=str(home), grace_s=30.0)
    jobs = []
    yield settings, sched, nodefile, jobs, vllm_env
    for job_id in jobs:
        try:
            sched.cancel(job_id)
            sched.wait_gone(job_id, timeout=60)
        except Exception:
            pass
        for p in job_processes(job_id, settings.home):
            p.kill()
    shutil.rmtree(root, ignore_errors=True)


def job_processes(job_id, workdir):
    """Live processes of this job (script, node helpers, Ray, vLLM ranks): they carry its PBS_JOBID and
    PBS_O_WORKDIR (local job ids repeat across homes, so the id alone could name another test's job)."""
    out = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            env = proc.environ()
            if env.get("PBS_JOBID") == job_id and env.get("PBS_O_WORKDIR") == workdir and \
                    proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out


def two_node_job(site, mode, alias):
    settings, sched, nodefile, jobs, vllm_env = site
    port = free_port()
    opts = {"served_model_name": "tiny", "port": port, "max_model_len": 256,
            "vllm_args": ["--dtype bfloat16 --enforce-eager"]}
    _facts, plan = plan_for(settings, vllm_env.model_dir, opts)
    args = list(plan.args)
    if mode == "ray":
        args += [PlanArg("--pipeline-parallel-size", ("2",), "one pipeline stage per node"),
                 PlanArg("--distributed-executor-backend", ("ray",), "TP x PP across nodes on Ray")]
        plan = dataclasses.replace(plan, nodes=2, pipeline_parallel_size=2, args=tuple(args))
    else:
        args += [PlanArg("--data-parallel-size", ("2",), "one engine per node"),
                 PlanArg("--api-server-count", ("1",), "one API server")]
        plan = dataclasses.replace(plan, nodes=2, data_parallel_size=2, data_parallel_mode="vllm", args=tuple(args))
    ctx = build_context(settings, vllm_env.model_dir, alias, plan, served_model_name="tiny", port=port)
    script = os.path.join(settings.home, f"{alias}.pbs")
    os.makedirs(settings.home, exist_ok=True)
    with open(script, "w") as fh:
        fh.write(render_script(ctx))
    t0 = time.monotonic()
    job_id = sched.submit(script, SubmitOptions(env={"PBS_NODEFILE": str(nodefile)}, workdir=settings.home))
    jobs.append(job_id)
    log = os.path.join(settings.log_dir, f"{alias}.{job_id}.log")
    return job_id, log, port, t0


def read(path):
    try:
        with open(path, errors="replace") as fh:
            return fh.read()
    except FileNotFoundError:
        return ""


def test_ray_cluster_formed_by_the_script_then_stopped_on_every_node(site):
    _settings, sched, _nf, _jobs, _env = site
    job_id, log, _port, t0 = two_node_job(site, "ray", "mnray")
    assert sched.wait_gone(job_id, timeout=START_TIMEOUT_S), read(log)[-3000:]
    text = read(log)
    m = re.search(r"Ray cluster formed: 2 nodes in (\d+) s", text)
    assert m, text[-3000:]
    assert re.search(r"Ray: READY 2/2 nodes, 0/0 GPUs \(127\.0\.0\.2 127\.0\.0\.3\)", text), text[-3000:]
    assert f"pre-launch check passed on node 1 ({WORKER}, {WORKER})" in text
    # vLLM's CPU build refuses the Ray executor; the job ends on its own and stops Ray everywhere
    assert "current platform cpu does not support ray" in text, text[-3000:]
    assert "every node stopped" in text
    worker_log = read(log.replace(".log", ".node1.log"))
    assert f"Local node IP: {WORKER}" in worker_log and "Ray runtime started." in worker_log, worker_log[-2000:]
    assert f"Local node IP: {HEAD}" in read(log.replace(".log", ".node0.log"))
    left = job_processes(job_id, _settings.home)
    assert not left, [(p.pid, p.info.get("name")) for p in left]
    # each node's Ray session files (node-local temp dir) are removed by the stop
    tmpdirs = set(re.findall(r"(/\S*/pbsvllm-ray-[A-Za-z0-9_-]+)/session_", worker_log + read(log.replace(".log",
                                                                                                    ".node0.log"))))
    assert len(tmpdirs) == 2, tmpdirs
    assert not [d for d in tmpdirs if os.path.exists(d)], tmpdirs
    print(f"\nRay formation (head start to 2 nodes): {m.group(1)} s; job end {time.monotonic() - t0:.0f} s")


def test_data_parallel_across_two_nodes_answers_readiness_and_cancel_leaves_nothing(site):
    _settings, sched, _nf, _jobs, _env = site
    job_id, log, port, t0 = two_node_job(site, "dp", "mndp")
    url = f"http://127.0.0.1:{port}/v1"
    end = time.monotonic() + START_TIMEOUT_S
    r = None
    while time.monotonic() < end:
        r = check_ready(url, "tiny", timeout=2.0, completion_timeout=60.0)
        if r.ready:
            break
        assert not os.path.exists(os.path.join(sched.root, job_id, "exit.json")), read(log)[-4000:]
        time.sleep(2)
    assert r is not None and r.ready, (r, read(log)[-4000:])
    ready_s = time.monotonic() - t0
    text = read(log)
    assert "starting data parallel ranks 1-1 headless on node 1 (127.0.0.2, 127.0.0.2)" in text
    node1 = read(log.replace(".log", ".node1.log"))
    assert "headless mode" in node1 and f"tcp://{HEAD}:" in node1, node1[-2000:]
    procs = job_processes(job_id, _settings.home)
    assert any("VLLM_HOST_IP" in p.environ() and p.environ()["VLLM_HOST_IP"] == WORKER for p in procs)
    sched.cancel(job_id)
    assert sched.wait_gone(job_id, timeout=60), read(log)[-2000:]
    text = read(log)
    assert "stopping vLLM and Ray on 2 node(s): 127.0.0.3 127.0.0.2" in text and "every node stopped" in text
    left = job_processes(job_id, _settings.home)
    assert not left, [(p.pid, p.info.get("name")) for p in left]
    print(f"\nDP=2 across 2 nodes: submit to ready {ready_s:.0f} s")
