"""Config: built-in profiles, user profiles with inheritance, precedence, errors naming file and key."""

import os

import pytest

from pbsvllm.config import builtin_profile_names, load_profile, resolve
from pbsvllm.errors import ConfigError


def write(tmp_path, text, name="config.toml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_builtin_profiles_all_load():
    names = builtin_profile_names()
    assert set(names) >= {"polaris", "sophia", "pbspro", "torque", "local"}
    for n in names:
        p = load_profile(n)
        assert p.name == n
        assert p.dialect in ("pbspro", "torque")
        assert p.source.endswith(f"{n}.toml")


def test_polaris_facts():
    p = load_profile("polaris")
    assert (p.gpus_per_node, p.gpu_memory_gib, p.interconnect, p.cpus_per_node) == (4, 40.0, "nvlink", 64)
    assert p.select_extra == "system=polaris" and p.filesystems == "home:eagle"
    assert {"debug", "prod", "preemptable"} <= set(p.queues)
    t = load_profile("torque")
    assert t.dialect == "torque" and t.scheduler == "torque"
    s = load_profile("sophia")
    assert s.gpus_per_node == 8 and {"by-gpu", "by-node"} <= set(s.queues)
    loc = load_profile("local")
    assert loc.scheduler == "local" and loc.device == "cpu" and loc.bind_host == "127.0.0.1"


def test_precedence_flags_env_file_profile_default(tmp_path):
    cfg = write(tmp_path, """
profile = "mine"
home = "/file/home"
[profiles.mine]
base = "polaris"
queue = "prod"
account = "FileProj"
walltime = "02:00:00"
""")
    env = {"PBSVLLM_CONFIG": cfg}
    s = resolve({}, env)
    assert s.profile.name == "mine"
    assert (s.profile.queue, s.profile.account, s.profile.walltime) == ("prod", "FileProj", "02:00:00")
    assert s.profile.gpus_per_node == 4            # inherited from polaris
    assert s.home == "/file/home"
    assert s.config_path == cfg
    # env beats file
    env.update(PBSVLLM_QUEUE="preemptable", PBSVLLM_HOME="/env/home", PBSVLLM_ACCOUNT="EnvProj")
    s = resolve({}, env)
    assert (s.profile.queue, s.profile.account, s.home) == ("preemptable", "EnvProj", "/env/home")
    # flags beat env
    s = resolve({"queue": "debug", "home": "/flag/home", "account": None}, env)
    assert (s.profile.queue, s.home, s.profile.account) == ("debug", "/flag/home", "EnvProj")
    # built-in default when nothing says otherwise
    s = resolve({"profile": "polaris"}, {"PBSVLLM_CONFIG": write(tmp_path, "", "empty.toml")})
    assert s.profile.walltime == "01:00:00" and s.api_key_env == "VLLM_API_KEY"
    assert s.home == os.path.expanduser("~/.pbsvllm")


def test_user_profile_overlays_builtin_of_same_name(tmp_path):
    cfg = write(tmp_path, '[profiles.polaris]\naccount = "Proj1"\n')
    s = resolve({"profile": "polaris"}, {"PBSVLLM_CONFIG": cfg})
    assert s.profile.account == "Proj1" and s.profile.select_extra == "system=polaris"


def test_inheritance_chain_and_loop(tmp_path):
    cfg = write(tmp_path, """
[profiles.a]
base = "polaris"
queue = "prod"
[profiles.b]
base = "a"
account = "X"
[profiles.loop1]
base = "loop2"
[profiles.loop2]
base = "loop1"
""")
    s = resolve({"profile": "b"}, {"PBSVLLM_CONFIG": cfg})
    assert (s.profile.queue, s.profile.account, s.profile.gpus_per_node) == ("prod", "X", 4)
    with pytest.raises(ConfigError, match="loops"):
        resolve({"profile": "loop1"}, {"PBSVLLM_CONFIG": cfg})


def test_unknown_key_names_file_and_key(tmp_path):
    cfg = write(tmp_path, '[profiles.mine]\nbase = "polaris"\nqueeu = "prod"\n')
    with pytest.raises(ConfigError) as e:
        resolve({"profile": "mine"}, {"PBSVLLM_CONFIG": cfg})
    assert cfg in str(e.value) and "profiles.mine.queeu" in str(e.value)
    cfg2 = write(tmp_path, 'profiel = "x"\n', "c2.toml")
    with pytest.raises(ConfigError, match="unknown key 'profiel'"):
        resolve({}, {"PBSVLLM_CONFIG": cfg2})


@pytest.mark.parametrize("line,key", [
    ('gpus_per_node = "four"', "gpus_per_node"),
    ('interconnect = "infiniband"', "interconnect"),
    ('walltime = "forever"', "walltime"),
    ('url_template = "http://{host}/v1"', "url_template"),
    ('env = ["A=1"]', "env"),
    ('device = "tpu"', "device"),
])
def test_bad_values_name_file_and_key(tmp_path, line, key):
    cfg = write(tmp_path, f'[profiles.mine]\nbase = "polaris"\n{line}\n')
    with pytest.raises(ConfigError) as e:
        resolve({"profile": "mine"}, {"PBSVLLM_CONFIG": cfg})
    assert cfg in str(e.value) and f"profiles.mine.{key}" in str(e.value)


def test_bad_toml_and_missing_file(tmp_path):
    cfg = write(tmp_path, "profile = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve({}, {"PBSVLLM_CONFIG": cfg})
    with pytest.raises(ConfigError, match="does not exist"):
        resolve({}, {"PBSVLLM_CONFIG": str(tmp_path / "nope.toml")})


def test_unknown_profile_lists_known():
    with pytest.raises(ConfigError) as e:
        resolve({"profile": "nowhere"}, {"PBSVLLM_CONFIG": os.devnull})
    assert "polaris" in str(e.value) and "nowhere" in str(e.value)


def test_bad_env_value_names_variable(tmp_path):
    with pytest.raises(ConfigError, match="PBSVLLM_GPUS_PER_NODE"):
        resolve({"profile": "polaris"}, {"PBSVLLM_CONFIG": os.devnull, "PBSVLLM_GPUS_PER_NODE": "many"})


def test_alias_registries_and_profile(tmp_path):
    cfg = write(tmp_path, """
registries = ["~/default.toml"]
[aliases.qwen3-vl]
registries = ["/cfg/endpoints.toml", "/cfg/litellm.yaml"]
profile = "sophia"
""")
    s = resolve({"alias": "qwen3-vl"}, {"PBSVLLM_CONFIG": cfg})
    assert s.profile.name == "sophia"
    assert s.registries_for("qwen3-vl") == ("/cfg/endpoints.toml", "/cfg/litellm.yaml")
    assert s.registries_for("other") == (os.path.expanduser("~/default.toml"),)
    # an explicit --profile still wins over the alias's profile
    assert resolve({"alias": "qwen3-vl", "profile": "polaris"}, {"PBSVLLM_CONFIG": cfg}).profile.name == "polaris"


def test_settings_are_frozen():
    s = resolve({"profile": "local"}, {"PBSVLLM_CONFIG": os.devnull})
    with pytest.raises(Exception):
        s.home = "/x"  # type: ignore[misc]
    with pytest.raises(Exception):
        s.profile.queue = "x"  # type: ignore[misc]


def test_remote_host_keeps_tilde_paths(tmp_path):
    s = resolve({"profile": "polaris", "host": "me@polaris", "api_key_file": "~/.config/pbsvllm/key"},
                {"PBSVLLM_CONFIG": os.devnull})
    assert s.home == "~/.pbsvllm" and s.log_dir == "~/.pbsvllm/logs"
    assert s.api_key_file == "~/.config/pbsvllm/key"
    s = resolve({"profile": "polaris"}, {"PBSVLLM_CONFIG": os.devnull})
    assert s.home == os.path.expanduser("~/.pbsvllm")


def test_cuda_profile_without_gpus_is_an_error(tmp_path):
    cfg = write(tmp_path, '[profiles.mine]\nbase = "local"\ndevice = "cuda"\n')
    with pytest.raises(ConfigError, match="gpus_per_node"):
        resolve({"profile": "mine"}, {"PBSVLLM_CONFIG": cfg})


def test_example_config_file_resolves():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples", "config.toml")
    s = resolve({}, {"PBSVLLM_CONFIG": path})
    assert s.profile.name == "polaris-mine" and s.profile.account == "MyProject"
    assert s.profile.select_extra == "system=polaris"
    lab = resolve({"profile": "lab"}, {"PBSVLLM_CONFIG": path}).profile
    assert (lab.dialect, lab.gpus_per_node, lab.interconnect) == ("torque", 2, "pcie")
    assert dict(lab.env)["HF_HOME"] == "/scratch/hf"
    laptop = resolve({"profile": "laptop"}, {"PBSVLLM_CONFIG": path}).profile
    assert laptop.device == "cpu" and laptop.cpu_kvcache_space_gib == 2.0
    assert s.registries_for("qwen3-vl") == (os.path.expanduser("~/configs/endpoints.toml"),)


def test_env_tables_merge_down_the_base_chain(tmp_path):
    cfg = write(tmp_path, '[profiles.mine]\nbase = "polaris"\n[profiles.mine.env]\nHF_HOME = "/mine/hf"\nEXTRA = 1\n')
    env = resolve({"profile": "mine"}, {"PBSVLLM_CONFIG": cfg}).profile.env
    assert env["HF_HOME"] == "/mine/hf" and env["EXTRA"] == "1"
    assert env["RAY_TMPDIR"] == "/tmp"            # kept from polaris


def test_profiles_command(tmp_path):
    import json
    import subprocess
    import sys

    cfg = write(tmp_path, 'profile = "mine"\n[profiles.mine]\nbase = "sophia"\naccount = "P"\n')
    env = dict(os.environ, PBSVLLM_CONFIG=cfg)
    r = subprocess.run([sys.executable, "-m", "pbsvllm", "profiles", "--json"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    rows = {p["name"]: p for p in doc["profiles"]}
    assert set(rows) >= {"polaris", "sophia", "pbspro", "torque", "local", "mine"}
    assert rows["mine"]["origin"] == "user" and rows["mine"]["default"] and rows["mine"]["gpus_per_node"] == 8
    one = subprocess.run([sys.executable, "-m", "pbsvllm", "profiles", "mine", "--json"], capture_output=True,
                         text=True, env=env)
    assert json.loads(one.stdout)["account"] == "P"
    bad = subprocess.run([sys.executable, "-m", "pbsvllm", "profiles", "nope"], capture_output=True, text=True, env=env)
    assert bad.returncode == 10 and "unknown profile 'nope'" in bad.stderr
