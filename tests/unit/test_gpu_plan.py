"""`pbsvllm plan --probe / --probe-file`: the planner sees the node the probe saw.

Uses the raw probe recorded on a real 4 x H200 node (tests/data/gpu/) and
variants of the hand-written PCIe node, through the real CLI.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

from tests.unit.test_gpu import DATA, H200, PCIE, load

H200_FILE = os.path.join(DATA, H200)


def plan(*args, probe_file=H200_FILE):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBSVLLM_")}
    argv = [sys.executable, "-m", "pbsvllm", "plan", *args, "--profile", "pbspro"]
    if probe_file:
        argv += ["--probe-file", str(probe_file)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)


def plan_json(*args, probe_file=H200_FILE):
    r = plan(*args, "--json", probe_file=probe_file)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_h200_node_plans_for_2b_8b_70b():
    small = plan_json("Qwen/Qwen3-VL-2B-Instruct")
    assert (small["tensor_parallel_size"], small["data_parallel_size"]) == (1, 4)
    assert small["probed_hardware"]["gpus_per_node"] == 4
    assert small["probed_hardware"]["interconnect"] == "nvlink"
    mid = plan_json("meta-llama/Llama-3.1-8B-Instruct")
    assert (mid["tensor_parallel_size"], mid["data_parallel_size"]) == (1, 4)
    big = plan_json("meta-llama/Llama-3.1-70B-Instruct")
    assert (big["tensor_parallel_size"], big["data_parallel_size"]) == (2, 2)
    # the probe's 143771 MiB per GPU, not the profile's 80 GiB
    assert big["memory"]["gpu_memory_gib"] == 140.4
    text = plan("meta-llama/Llama-3.1-70B-Instruct")
    assert "4x NVIDIA H200 140.4 GiB (nvlink) [probe of vm]" in text.stdout


def _write(tmp_path, name, raw):
    path = tmp_path / name
    path.write_text(json.dumps(raw))
    return path


def _pcie_without_mig():
    raw = copy.deepcopy(load(PCIE))
    raw["devices"][3]["mig_mode"] = [0, 0]
    raw["devices"][3]["mig_devices"] = []
    return raw


def _all_nvlink(raw):
    raw = copy.deepcopy(raw)
    for d in raw["devices"]:
        d["nvlinks"] = [{"link": k, "state": 1, "remote_pci_bus_id": "FFFFFFFF:FF:FF.0", "remote_type": 2}
                        for k in range(12)]
    for p in raw["pairs"]:
        p["p2p_nvlink"] = 0
    return raw


def test_pcie_probe_steers_tp_down_nvlink_probe_does_not(tmp_path):
    pcie = _write(tmp_path, "pcie.json", _pcie_without_mig())
    nvl = _write(tmp_path, "nvl.json", _all_nvlink(_pcie_without_mig()))
    # same 4 GPUs of 80 GiB (explicit --gpu-memory wins over the probe), only the links differ
    on_pcie = plan_json("meta-llama/Llama-3.1-70B-Instruct", "--gpu-memory", "80", probe_file=pcie)
    on_nvl = plan_json("meta-llama/Llama-3.1-70B-Instruct", "--gpu-memory", "80", probe_file=nvl)
    assert on_pcie["probed_hardware"]["interconnect"] == "pcie"
    assert on_nvl["probed_hardware"]["interconnect"] == "nvlink"
    assert on_pcie["tensor_parallel_size"] == 2 and on_pcie["data_parallel_size"] == 2
    assert "PCIe" in on_pcie["decisions"]["tensor_parallel_size"]
    assert on_nvl["tensor_parallel_size"] == 4


def test_mig_gpu_left_out_and_explicit_flags_win(tmp_path):
    mig = plan_json("meta-llama/Llama-3.1-8B-Instruct", probe_file=os.path.join(DATA, PCIE))
    assert mig["probed_hardware"]["gpus_per_node"] == 3
    assert mig["gpus_per_node"] == 3
    forced = plan_json("meta-llama/Llama-3.1-8B-Instruct", "--gpus", "2")
    assert forced["gpus_per_node"] == 2 and forced["memory"]["gpu_memory_gib"] == 140.4


def test_plan_probe_without_driver_exit_8():
    r = plan("meta-llama/Llama-3.1-8B-Instruct", "--probe", probe_file=None)
    assert r.returncode == 8
    assert r.stderr.startswith("pbsvllm: error: cannot talk to the NVIDIA driver")
    assert "Traceback" not in r.stderr
