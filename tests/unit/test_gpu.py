"""pbsvllm.gpu from real probe data, without a GPU.

``tests/data/gpu/h200x4.*`` were captured on a real node (4 x H200, NVSwitch)
with ``scripts/device-run.sh`` (``pbsvllm probe --raw`` plus nvidia-smi and
torch's own view of several ``CUDA_VISIBLE_DEVICES`` values).
``synthetic-pcie-a100-mig.raw.json`` is hand-written in the same shape (a
PCIe-only node with a MIG GPU), since no such node was at hand.

The seam is :func:`pbsvllm.gpu.collect_raw`, which takes an NVML-shaped
object: :class:`FakeNvml` answers the same calls from a recorded raw probe.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from types import SimpleNamespace
from typing import Any, Dict

import pytest

from pbsvllm import gpu
from pbsvllm.errors import ProbeError

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "gpu")


def load(name: str) -> Dict[str, Any]:
    with open(os.path.join(DATA, name), encoding="utf-8") as fh:
        return json.load(fh)


class NVMLError(Exception):
    pass


def _v(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"error"}:
        raise NVMLError(value["error"])
    return value


class FakeNvml:
    NVMLError = NVMLError

    def __init__(self, raw: Dict[str, Any], init_error: str = "") -> None:
        self.raw = raw
        self.init_error = init_error
        self.calls = []
        self.devs = {d["index"]: d for d in raw["devices"]}
        self.migs = {}
        for d in raw["devices"]:
            for m in d.get("mig_devices", []):
                self.migs[("mig", d["index"], m["slot"])] = m

    def _log(self, name):
        self.calls.append(name)

    def nvmlInit(self):
        self._log("nvmlInit")
        if self.init_error:
            raise NVMLError(self.init_error)

    def nvmlShutdown(self):
        self._log("nvmlShutdown")

    def nvmlDeviceGetCount(self):
        return _v(self.raw["device_count"])

    def nvmlSystemGetDriverVersion(self):
        return _v(self.raw["driver_version"])

    def nvmlSystemGetNVMLVersion(self):
        return _v(self.raw["nvml_version"])

    def nvmlSystemGetCudaDriverVersion(self):
        return _v(self.raw["cuda_driver_version"])

    def nvmlDeviceGetHandleByIndex(self, i):
        return _v(self.devs[i].get("handle", ("gpu", i)))

    def _dev(self, h):
        return self.devs[h[1]] if h[0] == "gpu" else self.migs[h]

    def nvmlDeviceGetUUID(self, h):
        return _v(self._dev(h)["uuid"]).encode()  # old pynvml returns bytes

    def nvmlDeviceGetName(self, h):
        return _v(self._dev(h)["name"])

    def nvmlDeviceGetPciInfo(self, h):
        return SimpleNamespace(busId=_v(self._dev(h)["pci_bus_id"]).encode())

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(**_v(self._dev(h)["memory"]))

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return tuple(_v(self._dev(h)["compute_capability"]))

    def nvmlDeviceGetMigMode(self, h):
        mode = self._dev(h)["mig_mode"]
        if mode is None:
            raise NVMLError("Not Supported")
        return _v(mode)

    def nvmlDeviceGetMaxMigDeviceCount(self, h):
        return _v(self._dev(h).get("max_mig_device_count", 7))

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, slot):
        key = ("mig", h[1], slot)
        if key not in self.migs:
            raise NVMLError("Not Found")
        return key

    def nvmlDeviceGetGpuInstanceId(self, h):
        return _v(self.migs[h]["gpu_instance_id"])

    def nvmlDeviceGetComputeInstanceId(self, h):
        return _v(self.migs[h]["compute_instance_id"])

    def _link(self, h, link):
        for entry in self._dev(h)["nvlinks"]:
            if entry["link"] == link:
                return entry
        raise AssertionError(f"collect_raw asked for NVLink {link} beyond the recorded ones")

    def nvmlDeviceGetNvLinkState(self, h, link):
        return _v(self._link(h, link)["state"])

    def nvmlDeviceGetNvLinkRemotePciInfo(self, h, link):
        return SimpleNamespace(busId=_v(self._link(h, link)["remote_pci_bus_id"]))

    def nvmlDeviceGetNvLinkRemoteDeviceType(self, h, link):
        return _v(self._link(h, link)["remote_type"])

    def _pair(self, h1, h2):
        a, b = sorted((h1[1], h2[1]))
        for p in self.raw["pairs"]:
            if (p["a"], p["b"]) == (a, b):
                return p
        raise AssertionError(f"no recorded pair {a},{b}")

    def nvmlDeviceGetTopologyCommonAncestor(self, h1, h2):
        return _v(self._pair(h1, h2)["common_ancestor"])

    def nvmlDeviceGetP2PStatus(self, h1, h2, index):
        key = {0: "p2p_read", 2: "p2p_nvlink"}[index]
        return _v(self._pair(h1, h2)[key])


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

H200 = "h200x4.raw.json"
PCIE = "synthetic-pcie-a100-mig.raw.json"


def report_of(name: str) -> gpu.Report:
    return gpu.build_report(load(name))


def run_cli(*args: str, env_extra: Dict[str, str] = None, drop=("CUDA_VISIBLE_DEVICES",)):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "pbsvllm", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def nvidia_smi_facts(prefix="h200x4"):
    """Parse the nvidia-smi output captured on the same node at the same time."""
    text = open(os.path.join(DATA, f"{prefix}.nvidia-smi.txt"), encoding="utf-8").read()
    rows, topo = {}, {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 9 and parts[0].isdigit():
            rows[int(parts[0])] = parts
        cells = line.split("\t")
        if cells and cells[0].startswith("GPU") and cells[0][3:].isdigit() and len(cells) > 4:
            topo[int(cells[0][3:])] = [c.strip() for c in cells[1:5]]
    return rows, topo


# ---------------------------------------------------------------------------
# the edge: collect_raw through the NVML-shaped seam
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", [H200, "h200x4b.raw.json", PCIE])
def test_collect_raw_asks_nvml_for_exactly_what_was_recorded(name):
    raw = load(name)
    fake = FakeNvml(raw)
    got = gpu.collect_raw(fake)
    assert got["devices"] == raw["devices"]
    assert got["pairs"] == raw["pairs"]
    for key in ("driver_version", "nvml_version", "cuda_driver_version", "device_count"):
        assert got[key] == raw[key]
    assert fake.calls[0] == "nvmlInit" and fake.calls[-1] == "nvmlShutdown"
    json.dumps(got)  # serialisable as it is


def test_collect_raw_without_driver_raises_probe_error_exit_8():
    fake = FakeNvml(load(H200), init_error="Driver Not Loaded")
    with pytest.raises(ProbeError) as ei:
        gpu.collect_raw(fake)
    assert ei.value.exit_code == 8
    assert "Driver Not Loaded" in str(ei.value) and "GPU node" in str(ei.value)


def test_collect_raw_device_error_is_recorded_not_raised():
    raw = load(PCIE)
    raw = copy.deepcopy(raw)
    raw["devices"][1]["memory"] = {"error": "Insufficient Permissions"}
    got = gpu.collect_raw(FakeNvml(raw))
    assert got["devices"][1]["memory"] == {"error": "Insufficient Permissions"}
    rep = gpu.build_report(got)
    assert rep.gpus[1].memory_total_mib is None
    assert any("GPU 1" in p and "Insufficient Permissions" in p for p in rep.problems)


# ---------------------------------------------------------------------------
# the report, checked against nvidia-smi captured on the same node
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["h200x4", "h200x4b"])  # two machines, two captures
def test_h200_report_matches_nvidia_smi(prefix):
    rep = report_of(f"{prefix}.raw.json")
    rows, topo = nvidia_smi_facts(prefix)
    assert len(rep.gpus) == len(rows) == 4
    for g in rep.gpus:
        idx, uuid, bus, name, total, _free, cc, mig, driver = rows[g.index]
        assert g.uuid == uuid
        assert g.pci_bus_id.upper() == bus.upper()
        assert g.name == name
        assert f"{g.memory_total_mib} MiB" == total
        assert g.compute_capability == cc
        assert g.mig == mig.lower()
        assert rep.driver_version == driver
    for i, cells in topo.items():
        for j, cell in enumerate(cells):
            if i != j:
                assert rep.link(i, j).label == cell, (i, j)
    assert rep.cuda_version == "13.0"
    assert rep.interconnect == "nvlink"
    assert rep.nvlink_groups() == [[0, 1, 2, 3]]
    # NVSwitch fabric, PCIe level below it is a host bridge, P2P works
    assert {l.level for l in rep.links} == {"PHB"}
    assert all(l.p2p for l in rep.links)


def test_h200_planner_hardware():
    hw = gpu.planner_hardware(report_of(H200))
    assert hw["gpus_per_node"] == 4
    assert hw["interconnect"] == "nvlink"
    assert hw["gpu_memory_gib"] == pytest.approx(143771 / 1024, abs=0.1)
    assert hw["compute_capability"] == "9.0"
    assert hw["gpu_name"] == "NVIDIA H200"


def test_cli_from_recorded_raw_reproduces_the_device_output_exactly():
    text = run_cli("probe", "--from", os.path.join(DATA, H200))
    assert text.returncode == 0, text.stderr
    assert text.stdout == open(os.path.join(DATA, "h200x4.probe.txt"), encoding="utf-8").read()
    js = run_cli("probe", "--json", "--from", os.path.join(DATA, H200))
    assert js.returncode == 0, js.stderr
    got = json.loads(js.stdout)
    assert got.pop("planner_hardware").pop("notes", []) == []  # a key added after the capture
    recorded = json.loads(open(os.path.join(DATA, "h200x4.probe.json")).read())
    recorded.pop("planner_hardware")
    assert got == recorded
    raw = run_cli("probe", "--raw", "--from", os.path.join(DATA, H200))
    assert json.loads(raw.stdout) == load(H200)


def test_pcie_node_with_mig():
    rep = report_of(PCIE)
    assert rep.interconnect == "pcie"
    assert rep.link(0, 1).label == "PIX" and rep.link(2, 3).label == "PIX"
    assert rep.link(0, 2).label == "SYS" and rep.link(1, 3).label == "SYS"
    assert rep.link(0, 2).p2p is False
    assert rep.nvlink_groups() == [[0], [1], [2], [3]]
    assert rep.gpus[3].mig == "enabled" and len(rep.gpus[3].mig_devices) == 2
    assert rep.gpus[0].mig == "disabled"
    hw = gpu.planner_hardware(rep)
    assert hw["interconnect"] == "pcie" and hw["gpu_memory_gib"] == 40.0
    assert hw["gpus_per_node"] == 3 and "GPU 3 is in MIG mode" in hw["notes"][0]
    text = gpu.format_report(rep)
    assert "MIG-66666666-7777-5888-8999-aaaaaaaaaaaa" in text
    assert "GPU0  X    PIX  SYS  SYS" in text


def _direct_nvlink(raw, a, b, n):
    """Make GPUs a and b share n direct NVLinks (bridge, no NVSwitch)."""
    raw = copy.deepcopy(raw)
    devs = {d["index"]: d for d in raw["devices"]}
    for x, y in ((a, b), (b, a)):
        devs[x]["nvlinks"] = [
            {"link": k, "state": 1, "remote_pci_bus_id": devs[y]["pci_bus_id"], "remote_type": 0}
            for k in range(n)] + [{"link": n, "state": {"error": "Invalid Argument"}}]
    return raw


def test_direct_nvlink_pair_on_a_pcie_node_is_mixed():
    raw = _direct_nvlink(load(PCIE), 0, 1, 4)
    rep = gpu.build_report(gpu.collect_raw(FakeNvml(raw)))
    assert rep.link(0, 1).label == "NV4"
    assert rep.link(0, 2).label == "SYS"
    assert rep.interconnect == "mixed"
    assert rep.nvlink_groups() == [[0, 1], [2], [3]]
    assert gpu.planner_hardware(rep)["interconnect"] == "pcie"


def test_switch_links_without_nvlink_p2p_do_not_count():
    raw = copy.deepcopy(load(H200))
    for p in raw["pairs"]:
        if (p["a"], p["b"]) == (0, 3):
            p["p2p_nvlink"] = 5  # NOT_SUPPORTED: e.g. the fabric manager is down
    rep = gpu.build_report(raw)
    assert rep.link(0, 3).label == "PHB"
    assert rep.link(0, 1).label == "NV18"
    assert rep.interconnect == "mixed"


def test_build_report_rejects_non_probe_data():
    with pytest.raises(ProbeError) as ei:
        gpu.build_report({"gpus": []})
    assert "probe --raw" in str(ei.value)


def test_load_raw_errors(tmp_path):
    with pytest.raises(ProbeError, match="cannot read probe file"):
        gpu.load_raw(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ProbeError, match="is not JSON"):
        gpu.load_raw(str(bad))


# ---------------------------------------------------------------------------
# CUDA_VISIBLE_DEVICES: what CUDA (torch) saw on the real node is the oracle
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["h200x4", "h200x4b"])
def test_resolution_matches_what_cuda_enumerated_on_the_node(prefix):
    rep = report_of(f"{prefix}.raw.json")
    recorded = json.load(open(os.path.join(DATA, f"{prefix}.cvd-check.json")))
    assert len(recorded["cases"]) >= 5
    for case in recorded["cases"]:
        res = gpu.resolve_visible_devices(case["CUDA_VISIBLE_DEVICES"], rep)
        assert [d.uuid for d in res.devices] == [c["uuid"] for c in case["cuda (torch)"]], case
    # the case the issue names: two UUIDs in reverse order -> physical GPUs 3 and 1
    u = [g.uuid for g in rep.gpus]
    res = gpu.resolve_visible_devices(f"{u[3]},{u[1]}", rep)
    assert res.indices == [3, 1] and [d.ordinal for d in res.devices] == [0, 1]


def test_resolution_edge_cases():
    rep = report_of(H200)
    u = [g.uuid for g in rep.gpus]
    assert gpu.resolve_visible_devices(None, rep).indices == [0, 1, 2, 3]
    empty = gpu.resolve_visible_devices("", rep)
    assert empty.devices == () and "see no GPU" in empty.problems[0]
    assert gpu.resolve_visible_devices(" 2 , 0 ", rep).indices == [2, 0]
    dup = gpu.resolve_visible_devices(f"1,{u[1]}", rep)
    assert dup.indices == [1] and "twice" in dup.problems[0]
    junk = gpu.resolve_visible_devices("0,cuda:1,2", rep)
    assert junk.indices == [0] and "neither an index" in junk.problems[0] and "1 entry after it" in junk.problems[0]
    assert "no GPU with index 7" in gpu.resolve_visible_devices("7", rep).problems[0]
    ambiguous = gpu.resolve_visible_devices("GPU-9", rep)  # GPU-9ef1... and GPU-9a8e...
    assert ambiguous.indices == [] and "more than one" in ambiguous.problems[0]
    assert gpu.resolve_visible_devices(u[2].upper(), rep).indices == [2]


def test_resolution_of_mig_identifiers():
    rep = report_of(PCIE)
    new_style = gpu.resolve_visible_devices("MIG-66666666-7777-5888-8999-aaaaaaaaaaaa", rep)
    assert new_style.indices == [3]
    assert new_style.devices[0].mig_uuid == "MIG-66666666-7777-5888-8999-aaaaaaaaaaaa"
    old_style = gpu.resolve_visible_devices(f"MIG-{rep.gpus[3].uuid}/1/0,0", rep)
    assert old_style.indices == [3, 0]
    assert old_style.devices[0].mig_uuid == "MIG-11111111-2222-5333-8444-555555555555"
    missing = gpu.resolve_visible_devices(f"MIG-{rep.gpus[3].uuid}/9/0", rep)
    assert missing.devices == () and "no MIG instance" in missing.problems[0]
    assert "no MIG instance" in gpu.resolve_visible_devices("MIG-ffff", rep).problems[0]
    whole = gpu.resolve_visible_devices("0,3", rep)
    assert whole.indices == [0, 3] and "GPU 3, which is in MIG mode" in whole.problems[0]
    unset = gpu.resolve_visible_devices(None, rep)
    assert unset.indices == [0, 1, 2, 3] and unset.problems[0].startswith("GPU 3 is in MIG mode")


def test_check_visible():
    rep = report_of(H200)
    u = [g.uuid for g in rep.gpus]
    assert gpu.check_visible(rep, f"{u[3]},{u[1]}", 2).indices == [3, 1]
    with pytest.raises(ProbeError) as ei:
        gpu.check_visible(rep, f"{u[3]},{u[1]}", 4)
    msg = str(ei.value)
    assert "needs 4 GPU(s)" in msg and "gives 2" in msg and "vLLM was not started" in msg
    with pytest.raises(ProbeError, match="no GPU on this node has that UUID"):
        gpu.check_visible(rep, "GPU-00000000-dead", 1)


# ---------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------

def test_probe_without_driver_is_one_line_and_exit_8():
    """This machine has no NVIDIA driver: the real pynvml fails to load NVML."""
    for args in (("probe",), ("probe", "--json"), ("probe", "--raw"), ("probe", "--expect-gpus", "1")):
        r = run_cli(*args)
        assert r.returncode == 8, (args, r.returncode, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith("pbsvllm: error: cannot talk to the NVIDIA driver")
        assert "Traceback" not in r.stderr and r.stdout == ""


def test_cli_expect_gpus_and_visible_from_recorded_node():
    raw = os.path.join(DATA, H200)
    u = [g.uuid for g in report_of(H200).gpus]
    ok = run_cli("probe", "--from", raw, "--expect-gpus", "2",
                 env_extra={"CUDA_VISIBLE_DEVICES": f"{u[3]},{u[1]}"})
    assert ok.returncode == 0, ok.stderr
    assert f"cuda:0=GPU 3 ({u[3]}), cuda:1=GPU 1 ({u[1]})" in ok.stdout
    assert "pre-launch check passed: 2 GPU(s)" in ok.stdout
    bad = run_cli("probe", "--from", raw, "--expect-gpus", "4",
                  env_extra={"CUDA_VISIBLE_DEVICES": f"{u[3]},{u[1]}"})
    assert bad.returncode == 8
    assert bad.stderr.startswith("pbsvllm: error: the plan needs 4 GPU(s)")
    js = run_cli("probe", "--json", "--from", raw, "--visible", "2,0")
    doc = json.loads(js.stdout)
    assert [d["index"] for d in doc["visible"]["devices"]] == [2, 0]
    assert doc["planner_hardware"]["interconnect"] == "nvlink"
    missing = run_cli("probe", "--from", "/nonexistent/raw.json")
    assert missing.returncode == 8 and "cannot read probe file /nonexistent/raw.json" in missing.stderr


def test_planner_hardware_when_every_gpu_is_in_mig_mode():
    raw = copy.deepcopy(load(PCIE))
    for d in raw["devices"][:3]:
        d["mig_mode"] = [1, 1]
    hw = gpu.planner_hardware(gpu.build_report(raw))
    assert hw["gpus_per_node"] == 1 and hw["interconnect"] == "none"
    assert hw["gpu_memory_gib"] == round((20 * 1024 - 300) / 1024, 1)
    assert "planned for one MIG instance" in hw["notes"][-1]
    none = copy.deepcopy(raw)
    none["devices"][3]["mig_devices"] = []
    with pytest.raises(ProbeError, match="no MIG instance"):
        gpu.planner_hardware(gpu.build_report(none))
