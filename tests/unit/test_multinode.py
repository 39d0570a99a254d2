"""Multi-node job scripts (docs/multinode.md): golden files for 2-node Polaris, PBS Pro, Torque and the
Slurm stand-in, shellcheck of the script and of the node helper it writes, injection through the new
profile values, the site's node limits, vLLM version checks, and the data parallel layout really run
under bash on two loopback "nodes" with the fake vLLM (real processes; the real Ray + vLLM run is in
tests/integration/test_multinode_real.py).

Regenerate the golden files after an intended change:

    PBSVLLM_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_multinode.py -k golden
"""

import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from pbsvllm.config import resolve
from pbsvllm.errors import ConfigError, PlanError, TemplateError
from pbsvllm.plan import PlanArg
from pbsvllm.render import build_context, multinode_mode, plan_for, prepare_job, render_script
from tests.paths import ROOT
from tests.unit.test_render import settings_for as settings

GOLDEN = os.path.join(ROOT, "tests", "golden")
FAKE_VLLM = os.path.join(ROOT, "tests", "fakes", "vllm.py")
NO_CACHE = {"HF_HUB_CACHE": "/nonexistent-hf-cache"}
L70 = "meta-llama/Llama-3.1-70B-Instruct"
EVIL = "a b;$(touch INJECTED) `touch INJECTED2` \"q\" 'x' |&>< * ~ $HOME"
NODE_DELIM = "PBSVLLM_NODE_SCRIPT"


def dp_across_nodes(plan, nodes=2, dp=None):
    """The layout `models` plans for large MoE models: vLLM data parallel over several nodes
    (Plan.nodes > 1, data_parallel_mode 'vllm', PP 1). Built here from a one-node plan."""
    dp = dp or plan.data_parallel_size * nodes
    args = [a for a in plan.args if a.flag not in ("--data-parallel-size", "--api-server-count")]
    args += [PlanArg("--data-parallel-size", (str(dp),), f"{dp} ranks over {nodes} nodes"),
             PlanArg("--api-server-count", ("1",), "one API server keeps the stats lines")]
    return dataclasses.replace(plan, nodes=nodes, data_parallel_size=dp, data_parallel_mode="vllm", args=tuple(args))


def render_plan(s, model, plan, alias="big"):
    ctx = build_context(s, model, alias, plan, served_model_name=alias, port=8000)
    return render_script(ctx, s.template_dirs)


def node_helper(script):
    """The node helper the job script writes (between the quoted here-document markers)."""
    m = re.search(rf"<<'{NODE_DELIM}'\n(.*?)\n{NODE_DELIM}\n", script, re.S)
    assert m, "no node helper here-document in the script"
    return m.group(1) + "\n"


def shellcheck(tmp_path, text, name, severity="style"):
    exe = shutil.which("shellcheck")
    assert exe, "shellcheck is not installed: run `bash scripts/setup-system.sh`"
    path = tmp_path / name
    path.write_text(text)
    subprocess.run(["bash", "-n", str(path)], check=True)
    r = subprocess.run([exe, "--shell=bash", f"--severity={severity}", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


SLURM_CFG = '[profiles.slurm]\nbase = "pbspro"\nnode_launcher = "srun"\n'


def golden_scripts(tmp_path):
    out = {}
    out["polaris-2node"] = prepare_job(settings("polaris", nodes=2), L70, "llama70b", {}, env=NO_CACHE).script_text
    out["pbspro-2node"] = prepare_job(settings("pbspro", nodes=2, gpu_memory_gib=40), L70, "llama70b", {},
                                      env=NO_CACHE).script_text
    out["torque-2node"] = prepare_job(settings("torque", nodes=2, gpu_memory_gib=40), L70, "llama70b", {},
                                      env=NO_CACHE).script_text
    out["slurm-2node"] = prepare_job(settings("slurm", tmp_path, SLURM_CFG, nodes=2, gpu_memory_gib=40), L70,
                                     "llama70b", {}, env=NO_CACHE).script_text
    s = settings("pbspro")
    _facts, plan = plan_for(s, "Qwen/Qwen2.5-7B-Instruct", {"served_model_name": "qwen", "port": 8000},
                            env=NO_CACHE)
    out["pbspro-2node-dp"] = render_plan(s, "Qwen/Qwen2.5-7B-Instruct", dp_across_nodes(plan), alias="qwen")
    return out


# ---------------------------------------------------------------------------- golden files

def test_golden_two_node_scripts(tmp_path):
    for name, text in golden_scripts(tmp_path).items():
        path = os.path.join(GOLDEN, f"{name}.sh")
        if os.environ.get("PBSVLLM_REGEN_GOLDEN"):
            with open(path, "w") as fh:
                fh.write(text)
        assert os.path.exists(path), f"no golden file {path}; create it with PBSVLLM_REGEN_GOLDEN=1"
        with open(path) as fh:
            assert text == fh.read(), (f"{name}: rendered script differs from {path}; if intended: "
                                       f"PBSVLLM_REGEN_GOLDEN=1 .venv/bin/python -m pytest {__file__} -k golden")


def test_two_node_scripts_follow_the_contract(tmp_path):
    g = golden_scripts(tmp_path)
    pol = g["polaris-2node"]
    for line in ("#PBS -l select=2:system=polaris", "#PBS -l place=scatter", "NODE_LAUNCHER=mpiexec",
                 "NODE_IFACE=hsn0", "export NCCL_SOCKET_IFNAME=hsn0", "--num-gpus=\"$NGPUS_PER_NODE\"",
                 "VLLM_ARGS+=(--tensor-parallel-size 4)", "VLLM_ARGS+=(--pipeline-parallel-size 2)",
                 "VLLM_ARGS+=(--distributed-executor-backend ray)", 'export RAY_ADDRESS="$HEAD_IP:$RAY_PORT"',
                 "trap stop_nodes EXIT", "NGPUS_PER_NODE=4", "RAY_PORT=\"$(free_port \"$HEAD_IP\" 6379)\""):
        assert line in pol, line
    assert "--enforce-eager" not in pol
    assert "#PBS -l nodes=2:ppn=32:gpus=4" in g["torque-2node"]
    assert 'pbsdsh) pbsdsh -h "$host"' in g["torque-2node"]
    assert "#PBS -l select=2:ncpus=32:ngpus=4" in g["pbspro-2node"]
    assert 'pbsdsh) pbsdsh -n "${NODE_FILE_INDEX[$i]}"' in g["pbspro-2node"]
    assert "NODE_LAUNCHER=auto" in g["pbspro-2node"] and "NODE_LAUNCHER=srun" in g["slurm-2node"]
    dp = g["pbspro-2node-dp"]
    assert "VLLM_ARGS+=(--data-parallel-size 8)" in dp and "DP_LOCAL=4" in dp and "--headless" in dp
    assert "ray start" not in dp          # native data parallel needs no Ray cluster
    # every node runs the pre-launch check; the single-node check is not repeated
    for text in g.values():
        assert 'on_node "$i" check "$NGPUS_PER_NODE"' in text


def test_two_node_scripts_and_node_helper_pass_shellcheck(tmp_path):
    for name, text in golden_scripts(tmp_path).items():
        shellcheck(tmp_path, text, f"{name}.sh")
        shellcheck(tmp_path, node_helper(text), f"{name}.node.sh")


def test_one_node_scripts_have_no_multi_node_parts():
    text = prepare_job(settings("polaris"), "Qwen/Qwen2.5-7B-Instruct", "q", {}, env=NO_CACHE).script_text
    assert "NODE_SCRIPT" not in text and "ray start" not in text and "stop_nodes" not in text


# ---------------------------------------------------------------------------- limits and versions

def test_site_node_limits_agree_for_plan_and_submit(tmp_path):
    with pytest.raises(ConfigError, match=r"--nodes 3: profile 'polaris' allows at most 2 \(queue debug"):
        prepare_job(settings("polaris", nodes=3), L70, "x", {}, env=NO_CACHE)
    with pytest.raises(ConfigError, match="at most 2"):
        plan_for(settings("polaris", nodes=3), L70, {}, env=NO_CACHE)
    # prod takes 10-496 nodes: a 2-node job there is refused before the queue
    with pytest.raises(ConfigError, match="at least 10"):
        prepare_job(settings("polaris", nodes=2, queue="prod"), L70, "x", {}, env=NO_CACHE)
    # debug-scaling takes up to 10; max_nodes caps every queue
    assert prepare_job(settings("polaris", nodes=3, queue="debug-scaling"), L70, "x", {}, env=NO_CACHE).plan.nodes == 2
    cfg = '[profiles.small]\nbase = "pbspro"\nmax_nodes = 1\n'
    with pytest.raises(ConfigError, match="max_nodes = 1"):
        prepare_job(settings("small", tmp_path, cfg, nodes=2, gpu_memory_gib=40), L70, "x", {}, env=NO_CACHE)


def test_cli_plan_and_submit_refuse_nodes_over_the_limit(tmp_path):
    env = dict(os.environ, PBSVLLM_CONFIG=os.devnull, PBSVLLM_HOME=str(tmp_path / "h"), **NO_CACHE)
    for cmd in (["plan", L70, "-P", "polaris", "--nodes", "3"],
                ["submit", L70, "-a", "x", "-P", "polaris", "--nodes", "3", "--dry-run"]):
        r = subprocess.run([sys.executable, "-m", "pbsvllm", *cmd], capture_output=True, text=True, env=env)
        assert r.returncode != 0 and "allows at most 2" in r.stderr, (cmd, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "pbsvllm", "submit", L70, "-a", "x", "-P", "polaris", "--nodes", "2",
                        "--dry-run"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "#PBS -l select=2:system=polaris" in r.stdout, r.stderr


def test_multi_node_data_parallel_needs_vllm_0_9_2():
    s = settings("pbspro", vllm_version="0.8.5")
    _f, plan = plan_for(s, "Qwen/Qwen2.5-7B-Instruct", {"served_model_name": "q", "port": 8000}, env=NO_CACHE)
    with pytest.raises(PlanError, match="--headless.*vLLM 0.8.5 does not have"):
        render_plan(s, "Qwen/Qwen2.5-7B-Instruct", dp_across_nodes(plan))
    s = settings("pbspro")
    _f, plan = plan_for(s, "Qwen/Qwen2.5-7B-Instruct", {"served_model_name": "q", "port": 8000}, env=NO_CACHE)
    with pytest.raises(PlanError, match="does not split evenly"):
        render_plan(s, "Qwen/Qwen2.5-7B-Instruct", dp_across_nodes(plan, dp=3))


def test_pipeline_parallel_across_nodes_must_use_ray():
    s = settings("polaris", nodes=2)
    _f, plan = plan_for(s, L70, {"served_model_name": "x", "port": 8000}, env=NO_CACHE)
    assert multinode_mode(plan) == "ray"
    mp = dataclasses.replace(plan, args=tuple(PlanArg(a.flag, ("mp",), "user") if a.flag ==
                                              "--distributed-executor-backend" else a for a in plan.args))
    with pytest.raises(PlanError, match="distributed-executor-backend ray"):
        render_plan(s, L70, mp)


# ---------------------------------------------------------------------------- injection

@pytest.mark.parametrize("key,value,match", [
    ("node_interface", "hsn0; touch /tmp/x", "network interface"),
    ("ray_temp_dir", "relative/dir", "absolute path"),
    ("ray_port", 80, "integer >= 1024"),
    ("dp_rpc_port", 65535, "port from 1024 to 65000"),
    ("node_launcher", "mpirun -np 1", "must be one of"),
    ("queue_nodes", {"debug": "2-1"}, "node count range"),
])
def test_bad_multi_node_profile_values_are_refused(tmp_path, key, value, match):
    v = json.dumps(value) if not isinstance(value, dict) else "{ " + ", ".join(
        f'{k} = "{x}"' for k, x in value.items()) + " }"
    cfg = f'[profiles.bad]\nbase = "polaris"\n{key} = {v}\n'
    with pytest.raises(ConfigError, match=match):
        settings("bad", tmp_path, cfg)


def test_hostile_values_in_a_two_node_script_stay_inert(tmp_path):
    cfg = ('[profiles.evil]\nbase = "polaris"\nnode_launcher_args = ["--env", ' + json.dumps(EVIL) + ']\n'
           'ray_temp_dir = ' + json.dumps("/tmp/" + EVIL.replace("/", "")) + '\n')
    s = settings("evil", tmp_path, cfg, nodes=2)
    text = prepare_job(s, "/models/" + EVIL, EVIL.replace("/", ""), {"served_model_name": EVIL, "params": "70B",
                                                                       "num_layers": 80}, env=NO_CACHE).script_text
    shellcheck(tmp_path, text, "evil.sh", severity="warning")
    shellcheck(tmp_path, node_helper(text), "evil.node.sh", severity="warning")
    assert shlex.quote(EVIL) in text                      # the launcher word, quoted once
    # the helper carries no job values but the alias in a comment
    assert all(line.startswith("#") for line in node_helper(text).splitlines() if "INJECTED" in line)


def test_a_profile_line_cannot_end_the_node_helper_early(tmp_path):
    cfg = f'[profiles.evil]\nbase = "polaris"\nenv_lines = ["{NODE_DELIM}", "touch /tmp/pwned"]\n'
    with pytest.raises(TemplateError, match="end the node helper"):
        prepare_job(settings("evil", tmp_path, cfg, nodes=2), L70, "x", {}, env=NO_CACHE)


# ---------------------------------------------------------------------------- the DP layout really run

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def job_processes(job_id, workdir):
    """Every live process that carries the job's PBS_JOBID and PBS_O_WORKDIR in its environment (the
    script, launchers, node helpers, vLLM ranks, Ray): what must be gone once the job ends."""
    out = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            env = proc.environ()
            if env.get("PBS_JOBID") == job_id and env.get("PBS_O_WORKDIR") == workdir and \
                    proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out


def test_two_node_data_parallel_script_runs_and_stops_every_node(tmp_path):
    """Two loopback 'nodes' (127.0.0.3 head, 127.0.0.2) in the node file, the local node launcher, the
    fake vLLM: the head gets the DP address/port, node 1 a headless rank without --api-server-count;
    SIGTERM stops both and leaves no process of the job."""
    home = tmp_path / "home"
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[profiles.t]\nbase = "local"\nlauncher = "{sys.executable} {FAKE_VLLM}"\n'
                   f'dp_rpc_port = {free_port()}\n')
    s = resolve({"profile": "t", "home": str(home)}, {"PBSVLLM_CONFIG": str(cfg)})
    port = free_port()
    _f, plan = plan_for(s, str(tmp_path / "m"), {"params": "0.5B", "port": port, "served_model_name": "t"},
                        env=NO_CACHE)
    plan = dp_across_nodes(plan)
    ctx = build_context(s, str(tmp_path / "m"), "t", plan, served_model_name="t", port=port)
    script = tmp_path / "job.sh"
    script.write_text(render_script(ctx))
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("127.0.0.3\n127.0.0.3\n127.0.0.2\n")   # a host once per chunk/rank: deduplicated
    record = tmp_path / "rec.json"
    env = dict(os.environ, PBS_JOBID="local-mn1", PBS_NODEFILE=str(nodefile), PBS_O_WORKDIR=str(tmp_path),
               FAKE_VLLM_RECORD=str(record), FAKE_VLLM_LIFETIME="60")
    proc = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    headless = tmp_path / "rec.json.headless1"
    try:
        end = time.time() + 40
        while time.time() < end and not (record.exists() and headless.exists()) and proc.poll() is None:
            time.sleep(0.1)
        assert record.exists() and headless.exists(), proc.stdout.read().decode() if proc.poll() is not None else ""
        head, rank1 = json.loads(record.read_text()), json.loads(headless.read_text())
        a = head["argv"]
        assert a[a.index("--data-parallel-size") + 1] == "2" and a[a.index("--data-parallel-size-local") + 1] == "1"
        assert a[a.index("--data-parallel-address") + 1] == "127.0.0.3" and "--headless" not in a
        assert head["env"]["VLLM_HOST_IP"] == "127.0.0.3" and head["env"]["PBSVLLM_NODE_INDEX"] == "0"
        b = rank1["argv"]
        assert "--headless" in b and b[b.index("--data-parallel-start-rank") + 1] == "1"
        assert "--api-server-count" not in b
        assert b[b.index("--data-parallel-rpc-port") + 1] == a[a.index("--data-parallel-rpc-port") + 1]
        assert rank1["env"]["VLLM_HOST_IP"] == "127.0.0.2" and rank1["env"]["PBSVLLM_NODE_INDEX"] == "1"
        assert rank1["env"]["PBSVLLM_JOB_ID"] == "local-mn1" and rank1["env"]["PBSVLLM_ALIAS"] == "t"  # cleanup's marker
        assert len(job_processes("local-mn1", str(tmp_path))) >= 4   # script, helper, head vLLM, headless rank
        os.kill(proc.pid, signal.SIGTERM)
        rc = proc.wait(timeout=40)
        out = proc.stdout.read().decode()
        assert rc == 0, out
        assert "stopping vLLM and Ray on 2 node(s): 127.0.0.3 127.0.0.2" in out and "every node stopped" in out
        node_log = (home / "logs" / "t.local-mn1.node1.log").read_text()
        assert "fake vllm got SIGTERM" in node_log
        left = job_processes("local-mn1", str(tmp_path))
        assert not left, [p.info for p in left]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for p in job_processes("local-mn1", str(tmp_path)):
            p.kill()


def test_a_node_failing_its_check_stops_the_job_before_vllm(tmp_path):
    home = tmp_path / "home"
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[profiles.t]\nbase = "local"\nlauncher = "{sys.executable} {FAKE_VLLM}"\n'
                   f'node_interface = "nosuchif0"\n')
    s = resolve({"profile": "t", "home": str(home)}, {"PBSVLLM_CONFIG": str(cfg)})
    _f, plan = plan_for(s, str(tmp_path / "m"), {"params": "0.5B", "port": free_port(), "served_model_name": "t"},
                        env=NO_CACHE)
    script = tmp_path / "job.sh"
    script.write_text(render_plan(s, str(tmp_path / "m"), dp_across_nodes(plan), alias="t"))
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("127.0.0.3\n127.0.0.2\n")
    env = dict(os.environ, PBS_JOBID="local-mn2", PBS_NODEFILE=str(nodefile), FAKE_VLLM_RECORD=str(tmp_path / "r"))
    r = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "pre-launch check failed on node 0 (127.0.0.3): " in r.stdout and "nosuchif0" in r.stdout
    assert "vLLM was not started" in r.stdout and not (tmp_path / "r").exists()
    nodefile.write_text("127.0.0.3\n")
    r = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "the plan needs 2 nodes but the job has 1 (127.0.0.3" in r.stdout


# ---------------------------------------------------------------------------- status shows every node

def test_status_shows_every_node_of_a_multi_node_job():
    from pbsvllm.scheduler.base import PBSPRO_STATES, all_hosts, status_from_attrs
    from pbsvllm.statusview import build_row

    assert all_hosts("x3006c0s13b1n0/0*64+x3006c0s19b0n0/0*64") == "x3006c0s13b1n0+x3006c0s19b0n0"
    assert all_hosts("n1/0+n1/1+n1/2+n2/0+n2/1") == "n1+n2"       # Torque: one entry per core
    assert all_hosts("vm/1") == "vm" and all_hosts("") == "" and all_hosts(None) == ""
    st = status_from_attrs("4242.polaris-pbs-01", {"job_state": "R", "queue": "debug",
                                                  "exec_host": "x3006c0s13b1n0/0*64+x3006c0s19b0n0/0*64"},
                           PBSPRO_STATES)
    assert st.exec_host == "x3006c0s13b1n0+x3006c0s19b0n0"
    from pbsvllm.jobs import JobRecord

    rec = JobRecord(job_id="4242.polaris-pbs-01", alias="llama70b", host=None, scheduler="pbspro")
    assert build_row(rec, st)["node"] == "x3006c0s13b1n0+x3006c0s19b0n0"


# ---------------------------------------------------------------------------- examples

def test_examples_render_offline(tmp_path):
    env = dict(os.environ, PBSVLLM_CONFIG=os.devnull, PBSVLLM_HOME=str(tmp_path / "h"), **NO_CACHE,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    r = subprocess.run(["bash", os.path.join(ROOT, "examples", "multinode", "polaris-70b.sh")], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "TP=4 PP=2 DP=1 on 2 node(s)" in r.stdout and "(refused, as expected)" in r.stdout
    assert "#PBS -l select=2:system=polaris" in r.stdout and "NODE_IFACE=hsn0" in r.stdout
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "multinode", "two_nodes_on_one_machine.py"),
                        "--dry-run"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "--data-parallel-size 2" in r.stdout and "NODE_LAUNCHER=local" in r.stdout
    shellcheck(tmp_path, r.stdout, "two.sh")


def test_submit_of_a_two_node_plan_on_a_one_node_backend_stops_before_vllm(tmp_path):
    """`submit --nodes 2` through the real CLI and the local backend (one host in its node file): the
    job starts, says which nodes it lacks, and exits 2 without starting vLLM."""
    env = dict(os.environ, PBSVLLM_CONFIG=os.devnull, PBSVLLM_HOME=str(tmp_path / "h"), **NO_CACHE)
    r = subprocess.run([sys.executable, "-m", "pbsvllm", "submit", L70, "-a", "big", "-P", "local", "--device", "cuda",
                        "--gpus", "4", "--gpu-memory", "40", "--interconnect", "nvlink", "--nodes", "2"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "TP=4 DP=1 PP=2 on 2 nodes" in r.stdout and ".node<i>.log" in r.stdout
    log = next(line.split(None, 1)[1] for line in r.stdout.splitlines() if line.startswith("log "))
    end = time.time() + 60
    while time.time() < end and not (os.path.exists(log) and "the plan needs 2 nodes" in open(log).read()):
        time.sleep(0.2)
    text = open(log).read()
    assert "ERROR: the plan needs 2 nodes but the job has 1" in text and "request select=2" in text, text
    assert "starting:" not in text
