"""The per-alias router supervisor: ``python -m pbsvllm.router.supervisor --home H --alias A``.

Started detached by :func:`pbsvllm.router.ensure_running` (its own session,
output to ``router.log``), it

1. writes ``supervisor.pid``;
2. serves the alias's *placeholder* on a loopback port: every request gets
   ``503`` and a JSON error naming the alias (``/health`` answers 200 so the
   router keeps it as a worker while the alias has no server);
3. runs ``vllm-router`` as a child process (``python -m
   vllm_router.launch_router``, arguments from the state file: address,
   port, policy; no key: vllm-router passes each client's
   ``Authorization`` header through to the servers, which check it) and
   restarts it when it exits (1 s, doubling to 30 s between tries);
4. every 2 s (and right after each start) makes the router's workers match
   the state file (:func:`pbsvllm.router.model.desired_workers`), under the
   state lock, so membership survives a router restart;
5. on SIGTERM/SIGINT stops the router, removes the pid file and exits 0.
"""

from __future__ import annotations

import argparse
import fcntl
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import List, Optional

from pbsvllm.router.admin import RouterAdmin
from pbsvllm.router.model import RouterState, no_server_message
from pbsvllm.router.store import RouterStore

RECONCILE_EVERY_S = 2.0
MAX_BACKOFF_S = 30.0


def log(msg: str) -> None:
    print(time.strftime("%Y-%m-%d %H:%M:%S ") + "pbsvllm-router: " + msg, flush=True)


def placeholder_server(alias: str) -> http.server.ThreadingHTTPServer:
    """A loopback HTTP server answering 503 + a message naming ``alias`` (200 on /health)."""
    body = json.dumps({"error": {"message": no_server_message(alias), "type": "service_unavailable",
                                 "code": 503, "alias": alias}}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _answer(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(min(n, 1 << 20))
            if self.path.split("?")[0] == "/health":
                status, data = 200, b""
            else:
                status, data = 503, body
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Retry-After", "30")
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    return srv


def router_argv(state: RouterState) -> List[str]:
    """The ``vllm-router`` command for ``state`` (no secrets: none is needed)."""
    return [
        state.python or sys.executable, "-m", "vllm_router.launch_router",
        "--host", state.host, "--port", str(state.port),
        "--policy", state.policy,
        # A 503 from the placeholder must reach the client as is; the circuit
        # breaker would turn it into "all circuits open". Dead servers are
        # handled by retries, health checks and pbsvllm removing them.
        "--disable-circuit-breaker",
        "--health-check-interval-secs", str(state.health_check_interval_s),
        "--health-failure-threshold", "2",
        "--worker-startup-timeout-secs", "10",  # members passed the readiness check already
        "--worker-startup-check-interval", "1",
        "--request-timeout-secs", str(state.request_timeout_s),
        "--max-concurrent-requests", "4096",
        "--queue-size", "4096",
        "--log-level", "warning",
        "--prometheus-host", "127.0.0.1", "--prometheus-port", str(state.metrics_port or _free_port("127.0.0.1")),
    ]


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def reconcile(store: RouterStore, admin: RouterAdmin) -> Optional[str]:
    """Make the router's workers match the state; returns a note of what changed."""
    from pbsvllm.router import apply_state

    with store.lock():
        state = store.read()
        if state is None:
            return None
        return apply_state(admin, state)


class Supervisor:
    def __init__(self, store: RouterStore) -> None:
        self.store = store
        self.stopping = False
        self.child: Optional[subprocess.Popen[bytes]] = None

    def stop(self, *_args: object) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        placeholder = placeholder_server(self.store.alias)
        port = placeholder.server_address[1]
        state = self.store.update(lambda s: _with_placeholder(s, self.store.alias, int(port)))
        with open(self.store.pid_path + ".tmp", "w", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()}\n")
        os.replace(self.store.pid_path + ".tmp", self.store.pid_path)
        admin = RouterAdmin(state.admin_url, timeout=15.0)
        backoff = 1.0
        try:
            while not self.stopping:
                if self.child is None or self.child.poll() is not None:
                    if self.child is not None:
                        log(f"vllm-router exited with status {self.child.returncode}; restarting in {backoff:.0f} s")
                        if self._sleep(backoff):
                            break
                        backoff = min(backoff * 2, MAX_BACKOFF_S)
                    state = self.store.read() or state
                    log(f"starting vllm-router for {state.alias} on {state.host}:{state.port} (policy {state.policy})")
                    self.child = subprocess.Popen(router_argv(state), stdin=subprocess.DEVNULL)
                    started = time.monotonic()
                    while not admin.alive() and self.child.poll() is None and not self.stopping:
                        time.sleep(0.1)
                    if self.child.poll() is not None:
                        continue
                    log(f"vllm-router up after {time.monotonic() - started:.1f} s (pid {self.child.pid})")
                if not os.path.isfile(self.store.state_path):
                    log(f"{self.store.state_path} is gone (the alias's router was deleted): stopping")
                    break
                try:
                    note = reconcile(self.store, admin)
                    if note:
                        log(note)
                    if self.child is not None and self.child.poll() is None:
                        backoff = 1.0
                except OSError as exc:
                    log(f"could not sync the router's workers: {exc}")
                if self._sleep(RECONCILE_EVERY_S):
                    break
        finally:
            self._stop_child()
            placeholder.shutdown()
            try:
                if self.store.pid() == os.getpid():
                    os.unlink(self.store.pid_path)
            except OSError:
                pass
            log("stopped")
        return 0

    def _sleep(self, seconds: float) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.stopping:
                return True
            time.sleep(0.05)
        return self.stopping

    def _stop_child(self) -> None:
        if self.child is None or self.child.poll() is not None:
            return
        self.child.terminate()
        try:
            self.child.wait(10)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()


def _with_placeholder(state: Optional[RouterState], alias: str, port: int) -> RouterState:
    import dataclasses

    base = state if state is not None else RouterState(alias=alias)
    return dataclasses.replace(base, placeholder_port=port)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pbsvllm.router.supervisor")
    ap.add_argument("--home", required=True)
    ap.add_argument("--alias", required=True)
    args = ap.parse_args(argv)
    store = RouterStore(args.home, args.alias)
    if store.read() is None:
        log(f"no state file {store.state_path}; use `pbsvllm router start {args.alias}`")
        return 2
    # held for the supervisor's whole life: a second one started at the same time exits here
    lock_fd = os.open(store.pid_path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        log(f"a supervisor for {args.alias} already runs (pid {store.pid()})")
        return 0
    return Supervisor(store).run()


if __name__ == "__main__":
    sys.exit(main())
