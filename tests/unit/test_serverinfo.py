"""The server-info contract: the template's writer checked against the one
reader (render the writer block, run it with bash, parse the file with
pbsvllm.serverinfo), and the reader's rules (validation, replicas, URL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pbsvllm import serverinfo
from pbsvllm.config import resolve
from pbsvllm.errors import ServerError
from pbsvllm.render import prepare_job
from pbsvllm.transport.local import LocalTransport

NO_CACHE = {"HF_HUB_OFFLINE": "1", "HF_HOME": os.devnull}
BEGIN = "# --- server-info file"
END = "log \"vLLM pid(s)"


def writer_block(tmp_path, **flags):
    """The rendered server-info writer of a real job script (the block
    between its comment and the log line that follows it)."""
    settings = resolve({"profile": "local", "home": str(tmp_path / "home"), **flags},
                       {"PBSVLLM_CONFIG": os.devnull})
    model = tmp_path / "tiny"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 128, "vocab_size": 256,
        "max_position_embeddings": 512, "torch_dtype": "float32"}))
    script = prepare_job(settings, str(model), "tiny-a", {"params": "1M"}, env=NO_CACHE).script_text
    start = script.index(BEGIN)
    return script[start:script.index(END, start)]


def run_writer(tmp_path, block, port=8123, replicas=None):
    info_path = tmp_path / "run" / "5.pbs.server.json"
    info_path.parent.mkdir(parents=True, exist_ok=True)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        rep = replicas if replicas is not None else f"{sleeper.pid}\t{port}\t0\t{tmp_path}/x.log\n"
        prelude = (f"JOB_ID=5.pbs PORT={port} VLLM_PID={sleeper.pid} MODEL=/models/tiny SERVED_MODEL_NAME=tiny "
                   f"ALIAS=tiny-a LOG={tmp_path}/x.log SERVER_INFO={info_path} PBSVLLM_PY={sys.executable}\n"
                   "log() { echo \"$*\" >&2; }\n"
                   f"SI_REPLICAS=$'{rep.replace(chr(9), chr(92) + 't').replace(chr(10), chr(92) + 'n')}'\n")
        r = subprocess.run(["bash", "-c", prelude + block], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "WARNING" not in r.stderr, r.stderr
        return serverinfo.read(LocalTransport(), str(info_path)), sleeper.pid, info_path
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_templates_writer_is_read_by_the_reader(tmp_path):
    info, pid, path = run_writer(tmp_path, writer_block(tmp_path))
    assert (info.job_id, info.port, info.pid, info.alias) == ("5.pbs", 8123, pid, "tiny-a")
    assert info.served_model_name == "tiny"
    assert info.host and info.url == f"http://{info.host}:8123/v1" and info.path == str(path)
    assert info.pgid == os.getpgrp() and info.start_time.endswith("+00:00")
    assert [(r.index, r.port, r.pid) for r in info.replicas] == [(0, 8123, pid)]
    assert serverinfo.endpoint_url(info) == info.url
    assert [s.port for s in info.servers()] == [8123]  # one server: the job's own
    assert set(json.loads(path.read_text())) == set(info.to_dict()) | {"replicas"}


def test_the_writer_with_a_url_template_and_replicas(tmp_path):
    block = writer_block(tmp_path, **{"url_template": "https://{hostname}.proxy/{alias}/{port}"})
    reps = "101\t9001\t0\t/l/a.log\n102\t9002\t1\t/l/b.log\n"
    info, _pid, _path = run_writer(tmp_path, block, replicas=reps)
    assert [(r.port, r.pid, r.gpus, r.log_path) for r in info.replicas] == [(9001, 101, "0", "/l/a.log"),
                                                                          (9002, 102, "1", "/l/b.log")]
    assert info.url.startswith("https://") and info.url.endswith("/tiny-a/8123")
    urls = serverinfo.endpoint_urls(info, url_template="https://{hostname}.proxy/{alias}/{port}", alias="tiny-a")
    assert [u.rsplit("/", 1)[1] for u in urls] == ["9001", "9002"]


def test_reader_rejects_what_is_not_a_server_info_file(tmp_path):
    p = tmp_path / "x.server.json"
    t = LocalTransport()
    with pytest.raises(serverinfo.ServerInfoMissing):
        serverinfo.read(t, str(p))
    for text, what in [("{", "not valid JSON"), ("[]", "not a JSON object"),
                       ('{"port": "80"}', "not an integer"), ('{"port": 70000}', "not a TCP port"),
                       ('{"port": 1, "replicas": {}}', "not a list"), ('{"pid": true}', "not an integer")]:
        p.write_text(text)
        with pytest.raises(ServerError, match=what):
            serverinfo.read(t, str(p))
        assert serverinfo.try_read(t, str(p)) is None


def test_url_rule_never_uses_a_bind_address():
    info = serverinfo.ServerInfo(job_id="1", host="0.0.0.0", port=8000, hostname="n1")
    assert serverinfo.endpoint_url(info) == "http://n1:8000/v1"
    with pytest.raises(ServerError, match="no reachable host"):
        serverinfo.endpoint_url(serverinfo.ServerInfo(job_id="1", host="::", port=8000))
