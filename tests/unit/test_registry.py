"""Endpoint registries: every format, on real files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

from pbsvllm.errors import RegistryError
from pbsvllm.registry import Endpoint, detect_format, open_registries, open_registry

TOML_WITH_COMMENTS = """\
# team registry -- hand edited
title = "ours"

[[endpoint]]
endpoint_id = "other"   # keep me
model = "m"
url = "http://h:1/v1"
key = "K"
type = "openai_chat_completions"
headers = { X-Job = "1" }

# the qwen pool
[[endpoint]]
endpoint_id = "qwen"
model = "q"
url = "http://a:1/v1"
key = "K"
type = "openai_chat_completions"

[[endpoint]]
endpoint_id = "last"
api_base_url = "http://z:9/v1"
api_key_var = "Z"
model = "z"
"""

PY_LEGACY = """\
import os

# hand-written registry; verifiers executes this file
ENDPOINTS = {
    "other": {"model": "m", "url": "http://h:1/v1", "key": "K"},  # keep this comment
    "env": {"model": os.environ.get("X", "y"), "url": "u", "key": "k"},
    "qwen": {"model": "q",
             "url": "http://a:1/v1", "key": "K", "client_type": "openai"},
    "pool": [{"model": "p", "url": "http://p1:1/v1", "key": "K"},
             {"model": "p", "url": "http://p2:1/v1", "key": "K"}]
}

EXTRA = 1  # trailing code stays
"""

YAML_LITELLM = """\
# LiteLLM proxy
model_list:
  - model_name: other   # keep
    litellm_params:
      model: openai/m
      api_base: http://h:1/v1
      rpm: 600
  - model_name: qwen
    litellm_params: {model: hosted_vllm/q, api_base: "http://a:1/v1", api_key: os.environ/K}
    model_info: {id: "1.old"}
router_settings:
  routing_strategy: simple-shuffle   # comment kept
  num_retries: 2
general_settings:
  master_key: sk-1234
"""

EP = Endpoint(alias="qwen", model="qwen7b", url="http://x3006c0s13b1n0:8005/v1", key="VLLM_API_KEY", job_id="123.pbs")


def write(path, text, mode=0o644):
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


# -- format detection ---------------------------------------------------------------

def test_format_from_name_and_flag(tmp_path):
    assert detect_format("configs/endpoints.toml") == "toml"
    assert detect_format("configs/endpoints.py") == "py"
    assert detect_format("config.yaml") == "litellm"
    assert detect_format("config.yml") == "litellm"
    assert detect_format("reg.json") == "json"
    assert detect_format("reg.txt", "yaml") == "litellm"
    with pytest.raises(RegistryError, match="cannot tell the registry format"):
        detect_format("registry.txt")
    with pytest.raises(RegistryError, match="unknown registry format 'xml'"):
        detect_format("a.toml", "xml")
    # a directory means <dir>/endpoints.toml, like verifiers' -e
    assert open_registry(str(tmp_path)).path == str(tmp_path / "endpoints.toml")
    regs = open_registries([f"json:{tmp_path}/r.txt", str(tmp_path / "e.toml"), str(tmp_path / "e.toml")])
    assert [r.fmt for r in regs] == ["json", "toml"]


# -- verifiers endpoints.toml -----------------------------------------------------------

def test_toml_read_follows_loader_rules(tmp_path):
    reg = open_registry(write(tmp_path / "endpoints.toml", TOML_WITH_COMMENTS))
    entries = reg.read()
    assert sorted(entries) == ["last", "other", "qwen"]
    assert entries["last"][0].url == "http://z:9/v1" and entries["last"][0].key == "Z"
    assert entries["other"][0].extra == {"type": "openai_chat_completions", "headers": {"X-Job": "1"}}


def test_toml_replace_keeps_every_other_line(tmp_path):
    path = write(tmp_path / "endpoints.toml", TOML_WITH_COMMENTS)
    reg = open_registry(path)
    assert reg.register(EP) is True
    text = open(path).read()
    before = TOML_WITH_COMMENTS.split("# the qwen pool\n")
    # everything before the alias's block and after it is byte-identical
    assert text.startswith(before[0] + "# the qwen pool\n")
    assert text.endswith(before[1].split('type = "openai_chat_completions"\n', 1)[1])
    entries = reg.read()
    q = entries["qwen"]
    assert len(q) == 1 and q[0].url == EP.url and q[0].model == "qwen7b"
    # the user's extra field on the alias is carried over
    assert q[0].extra == {"type": "openai_chat_completions"}
    raw = tomllib.loads(text)
    assert [e["endpoint_id"] for e in raw["endpoint"]] == ["other", "qwen", "last"]
    assert raw["title"] == "ours"
    # .bak is the previous version
    assert open(path + ".bak").read() == TOML_WITH_COMMENTS


def test_toml_replicas_and_removal(tmp_path):
    path = str(tmp_path / "endpoints.toml")
    reg = open_registry(path)
    a = Endpoint("pool", "tiny", "http://n1:8000/v1")
    b = Endpoint("pool", "tiny", "http://n2:8000/v1")
    assert reg.register(a)
    assert reg.register(b, replace=False)
    assert reg.register(b, replace=False) is False  # same server again: no change, no write
    assert [e.url for e in reg.lookup("pool")] == [a.url, b.url]
    raw = tomllib.loads(open(path).read())
    assert [e["endpoint_id"] for e in raw["endpoint"]] == ["pool", "pool"]
    assert reg.unregister("pool", url=a.url)
    assert [e.url for e in reg.lookup("pool")] == [b.url]
    assert reg.unregister("pool")
    assert reg.read() == {}
    assert reg.unregister("pool") is False


def test_new_file_is_0600_and_existing_mode_kept(tmp_path):
    for name in ("a.toml", "a.py", "a.yaml", "a.json"):
        reg = open_registry(str(tmp_path / name))
        reg.register(EP)
        assert stat.S_IMODE(os.stat(reg.path).st_mode) == 0o600, name
    path = write(tmp_path / "shared.toml", TOML_WITH_COMMENTS, mode=0o640)
    open_registry(path).register(EP)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(path + ".bak").st_mode) == 0o640


@pytest.mark.parametrize(
    "name,text,where",
    [
        ("endpoints.toml", '[[endpoint]]\nendpoint_id = "a"\nmodel = "m\nurl = "u"\n', ":3:"),
        ("endpoints.py", 'ENDPOINTS = {\n    "a": {"model": "m",\n}\n', ":"),
        ("config.yaml", "model_list:\n  - model_name: a\n    litellm_params: {model: x\n", ":"),
        ("reg.json", '{"a": {"model": "m", "url": "u", "key": "k"},}\n', ":1:"),
    ],
)
def test_unparsable_file_is_never_touched(tmp_path, name, text, where):
    path = write(tmp_path / name, text)
    before = open(path, "rb").read()
    with pytest.raises(RegistryError) as ei:
        open_registry(path).register(EP)
    msg = str(ei.value)
    assert path + where in msg and "does not parse" in msg and "was not changed" in msg
    assert open(path, "rb").read() == before
    assert not os.path.exists(path + ".bak")
    assert sorted(os.listdir(tmp_path)) == sorted([name, name + ".lock"])


def test_toml_invalid_entry_is_refused(tmp_path):
    # verifiers would raise ValueError (or silently fall back to an empty registry)
    path = write(tmp_path / "endpoints.toml",
                 '[[endpoint]]\nendpoint_id = "a"\nmodel = "m"\nurl = "u"\nkey = "k"\napi_key_var = "other"\n')
    with pytest.raises(RegistryError, match="key and api_key_var are both given"):
        open_registry(path).register(EP)
    path2 = write(tmp_path / "e2.toml", '[[endpoint]]\nendpoint_id = ""\nmodel = "m"\nurl = "u"\nkey = "k"\n')
    with pytest.raises(RegistryError, match="non-empty string endpoint_id"):
        open_registry(path2).read()


def test_toml_odd_values_round_trip(tmp_path):
    reg = open_registry(str(tmp_path / "endpoints.toml"))
    ep = Endpoint('we"ird\\alias', "m\tx", "http://h:1/v1", "K",
                  extra={"headers": {"X Job": "1", "n": 2}, "weights": [1.5, True], "type": "ünï"})
    reg.register(ep)
    got = reg.lookup(ep.alias)[0]
    assert (got.alias, got.model, got.extra) == (ep.alias, ep.model, ep.extra)


# -- legacy endpoints.py ------------------------------------------------------------------

def _import_endpoints(path):
    """verifiers executes the file; so does this test (pbsvllm never does)."""
    out = subprocess.run(
        [sys.executable, "-c", "import json,runpy,sys; print(json.dumps(runpy.run_path(sys.argv[1])['ENDPOINTS']))", path],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout)


def test_py_changes_only_the_alias_entry(tmp_path):
    path = write(tmp_path / "endpoints.py", PY_LEGACY)
    reg = open_registry(path)
    assert sorted(reg.read()) == ["other", "pool", "qwen"]  # "env" is not a literal: left alone
    reg.register(EP)
    text = open(path).read()
    old_entry = '{"model": "q",\n             "url": "http://a:1/v1", "key": "K", "client_type": "openai"}'
    assert old_entry in PY_LEGACY
    new_entry = ('{"model": "qwen7b", "url": "http://x3006c0s13b1n0:8005/v1", "key": "VLLM_API_KEY", '
                 '"client_type": "openai"}')
    assert text == PY_LEGACY.replace(old_entry, new_entry)
    eps = _import_endpoints(path)
    assert eps["qwen"]["url"] == EP.url and eps["other"]["model"] == "m" and eps["env"]["model"] == "y"


def test_py_add_replica_remove(tmp_path):
    path = write(tmp_path / "endpoints.py", PY_LEGACY)
    reg = open_registry(path)
    reg.register(Endpoint("new", "n", "http://c:3/v1"))
    assert _import_endpoints(path)["new"] == {"model": "n", "url": "http://c:3/v1", "key": "VLLM_API_KEY"}
    reg.register(Endpoint("new", "n", "http://d:3/v1"), replace=False)
    assert [e["url"] for e in _import_endpoints(path)["new"]] == ["http://c:3/v1", "http://d:3/v1"]
    reg.unregister("pool", url="http://p1:1/v1")
    assert _import_endpoints(path)["pool"] == {"model": "p", "url": "http://p2:1/v1", "key": "K"}
    reg.unregister("new")
    reg.unregister("pool")
    eps = _import_endpoints(path)
    assert sorted(eps) == ["env", "other", "qwen"]
    text = open(path).read()
    assert text.startswith(PY_LEGACY.split("    \"pool\"")[0])
    assert text.endswith("}\n\nEXTRA = 1  # trailing code stays\n")
    # the comment on a kept entry is still there
    assert '"other": {"model": "m", "url": "http://h:1/v1", "key": "K"},  # keep this comment' in text


@pytest.mark.parametrize("src", [
    'ENDPOINTS = {}\n',
    'ENDPOINTS = {"a": {"model": "m", "url": "u", "key": "k"}}\n',
    'ENDPOINTS = {"a": {"model": "m", "url": "u", "key": "k"},}\n',
    'ENDPOINTS = {\n    "a": {"model": "m", "url": "u", "key": "k"}  # no comma\n}\n',
    'ENDPOINTS: dict = {\n    "é": {"model": "ü", "url": "u", "key": "k"},\n}\n',
    '"""no registry yet"""\n',
])
def test_py_layouts(tmp_path, src):
    path = write(tmp_path / "endpoints.py", src)
    reg = open_registry(path)
    reg.register(EP)
    reg.register(Endpoint("b", "m2", "http://b:1/v1"))
    eps = _import_endpoints(path)
    assert eps["qwen"]["url"] == EP.url and eps["b"]["model"] == "m2"
    reg.unregister("qwen")
    assert "qwen" not in _import_endpoints(path)


def test_py_non_literal_alias_is_refused(tmp_path):
    path = write(tmp_path / "endpoints.py", PY_LEGACY)
    before = open(path).read()
    with pytest.raises(RegistryError, match="'env' .* is not a literal"):
        open_registry(path).register(Endpoint("env", "m", "http://e:1/v1"))
    assert open(path).read() == before


def test_py_is_never_executed(tmp_path):
    marker = tmp_path / "executed"
    path = write(tmp_path / "endpoints.py",
                 f"open({str(marker)!r}, 'w').close()\nENDPOINTS = {{}}\n")
    open_registry(path).register(EP)
    assert not marker.exists()
    _import_endpoints(path)
    assert marker.exists()  # the file still runs (for verifiers)


# -- LiteLLM config.yaml ----------------------------------------------------------------------

def test_litellm_surgical_update(tmp_path):
    import yaml

    path = write(tmp_path / "config.yaml", YAML_LITELLM)
    reg = open_registry(path)
    old = reg.read()
    assert old["qwen"][0].job_id == "1.old" and old["qwen"][0].key == "K"
    reg.register(EP)
    text = open(path).read()
    head = YAML_LITELLM.split("  - model_name: qwen")[0]
    assert text.startswith(head)
    assert text.endswith(YAML_LITELLM.split('{id: "1.old"}\n')[1])
    data = yaml.safe_load(text)
    q = [m for m in data["model_list"] if m["model_name"] == "qwen"]
    assert q == [{
        "model_name": "qwen",
        "litellm_params": {"model": "hosted_vllm/qwen7b", "api_base": EP.url, "api_key": "os.environ/VLLM_API_KEY"},
        "model_info": {"id": "123.pbs"},
    }]
    assert data["router_settings"]["num_retries"] == 2
    # replica: same model_name twice = load-balanced deployments
    reg.register(Endpoint("qwen", "qwen7b", "http://n2:8005/v1", job_id="124.pbs"), replace=False)
    data = yaml.safe_load(open(path).read())
    assert [m["model_info"]["id"] for m in data["model_list"] if m["model_name"] == "qwen"] == ["123.pbs", "124.pbs"]
    reg.unregister("qwen", job_id="123.pbs")
    data = yaml.safe_load(open(path).read())
    assert [m["litellm_params"]["api_base"] for m in data["model_list"]] == ["http://h:1/v1", "http://n2:8005/v1"]


@pytest.mark.parametrize("src", ["", "general_settings:\n  master_key: x\n", "model_list: []\nother: 1\n",
                                 "model_list:\n- model_name: a\n  litellm_params:\n    model: openai/a\nz: 1\n"])
def test_litellm_layouts(tmp_path, src):
    import yaml

    path = write(tmp_path / "config.yaml", src)
    reg = open_registry(path)
    reg.register(EP)
    reg.register(Endpoint("b", "m/with/slash", "http://b:1/v1", job_id="9"))
    data = yaml.safe_load(open(path).read())
    names = [m["model_name"] for m in data["model_list"]]
    assert "qwen" in names and "b" in names
    assert reg.lookup("b")[0].model == "m/with/slash"
    reg.unregister("qwen")
    assert "qwen" not in reg.read()


def test_litellm_flow_style_list_is_refused_untouched(tmp_path):
    src = "model_list: [{model_name: a, litellm_params: {model: openai/a}}]\n"
    path = write(tmp_path / "config.yaml", src)
    with pytest.raises(RegistryError, match="in place.*block list"):
        open_registry(path).register(EP)
    assert open(path).read() == src


# -- JSON ---------------------------------------------------------------------------------------

def test_json_round_trip_keeps_order(tmp_path):
    path = write(tmp_path / "reg.json", json.dumps({"z": {"model": "m", "url": "u", "key": "k", "note": 1},
                                                   "qwen": {"model": "q", "url": "u2", "key": "k"}}))
    reg = open_registry(path)
    reg.register(EP)
    data = json.load(open(path))
    assert list(data) == ["z", "qwen"]
    assert data["qwen"] == {"model": "qwen7b", "url": EP.url, "key": "VLLM_API_KEY", "job_id": "123.pbs"}
    assert data["z"]["note"] == 1


def test_aliases_for_url(tmp_path):
    reg = open_registry(str(tmp_path / "endpoints.toml"))
    reg.register(EP)
    reg.register(Endpoint("alt", "qwen7b", EP.url + "/"))
    assert reg.aliases_for_url(EP.url) == ["alt", "qwen"]
    assert reg.aliases_for_url("http://nowhere:1/v1") == []


def test_missing_directory_is_an_error(tmp_path):
    with pytest.raises(RegistryError, match="does not exist"):
        open_registry(str(tmp_path / "no" / "endpoints.toml")).register(EP)
