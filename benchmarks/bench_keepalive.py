"""Keep-alive hand-overs: overlap and gap per hand-over, failed requests.

A chain on the local backend behind the real vllm-router, its supervisor
as its own process, a steady client through the alias's stable URL:

- default: stand-in servers (``tests/fakes/vllm.py``, ready in about a
  second) with a 30 s walltime: three hand-overs in about 1.5 min, what
  the machinery itself costs;
- ``--vllm``: real vLLM CPU servers of the tiny test model, a 4 min
  walltime, one core each (``cpu_cores_per_server = 1``), two hand-overs.

For each hand-over: the overlap (both servers ready: successor ready ->
predecessor drained out of the alias) and the gap (no server ready between
the two; target 0), from the supervisor's chain file; and the client's
requests and failures over the whole run.

    .venv/bin/python benchmarks/bench_keepalive.py [--vllm]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time

from _bench_common import ROOT, write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vllm", action="store_true", help="real vLLM CPU servers (slow) instead of stand-ins")
    ap.add_argument("--handovers", type=int, default=0, help="how many hand-overs to wait for (default 3 / 2)")
    args = ap.parse_args()
    from pbsvllm import router
    from pbsvllm.jobs import JobStore
    from pbsvllm.keepalive import daemon, service
    from pbsvllm.keepalive.state import ChainStore, handovers
    from pbsvllm.launch import SubmitJob, SubmitTarget, submit_job
    from pbsvllm.scheduler.local import LocalScheduler
    from pbsvllm.transport.local import LocalTransport
    from tests.integration.test_keepalive_local import SCRIPT, SteadyClient

    want = args.handovers or (2 if args.vllm else 3)
    if not os.environ.get("PBSVLLM_ROUTER_PYTHON") and not router.available():
        # the router's own venv, as the test suite builds it (scripts/setup-router.sh prints its Python)
        import subprocess

        out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "setup-router.sh")], capture_output=True,
                             text=True, check=True)
        os.environ["PBSVLLM_ROUTER_PYTHON"] = out.stdout.strip().splitlines()[-1]
    tmp = tempfile.mkdtemp(prefix="pbsvllm-ka-")
    home = os.path.join(tmp, "home")
    for d in ("run", "logs", "scripts"):
        os.makedirs(os.path.join(home, d))
    os.environ["PBSVLLM_HOME"] = home
    cfg = os.path.join(tmp, "config.toml")
    tr = LocalTransport()
    sched = LocalScheduler(tr, home=home, grace_s=5)
    if args.vllm:
        cache = os.environ.get("PBSVLLM_TEST_CACHE") or os.path.expanduser("~/.cache/pbsvllm-test")
        os.makedirs(os.path.join(tmp, "t"))
        with open(cfg, "w") as fh:
            fh.write('profile = "cpu"\n[profiles.cpu]\nbase = "local"\nwalltime = "00:04:00"\n'
                     'cpu_cores_per_server = 1\n'
                     f'env_lines = ["source {cache}/vllm-cpu-env.sh", "export TMPDIR={tmp}/t"]\n'
                     '[profiles.cpu.env]\nVLLM_CPU_KVCACHE_SPACE = "1"\n')
        os.environ["PBSVLLM_CONFIG"] = cfg
        from pbsvllm.api import Client

        client_api = Client.from_flags({"home": home})
        prepared = client_api.prepare(os.path.join(cache, "tiny-llama"), "tiny", {"max_model_len": 256})
        first = client_api.submit(prepared).job_id
        walltime = 240
    else:
        with open(cfg, "w") as fh:
            fh.write('profile = "local"\n')
        os.environ["PBSVLLM_CONFIG"] = cfg
        body = SCRIPT.format(alias="tiny", walltime="00:00:30", home=home, py=shlex.quote(sys.executable),
                             root=shlex.quote(ROOT), startup="")
        job = SubmitJob(script_text=body, script_path=os.path.join(home, "scripts", "tiny.pbs"), alias="tiny",
                        model="/models/tiny", served_model_name="tiny",
                        log_path=os.path.join(home, "logs", "tiny.{job_id}.log"),
                        server_info_path=os.path.join(home, "run", "{job_id}.server.json"))
        first = submit_job(SubmitTarget(home=home, scheduler="local", profile="local"), job, transport=tr,
                           scheduler=sched, store=JobStore(home)).job_id
        walltime = 30
    router.ensure_running("tiny", home=home, model="tiny")
    service.start("tiny", home=home, job=first, margin_s=None if args.vllm else 8)
    t0 = time.time()
    deadline = t0 + (1800 if args.vllm else 300)
    while time.time() < deadline and not router.members("tiny", home=home):
        time.sleep(1)
    client = SteadyClient(router.url("tiny", home=home))
    client.start()
    try:
        while time.time() < deadline:
            st = ChainStore(home).load("tiny")
            if st is not None and len(handovers(st)) >= want:
                break
            time.sleep(2)
    finally:
        client.stop()
        st = ChainStore(home).load("tiny")
        service.stop("tiny", home=home, cancel=True)
        daemon.stop(home, "tiny")
        router.stop("tiny", home=home)
    assert st is not None
    figs = handovers(st)
    doc = {
        "servers": "vLLM 0.32 CPU, tiny model" if args.vllm else "stand-in servers (tests/fakes/vllm.py)",
        "walltime_s": walltime,
        "handovers": [{"from": h.from_job, "to": h.to_job, "overlap_s": round(h.overlap_s, 2),
                       "gap_s": round(h.gap_s, 2)} for h in figs],
        "requests_ok": client.ok,
        "requests_failed": len(client.failures),
        "max_gap_s": max((h.gap_s for h in figs), default=None),
        "lead_time": service.status("tiny", home=home, revive=False)[0]["lead_time"],
        "elapsed_s": round(time.time() - t0, 1),
    }
    name = "keepalive_vllm" if args.vllm else "keepalive"
    print(write_result(name, doc))
    for h in doc["handovers"]:
        print(f"hand-over {h['from']} -> {h['to']}: overlap {h['overlap_s']} s, gap {h['gap_s']} s")
    print(f"requests: {client.ok} ok, {len(client.failures)} failed")


if __name__ == "__main__":
    main()
