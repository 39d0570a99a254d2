"""Rendered job scripts: golden files, shellcheck, injection, and the script really run under bash.

Regenerate the golden files after an intended change:

    PBSVLLM_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_render.py -k golden
"""

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from pbsvllm.config import builtin_profile_names, resolve
from pbsvllm.errors import ConfigError, TemplateError
from pbsvllm.render import prepare_job

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(HERE, "golden")
FAKE_VLLM = os.path.join(HERE, "fakes", "vllm.py")
NO_CACHE = {"HF_HUB_CACHE": "/nonexistent-hf-cache"}
MODEL_FOR = {"local": "Qwen/Qwen2.5-7B-Instruct"}
SERVER_INFO_KEYS = {"job_id", "host", "port", "url", "pid", "pgid", "model", "served_model_name", "alias",
                    "start_time", "log_path", "replicas"}
EVIL = "a b;$(touch INJECTED) `touch INJECTED2` \"q\" 'x' |&>< * ~ $HOME"


def settings_for(profile, tmp_path=None, config_text=None, **flags):
    env = {"PBSVLLM_CONFIG": os.devnull}
    if config_text is not None:
        cfg = tmp_path / "config.toml"
        cfg.write_text(config_text)
        env["PBSVLLM_CONFIG"] = str(cfg)
    base = {"profile": profile, "home": "/home/user/.pbsvllm", "api_key_file": "/home/user/.config/pbsvllm/api_key"}
    base.update(flags)
    return resolve(base, env)


def render(profile, alias="qwen3-vl", model=None, options=None, settings=None, **flags):
    s = settings or settings_for(profile, **flags)
    return prepare_job(s, model or MODEL_FOR.get(profile, "Qwen/Qwen3-VL-2B-Instruct"), alias, options or {},
                       env=NO_CACHE)


def shellcheck(path, severity="style"):
    exe = shutil.which("shellcheck")
    assert exe, "shellcheck is not installed: run `bash scripts/setup-system.sh`"
    r = subprocess.run([exe, "--shell=bash", f"--severity={severity}", path], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# ---------------------------------------------------------------------------- golden files

@pytest.mark.parametrize("profile", sorted(builtin_profile_names()))
def test_golden(profile):
    text = render(profile).script_text
    path = os.path.join(GOLDEN, f"{profile}.sh")
    if os.environ.get("PBSVLLM_REGEN_GOLDEN"):
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "w") as fh:
            fh.write(text)
    assert os.path.exists(path), f"no golden file {path}; create it with PBSVLLM_REGEN_GOLDEN=1 pytest {__file__} -k golden"
    with open(path) as fh:
        expected = fh.read()
    assert text == expected, (
        f"rendered script for profile {profile} differs from {path}. If the change is intended, regenerate with: "
        f"PBSVLLM_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_render.py -k golden")


def test_golden_contents_follow_the_contract():
    pol = render("polaris").script_text
    assert pol.startswith("#!/bin/bash\n")
    for line in ("#PBS -l select=1:system=polaris", "#PBS -l filesystems=home:eagle", "#PBS -l place=scatter",
                 "#PBS -q debug", "#PBS -j oe", "#PBS -o /home/user/.pbsvllm/logs/", "set -euo pipefail",
                 'cd "$PBS_O_WORKDIR"', 'LOG="$LOG_DIR/$ALIAS.$JOB_ID.log"',
                 'SERVER_INFO="$RUN_DIR/$JOB_ID.server.json"', "trap on_term TERM INT", "module load conda",
                 'export PBSVLLM_JOB_ID="$JOB_ID" PBSVLLM_ALIAS="$ALIAS"', "VLLM_ARGS+=(--data-parallel-size 4)  # "):
        assert line in pol, line
    assert ".hsn.cm.polaris.alcf.anl.gov" in pol
    assert "--enforce-eager" not in pol
    tq = render("torque").script_text
    assert "#PBS -l nodes=1:ppn=32:gpus=4" in tq and "select=" not in tq
    pb = render("pbspro").script_text
    assert "#PBS -l select=1:ncpus=32:ngpus=4" in pb
    loc = render("local").script_text
    assert "CUDA_VISIBLE_DEVICES=" not in loc.replace("${CUDA_VISIBLE_DEVICES:-}", "")
    assert "export VLLM_CPU_KVCACHE_SPACE=4" in loc


# ---------------------------------------------------------------------------- shellcheck / bash -n

VARIANTS = [(p, None, {}) for p in sorted(builtin_profile_names())] + [
    ("pbspro", '[profiles.pbspro]\ndialect = "torque"\n', {}),          # the other dialect
    ("polaris", None, {"api_key_file": None}),                            # no API key file
    ("sophia", None, {"queue": "by-gpu", "account": "Proj", "walltime": "12:00:00"}),
]


@pytest.mark.parametrize("profile,config_text,flags", VARIANTS,
                         ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(VARIANTS)])
def test_bash_n_and_shellcheck(tmp_path, profile, config_text, flags):
    env = {"PBSVLLM_CONFIG": os.devnull}
    if config_text:
        (tmp_path / "c.toml").write_text(config_text)
        env["PBSVLLM_CONFIG"] = str(tmp_path / "c.toml")
    base = {"profile": profile, "home": "/home/user/.pbsvllm", "api_key_file": "/home/user/key"}
    base.update(flags)
    s = resolve(base, env)
    text = render(profile, settings=s).script_text
    if config_text:
        assert "#PBS -l nodes=1:ppn=" in text
    if "api_key_file" in flags:
        assert "VLLM_API_KEY" not in text.replace("no API key file", "")
    path = tmp_path / "job.sh"
    path.write_text(text)
    subprocess.run(["bash", "-n", str(path)], check=True)
    shellcheck(str(path))


def test_injection_renders_safely_and_passes_shellcheck(tmp_path):
    pj = render("polaris", alias=EVIL.replace("/", ""), model="/models/" + EVIL,
                options={"served_model_name": EVIL, "params": "2B"})
    path = tmp_path / "job.sh"
    path.write_text(pj.script_text)
    subprocess.run(["bash", "-n", str(path)], check=True)
    shellcheck(str(path), severity="warning")      # info-level SC2016 ("won't expand in single quotes") is the point
    # the job name is sanitised for the directive
    assert re.search(r"^#PBS -N a_b_[A-Za-z0-9_.-]*HOME$", pj.script_text, re.M), pj.script_text[:300]


def test_values_that_cannot_be_directives_are_refused(tmp_path):
    with pytest.raises(TemplateError, match="directive"):
        render("polaris", queue="debug -W depend=x")
    with pytest.raises(ConfigError, match="one line"):
        render("polaris", account="a\n#PBS -l select=99")
    with pytest.raises(ConfigError, match="alias"):
        render("polaris", alias="../x")


# ---------------------------------------------------------------------------- templates

def test_user_template_overrides_one_block(tmp_path):
    tdir = tmp_path / "tpl"
    tdir.mkdir()
    (tdir / "job.sh.j2").write_text('{% extends "base.sh.j2" %}\n{% block environment %}\n'
                                    'source /site/setup.sh {{ alias | shquote }}\n{{ super() }}{% endblock %}\n')
    s = resolve({"profile": "polaris", "template_dirs": [str(tdir)], "home": "/h"}, {"PBSVLLM_CONFIG": os.devnull})
    text = render("polaris", settings=s).script_text
    assert "source /site/setup.sh qwen3-vl\n" in text and "module load conda" in text
    assert "#PBS -l select=1:system=polaris" in text   # other blocks untouched


def test_bare_values_and_undefined_variables_are_refused(tmp_path):
    tdir = tmp_path / "tpl"
    tdir.mkdir()
    (tdir / "job.sh.j2").write_text('{% extends "builtin/base.sh.j2" %}{% block preflight %}echo {{ alias }}\n'
                                    '{% endblock %}')
    s = resolve({"profile": "polaris", "template_dirs": [str(tdir)]}, {"PBSVLLM_CONFIG": os.devnull})
    with pytest.raises(TemplateError, match="shquote"):
        render("polaris", settings=s)
    (tdir / "job.sh.j2").write_text('{% extends "base.sh.j2" %}{% block preflight %}echo {{ nope | shquote }}\n'
                                    '{% endblock %}')
    with pytest.raises(TemplateError, match="nope"):
        render("polaris", settings=s)


# ---------------------------------------------------------------------------- really running the script

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Job:
    """The rendered local-profile script run under plain bash, as the local backend runs it."""

    def __init__(self, tmp_path, alias="t1", model=None, extra_profile="", options=None, env=None, key_mode=0o600,
                 template_dirs=()):
        self.tmp = tmp_path
        self.home = tmp_path / "home"
        self.key = tmp_path / "key"
        self.key.write_text("sekrit-key-123\n")
        os.chmod(self.key, key_mode)
        cfg = (f'[profiles.t]\nbase = "local"\nlauncher = "{sys.executable} {FAKE_VLLM}"\n' + extra_profile)
        (tmp_path / "config.toml").write_text(cfg)
        self.settings = resolve({"profile": "t", "home": str(self.home), "api_key_file": str(self.key),
                                 "template_dirs": list(template_dirs)},
                                {"PBSVLLM_CONFIG": str(tmp_path / "config.toml")})
        opts = {"params": "0.5B", "port": free_port()}
        opts.update(options or {})
        self.port = opts["port"]
        self.prepared = prepare_job(self.settings, model or str(tmp_path / "no-model"), alias, opts, env=NO_CACHE)
        self.script = tmp_path / "job.sh"
        self.script.write_text(self.prepared.script_text)
        self.workdir = tmp_path / "work"
        self.workdir.mkdir()
        self.record = tmp_path / "record.json"
        self.env = dict(os.environ, PBS_JOBID="local-7", PBS_O_WORKDIR=str(self.workdir),
                        FAKE_VLLM_RECORD=str(self.record), FAKE_VLLM_LIFETIME="30")
        self.env.pop("CUDA_VISIBLE_DEVICES", None)
        self.env.update(env or {})
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["bash", str(self.script)], cwd=str(self.tmp), env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_record(self, timeout=30):
        end = time.time() + timeout
        info = self.home / "run" / "local-7.server.json"
        while time.time() < end:
            if self.record.exists() and info.exists():
                return json.loads(self.record.read_text()), json.loads(info.read_text())
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        out = self.proc.stdout.read().decode() if self.proc.poll() is not None else "(still running)"
        raise AssertionError(f"the job script did not start the launcher / write server info: {out}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def job_factory(tmp_path):
    jobs = []

    def make(**kw):
        j = Job(tmp_path, **kw)
        jobs.append(j)
        return j
    yield make
    for j in jobs:
        j.stop()


def test_script_runs_writes_server_info_and_forwards_sigterm(job_factory):
    job = job_factory().start()
    rec, info = job.wait_record()
    assert set(info) == SERVER_INFO_KEYS
    assert info["job_id"] == "local-7" and info["alias"] == "t1" and info["served_model_name"] == "t1"
    assert info["port"] == job.port and info["url"] == f"http://127.0.0.1:{job.port}/v1"
    assert info["pid"] == rec["pid"] and info["pgid"] == rec["pgid"]
    assert info["log_path"] == job.prepared.log_path_for("local-7") and os.path.exists(info["log_path"])
    assert info["replicas"][0]["port"] == job.port
    assert rec["argv"] == job.prepared.plan.vllm_args[:job.prepared.plan.vllm_args.index("--port") + 1] + \
        [str(job.port)] + job.prepared.plan.vllm_args[job.prepared.plan.vllm_args.index("--port") + 2:]
    assert rec["env"]["PBSVLLM_JOB_ID"] == "local-7" and rec["env"]["PBSVLLM_ALIAS"] == "t1"
    assert rec["env"]["VLLM_API_KEY"] == "sekrit-key-123"
    assert rec["cwd"] == str(job.workdir)            # cd "$PBS_O_WORKDIR"
    # the key is nowhere but in the environment
    assert "sekrit" not in job.prepared.script_text and all("sekrit" not in a for a in rec["argv"])
    # server-info and log are private
    assert stat.S_IMODE(os.stat(job.home / "run" / "local-7.server.json").st_mode) == 0o600
    os.kill(job.proc.pid, signal.SIGTERM)
    rc = job.proc.wait(timeout=20)
    out = job.proc.stdout.read().decode()
    log = open(info["log_path"]).read()
    assert rc == 0, out
    assert "fake vllm got SIGTERM" in log and "SIGTERM received: stopping vLLM" in log
    assert "vLLM exited with status 0" in out
    assert "sekrit" not in log and "sekrit" not in out


def test_busy_port_moves_up(job_factory):
    job = job_factory()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", job.port))
        busy.listen(1)
        job.start()
        rec, info = job.wait_record()
    assert info["port"] > job.port
    assert rec["argv"][rec["argv"].index("--port") + 1] == str(info["port"])


def test_launcher_exit_status_is_the_job_exit_status(job_factory):
    job = job_factory(env={"FAKE_VLLM_LIFETIME": "0.5", "FAKE_VLLM_EXIT": "3"}).start()
    assert job.proc.wait(timeout=30) == 3


def test_injection_is_inert_when_run(job_factory, tmp_path):
    evil = EVIL.replace("/", "")
    job = job_factory(alias=evil, model=str(tmp_path / evil), options={"served_model_name": evil}).start()
    rec, info = job.wait_record()
    assert rec["argv"][0] == str(tmp_path / evil)
    assert rec["argv"][rec["argv"].index("--served-model-name") + 1] == evil
    assert info["alias"] == evil and rec["env"]["PBSVLLM_ALIAS"] == evil
    for d in (tmp_path, job.workdir, job.home):
        assert not list(d.glob("INJECTED*")), f"something was executed in {d}"
    assert os.path.exists(info["log_path"]) and info["log_path"].endswith(f"{evil}.local-7.log")


def test_unsafe_key_file_mode_stops_the_job(job_factory):
    job = job_factory(key_mode=0o644).start()
    assert job.proc.wait(timeout=20) == 2
    assert "chmod 600" in job.proc.stdout.read().decode()
    assert not job.record.exists()


def no_preflight(tmp_path):
    """A site template that empties the preflight block: this machine has no GPU for the
    pre-launch device-count check, and these tests look at the gpus block alone."""
    tdir = tmp_path / "tpl"
    tdir.mkdir(exist_ok=True)
    (tdir / "job.sh.j2").write_text('{% extends "base.sh.j2" %}{% block preflight %}{% endblock %}\n')
    return [str(tdir)]


FAKE_SMI = """#!/bin/sh
printf '0, GPU-aaaa-1111\\n1, GPU-bbbb-2222\\n2, GPU-cccc-3333\\n3, GPU-dddd-4444\\n'
"""


@pytest.mark.parametrize("given,expected,order", [
    ("GPU-cccc-3333,GPU-aaaa-1111", "2,0", "PCI_BUS_ID"),  # UUIDs from the PBS cgroup hook -> indices
    ("0,1,2,3,4,5", "0,1", None),                            # only narrow what PBS gave
    (None, "0,1", None),                                     # nothing set: the GPUs the plan uses
    ("GPU-zzzz", "GPU-zzzz", None),                          # unknown UUID: kept (CUDA accepts UUIDs)
])
def test_cuda_visible_devices(job_factory, tmp_path, given, expected, order):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "nvidia-smi").write_text(FAKE_SMI)
    os.chmod(bindir / "nvidia-smi", 0o755)
    env = {"PATH": f"{bindir}:{os.environ['PATH']}"}
    if given:
        env["CUDA_VISIBLE_DEVICES"] = given
    job = job_factory(extra_profile='device = "cuda"\ngpus_per_node = 2\ngpu_memory_gib = 80\ninterconnect = "nvlink"\n',
                      options={"params": "2B"}, env=env, template_dirs=no_preflight(tmp_path))
    assert job.prepared.plan.data_parallel_size == 2
    job.start()
    rec, info = job.wait_record()
    assert rec["env"]["CUDA_VISIBLE_DEVICES"] == expected
    assert rec["env"]["CUDA_DEVICE_ORDER"] == order
    assert info["replicas"][0]["gpus"] == expected


def test_cuda_uuids_without_nvidia_smi_are_kept(job_factory, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": "GPU-aaaa-1111,GPU-bbbb-2222"}
    job = job_factory(extra_profile='device = "cuda"\ngpus_per_node = 2\ngpu_memory_gib = 80\n',
                      options={"params": "2B"}, env=env, template_dirs=no_preflight(tmp_path)).start()
    rec, _ = job.wait_record()
    assert rec["env"]["CUDA_VISIBLE_DEVICES"] == "GPU-aaaa-1111,GPU-bbbb-2222"
    assert "nvidia-smi not found" in open(job.prepared.log_path_for("local-7")).read()


# ---------------------------------------------------------------------------- the submit command

def test_submit_dry_run_prints_the_script(tmp_path):
    env = dict(os.environ, PBSVLLM_CONFIG=os.devnull, HF_HUB_CACHE="/nonexistent", PBSVLLM_HOME=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "pbsvllm", "submit", "Qwen/Qwen3-VL-2B-Instruct", "--alias", "qwen3-vl",
                        "--profile", "polaris", "--dry-run", "--walltime", "02:00:00", "--queue", "preemptable",
                        "--account", "MyProj", "--port", "8005", "--vllm-arg", "--max-num-seqs 512"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    for line in ("#PBS -l walltime=02:00:00", "#PBS -q preemptable", "#PBS -A MyProj", "PORT_START=8005",
                 "VLLM_ARGS+=(--max-num-seqs 512)  # set by you"):
        assert line in r.stdout, line
    assert not os.listdir(tmp_path)               # a dry run writes nothing
    j = subprocess.run([sys.executable, "-m", "pbsvllm", "submit", "Qwen/Qwen3-VL-2B-Instruct", "--alias", "q",
                        "--profile", "torque", "--dry-run", "--json"], capture_output=True, text=True, env=env)
    doc = json.loads(j.stdout)
    assert doc["log_path"].endswith("q.{job_id}.log") and doc["script"].startswith("#!/bin/bash")
    assert doc["plan"]["data_parallel_size"] == 4


def test_example_site_template_renders_and_passes_shellcheck(tmp_path):
    tdir = os.path.join(os.path.dirname(HERE), "examples", "templates")
    s = resolve({"profile": "polaris", "template_dirs": [tdir], "home": "/h"}, {"PBSVLLM_CONFIG": os.devnull})
    text = render("polaris", settings=s).script_text
    assert "source /soft/site/setup-vllm.sh\n" in text and "module load conda" in text
    assert "is over 95% full" in text
    path = tmp_path / "job.sh"
    path.write_text(text)
    subprocess.run(["bash", "-n", str(path)], check=True)
    shellcheck(str(path))


def test_example_config_profiles_render_and_pass_shellcheck(tmp_path):
    cfg = os.path.join(os.path.dirname(HERE), "examples", "config.toml")
    for name in ("polaris-mine", "lab", "laptop"):
        s = resolve({"profile": name, "template_dirs": []}, {"PBSVLLM_CONFIG": cfg})  # the example dir is not here
        text = render(name, settings=s, model="Qwen/Qwen2.5-7B-Instruct").script_text
        path = tmp_path / f"{name}.sh"
        path.write_text(text)
        subprocess.run(["bash", "-n", str(path)], check=True)
        shellcheck(str(path))
    assert "#PBS -m n\n#PBS -N qwen3-vl" in (tmp_path / "lab.sh").read_text()


def test_remote_host_paths_expand_on_the_cluster(tmp_path):
    s = resolve({"profile": "polaris", "host": "me@login.example.org", "api_key_file": "~/.config/pbsvllm/key"},
                {"PBSVLLM_CONFIG": os.devnull})
    pj = render("polaris", settings=s)
    text = pj.script_text
    assert 'PBSVLLM_HOME="$HOME"/.pbsvllm\n' in text and 'LOG_DIR="$HOME"/.pbsvllm/logs\n' in text
    assert 'API_KEY_FILE="$HOME"/.config/pbsvllm/key\n' in text
    assert "#PBS -o" not in text                    # a '~' path cannot go into a directive
    assert pj.script_path.startswith("~/.pbsvllm/scripts/qwen3-vl-")
    assert pj.log_path == "~/.pbsvllm/logs/qwen3-vl.{job_id}.log"
    assert pj.log_path_for("12.srv") == "~/.pbsvllm/logs/qwen3-vl.12.srv.log"
    path = tmp_path / "job.sh"
    path.write_text(text)
    shellcheck(str(path))
