"""The job script's GPU parts, run for real with stand-ins for what CI lacks.

The script is rendered by the real CLI (``pbsvllm submit --dry-run``) and run
by bash. What a CI machine does not have is replaced on PATH, each built from
the real 4 x H200 node's recorded data (tests/data/gpu/):

* ``nvidia-smi`` prints the index/UUID table captured on that node;
* ``torch`` (for the pre-launch check, which asks torch as vLLM would) sees
  the devices that ``CUDA_VISIBLE_DEVICES`` names on that node, through
  ``pbsvllm.gpu.resolve_visible_devices``, whose answers were compared with
  real CUDA there (h200x4.cvd-check.json);
* ``vllm`` records its argv and environment and then serves nothing.

The same script ran on the real node with real nvidia-smi and torch through
``scripts/device-run.sh`` (h200x4.preflight*.txt).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from tests.unit.test_gpu import DATA, H200, report_of

UUIDS = [g.uuid for g in report_of(H200).gpus]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FAKE_VLLM = r'''#!{py}
import json, os, signal, sys, time
if os.environ.get("FAKE_VLLM_MODE") == "serve":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
rec = {{"argv": sys.argv[1:], "pid": os.getpid(), "pgid": os.getpgid(0),
        "env": {{k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
               "PBSVLLM_JOB_ID", "PBSVLLM_ALIAS", "PBSVLLM_HOME")}}}}
with open(os.environ["FAKE_VLLM_RECORD"], "a") as fh:
    fh.write(json.dumps(rec) + "\n")
if os.environ.get("FAKE_VLLM_MODE") == "serve":
    for _ in range(600):
        time.sleep(0.1)
'''

FAKE_SMI = r'''#!{py}
import sys
rows = [l for l in open({table!r}).read().splitlines() if l[:1].isdigit() and l.count(",") == 8]
if "--query-gpu=index,uuid" in sys.argv:
    for r in rows:
        idx, uuid = [c.strip() for c in r.split(",")[:2]]
        print(idx + ", " + uuid)
else:
    sys.exit("this stand-in answers only --query-gpu=index,uuid")
'''

FAKE_TORCH = r'''
"""torch stand-in: CUDA enumeration on the recorded node (see the test module)."""
import os, uuid as _uuid
from pbsvllm import gpu as _gpu

class _Props:
    def __init__(self, d):
        self.name = d.name
        self.uuid = _uuid.UUID(d.uuid[4:])

class cuda:
    @staticmethod
    def _devices():
        report = _gpu.build_report(_gpu.load_raw(os.environ["FAKE_NODE_RAW"]))
        return _gpu.resolve_visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"), report).devices

    @staticmethod
    def device_count():
        return len(cuda._devices())

    @staticmethod
    def get_device_properties(i):
        return _Props(cuda._devices()[i])
'''


def _exe(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def node(tmp_path):
    """A bin dir of stand-ins and a runner for rendered scripts."""
    bindir = tmp_path / "bin"
    stub = tmp_path / "stub"
    (stub / "torch").mkdir(parents=True)
    bindir.mkdir()
    (stub / "torch" / "__init__.py").write_text(FAKE_TORCH)
    _exe(bindir / "vllm", FAKE_VLLM.format(py=sys.executable))
    _exe(bindir / "nvidia-smi", FAKE_SMI.format(py=sys.executable,
                                              table=os.path.join(DATA, "h200x4.nvidia-smi.txt")))
    os.symlink(sys.executable, bindir / "python3")
    home = tmp_path / "home"
    record = tmp_path / "vllm-calls.jsonl"

    class Node:
        def __init__(self):
            self.home, self.record, self.n = home, record, 0

        def render(self, model, *args):
            env = dict(os.environ, PBSVLLM_HOME=str(home))
            r = subprocess.run([sys.executable, "-m", "pbsvllm", "submit", model, "-a", "demo", "-P", "pbspro",
                                "--gpus", "4", "--gpu-memory", "140.4", "--dry-run", *args],
                               capture_output=True, text=True, env=env, timeout=60)
            assert r.returncode == 0, r.stderr
            self.n += 1
            path = tmp_path / f"job{self.n}.sh"
            path.write_text(r.stdout)
            return path

        def env(self, cvd, mode="exit", job="4242.pbs01"):
            e = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path), "PBS_JOBID": job,
                 "PYTHONPATH": f"{stub}:{REPO}", "FAKE_NODE_RAW": os.path.join(DATA, H200),
                 "FAKE_VLLM_RECORD": str(record), "FAKE_VLLM_MODE": mode}
            if cvd is not None:
                e["CUDA_VISIBLE_DEVICES"] = cvd
            return e

        def run(self, script, cvd, job="4242.pbs01"):
            return subprocess.run(["bash", str(script)], capture_output=True, text=True,
                                  env=self.env(cvd, job=job), timeout=120)

        def calls(self):
            if not record.exists():
                return []
            return [json.loads(l) for l in record.read_text().splitlines()]

        def log(self, job="4242.pbs01"):
            return (home / "logs" / f"demo.{job}.log").read_text()

    return Node()


def test_preflight_passes_with_the_planned_gpus_uuid_valued(node):
    script = node.render("Qwen/Qwen3-VL-2B-Instruct")  # vLLM 0.11: one server, --data-parallel-size 4
    cvd = ",".join(UUIDS[i] for i in (3, 1, 2, 0))     # as a PBS cgroup hook sets it
    r = node.run(script, cvd)
    assert r.returncode == 0, r.stdout + r.stderr
    log = node.log()
    assert "pre-launch GPU check passed: CUDA sees 4 GPU(s) as planned" in log
    assert f"cuda:0=NVIDIA H200 {UUIDS[3]}" in log
    (call,) = node.calls()
    assert call["env"]["CUDA_VISIBLE_DEVICES"] == "3,1,2,0"      # mapped to indices by the gpus block
    assert call["env"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert call["env"]["PBSVLLM_JOB_ID"] == "4242.pbs01"
    assert call["env"]["PBSVLLM_HOME"] == str(node.home)
    assert "--data-parallel-size" in call["argv"]


def test_preflight_stops_with_the_wrong_count(node):
    script = node.render("Qwen/Qwen3-VL-2B-Instruct")
    r = node.run(script, f"{UUIDS[3]},{UUIDS[1]}")
    assert r.returncode == 2
    log = node.log()
    assert ("ERROR: pre-launch GPU check on " in log and "the plan uses 4 GPU(s) but CUDA sees 2 "
            f"(cuda:0=NVIDIA H200 {UUIDS[3]}, cuda:1=NVIDIA H200 {UUIDS[1]})" in log)
    assert "vLLM was not started" in log and "re-plan with --gpus 2" in log
    assert node.calls() == []


def test_preflight_stops_when_an_entry_names_no_gpu(node):
    script = node.render("Qwen/Qwen3-VL-2B-Instruct")
    bad = "GPU-00000000-1111-2222-3333-444444444444"
    r = node.run(script, ",".join([UUIDS[0], UUIDS[1], bad, UUIDS[2]]))
    assert r.returncode == 2
    log = node.log()
    assert f"cannot map {bad} to a GPU index" in log
    assert "the plan uses 4 GPU(s) but CUDA sees 2" in log
    assert node.calls() == []


def test_preflight_without_torch_says_so(node, tmp_path):
    script = node.render("Qwen/Qwen3-VL-2B-Instruct")
    env = node.env(",".join(UUIDS))
    env["PYTHONPATH"] = REPO  # no torch stand-in: like a job whose vLLM environment is not active
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    assert "could not run: cannot import torch with" in node.log()
    assert node.calls() == []


def _wait_for(path, timeout=60):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


@pytest.mark.parametrize("model,per_replica", [("Qwen/Qwen3-VL-2B-Instruct", 1),
                                               ("meta-llama/Llama-3.1-70B-Instruct", 2)])
def test_replicas_mode_pins_each_server_to_its_gpus(node, model, per_replica):
    # vLLM 0.7.3 has no --data-parallel-size: the plan asks for independent servers
    script = node.render(model, "--vllm-version", "0.7.3")
    text = script.read_text()
    n = 4 // per_replica
    assert f"REPLICAS={n}" in text and f"PER_REPLICA={per_replica}" in text
    cvd = ",".join(UUIDS[i] for i in (3, 1, 2, 0))
    proc = subprocess.Popen(["bash", str(script)], env=node.env(cvd, mode="serve"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        info_path = node.home / "run" / "4242.pbs01.server.json"
        _wait_for(info_path)
        info = json.loads(info_path.read_text())
        deadline = time.monotonic() + 60
        while len(node.calls()) < n:  # each server records itself once its python is up
            assert time.monotonic() < deadline, node.calls()
            time.sleep(0.05)
        calls = sorted(node.calls(), key=lambda c: [r["pid"] for r in info["replicas"]].index(c["pid"]))
        assert len(calls) == n
        # each server on its own GPUs, together exactly the job's GPUs, no overlap
        sets = [c["env"]["CUDA_VISIBLE_DEVICES"].split(",") for c in calls]
        assert all(len(s) == per_replica for s in sets)
        assert sorted(sum(sets, [])) == ["0", "1", "2", "3"]
        assert sets[0] == ["3", "1"][:per_replica]
        ports = [int(c["argv"][c["argv"].index("--port") + 1]) for c in calls]
        assert ports == sorted(ports) and len(set(ports)) == n
        assert all("--data-parallel-size" not in c["argv"] for c in calls)
        assert all(c["env"]["PBSVLLM_JOB_ID"] == "4242.pbs01" for c in calls)
        # the server-info file lists every replica with its pid, group, port, GPUs and log
        reps = info["replicas"]
        assert [r["pid"] for r in reps] == [c["pid"] for c in calls]
        assert [r["pgid"] for r in reps] == [c["pgid"] for c in calls]
        assert [r["port"] for r in reps] == ports
        assert [r["gpus"] for r in reps] == [",".join(s) for s in sets]
        assert info["pid"] == reps[0]["pid"] and info["port"] == ports[0]
        assert reps[0]["log_path"] == info["log_path"]
        assert len({r["log_path"] for r in reps}) == n
        assert all(r["url"].endswith(f":{r['port']}/v1") for r in reps)
    finally:
        proc.send_signal(signal.SIGTERM)  # as qdel does: the script forwards it to every server
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert out.count("exited with status 0") >= n
