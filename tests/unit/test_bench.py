"""pbsvllm bench: the pure core, and the real load generator against real local HTTP servers.

The servers here are real stdlib HTTP servers on loopback ports chosen at run
time. One path serves a correct OpenAI completion stream; the others fail on
purpose (HTTP 500, connection closed, hanging, garbage body, no [DONE],
error object mid-stream) so the counting of errors by kind is tested against
real sockets. The real vLLM CPU server is in test_bench_vllm.py.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pbsvllm import bench
from pbsvllm.config import resolve
from pbsvllm.errors import ConfigError, JobNotFoundError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --------------------------------------------------------------------------- a real local server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send_json(self, status, obj):
        raw = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _start_stream(self, chunked=True):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def _chunk(self, text, chunked=True):
        raw = text.encode()
        if chunked:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))
        else:
            self.wfile.write(raw)
        self.wfile.flush()

    def _end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def do_POST(self):
        srv = self.server
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        parts = self.path.strip("/").split("/")
        mode = parts[0]
        with srv.lock:
            srv.bodies.setdefault(mode, []).append(body)
            srv.auth.setdefault(mode, []).append(self.headers.get("Authorization"))
            count = srv.counts.get(mode, 0)
            srv.counts[mode] = count + 1
        if parts[-1] != "completions":
            return self._send_json(404, {"error": "not found"})
        if mode == "mixed":
            mode = ("ok", "500", "close", "garbage")[count % 4]
        if mode == "auth":
            if self.headers.get("Authorization") != "Bearer " + srv.secret:
                return self._send_json(401, {"error": "Unauthorized"})
            mode = "ok"
        if mode in ("ok", "slow", "seeded"):
            n = int(body.get("max_tokens", 1))
            self._start_stream()
            for i in range(n):
                if mode == "slow":
                    time.sleep(0.05)
                self._chunk("data: " + json.dumps({"choices": [{"index": 0, "text": " t%d" % i}]}) + "\n\n")
            usage = {"prompt_tokens": len(body.get("prompt", "").split()), "completion_tokens": n}
            self._chunk("data: " + json.dumps({"choices": [], "usage": usage}) + "\n\n")
            self._chunk("data: [DONE]\n\n")
            return self._end_chunks()
        if mode == "500":
            return self._send_json(500, {"error": {"message": "engine dead", "code": 500}})
        if mode == "close":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "hang":
            srv.stop.wait(10)  # the client gives up first (its timeout); write nothing
            self.close_connection = True
            return
        if mode == "garbage":
            self._start_stream()
            self._chunk("this is not an event stream\n")
            return self._end_chunks()
        if mode == "nodone":
            self._start_stream(chunked=False)
            self._chunk("data: " + json.dumps({"choices": [{"text": "x"}]}) + "\n\n", chunked=False)
            return
        if mode == "streamerr":
            self._start_stream()
            self._chunk("data: " + json.dumps({"choices": [{"text": "x"}]}) + "\n\n")
            self._chunk("data: " + json.dumps({"error": {"message": "EngineCore died", "code": 500}}) + "\n\n")
            self._chunk("data: [DONE]\n\n")
            return self._end_chunks()
        return self._send_json(400, {"error": "unknown mode " + mode})


class _Server(ThreadingHTTPServer):
    request_queue_size = 128
    def handle_error(self, request, client_address):
        pass  # clients of the failure modes hang up on purpose


@pytest.fixture(scope="module")
def fake_server():
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.lock = threading.Lock()
    srv.bodies, srv.auth, srv.counts = {}, {}, {}
    srv.stop = threading.Event()
    srv.secret = "sk-bench-test-0123456789"
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    srv.base = "http://127.0.0.1:%d" % srv.server_address[1]
    yield srv
    srv.stop.set()
    srv.shutdown()
    srv.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the block ends: nothing listens there


def run_cli(*args, env_extra=None, check_rc=None):
    env = dict(os.environ)
    env.pop("VLLM_API_KEY", None)
    env["PBSVLLM_HOME"] = env.get("PBSVLLM_HOME_TEST", "/nonexistent-pbsvllm-home")
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-m", "pbsvllm", "bench", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)
    if check_rc is not None:
        assert proc.returncode == check_rc, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def target(srv, mode, key=None):
    return bench.Target(mode, (bench.Endpoint(srv.base + "/" + mode + "/v1", "m", key),), "url")


# --------------------------------------------------------------------------- pure core


def test_percentile_interpolates_and_handles_edges():
    assert bench.percentile([], 50) is None
    assert bench.percentile([3.0], 99) == 3.0
    assert bench.percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    xs = list(range(1, 101))
    assert bench.percentile(xs, 99) == pytest.approx(99.01)
    assert bench.percentile(xs, 0) == 1 and bench.percentile(xs, 100) == 100


def test_summarize_counts_errors_by_kind_and_throughput_from_successes_only():
    results = [
        bench.RequestResult(0, True, 1.0, 0.1, 10, 5),
        bench.RequestResult(1, True, 3.0, 0.3, 10, 7),
        bench.RequestResult(2, False, 0.5, error="http_500", detail="boom"),
        bench.RequestResult(3, False, 2.0, error="timeout"),
        bench.RequestResult(4, False, 0.1, error="http_500", detail="second"),
    ]
    lv = bench.summarize(results, concurrency=4, duration_s=2.0)
    assert (lv.requests, lv.ok) == (5, 2)
    assert lv.errors == {"http_500": 2, "timeout": 1}
    assert lv.error_examples["http_500"] == "boom"
    assert lv.requests_per_s == pytest.approx(1.0)
    assert lv.output_tokens_per_s == pytest.approx(6.0)
    assert lv.latency_p50_s == pytest.approx(2.0)
    assert lv.ttft_p50_s == pytest.approx(0.2)
    assert lv.mean_output_tokens == pytest.approx(6.0)


def test_ratios_are_other_over_base_and_none_when_undefined():
    a = bench.summarize([bench.RequestResult(0, True, 2.0, 0.5, 1, 10)], 1, 2.0)
    b = bench.summarize([bench.RequestResult(0, True, 1.0, 0.25, 1, 10)], 1, 1.0)
    r = bench.ratios(a, b)
    assert r["requests_per_s"] == pytest.approx(2.0)
    assert r["latency_p50_s"] == pytest.approx(0.5)
    empty = bench.summarize([bench.RequestResult(0, False, 1.0, error="timeout")], 1, 1.0)
    assert bench.ratios(empty, b)["requests_per_s"] is None
    assert bench.ratios(empty, b)["ttft_p50_s"] is None


def test_synthetic_requests_are_fixed_by_the_seed():
    a = bench.synthetic_requests(50, 32, 16, seed=7)
    b = bench.synthetic_requests(50, 32, 16, seed=7)
    c = bench.synthetic_requests(50, 32, 16, seed=8)
    assert a == b and a != c
    assert all(len(r.prompt.split()) == 32 and r.max_tokens == 16 for r in a)
    assert len({r.prompt for r in a}) == 50
    with pytest.raises(ConfigError):
        bench.synthetic_requests(0, 32, 16, 0)


def test_parse_prompts_jsonl_cycles_and_names_bad_lines():
    text = '"plain string"\n\n{"prompt": "obj", "max_tokens": 3}\n{"prompt": "x", "output_len": 4}\n'
    reqs = bench.parse_prompts(text, "p.jsonl", 5, output_len=9)
    assert [(r.prompt, r.max_tokens) for r in reqs] == [
        ("plain string", 9), ("obj", 3), ("x", 4), ("plain string", 9), ("obj", 3)]
    with pytest.raises(ConfigError, match=r"p.jsonl:2: not valid JSON"):
        bench.parse_prompts('"a"\n{oops\n', "p.jsonl", 1, 9)
    with pytest.raises(ConfigError, match=r"p.jsonl:1: expected a JSON string"):
        bench.parse_prompts('{"text": "a"}\n', "p.jsonl", 1, 9)
    with pytest.raises(ConfigError, match="max_tokens must be a positive integer"):
        bench.parse_prompts('{"prompt": "a", "max_tokens": 0}\n', "p.jsonl", 1, 9)
    with pytest.raises(ConfigError, match="no prompts"):
        bench.parse_prompts("\n\n", "p.jsonl", 1, 9)


def test_request_body_streams_with_usage_and_ignore_eos():
    body = bench.request_body(bench.BenchRequest(0, "hi", 12), "tiny")
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["ignore_eos"] is True and body["max_tokens"] == 12 and body["model"] == "tiny"
    assert "ignore_eos" not in bench.request_body(bench.BenchRequest(0, "hi", 12), "tiny", ignore_eos=False)


def test_stream_parser_first_token_usage_and_failures():
    p = bench.StreamParser()
    assert p.feed("") is False
    assert p.feed(": keep-alive") is False
    assert p.feed('data: {"choices": [{"text": ""}]}') is False  # empty text is not a token yet
    assert p.feed('data: {"choices": [{"text": "a"}]}') is True
    assert p.feed('data: {"choices": [{"text": "b"}]}') is False
    p.feed('data: {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}}')
    p.feed("data: [DONE]")
    assert p.finish() == (4, 2)

    q = bench.StreamParser()  # no usage: text chunks are counted
    q.feed('data: {"choices": [{"text": "a"}]}')
    q.feed('data: {"choices": [{"text": "b"}]}')
    q.feed("data: [DONE]")
    assert q.finish() == (0, 2)

    with pytest.raises(bench.BadBody, match="not JSON"):
        bench.StreamParser().feed("data: {nope")
    with pytest.raises(bench.BadBody, match="unexpected line"):
        bench.StreamParser().feed("<html>")
    with pytest.raises(bench.StreamError, match="EngineCore died"):
        bench.StreamParser().feed('data: {"error": {"message": "EngineCore died"}}')
    r = bench.StreamParser()
    r.feed('data: {"choices": [{"text": "a"}]}')
    with pytest.raises(bench.BadBody, match=r"without 'data: \[DONE\]'"):
        r.finish()


def test_urls_aliases_and_levels():
    assert bench.normalize_base_url("http://node:8005") == "http://node:8005/v1"
    assert bench.normalize_base_url("http://node:8005/v1/") == "http://node:8005/v1"
    assert bench.normalize_base_url("https://gw.example/api/x") == "https://gw.example/api/x"
    with pytest.raises(ConfigError, match="not an http"):
        bench.normalize_base_url("node:8005")
    with pytest.raises(ConfigError, match="--model"):
        bench.resolve_target("http://node:8005/v1", None)
    t = bench.resolve_target("http://node:8005/v1", "tiny", "MY_KEY", environ={"MY_KEY": "s3"})
    assert t.endpoints[0].api_key == "s3" and "s3" not in repr(t) and "s3" not in json.dumps(t.to_json())
    assert bench.resolve_target("http://n:1", "tiny", environ={}).endpoints[0].api_key is None
    assert bench.parse_concurrency("1, 8,64") == [1, 8, 64]
    for bad in ("", "0", "a,b", "-1"):
        with pytest.raises(ConfigError):
            bench.parse_concurrency(bad)


def test_alias_resolution_registry_config_and_job_records(tmp_path):
    from pbsvllm.jobs import JobRecord, JobStore
    from pbsvllm.registry import Endpoint, open_registry

    env = {"PBSVLLM_HOME": str(tmp_path / "home"), "PBSVLLM_CONFIG": str(tmp_path / "config.toml"),
           "POOL_KEY": "sk-pool", "VLLM_API_KEY": "sk-default"}
    (tmp_path / "config.toml").write_text('registries = ["%s"]\n' % (tmp_path / "conf-endpoints.toml"))
    settings = resolve({}, env)  # resolved once by the caller (the CLI, api.Client): bench reads no config
    with pytest.raises(JobNotFoundError, match="no endpoint is known for alias 'nope'") as exc:
        bench.resolve_target("nope", None, environ=env, settings=settings)
    assert "conf-endpoints.toml" in str(exc.value) and "job records in" in str(exc.value)

    explicit = open_registry(str(tmp_path / "endpoints.toml"))
    explicit.register(Endpoint("pool", "tiny", "http://n1:8000/v1", "POOL_KEY"))
    explicit.register(Endpoint("pool", "tiny", "http://n2:8000/v1", "POOL_KEY"), replace=False)
    t = bench.resolve_target("pool", None, registries=[explicit.path], environ=env, settings=settings)
    assert [e.url for e in t.endpoints] == ["http://n1:8000/v1", "http://n2:8000/v1"]
    assert {e.api_key for e in t.endpoints} == {"sk-pool"} and t.api_key_env == "POOL_KEY"
    assert t.source == "registry " + explicit.path
    assert "sk-pool" not in json.dumps(t.to_json())
    with pytest.raises(JobNotFoundError):  # an explicit registry is the only place looked at
        bench.resolve_target("other", None, registries=[explicit.path], environ=env, settings=settings)
    with pytest.raises(ConfigError, match="does not exist"):
        bench.resolve_target("pool", None, registries=[str(tmp_path / "typo.toml")], environ=env, settings=settings)
    t = bench.resolve_target("pool", "override", registries=[explicit.path], environ=env, settings=settings)
    assert {e.model for e in t.endpoints} == {"override"} and t.endpoints[0].api_key == "sk-pool"

    # the registries of the user config
    conf = open_registry(str(tmp_path / "conf-endpoints.toml"))
    conf.register(Endpoint("cfg", "tiny", "http://n3:8000/v1"))
    t = bench.resolve_target("cfg", None, environ=env, settings=settings)
    assert [e.url for e in t.endpoints] == ["http://n3:8000/v1"] and t.endpoints[0].api_key == "sk-default"

    # job records: the ready ones (replicas) win over older non-ready ones
    store = JobStore(env["PBSVLLM_HOME"])
    store.save(JobRecord("11", alias="job", served_model_name="tiny", url="http://n4:8000/v1",
                         server_state="stopped", submitted_at=1))
    t = bench.resolve_target("job", None, environ=env, settings=settings)
    assert [e.url for e in t.endpoints] == ["http://n4:8000/v1"] and "stopped" in t.source
    store.save(JobRecord("12", alias="job", served_model_name="tiny", url="http://n5:8000", server_state="ready",
                         submitted_at=2, api_key_env="POOL_KEY"))
    store.save(JobRecord("13", alias="job", model="/m/tiny", url="http://n6:8000/v1", server_state="ready",
                         submitted_at=3))
    t = bench.resolve_target("job", None, environ=env, settings=settings)
    assert [(e.url, e.model) for e in t.endpoints] == [("http://n5:8000/v1", "tiny"), ("http://n6:8000/v1", "/m/tiny")]
    assert [e.api_key for e in t.endpoints] == ["sk-pool", "sk-default"]
    assert t.source.startswith("job record(s) 12, 13")


# --------------------------------------------------------------------------- real HTTP


def test_run_bench_against_a_correct_stream(fake_server):
    reqs = bench.synthetic_requests(12, 6, 5, seed=1)
    seen = []
    report = bench.run_bench([target(fake_server, "ok")], reqs, [1, 4], timeout_s=10,
                             progress=lambda label, done, total, errs: seen.append((label, done, total, errs)))
    lv1, lv4 = report.runs[0].levels
    for lv in (lv1, lv4):
        assert (lv.requests, lv.ok, lv.errors) == (12, 12, {})
        assert lv.mean_output_tokens == 5 and lv.mean_prompt_tokens == 6
        assert lv.output_tokens_per_s == pytest.approx(lv.requests_per_s * 5)
        assert 0 < lv.ttft_p50_s <= lv.latency_p50_s <= lv.latency_p99_s
    assert seen[-1] == ("ok c=4", 12, 12, 0)
    assert sorted(b["prompt"] for b in fake_server.bodies["ok"][-12:]) == sorted(r.prompt for r in reqs)


def test_errors_are_counted_by_kind_not_crashed(fake_server):
    reqs = bench.synthetic_requests(8, 4, 3, seed=2)
    report = bench.run_bench([target(fake_server, "mixed")], reqs, [1], timeout_s=5)
    lv = report.runs[0].levels[0]
    assert lv.ok == 2
    assert lv.errors == {"bad_body": 2, "connection": 2, "http_500": 2}
    assert "engine dead" in lv.error_examples["http_500"]

    others = [target(fake_server, m) for m in ("nodone", "streamerr", "hang")]
    others.append(bench.Target("refused", (bench.Endpoint("http://127.0.0.1:%d/v1" % closed_port(), "m"),), "url"))
    t0 = time.monotonic()
    report = bench.run_bench(others, reqs[:2], [2], timeout_s=0.5)
    assert time.monotonic() - t0 < 8
    kinds = {run.target.name: run.levels[0].errors for run in report.runs}
    assert kinds == {"nodone": {"bad_body": 2}, "streamerr": {"stream_error": 2}, "hang": {"timeout": 2},
                     "refused": {"connection": 2}}


def test_cli_json_same_seed_same_requests(fake_server):
    url = fake_server.base + "/seeded/v1"
    fake_server.bodies["seeded"] = []
    args = [url, "--model", "m", "-n", "6", "-c", "1", "--input-len", "5", "--output-len", "3", "--json"]
    out1 = json.loads(run_cli(*args, "--seed", "3", check_rc=0).stdout)
    first = [b["prompt"] for b in fake_server.bodies["seeded"]]
    fake_server.bodies["seeded"] = []
    run_cli(*args, "--seed", "3", check_rc=0)
    second = [b["prompt"] for b in fake_server.bodies["seeded"]]
    fake_server.bodies["seeded"] = []
    run_cli(*args, "--seed", "4", check_rc=0)
    third = [b["prompt"] for b in fake_server.bodies["seeded"]]
    assert first == second and first != third and len(first) == 6
    lv = out1["runs"][0]["levels"][0]
    assert lv["errors"] == {} and lv["ok"] == 6 and lv["mean_output_tokens"] == 3
    assert out1["settings"]["seed"] == 3 and out1["runs"][0]["target"]["urls"] == [url]


def test_cli_all_failed_exits_with_server_error_after_the_report(fake_server):
    proc = run_cli("http://127.0.0.1:%d/v1" % closed_port(), "--model", "m", "-n", "3", "-c", "1",
                   "--timeout", "2", check_rc=7)
    assert "connection 3" in proc.stdout
    assert proc.stderr.strip().startswith("pbsvllm: error: all 3 requests failed (connection)")
    assert "Traceback" not in proc.stderr


def test_cli_table_vs_and_csv(fake_server):
    base, slow = fake_server.base + "/ok/v1", fake_server.base + "/slow/v1"
    proc = run_cli(base, "--vs", slow, "--model", "m", "-n", "4", "-c", "1,2", "--input-len", "3",
                   "--output-len", "6", check_rc=0)
    out = proc.stdout
    assert "ratio %s / %s" % (slow, base) in out
    assert "TTFT p50" in out and "req/s" in out
    ratio_lines = [ln for ln in out.splitlines() if ln.strip().startswith(("1 ", "2 ")) and "x" in ln]
    assert len(ratio_lines) == 2
    # slow sleeps 50 ms per token (300 ms a request, vs a few ms): the ratio's direction is unmistakable
    proc = run_cli(base, "--vs", slow, "--model", "m", "-n", "4", "-c", "1", "--input-len", "3",
                   "--output-len", "6", "--csv", check_rc=0)
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["target"] for r in rows] == [base, slow, "ratio"]
    ratio = rows[2]
    assert float(ratio["latency_p50_s"]) > 5 and float(ratio["requests_per_s"]) < 0.2
    assert rows[0]["ok"] == "4" and rows[0]["errors"] == ""
    # TTFT is taken at the first streamed chunk, not at the end: slow's first token comes after
    # ~50 ms, its last after ~300 ms
    assert float(rows[1]["ttft_p50_s"]) < float(rows[1]["latency_p50_s"]) / 2
    assert "\r" not in proc.stderr  # no progress line when stderr is not a terminal


def test_cli_prompts_file_and_api_key_from_env(fake_server, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('"alpha beta"\n{"prompt": "gamma", "max_tokens": 2}\n')
    url = fake_server.base + "/auth/v1"
    fake_server.auth["auth"] = []
    proc = run_cli(url, "--model", "m", "-n", "4", "-c", "2", "--prompts", str(prompts), "--json",
                   "--api-key-env", "BENCH_TEST_KEY", env_extra={"BENCH_TEST_KEY": fake_server.secret},
                   check_rc=0)
    lv = json.loads(proc.stdout)["runs"][0]["levels"][0]
    assert lv["ok"] == 4 and lv["mean_output_tokens"] == pytest.approx((128 + 2) / 2)
    assert fake_server.secret not in proc.stdout + proc.stderr
    assert set(fake_server.auth["auth"]) == {"Bearer " + fake_server.secret}
    proc = run_cli(url, "--model", "m", "-n", "2", "-c", "1", "--prompts", str(prompts), "--json",
                   "--api-key-env", "BENCH_TEST_KEY", check_rc=7)
    assert json.loads(proc.stdout)["runs"][0]["levels"][0]["errors"] == {"http_401": 2}
    assert "$BENCH_TEST_KEY is not set" in proc.stderr


def test_cli_bad_options_are_one_line_errors(tmp_path):
    proc = run_cli("http://127.0.0.1:9/v1", "--model", "m", "--json", "--csv", check_rc=10)
    assert "exclusive" in proc.stderr
    proc = run_cli("http://127.0.0.1:9/v1", check_rc=10)
    assert "--model" in proc.stderr and "Traceback" not in proc.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    proc = run_cli("http://127.0.0.1:9/v1", "--model", "m", "--prompts", str(bad), check_rc=10)
    assert "bad.jsonl:1: not valid JSON" in proc.stderr


def test_progress_is_shown_on_a_terminal(fake_server):
    master, slave = pty.openpty()
    env = dict(os.environ)
    env.pop("VLLM_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "pbsvllm", "bench", fake_server.base + "/ok/v1",
                             "--model", "m", "-n", "5", "-c", "1", "--input-len", "2", "--output-len", "2",
                             "--json"], stdout=subprocess.PIPE, stderr=slave, env=env, cwd=ROOT)
    os.close(slave)
    out, _ = proc.communicate(timeout=60)
    err = b""
    while True:
        r, _, _ = select.select([master], [], [], 0.5)
        if not r:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        err += chunk
    os.close(master)
    assert proc.returncode == 0
    assert b"\r" in err and b"m/v1 c=1: 5/5 done, 0 errors" in err.replace(fake_server.base.encode() + b"/ok/v1", b"m/v1")
    assert json.loads(out)["runs"][0]["levels"][0]["ok"] == 5


def test_cli_alias_from_a_registry_spreads_over_replicas(fake_server, tmp_path):
    from pbsvllm.registry import Endpoint, open_registry

    reg = open_registry(str(tmp_path / "endpoints.toml"))
    reg.register(Endpoint("pool", "m", fake_server.base + "/auth/v1", "BENCH_POOL_KEY"))
    reg.register(Endpoint("pool", "m", fake_server.base + "/ok/v1", "BENCH_POOL_KEY"), replace=False)
    fake_server.counts["auth"] = fake_server.counts["ok"] = 0
    proc = run_cli("pool", "--registry", reg.path, "-n", "6", "-c", "2", "--input-len", "2", "--output-len", "2",
                   "--json", env_extra={"BENCH_POOL_KEY": fake_server.secret}, check_rc=0)
    doc = json.loads(proc.stdout)
    assert doc["runs"][0]["target"]["source"] == "registry " + reg.path
    assert doc["runs"][0]["levels"][0]["ok"] == 6
    assert fake_server.counts["auth"] == 3 and fake_server.counts["ok"] == 3


def test_cli_alias_from_job_records_with_home(fake_server, tmp_path):
    from pbsvllm.jobs import JobRecord, JobStore

    home = tmp_path / "home"
    JobStore(str(home)).save(JobRecord("local-7", alias="tinyjob", served_model_name="m",
                                       url=fake_server.base + "/ok/v1", server_state="ready"))
    (tmp_path / "config.toml").write_text("")
    proc = run_cli("tinyjob", "--home", str(home), "-n", "3", "-c", "1", "--input-len", "2", "--output-len", "2",
                   "--json", env_extra={"PBSVLLM_CONFIG": str(tmp_path / "config.toml")}, check_rc=0)
    run = json.loads(proc.stdout)["runs"][0]
    assert run["target"]["source"] == "job record(s) local-7 (ready)" and run["levels"][0]["ok"] == 3
    proc = run_cli("unknown-alias", "--home", str(home), env_extra={"PBSVLLM_CONFIG": str(tmp_path / "config.toml")},
                   check_rc=5)
    assert "no endpoint is known for alias 'unknown-alias'" in proc.stderr
