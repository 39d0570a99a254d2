"""A stand-in ``vllm serve`` for tests of the lifecycle through the real job
template (``launcher = "python tests/fake_vllm_serve.py"`` in a profile).

Accepts vLLM's command line (model, --host, --port, --served-model-name,
anything else ignored), writes the startup lines of a real vLLM 0.32 log
(tests/data/watcher/vllm-0.32.0-cpu-eager.log) with small pauses, then
serves /v1/models, /v1/completions and /metrics like tests/fakevllm.py.
``FAKE_VLLM_FAIL=kv`` prints the KV-cache-too-small failure and exits 1.
``VLLM_API_KEY`` set: requests need ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tests.fakevllm import FakeVllm  # noqa: E402

DATA = os.path.join(HERE, "data", "watcher")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--served-model-name", default=None)
    args, _rest = ap.parse_known_args()
    served = args.served_model_name or args.model
    if os.environ.get("FAKE_VLLM_FAIL") == "kv":
        with open(os.path.join(DATA, "kv-too-small.log"), encoding="utf-8") as fh:
            for line in fh:
                print(line, end="", flush=True)
                time.sleep(0.05)
        return 1
    with open(os.path.join(DATA, "vllm-0.32.0-cpu-eager.log"), encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    ready = next(i for i, l in enumerate(lines) if "Application startup complete" in l)
    for i, line in enumerate(lines[:ready]):
        print(line, flush=True)
        if i % 10 == 0:
            time.sleep(0.05)
    with FakeVllm([served], api_key=os.environ.get("VLLM_API_KEY") or None, port=args.port):
        print("INFO:     Application startup complete.", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    sys.exit(main())
