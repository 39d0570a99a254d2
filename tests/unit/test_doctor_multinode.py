"""`doctor` on multi-node logs (docs/multinode.md): the job script's node and Ray lines, vLLM's
headless data parallel and Ray-executor lines, NCCL's transport lines. Real two-node CPU runs
(tests/data/vllm-real/vllm-0.32.0-cpu-2node-*.log) and two constructed Polaris GPU logs (no GPU
multi-node run can be made here; tests/data/vllm/constructed-v0.11.0-polaris-2node-*.log.source)."""

import json
import os
import subprocess
import sys

from pbsvllm.vllmlog import classify_error, parse_file
from tests.paths import DATA

REAL = os.path.join(DATA, "vllm-real")
CONSTRUCTED = os.path.join(DATA, "vllm")


def doctor_json(path, *extra):
    env = dict(os.environ, PBSVLLM_CONFIG=os.devnull)
    r = subprocess.run([sys.executable, "-m", "pbsvllm", "doctor", path, "--json", *extra], capture_output=True,
                       text=True, env=env)
    assert r.stdout, r.stderr
    return json.loads(r.stdout)


def ids(report):
    return [f["id"] for f in report["findings"]]


def test_recorded_logs_have_their_sources():
    for folder in (REAL, CONSTRUCTED):
        for name in os.listdir(folder):
            if ("2node" in name or "pp2-nnodes" in name) and name.endswith(".log"):
                assert os.path.exists(os.path.join(folder, name + ".source")), name


def test_data_parallel_head_log_facts():
    f = parse_file(os.path.join(REAL, "vllm-0.32.0-cpu-2node-dp2.head.log"))
    mn = f.multinode
    assert mn.nodes == ("127.0.0.3", "127.0.0.2") and mn.head == "127.0.0.3"
    assert mn.layout == "dp" and mn.headless_nodes == 1 and mn.multi_node
    assert f.data_parallel_size == 2 and f.errors.root_cause is None
    node1 = parse_file(os.path.join(REAL, "vllm-0.32.0-cpu-2node-dp2.node1.log")).multinode
    assert node1.headless and node1.multi_node and node1.nodes == ()


def test_ray_log_facts_and_the_cpu_builds_refusal():
    f = parse_file(os.path.join(REAL, "vllm-0.32.0-cpu-2node-ray-unsupported.head.log"))
    assert f.multinode.layout == "ray" and f.multinode.ray_nodes == 2 and f.multinode.ray_formed_s == 35
    assert f.pipeline_parallel_size == 2
    assert f.errors.root_cause == "ray_unsupported_platform"
    rep = doctor_json(os.path.join(REAL, "vllm-0.32.0-cpu-2node-ray-unsupported.head.log"))
    assert ids(rep)[0] == "error_ray_unsupported_platform" and rep["facts"]["error"] == "ray_unsupported_platform"
    assert "native data parallel" in rep["findings"][0]["recommendation"]


def test_error_kinds_of_multi_node_lines():
    cases = [
        ("ValueError: current platform cpu does not support ray.", "ray_unsupported_platform"),
        ("RuntimeError: Every node should have a unique IP address. Got 2 nodes with node ids [..] and 1 unique IP "
         "addresses {'10.0.0.1'}.", "ray_cluster"),
        ("2026-12-07T10:00:19Z pbsvllm[4242]: ERROR: the Ray cluster did not reach 2 nodes x 4 GPUs within 600 s; "
         "see a b", "ray_cluster"),
        ("2026-12-07T10:00:05Z pbsvllm[4242]: ERROR: pre-launch check failed on node 1 (x3006c0s19b0n0): no IPv4 "
         "address on interface hsn0", "node_check_failed"),
        ("2026-12-07T10:00:05Z pbsvllm[4242]: ERROR: the plan needs 2 nodes but the job has 1 (x1 from f)",
         "node_check_failed"),
        ("2026-12-07T10:00:05Z pbsvllm[4242]: ERROR: the plan uses 4 GPU(s) but CUDA sees 2", None),
    ]
    for line, kind in cases:
        assert classify_error(line) == kind, line


def test_data_parallel_log_reads_as_a_healthy_multi_node_server():
    rep = doctor_json(os.path.join(REAL, "vllm-0.32.0-cpu-2node-dp2.head.log"))
    f = {x["id"]: x for x in rep["findings"]}
    assert "multinode_layout" in f and "1 node(s) with headless ranks" in f["multinode_layout"]["title"]
    assert not any(i.startswith("error_") for i in f)


def test_cross_node_link_over_tcp_sockets_is_the_bottleneck():
    rep = doctor_json(os.path.join(CONSTRUCTED, "constructed-v0.11.0-polaris-2node-ray-nccl-socket.log"),
                      "-P", "polaris")
    f = {x["id"]: x for x in rep["findings"]}
    assert f["cross_node_socket"]["severity"] == "high"
    assert "cross-node link is the bottleneck" in f["cross_node_socket"]["title"]
    assert any("via NET/Socket" in e["text"] for e in f["cross_node_socket"]["evidence"])
    assert "formed in 14 s" in f["multinode_layout"]["title"]
    fast = doctor_json(os.path.join(CONSTRUCTED, "constructed-v0.11.0-polaris-2node-ray-nccl-libfabric.log"),
                       "-P", "polaris")
    assert "cross_node_socket" not in ids(fast) and "cross_node_unknown" not in ids(fast)
    facts = parse_file(os.path.join(CONSTRUCTED, "constructed-v0.11.0-polaris-2node-ray-nccl-libfabric.log"))
    assert facts.multinode.nccl_transports == ["AWS Libfabric"]


def test_a_multi_node_ray_log_without_nccl_lines_asks_for_them(tmp_path):
    src = open(os.path.join(CONSTRUCTED, "constructed-v0.11.0-polaris-2node-ray-nccl-socket.log")).read()
    path = tmp_path / "no-nccl.log"
    path.write_text("\n".join(line for line in src.splitlines() if "NCCL INFO" not in line) + "\n")
    f = {x["id"]: x for x in doctor_json(str(path), "-P", "polaris")["findings"]}
    assert f["cross_node_unknown"]["severity"] == "info" and "NCCL_DEBUG" in f["cross_node_unknown"]["recommendation"]


def test_one_node_logs_get_no_multi_node_findings():
    for name in ("vllm-0.32.0-cpu-dp2-1api.log", "vllm-0.32.0-cpu-eager-load.log"):
        f = parse_file(os.path.join(REAL, name))
        assert not f.multinode.multi_node
        assert not {"multinode_layout", "cross_node_socket", "cross_node_unknown"} & set(
            ids(doctor_json(os.path.join(REAL, name))))
