"""examples/gpus-and-cleanup.sh runs as documented (from the recorded H200 probe)."""

import os
import subprocess
import sys


def test_gpus_and_cleanup_example_runs(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
               PBSVLLM_HOME=str(tmp_path / "home"))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    r = subprocess.run(["bash", os.path.join(root, "examples", "gpus-and-cleanup.sh")], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 GPU(s), driver 580.159.04, CUDA 13.0, interconnect nvlink" in r.stdout
    assert "[(0, 3), (1, 1)]" in r.stdout                       # UUIDs of GPUs 3 and 1, in that order
    assert "(exit 8 as expected: 1 GPU visible, 2 planned)" in r.stdout
    assert "layout     TP=2 PP=1 DP=2" in r.stdout              # 70B on the probed node
    # cleanup --dry-run ran (other test suites' marked processes may show up: it lists, never signals)
    assert "nothing to clean up on " in r.stdout or "would end" in r.stdout
