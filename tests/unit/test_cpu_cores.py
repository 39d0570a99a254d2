"""cpu_cores_per_server: each CPU server of a node binds its own block of cores.

The rendered block is run for real: two copies holding their locks get
different cores, and a third finds none free and leaves the binding alone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

from tests.paths import ROOT


def rendered(tmp_path, cores: int) -> str:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'profile = "cpu"\nhome = "{tmp_path}/home"\n[profiles.cpu]\nbase = "local"\n'
                   f'cpu_cores_per_server = {cores}\n')
    env = dict(os.environ, PBSVLLM_CONFIG=str(cfg), PBSVLLM_HOME=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-m", "pbsvllm", "submit", "tiny-model", "--alias", "a", "--params", "1M",
                          "--dry-run"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_no_binding_block_by_default(tmp_path):
    assert "CORES_PER_SERVER" not in rendered(tmp_path, 0)


def test_block_renders_and_passes_shellcheck(tmp_path):
    text = rendered(tmp_path, 1)
    assert "CORES_PER_SERVER=1" in text
    path = tmp_path / "job.sh"
    path.write_text(text)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    if shutil.which("shellcheck"):
        r = subprocess.run(["shellcheck", "-S", "warning", str(path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout


def test_two_servers_get_disjoint_cores_and_a_third_none(tmp_path):
    text = rendered(tmp_path, 1)
    start = text.index("CORES_PER_SERVER=1")
    block = text[start:text.index("\n# ---", start)]
    ncores = 2
    script = ("set -u\nlog() { echo \"$*\"; }\nnproc() { echo %d; }\n" % ncores) + block + \
        '\necho "BIND=${VLLM_CPU_OMP_THREADS_BIND:-none}"\n' \
        'echo "AFFINITY=$(sed -n "s/^Cpus_allowed_list:[[:space:]]*//p" /proc/$$/status)"\nsleep 5\n'
    env = dict(os.environ, TMPDIR=str(tmp_path))
    env.pop("VLLM_CPU_OMP_THREADS_BIND", None)
    procs = []
    for _ in range(3):
        procs.append(subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, text=True, env=env))
        time.sleep(0.3)
    outs = [p.communicate(timeout=30)[0] for p in procs]
    binds = [re.search(r"BIND=(\S+)", o).group(1) for o in outs]
    assert sorted(binds[:2]) == ["0", "1"]
    assert binds[2] == "none" and "held by another server" in outs[2]
    # every process the job starts inherits its block (the job shell is pinned), the third is left alone
    affinity = [re.search(r"AFFINITY=(\S+)", o).group(1) for o in outs]
    assert affinity[:2] == binds[:2], outs
    with open("/proc/self/status") as fh:
        own = [line.split(":", 1)[1].strip() for line in fh if line.startswith("Cpus_allowed_list:")][0]
    assert affinity[2] == own, outs
