"""A stand-in for `vllm serve` used by the job-script tests: a real process
that records its argv and environment markers, listens on --port like vLLM,
and exits on SIGTERM. It never loads a model."""

import json
import os
import signal
import socket
import sys
import time

out = os.environ["FAKE_VLLM_RECORD"]
argv = sys.argv[1:]
if "--headless" in argv:  # a multi-node data parallel rank: no API server, its own record file
    out += ".headless" + argv[argv.index("--data-parallel-start-rank") + 1]
else:
    port = int(argv[argv.index("--port") + 1])
    host = argv[argv.index("--host") + 1] if "--host" in argv else "127.0.0.1"
    srv = socket.socket()
    srv.bind((host, port))
    srv.listen(1)
record = {
    "argv": argv,
    "pid": os.getpid(),
    "pgid": os.getpgid(0),
    "env": {k: os.environ.get(k) for k in ("PBSVLLM_JOB_ID", "PBSVLLM_ALIAS", "VLLM_API_KEY",
                                            "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "PYTHONUNBUFFERED",
                                            "VLLM_HOST_IP", "PBSVLLM_NODE_INDEX", "RAY_ADDRESS")},
    "cwd": os.getcwd(),
}
tmp = out + ".tmp"
with open(tmp, "w") as fh:
    json.dump(record, fh)
os.replace(tmp, out)
print("INFO fake vllm headless" if "--headless" in argv else f"INFO fake vllm listening on {port}", flush=True)
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
deadline = time.time() + float(os.environ.get("FAKE_VLLM_LIFETIME", "60"))
while not stop and time.time() < deadline:
    time.sleep(0.05)
print("INFO fake vllm got SIGTERM" if stop else "INFO fake vllm lifetime over", flush=True)
sys.exit(int(os.environ.get("FAKE_VLLM_EXIT", "0")))
