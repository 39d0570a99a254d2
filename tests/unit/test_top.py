"""pbsvllm top: figures from real vLLM /metrics text, rates between scrapes, the
table, --once through the CLI against servers started by the real template, and
the live view in a real terminal (tmux)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import jsonschema

from pbsvllm import top
from pbsvllm.schemas import load_schema
from tests.fakes.vllm import free_port
from tests.paths import DATA, ROOT
from tests.unit.test_watcher_submit import pbsvllm, site  # noqa: F401  (site is a fixture)

BEFORE = os.path.join(DATA, "vllm-real", "metrics-0.32.0-cpu-before.txt")
AFTER = os.path.join(DATA, "vllm-real", "metrics-0.32.0-cpu-after-6-chats.txt")


def read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def test_real_metrics_text_parses_and_rates_come_from_two_scrapes():
    a = top.parse_scrape(read(BEFORE), 100.0)
    b = top.parse_scrape(read(AFTER), 110.0)
    assert a.generation_tokens is not None and b.generation_tokens is not None
    assert b.generation_tokens - a.generation_tokens >= 6  # six chats generated tokens
    assert b.ttft_count is not None and a.ttft_count is not None and b.ttft_count - a.ttft_count == 6
    assert b.running == 0 and b.waiting == 0 and b.kv_pct is not None and 0 <= b.kv_pct <= 100
    p = top.derive(a, b)
    assert p.generation_tokens_per_s == (b.generation_tokens - a.generation_tokens) / 10
    assert p.ttft_s is not None and p.ttft_s > 0
    assert p.prefix_cache_hit_pct is not None and 0 <= p.prefix_cache_hit_pct <= 100
    first = top.derive(None, b)  # one scrape: gauges, lifetime TTFT, no rate
    assert first.generation_tokens_per_s is None and first.ttft_s is not None


def test_engines_sum_but_kv_use_averages_and_a_restart_gives_no_rate():
    text = ('vllm:num_requests_running{engine="0"} 3\nvllm:num_requests_running{engine="1"} 2\n'
            'vllm:kv_cache_usage_perc{engine="0"} 0.5\nvllm:kv_cache_usage_perc{engine="1"} 0.1\n'
            'vllm:generation_tokens_total{engine="0"} 100\nvllm:generation_tokens_total{engine="1"} 50\n')
    s = top.parse_scrape(text, 0.0)
    assert (s.running, s.generation_tokens) == (5, 150) and abs((s.kv_pct or 0) - 30.0) < 1e-9
    restarted = top.parse_scrape('vllm:generation_tokens_total{engine="0"} 10\n', 5.0)
    assert top.derive(s, restarted).generation_tokens_per_s is None


def test_render_table_with_history():
    v = top.ServerView(alias="q", job_id="12.pbs", state="RUNNING", server_state="ready", url="http://n:8000/v1")
    for i in range(4):
        v.update(top.Scrape(t=float(i), generation_tokens=float(sum([0, 100, 200, 400][: i + 1])), running=2.0,
                            waiting=1.0, kv_pct=12.5, ttft_sum=0.5 * (i + 1), ttft_count=float(i + 1)))
    text = top.render([v])
    header, row = text.splitlines()[:2]
    assert header.split() == list(top.COLUMNS)
    assert "400.0" in row and "2/1" in row and "12.5" in row and "500ms" in row and "http://n:8000/v1" in row
    assert top.sparkline([100, 200, 400], 10) == "▃▅█" and top.sparkline([0, 0], 5) == "▁▁"
    assert "\x1b" not in text and "\x1b[1m" in top.render([v], color=True)


def test_once_against_running_servers(site):  # noqa: F811
    site["jobs"] += ["t1", "t2"]
    for alias in ("t1", "t2"):
        r = pbsvllm(site, "submit", site["model"], "--alias", alias, "--port", str(free_port()), "--wait",
                    "--timeout", "90")
        assert r.returncode == 0, r.stdout + r.stderr
    r = pbsvllm(site, "top", "--once", "--sample", "0.5")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == list(top.COLUMNS) and "\x1b" not in r.stdout
    rows = {ln.split()[0]: ln.split() for ln in lines[1:]}
    assert set(rows) == {"t1", "t2"}
    assert rows["t1"][2:4] == ["RUNNING", "ready"] and rows["t1"][-1].startswith("http://127.0.0.1:")
    data = json.loads(pbsvllm(site, "top", "--once", "--json", "--sample", "0").stdout)
    jsonschema.Draft202012Validator(load_schema("top")).validate(data)
    assert {d["alias"] for d in data} == {"t1", "t2"}
    assert all(d["metrics"]["kv_cache_usage_pct"] == 25.0 and d["error"] is None for d in data)


def test_live_view_in_a_real_terminal(site, tmp_path):  # noqa: F811
    tmux = shutil.which("tmux")
    assert tmux, "tmux is installed by scripts/setup-system.sh"
    site["jobs"].append("live")
    r = pbsvllm(site, "submit", site["model"], "--alias", "live", "--port", str(free_port()), "--wait",
                "--timeout", "90")
    assert r.returncode == 0, r.stdout + r.stderr
    sock, session = str(tmp_path / "tmux.sock"), "top" + uuid.uuid4().hex[:6]
    env = {**site["env"], "TERM": "xterm-256color"}

    def tm(*args: str) -> str:
        return subprocess.run([tmux, "-S", sock, *args], capture_output=True, text=True, env=env, timeout=30).stdout

    tm("new-session", "-d", "-s", session, "-x", "160", "-y", "20", "-c", str(site["tmp"]),
       sys.executable, "-m", "pbsvllm", "top", "--interval", "0.5")
    try:
        screens = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and len(screens) < 3:
            screen = tm("capture-pane", "-p", "-t", session)
            if "live" in screen and "RUNNING" in screen and (not screens or screen != screens[-1]):
                screens.append(screen)
            time.sleep(0.4)
        assert len(screens) >= 2, screens  # drawn, then redrawn in place (the clock moves)
        assert screens[-1].splitlines()[0].startswith("pbsvllm top ")
        assert "ready" in screens[-1] and "ALIAS" in screens[-1]
        tm("send-keys", "-t", session, "q")
        end = time.monotonic() + 10
        while time.monotonic() < end and session in tm("list-sessions"):
            time.sleep(0.2)
        assert session not in tm("list-sessions")  # q quits
    finally:
        tm("kill-server")
    assert ROOT
