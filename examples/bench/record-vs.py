"""Record a real `pbsvllm bench A --vs B --json --plot` run on this machine.

Two real CPU vLLM servers of the tiny test model, each bound to its own core
(VLLM_CPU_OMP_THREADS_BIND 0 and 1): A with --enforce-eager, B compiled (the
planner's default on a CPU). Writes the JSON report to
tests/data/bench/tiny-cpu-eager-vs-compiled.json and the plot to
examples/bench/eager-vs-compiled.html. Takes a few minutes on 2 cores.

    .venv/bin/python examples/bench/record-vs.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.plugins.vllm import locate_vllm_env, start_vllm_server  # noqa: E402

JSON_OUT = os.path.join(ROOT, "tests", "data", "bench", "tiny-cpu-eager-vs-compiled.json")
HTML_OUT = os.path.join(ROOT, "examples", "bench", "eager-vs-compiled.html")


def main() -> int:
    env = locate_vllm_env()
    work = tempfile.mkdtemp(prefix="pbsvllm-record-vs-")
    servers = []
    try:
        for name, core, eager in (("eager", "0", True), ("compiled", "1", False)):
            servers.append(start_vllm_server(env, os.path.join(work, name), served_name="tiny", eager=eager,
                                             extra_env={"VLLM_CPU_OMP_THREADS_BIND": core}))
            print(f"{name} server up at {servers[-1].base_url}", flush=True)
        a, b = servers
        r = subprocess.run([sys.executable, "-m", "pbsvllm", "bench", a.base_url, "--vs", b.base_url,
                            "--model", "tiny", "-n", "32", "-c", "1,2,4,8,16", "--input-len", "32",
                            "--output-len", "32", "--warmup", "2", "--json", "--plot", HTML_OUT],
                           capture_output=True, text=True, cwd=ROOT, timeout=1200)
        if r.returncode != 0:
            print(r.stdout, r.stderr, file=sys.stderr)
            return r.returncode
        with open(JSON_OUT, "w", encoding="utf-8") as fh:
            fh.write(r.stdout)
        print(f"wrote {JSON_OUT} and {HTML_OUT}")
        return 0
    finally:
        for srv in servers:
            srv.stop()


if __name__ == "__main__":
    sys.exit(main())
