"""One fake vLLM, for unit tests of probes, the watcher and job scripts; the real vLLM server (on the
CPU) is exercised by the integration tests (tests/plugins/vllm.py).

In process: :class:`FakeVllm` serves the few routes pbsvllm uses (``/v1/models``, ``/v1/completions``,
``/metrics``) on loopback; tests set ``completion_status``, ``models_status``, ``running``, ``waiting``
and read ``requests``.

As a program it stands in for ``vllm serve`` in job scripts (``launcher = "python tests/fakes/vllm.py"``)::

    python tests/fakes/vllm.py [--fake-startup-log] MODEL --port N [--host H] [--served-model-name S] ...

It takes vLLM's command line (other options are ignored), serves :class:`FakeVllm` on ``--port``, prints
``INFO fake vllm listening on N`` and stops on SIGTERM (``INFO fake vllm got SIGTERM``). Options:

- ``--fake-startup-log``: first print the startup lines of a real vLLM 0.32 log
  (tests/data/watcher/vllm-0.32.0-cpu-eager.log) with small pauses, and ``Application startup complete.``
  once serving, as the watcher expects of a real server;
- ``FAKE_VLLM_FAIL=kv``: print the real KV-cache-too-small failure and exit 1;
- ``FAKE_VLLM_RECORD=PATH``: write the argv, pid, pgid, cwd and environment markers to PATH (JSON);
- ``FAKE_VLLM_LIFETIME=S``: exit after S seconds (``INFO fake vllm lifetime over``);
- ``FAKE_VLLM_EXIT=N``: the exit status when stopped (default 0);
- ``VLLM_API_KEY``: requests need ``Authorization: Bearer <key>``;
- ``--headless`` (a multi-node data parallel rank): no port; the record goes to
  ``$FAKE_VLLM_RECORD.headless<--data-parallel-start-rank>``.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import socket
import sys
import threading
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
LOGS = os.path.join(os.path.dirname(HERE), "data", "watcher")


class FakeVllm:
    def __init__(self, models: Optional[List[str]] = None, api_key: Optional[str] = None, port: int = 0,
                 host: str = "127.0.0.1") -> None:
        self.models = list(models or ["tiny"])
        self.api_key = api_key
        self.completion_status = 200
        self.models_status = 200
        self.health_status = 200
        self.running = 0
        self.health_status = 200
        self.waiting = 0
        self.requests: List[Dict[str, Any]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: Any, ctype: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if fake.api_key is None:
                    return True
                return self.headers.get("Authorization") == f"Bearer {fake.api_key}"

            def do_GET(self) -> None:
                with fake.lock:
                    fake.requests.append({"method": "GET", "path": self.path,
                                          "auth": self.headers.get("Authorization", "")})
                if self.path == "/health":  # vLLM answers 200 with an empty body once the engine is up
                    return self._send(fake.health_status, b"", "text/plain")
                if self.path == "/metrics":
                    text = (
                        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
                        "# TYPE vllm:num_requests_running gauge\n"
                        f'vllm:num_requests_running{{engine="0",model_name="tiny"}} {fake.running}.0\n'
                        f'vllm:num_requests_running{{engine="1",model_name="tiny"}} 0.0\n'
                        f'vllm:num_requests_waiting{{engine="0",model_name="tiny"}} {fake.waiting}.0\n'
                        'vllm:kv_cache_usage_perc{engine="0",model_name="tiny"} 0.25\n'
                        'vllm:generation_tokens_total{engine="0",model_name="tiny"} 1234.0\n'
                    )
                    return self._send(200, text.encode(), "text/plain")
                if self.path == "/v1/models":
                    if not self._authorized():
                        return self._send(401, {"error": "Unauthorized"})
                    if fake.models_status != 200:
                        return self._send(fake.models_status, {"error": "boom"})
                    return self._send(200, {"object": "list",
                                            "data": [{"id": m, "object": "model"} for m in fake.models]})
                return self._send(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                with fake.lock:
                    fake.requests.append({"method": "POST", "path": self.path,
                                          "auth": self.headers.get("Authorization", ""), "body": body})
                if self.path == "/v1/completions":
                    if not self._authorized():
                        return self._send(401, {"error": "Unauthorized"})
                    if fake.completion_status != 200:
                        return self._send(fake.completion_status, {"error": {"message": "EngineCore died"}})
                    if body.get("model") not in fake.models:
                        return self._send(404, {"error": {"message": "model not found"}})
                    return self._send(200, {"choices": [{"index": 0, "text": "!"}], "usage": {"completion_tokens": 1}})
                return self._send(404, {"detail": "Not Found"})

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeVllm:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- the `vllm serve` stand-in ----------------------------------------------------------------------


def _record(path: str, argv: List[str]) -> None:
    record = {
        "argv": argv,
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "env": {k: os.environ.get(k) for k in ("PBSVLLM_JOB_ID", "PBSVLLM_ALIAS", "VLLM_API_KEY",
                                                "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "PYTHONUNBUFFERED",
                                                "VLLM_HOST_IP", "PBSVLLM_NODE_INDEX", "RAY_ADDRESS")},
        "cwd": os.getcwd(),
    }
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(record, fh)
    os.replace(tmp, path)


def _replay(name: str, stop_at: Optional[str] = None, pause_every: int = 10) -> None:
    with open(os.path.join(LOGS, name), encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    for i, line in enumerate(lines):
        if stop_at is not None and stop_at in line:
            return
        print(line, flush=True)
        if i % pause_every == 0:
            time.sleep(0.05)


def serve(argv: List[str]) -> int:
    """``vllm serve`` for job scripts: see the module's docstring."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--fake-startup-log", action="store_true")
    ap.add_argument("model")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--served-model-name", default=None)
    args, _rest = ap.parse_known_args(argv)
    if "--headless" in argv:  # a multi-node data parallel rank (docs/multinode.md): no API server
        return _headless(argv)
    if os.environ.get("FAKE_VLLM_RECORD"):
        _record(os.environ["FAKE_VLLM_RECORD"], [a for a in argv if a != "--fake-startup-log"])
    if os.environ.get("FAKE_VLLM_FAIL") == "kv":
        _replay("kv-too-small.log", pause_every=1)
        return 1
    if args.fake_startup_log:
        _replay("vllm-0.32.0-cpu-eager.log", stop_at="Application startup complete")
    stop: List[int] = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    lifetime = float(os.environ.get("FAKE_VLLM_LIFETIME") or "inf")
    deadline = time.time() + lifetime
    with FakeVllm([args.served_model_name or args.model], api_key=os.environ.get("VLLM_API_KEY") or None,
                  port=args.port, host=args.host):
        print("INFO fake vllm listening on", args.port, flush=True)
        if args.fake_startup_log:
            print("INFO:     Application startup complete.", flush=True)
        while not stop and time.time() < deadline:
            time.sleep(0.05)
    print("INFO fake vllm got SIGTERM" if stop else "INFO fake vllm lifetime over", flush=True)
    return int(os.environ.get("FAKE_VLLM_EXIT", "0"))


def _headless(argv: List[str]) -> int:
    """A headless rank: its record goes to ``$FAKE_VLLM_RECORD.headless<start rank>``; no port."""
    if os.environ.get("FAKE_VLLM_RECORD"):
        rank = argv[argv.index("--data-parallel-start-rank") + 1] if "--data-parallel-start-rank" in argv else "0"
        _record(os.environ["FAKE_VLLM_RECORD"] + ".headless" + rank, argv)
    stop: List[int] = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    deadline = time.time() + float(os.environ.get("FAKE_VLLM_LIFETIME") or "inf")
    print("INFO fake vllm headless", flush=True)
    while not stop and time.time() < deadline:
        time.sleep(0.05)
    print("INFO fake vllm got SIGTERM" if stop else "INFO fake vllm lifetime over", flush=True)
    return int(os.environ.get("FAKE_VLLM_EXIT", "0"))


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:]))
