"""Zero failed requests through an alias's stable URL, with the real vllm-router
and real vLLM CPU servers (the tiny model), while servers join and leave.

One steady client (2 threads, each request a fresh 2-token completion)
sends to the URL that `pbsvllm url tiny --json` prints, for the whole test:

(a)+(b) the alias scales from 1 to 2 servers (B joins after pbsvllm's
        readiness check, as the watcher does), then back to 1: `scale`'s
        choice (the oldest ready job, A) leaves the router, drains, and only
        then is its job cancelled (its server gets SIGTERM, as from qdel);
(c)     `swap-endpoint tiny --to C --cancel-old`: C joins, B drains, leaves,
        and its job is cancelled;
then the real verifiers 0.4 (own venv) loads the `vf-eval @ FILE` config
written by `pbsvllm url tiny --write-vf-config FILE` and its client gets a
chat completion through the router.

Three vLLM starts in all (A and B on disjoint cores, C on A's core once A is
gone): about 2-4 min on a quiet 2-core machine. A killed server (kill -9)
is tested with fake servers behind the same real router in test_router.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Dict, List, Tuple

import pytest

from pbsvllm import router
from pbsvllm.config import resolve
from pbsvllm.health import check_ready
from pbsvllm.jobs import JobRecord, JobStore
from pbsvllm.models import ServerState
from pbsvllm.router.membership import RouterMembership, leave_then_cancel
from pbsvllm.scale import live_jobs, plan_scale
from pbsvllm.swap import swap_endpoint
from tests.paths import ROOT
from tests.plugins.verifiers import run_vf_client
from tests.plugins.vllm import start_vllm_server

pytestmark = [pytest.mark.router, pytest.mark.vllm, pytest.mark.slow]


class SteadyClient:
    """Threads sending completions back to back; every outcome is kept."""

    def __init__(self, url: str, threads: int = 2) -> None:
        self.url = url.rstrip("/") + "/completions"
        self.stop_flag = threading.Event()
        self.results: List[Tuple[float, int, str]] = []  # (time, status or 0, detail)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, i: int) -> None:
        n = 0
        while not self.stop_flag.is_set():
            n += 1
            body = json.dumps({"model": "tiny", "prompt": f"client {i} request {n}:", "max_tokens": 2}).encode()
            req = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=120) as resp:
                    resp.read()
                    status, detail = resp.status, ""
            except urllib.error.HTTPError as exc:
                status, detail = exc.code, exc.read()[:300].decode(errors="replace")
            except OSError as exc:
                status, detail = 0, repr(exc)
            with self.lock:
                self.results.append((time.monotonic(), status, detail))

    def start(self) -> SteadyClient:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stop_flag.set()
        for t in self.threads:
            t.join(150)

    def count(self) -> int:
        with self.lock:
            return len(self.results)

    def failures(self) -> List[Tuple[float, int, str]]:
        with self.lock:
            return [r for r in self.results if r[1] != 200]

    def wait_for(self, more: int, timeout: float = 120.0) -> None:
        target = self.count() + more
        deadline = time.monotonic() + timeout
        while self.count() < target and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.count() >= target, f"the client made no progress ({self.count()} < {target})"


def served(url: str) -> float:
    """Requests this server has finished (vLLM's request-success counter)."""
    root = url.rsplit("/v1", 1)[0]
    with urllib.request.urlopen(root + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:request_success_total"))


def test_steady_client_sees_zero_failures_through_scale_cancel_and_swap(vllm_env, router_python, verifiers_python,
                                                                         tmp_path):
    home = str(tmp_path / "home")
    os.makedirs(home, mode=0o700)
    settings = resolve({"home": home, "profile": "local", "router": "on", "router_python": router_python},
                       env={})
    store = JobStore(home)
    servers: Dict[str, object] = {}
    client = None
    try:
        a = start_vllm_server(vllm_env, str(tmp_path / "a"), extra_env={"VLLM_CPU_OMP_THREADS_BIND": "0"},
                              wait=False)
        b = start_vllm_server(vllm_env, str(tmp_path / "b"), extra_env={"VLLM_CPU_OMP_THREADS_BIND": "1"},
                              wait=False)
        servers.update(A=a, B=b)
        a.wait_ready()
        b.wait_ready()

        def record(job_id: str, srv: object, t: float) -> JobRecord:
            rec = JobRecord(job_id=job_id, alias="tiny", model="tiny", served_model_name="tiny", scheduler="local",
                            submitted_at=t, url=srv.base_url, server_state=ServerState.READY)  # type: ignore[attr-defined]
            return store.save(rec)

        def cancel(srv: object, job_id: str) -> str:
            srv.stop()  # type: ignore[attr-defined]  # SIGTERM to the server, as the scheduler's qdel does
            store.update(job_id, cancelled_at=time.time())
            return f"job {job_id} cancelled"

        members = RouterMembership(settings)
        rec_a = record("1.fake", a, 1.0)
        assert check_ready(a.base_url, "tiny").ready
        members.join("tiny", "tiny", "VLLM_API_KEY", [a.base_url], rec_a.job_id)

        out = subprocess.run([sys.executable, "-m", "pbsvllm", "url", "tiny", "--json", "--home", home],
                             capture_output=True, text=True, cwd=ROOT, timeout=60,
                             env={**os.environ, "PBSVLLM_ROUTER_PYTHON": router_python})
        assert out.returncode == 0, out.stderr
        info = json.loads(out.stdout)
        assert info["model"] == "tiny" and info["api_key_var"] == "VLLM_API_KEY"
        url = info["url"]
        client = SteadyClient(url).start()
        client.wait_for(10)

        # (a) 1 -> 2: B joins only after the readiness check
        rec_b = record("2.fake", b, 2.0)
        assert check_ready(b.base_url, "tiny").ready
        before_b = served(b.base_url)
        members.join("tiny", "tiny", "VLLM_API_KEY", [b.base_url], rec_b.job_id)
        client.wait_for(30)
        assert served(b.base_url) > before_b, "the router never sent anything to the server that joined"

        # (a)+(b) 2 -> 1: scale's choice leaves (drained) before its job is cancelled
        plan = plan_scale(live_jobs(store.list(), "tiny"), 1)
        assert [r.job_id for r in plan.cancel] == [rec_a.job_id]
        res = leave_then_cancel(home, rec_a, lambda: cancel(a, rec_a.job_id), drain_timeout_s=60)
        assert res.drained and res.cancelled, res
        assert [m.job_id for m in router.members("tiny", home=home)] == [rec_b.job_id]
        client.wait_for(20)

        # (c) swap-endpoint to a new job: join new, drain old, remove old, cancel old
        c = start_vllm_server(vllm_env, str(tmp_path / "c"), extra_env={"VLLM_CPU_OMP_THREADS_BIND": "0"})
        servers["C"] = c
        rec_c = record("3.fake", c, 3.0)
        swap = swap_endpoint(settings, "tiny", rec_c.job_id, store=store, cancel_old=True, drain_timeout_s=60,
                             cancel=lambda job_id: cancel(b, job_id))
        assert swap.url == url  # the alias's URL never changed
        assert [o["job_id"] for o in swap.old_jobs] == [rec_b.job_id] and swap.old_jobs[0]["cancelled"]
        assert [m.job_id for m in router.members("tiny", home=home)] == [rec_c.job_id]
        before_c = served(c.base_url)
        client.wait_for(20)
        assert served(c.base_url) > before_c
        client.stop()
        assert client.failures() == [], client.failures()[:5]
        assert client.count() >= 80

        # the real verifiers 0.4 loads the config `pbsvllm url --write-vf-config` writes and gets a
        # chat completion through the router
        cfg = str(tmp_path / "tiny.vf.toml")
        out = subprocess.run([sys.executable, "-m", "pbsvllm", "url", "tiny", "--home", home, "--write-vf-config", cfg],
                             capture_output=True, text=True, cwd=ROOT, timeout=60,
                             env={**os.environ, "PBSVLLM_ROUTER_PYTHON": router_python})
        assert out.returncode == 0 and out.stdout.strip() == url, out.stderr
        vf = run_vf_client(verifiers_python, cfg, {k: v for k, v in os.environ.items() if not k.startswith("PRIME_")})
        assert vf["base_url"] == url and vf["reply"]["ok"], vf
    finally:
        if client is not None:
            client.stop()
        for srv in servers.values():
            srv.stop()  # type: ignore[attr-defined]
        for alias in router.aliases(home=home):
            router.stop(alias, home=home)
