"""The verifiers 0.4 `vf-eval @ FILE` config as a registry, and LiteLLM's per-server ids."""

from __future__ import annotations

import pytest

from pbsvllm.errors import RegistryError
from pbsvllm.registry import Endpoint, detect_format, open_registry

EP = Endpoint(alias="tiny", model="tiny", url="http://login1:41234/v1", key="VLLM_API_KEY")


def test_the_name_tells_the_format():
    assert detect_format("/x/tiny.vf.toml") == "vf-config"
    assert detect_format("/x/endpoints.toml") == "toml"
    assert open_registry("/x/cfg.toml", "vf-config").fmt == "vf-config"


def test_written_file_round_trips_and_keeps_the_users_keys(tmp_path):
    path = tmp_path / "tiny.vf.toml"
    reg = open_registry(str(path))
    assert reg.register(EP)
    text = path.read_text()
    assert text.startswith("# pbsvllm alias: tiny\n")
    assert 'base_url = "http://login1:41234/v1"' in text and 'api_key_var = "VLLM_API_KEY"' in text
    path.write_text(text.replace('model = "tiny"', 'model = "tiny"\nnum_rollouts = 4  # mine'))
    assert reg.register(Endpoint(alias="tiny", model="tiny", url="http://login1:5/v1", key="VLLM_API_KEY"))
    new = path.read_text()
    assert "num_rollouts = 4  # mine" in new and 'base_url = "http://login1:5/v1"' in new
    assert reg.lookup("tiny")[0].url == "http://login1:5/v1"


def test_losing_the_server_keeps_the_url_so_no_cloud_fallback(tmp_path):
    path = tmp_path / "tiny.vf.toml"
    reg = open_registry(str(path))
    reg.register(EP)
    assert reg.unregister("tiny")
    text = path.read_text()
    assert text.startswith("# pbsvllm: no server behind 'tiny'")
    assert 'base_url = "http://login1:41234/v1"' in text  # verifiers' default would be a hosted API
    assert reg.lookup("tiny") == []
    assert reg.register(EP) and not path.read_text().startswith("# pbsvllm: no server")


def test_one_file_one_alias_one_url(tmp_path):
    reg = open_registry(str(tmp_path / "tiny.vf.toml"))
    reg.register(EP)
    with pytest.raises(RegistryError, match="not 'other'"):
        reg.register(Endpoint(alias="other", model="m", url="http://a:1/v1"))
    with pytest.raises(RegistryError, match="cannot hold several"):
        reg.register(Endpoint(alias="tiny", model="tiny", url="http://b:1/v1"), replace=False)


def test_litellm_gives_each_server_of_one_job_its_own_id(tmp_path):
    path = tmp_path / "config.yaml"
    reg = open_registry(str(path))
    reg.register(Endpoint(alias="q", model="m", url="http://n1:8000/v1", job_id="12.pbs"))
    assert 'id: "12.pbs"\n' in path.read_text()  # one server per job: the job id, as before
    reg.register(Endpoint(alias="q", model="m", url="http://n1:8001/v1", job_id="12.pbs"), replace=False)
    text = path.read_text()
    assert 'id: "12.pbs#n1:8000"' in text and 'id: "12.pbs#n1:8001"' in text
    assert [e.job_id for e in reg.lookup("q")] == ["12.pbs", "12.pbs"]
    assert reg.unregister("q", job_id="12.pbs") and reg.lookup("q") == []
