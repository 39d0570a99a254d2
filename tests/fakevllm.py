"""A tiny stdlib HTTP stand-in for the few vLLM routes the probes use.

Only for unit tests of probe logic (e.g. 200 on /v1/models but 500 on the
completion); the real vLLM server is exercised by the e2e tests.
"""

from __future__ import annotations

import http.server
import json
import threading
from typing import Dict, List, Optional


class FakeVllm:
    def __init__(self, models: Optional[List[str]] = None, api_key: Optional[str] = None, port: int = 0) -> None:
        self.models = list(models or ["tiny"])
        self.api_key = api_key
        self.completion_status = 200
        self.models_status = 200
        self.health_status = 200
        self.running = 0
        self.waiting = 0
        self.requests: List[Dict[str, str]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status, body, ctype="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self):
                if fake.api_key is None:
                    return True
                return self.headers.get("Authorization") == f"Bearer {fake.api_key}"

            def do_GET(self):
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
                    return self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in fake.models]})
                return self._send(404, {"detail": "Not Found"})

            def do_POST(self):
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

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "FakeVllm":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":  # python -m tests.fakevllm PORT MODEL: a stand-in server process
    import sys
    import time

    with FakeVllm([sys.argv[2]], port=int(sys.argv[1])):
        while True:
            time.sleep(3600)
