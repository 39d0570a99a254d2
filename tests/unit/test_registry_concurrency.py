"""Registries under real concurrency: many processes, and writers killed mid-write."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from pbsvllm.registry import Endpoint, open_registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WRITER = r"""
import sys
from pbsvllm.registry import Endpoint, open_registry
path, alias, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
reg = open_registry(path)
sys.stdout.write("go\n"); sys.stdout.flush()
sys.stdin.readline()  # start together
for i in range(n):
    reg.register(Endpoint(alias, "m-" + alias, "http://node-%s:%d/v1" % (alias, 8000 + i), job_id="%s.%d" % (alias, i)))
"""

LOOPER = r"""
import sys
from pbsvllm.registry import Endpoint, open_registry
reg = open_registry(sys.argv[1])
i = 0
sys.stdout.write("go\n"); sys.stdout.flush()
while True:
    i += 1
    reg.register(Endpoint("churn", "m", "http://churn:%d/v1" % (i % 50000), job_id=str(i)))
    if i % 3 == 0:
        reg.unregister("churn")
"""


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.parametrize("name", ["endpoints.toml", "endpoints.py", "config.yaml", "reg.json"])
def test_many_processes_lose_no_entry(tmp_path, name):
    path = str(tmp_path / name)
    n_proc, n_writes = 12, 4
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, path, f"a{k}", str(n_writes)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        for k in range(n_proc)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "go"
    for p in procs:  # release them all at once
        p.stdin.write("\n")
        p.stdin.flush()
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    entries = open_registry(path).read()
    assert sorted(entries) == sorted(f"a{k}" for k in range(n_proc))
    for k in range(n_proc):
        eps = entries[f"a{k}"]
        assert [e.url for e in eps] == [f"http://node-a{k}:{8000 + n_writes - 1}/v1"]
    leftovers = [f for f in os.listdir(tmp_path) if f.endswith(".pbsvllm-tmp")]
    assert leftovers == []


@pytest.mark.parametrize("name", ["endpoints.toml", "reg.json", "endpoints.py"])
def test_sigkill_mid_write_leaves_old_or_new_file(tmp_path, name):
    path = str(tmp_path / name)
    reg = open_registry(path)
    # a large registry, so each write takes a while and kills land inside writes
    base = [Endpoint(f"keep{i}", "m", f"http://keep{i}.example.org:8000/v1") for i in range(300)]
    text = ""
    for ep in base:  # built in memory (render is the pure half of a write), written once
        text = reg.render(text, ep.alias, [ep])
    with open(path, "w") as fh:
        fh.write(text)
    want = {ep.alias: [ep] for ep in base}
    rng = random.Random(1234)
    for _round in range(6):
        p = subprocess.Popen([sys.executable, "-c", LOOPER, path], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=_env())
        assert p.stdout.readline().strip() == "go"
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
        assert p.returncode == -signal.SIGKILL
        entries = open_registry(path).read()  # parses: never a partial file
        churn = entries.pop("churn", [])
        assert len(churn) <= 1
        assert {a: [(e.model, e.url) for e in v] for a, v in entries.items()} == {
            a: [(e.model, e.url) for e in v] for a, v in want.items()}
        if os.path.exists(path + ".bak"):
            open_registry(path + ".bak", reg.fmt).read()
    # the next writer cleans up temp files a killed writer left behind
    reg.register(Endpoint("after", "m", "http://after:1/v1"))
    assert [f for f in os.listdir(tmp_path) if f.endswith(".pbsvllm-tmp")] == []
