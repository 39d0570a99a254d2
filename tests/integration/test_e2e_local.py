"""End to end on this machine: the real ``pbsvllm`` CLI, the embedded local
backend (no scheduler), real vLLM 0.32 CPU servers of the tiny model.

1. ``submit --wait --registry``: the watcher registers the server in
   endpoints.toml only once it answers; a chat completion through the URL
   read back from the registry succeeds.
2. the API key: the registry holds the variable's NAME; a request works with
   the key and gets 401 without it or with a wrong one; the key is in no log,
   rendered script, job record, registry, and on no process's command line.
3. servers that cannot start (max model length beyond the KV cache, a port
   taken before vLLM binds it, a wrong served name) are reported with their
   cause and never registered.
4. ``swap-endpoint --cancel-old`` under a steady client that re-reads the
   registry before each request: zero failed requests, the old job cancelled.

Each server costs ~30-100 s and ~3 GiB on a 2-core machine: the module
starts five (two of which fail within seconds). Ports are requested from
different bases so that jobs submitted together do not race for one port.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import psutil
import pytest

from tests.plugins.vllm import chat, http_json

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

pytestmark = [pytest.mark.vllm]

WAIT_S = "420"


def read_registry(path):
    with open(path, "rb") as f:
        return tomllib.load(f)


def entries(path, alias):
    if not os.path.exists(path):
        return []
    return [e for e in read_registry(path).get("endpoint", []) if e.get("endpoint_id") == alias]


def status_rows(site):
    r, rows = site.cli_json("status", timeout=120)
    assert r.returncode == 0, r.stderr
    return {row["alias"]: row for row in rows}


def free_port_base():
    """A port p such that p..p+20 are free now (the job takes the first free one from p)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p > 60000:
            continue
        ok = True
        for q in range(p, p + 20):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", q))
                except OSError:
                    ok = False
                    break
        if ok:
            return p
    raise RuntimeError("no run of 20 free ports found")


def submit_args(site, alias, *extra):
    return ("submit", site.vllm.model_dir, "--alias", alias, "--max-model-len", "256",
            "--vllm-arg=--enforce-eager", "--port", str(free_port_base()), *extra)


@pytest.fixture(scope="module")
def registry(pbsvllm_site):
    return os.path.join(pbsvllm_site.root, "endpoints.toml")


@pytest.fixture(scope="module")
def server_a(pbsvllm_site, registry):
    """alias `tiny`, submitted with --wait --registry; yields the submit output."""
    r = pbsvllm_site.cli(*submit_args(pbsvllm_site, "tiny"), "--wait", "--timeout", WAIT_S,
                         "--registry", registry, timeout=600)
    assert r.returncode == 0, "submit --wait failed (rc %s):\n%s\n%s" % (r.returncode, r.stdout, r.stderr)
    return r


def test_submit_wait_registers_and_a_chat_through_the_registry_works(pbsvllm_site, registry, server_a):
    out = server_a.stdout
    assert "submitted local-" in out and "ready at http://127.0.0.1:" in out, out
    assert "registered tiny in" in out, out
    [entry] = entries(registry, "tiny")
    assert entry["model"] == "tiny"
    assert entry["url"].startswith("http://127.0.0.1:") and entry["url"].endswith("/v1")
    # the client's way: URL and model from the registry, key from the variable it names
    key = {entry["key"]: pbsvllm_site.api_key}[entry["key"]]
    status, body = chat(entry["url"], entry["model"], api_key=key, max_tokens=8, content="Say hello.")
    assert status == 200, body
    assert body["model"] == "tiny" and body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["completion_tokens"] >= 1
    # status agrees: running, ready, same URL, registered there
    row = status_rows(pbsvllm_site)["tiny"]
    assert row["state"] == "RUNNING" and row["server_state"] == "ready" and row["url"] == entry["url"], row


def test_api_key_by_name_401_without_and_never_written_or_on_a_command_line(pbsvllm_site, registry, server_a):
    [entry] = entries(registry, "tiny")
    key = pbsvllm_site.api_key
    assert entry["key"] == "VLLM_API_KEY"  # the NAME of the variable, not the key
    assert key not in open(registry).read()
    assert http_json("GET", entry["url"] + "/models", api_key=key)[0] == 200
    assert http_json("GET", entry["url"] + "/models")[0] == 401
    assert chat(entry["url"], "tiny", api_key=None)[0] == 401
    assert chat(entry["url"], "tiny", api_key="sk-wrong-" + "0" * 20)[0] == 401
    # no file of the site but the key file holds the key: logs, scripts, job records,
    # server-info files, local-backend state, registry (+ .bak), config
    scanned = []
    for dirpath, _dirs, files in os.walk(pbsvllm_site.root):
        if os.path.join(pbsvllm_site.root, "work") in dirpath:
            continue  # vLLM's own caches
        for name in files:
            path = os.path.join(dirpath, name)
            if path == pbsvllm_site.key_file:
                continue
            with open(path, "rb") as f:
                data = f.read()
            scanned.append(path)
            assert key.encode() not in data, "the API key is written in %s" % path
    kinds = {os.path.basename(os.path.dirname(p)) for p in scanned}
    assert {"logs", "scripts", "jobs", "run"} <= kinds, scanned
    assert any(p.endswith(".log") and "/logs/" in p for p in scanned)
    # ... and on no process's command line (ps), while the server runs
    n = 0
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        n += 1
        assert key not in cmd, "the API key is on the command line of pid %s: %s" % (proc.info["pid"], cmd)
    vllm_procs = [p for p in psutil.process_iter(["cmdline"]) if "serve" in (p.info.get("cmdline") or [])
                  and pbsvllm_site.vllm.model_dir in (p.info.get("cmdline") or [])]
    assert n > 10 and vllm_procs, "the scan must see the running vLLM server"


def _client(registry, alias, key, stop, results):
    """Re-read the registry before each request, as verifiers' loader would."""
    while not stop.is_set():
        try:
            [entry] = entries(registry, alias)
            status, body = chat(entry["url"], entry["model"], api_key=key, max_tokens=4, timeout=30)
            results.append((entry["url"], status, None if status == 200 else str(body)[:300]))
        except Exception as exc:  # a failure of any kind counts
            results.append(("?", 0, repr(exc)))


def test_servers_that_cannot_start_are_reported_with_their_cause_and_never_registered(pbsvllm_site, server_a):
    site = pbsvllm_site
    reg = os.path.join(site.root, "failures.toml")
    subs = {
        # max model length 4,194,304 tokens needs 2 GiB of KV cache; the job gives vLLM 1 GiB
        "kvsmall": ("submit", site.vllm.model_dir, "--alias", "kvsmall", "--profile", "e2e-kv-mismatch",
                    "--max-model-len", "4194304", "--vllm-arg=--enforce-eager", "--port", str(free_port_base())),
        # vLLM serves another name than the one the job (and the watcher) expect
        "wrongname": submit_args(site, "wrongname", "--vllm-arg=--served-model-name=not-the-alias"),
        "busyport": submit_args(site, "busyport"),
    }
    ids = {}
    for alias, args in subs.items():
        r, rec = site.cli_json(*args, timeout=120)
        assert r.returncode == 0, r.stderr
        ids[alias] = rec["job_id"]
    # The busy port: someone takes the port between the job's free-port check and
    # vLLM's bind (vLLM imports for ~10 s first). Bind it as soon as the job names it.
    info_path = os.path.join(site.home, "run", ids["busyport"] + ".server.json")
    deadline = time.monotonic() + 120
    while not os.path.exists(info_path):
        assert time.monotonic() < deadline, "the busyport job wrote no server-info file"
        time.sleep(0.05)
    with open(info_path) as f:
        port = json.load(f)["port"]
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", port))  # plain bind, no SO_REUSEPORT
    squatter.listen(1)
    try:
        r, results = site.cli_json("watch", *ids.values(), "--registry", reg, "--timeout", WAIT_S, timeout=600)
    finally:
        squatter.close()
    assert r.returncode == 7, (r.returncode, r.stderr)
    by_alias = {d["alias"]: d for d in results}
    for alias in subs:
        d = by_alias[alias]
        assert d["server_state"] == "failed" and d["registered"] == [], d
        assert d["evidence"], d
    assert by_alias["kvsmall"]["failure"] == "kv_cache_too_small", by_alias["kvsmall"]
    assert "max model length that fits is 2097" in by_alias["kvsmall"]["failure_detail"]
    assert by_alias["busyport"]["failure"] == "port_in_use", by_alias["busyport"]
    assert any("Address already in use" in line for line in by_alias["busyport"]["evidence"])
    assert by_alias["wrongname"]["failure"] == "probe_model_missing", by_alias["wrongname"]
    assert "not-the-alias" in by_alias["wrongname"]["failure_detail"], by_alias["wrongname"]
    assert entries(reg, "kvsmall") == entries(reg, "wrongname") == entries(reg, "busyport") == []
    # the terminal output names the causes too
    for alias in subs:
        assert alias in r.stderr
    for alias in ("wrongname",):  # the only one still running: it answers, under the wrong name
        site.cli("cancel", ids[alias], timeout=60)


def test_swap_endpoint_under_steady_load_zero_failures_old_job_cancelled(pbsvllm_site, registry, server_a):
    site = pbsvllm_site
    [old] = entries(registry, "tiny")
    # server B: same served name, its own alias, not registered anywhere yet
    r = site.cli(*submit_args(site, "tiny-b", "--served-model-name", "tiny"), "--wait", "--timeout", WAIT_S,
                 timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = status_rows(site)
    b_job, a_job = rows["tiny-b"]["job_id"], rows["tiny"]["job_id"]
    b_url = rows["tiny-b"]["url"]
    assert b_url != old["url"] and entries(registry, "tiny-b") == []
    stop, results = threading.Event(), []
    client = threading.Thread(target=_client, args=(registry, "tiny", site.api_key, stop, results), daemon=True)
    client.start()
    try:
        time.sleep(3)
        r = site.cli("swap-endpoint", "tiny", "--to", b_job, "--cancel-old", "--drain-timeout", "60", timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        time.sleep(3)
    finally:
        stop.set()
        client.join(60)
    failed = [x for x in results if x[1] != 200]
    assert failed == [], "%d of %d requests failed across the swap: %s" % (len(failed), len(results), failed[:5])
    urls = [x[0] for x in results]
    assert old["url"] in urls and b_url in urls, "the client must have used both servers"
    assert urls.index(b_url) > urls.index(old["url"]) and old["url"] not in urls[urls.index(b_url):], \
        "once on B, never back to A"
    [entry] = entries(registry, "tiny")
    assert entry["url"] == b_url and entry["model"] == "tiny"
    deadline = time.monotonic() + 60
    while True:
        st = status_rows(site)
        a_state = next(row for row in st.values() if row["job_id"] == a_job)["state"]
        if a_state == "CANCELLED" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert a_state == "CANCELLED"
