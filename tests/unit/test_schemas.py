"""Every command's --json output against the schema the package ships
(pbsvllm/data/schemas; docs/json.md), with jsonschema as the validator."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from typing import Any, Dict, Optional

import jsonschema
import pytest

from pbsvllm.schemas import SCHEMA_DIR, load_schema, schema_names
from tests.paths import DATA, EXAMPLES, ROOT
from tests.unit.test_bench import fake_server  # noqa: F401  (a fixture: the fake OpenAI server)


def validate(name: str, doc: Any) -> None:
    jsonschema.Draft202012Validator(load_schema(name)).validate(doc)


def cli(*args: str, env: Optional[Dict[str, str]] = None, cwd: str = ROOT) -> Any:
    r = subprocess.run([sys.executable, "-m", "pbsvllm", *args], capture_output=True, text=True, cwd=cwd,
                       env={**os.environ, "PYTHONPATH": ROOT, **(env or {})}, timeout=120)
    assert r.returncode == 0, (args, r.stderr)
    return json.loads(r.stdout)


def test_every_schema_is_valid_draft_2020_12_and_shipped():
    assert schema_names() == ("bench", "doctor", "plan", "status", "top", "url")
    for name in schema_names():
        schema = load_schema(name)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$id"].endswith(f"/{name}.schema.json") and schema["title"].startswith("pbsvllm ")
    assert sorted(os.listdir(SCHEMA_DIR)) == [f"{n}.schema.json" for n in schema_names()]


@pytest.mark.parametrize("args", [
    ("Qwen/Qwen3-VL-2B-Instruct", "--profile", "polaris"),
    ("meta-llama/Llama-3.1-70B-Instruct", "--profile", "polaris", "--nodes", "2"),
    ("Qwen/Qwen3-VL-2B-Instruct", "--profile", "local"),
    ("nobody/custom-7b", "--params", "7B", "--profile", "sophia"),
])
def test_plan_json(args):
    doc = cli("plan", *args, "--json")
    validate("plan", doc)


def test_plan_schema_rejects_a_missing_key():
    doc = cli("plan", "Qwen/Qwen3-VL-2B-Instruct", "--profile", "polaris", "--json")
    del doc["max_num_seqs"]
    with pytest.raises(jsonschema.ValidationError, match="max_num_seqs"):
        validate("plan", doc)


LOGS = sorted(glob.glob(os.path.join(DATA, "vllm-real", "*.log")) + glob.glob(os.path.join(DATA, "vllm", "*.log"))
              + [os.path.join(EXAMPLES, "doctor", "qwen3-vl-tp4-eager.log")])


@pytest.mark.parametrize("log", LOGS, ids=os.path.basename)
def test_doctor_json_for_every_recorded_log(log):
    doc = cli("doctor", log, "--json", "--gpu-memory", "80")
    validate("doctor", doc)


def test_doctor_json_with_and_without_a_recommendation():
    with_plan = cli("doctor", "qwen3-vl-tp4-eager.log", "--profile", "polaris", "--gpus", "4", "--json",
                    cwd=os.path.join(EXAMPLES, "doctor"))
    assert with_plan["recommendation"]["available"] is True
    validate("doctor", with_plan)
    with open(os.path.join(EXAMPLES, "doctor", "review.json"), encoding="utf-8") as fh:
        validate("doctor", json.load(fh))  # the committed example too
    without = cli("doctor", os.path.join(DATA, "vllm-real", "vllm-0.32.0-cpu-port-busy.log"), "--json")
    validate("doctor", without)


def test_bench_json_one_target_and_vs(fake_server):  # noqa: F811
    url = fake_server.base + "/ok/v1"
    one = cli("bench", url, "--model", "m", "-n", "4", "-c", "1,2", "--input-len", "4", "--output-len", "3", "--json")
    validate("bench", one)
    assert "comparison" not in one
    two = cli("bench", url, "--vs", fake_server.base + "/ok/v1", "--model", "m", "-n", "4", "-c", "1,2",
              "--input-len", "4", "--output-len", "3", "--json")
    validate("bench", two)
    assert len(two["comparison"]["levels"]) == 2


def test_recorded_bench_report_is_valid():
    for path in glob.glob(os.path.join(DATA, "bench", "*.json")):
        with open(path, encoding="utf-8") as fh:
            validate("bench", json.load(fh))


def test_status_json_same_metric_keys_before_and_after_the_first_stats_line(tmp_path):
    from pbsvllm.config import resolve
    from pbsvllm.jobs import JobRecord
    from pbsvllm.liveview import live_rows
    from pbsvllm.models import JobState
    from pbsvllm.scheduler.base import JobStatus
    from pbsvllm.statusview import build_rows
    from pbsvllm.transport import get_transport

    quiet, busy = tmp_path / "quiet.log", tmp_path / "busy.log"
    quiet.write_text("INFO 10-14 15:30:00 [api_server.py:1] vLLM API server version 0.11.0\n")
    with open(os.path.join(EXAMPLES, "doctor", "qwen3-vl-tp4-eager.log"), encoding="utf-8") as fh:
        busy.write_text(fh.read())
    recs = [JobRecord(job_id="1.local", alias="quiet", scheduler="local", log_path=str(quiet)),
            JobRecord(job_id="2.local", alias="busy", scheduler="local", log_path=str(busy))]
    live = {r.job_id: JobStatus(r.job_id, JobState.RUNNING, raw_state="R") for r in recs}
    rows = build_rows(recs, live)
    live_rows(resolve({"home": str(tmp_path / "home")}, env={}), recs, rows,
              transport_for=lambda host: get_transport(None))
    validate("status", rows)
    quiet_row, busy_row = rows
    assert set(quiet_row["metrics"]) == set(busy_row["metrics"])  # stable key set
    assert all(v is None for v in quiet_row["metrics"].values())
    assert busy_row["metrics"]["running"] == 0 and busy_row["metrics"]["engines"] == 1


def test_status_json_from_the_command_line(tmp_path):
    from pbsvllm.jobs import JobRecord, JobStore
    from pbsvllm.models import JobState
    from pbsvllm.scheduler.base import JobStatus

    home = str(tmp_path / "home")
    assert cli("status", "--json", "--home", home) == []
    JobStore(home).save(JobRecord(job_id="7.pbs", alias="q", scheduler="pbspro", host=None,
                                 last_status=JobStatus("7.pbs", JobState.PENDING, raw_state="Q")))
    rows = cli("status", "--json", "--offline", "--home", home)
    validate("status", rows)
    assert rows[0]["alias"] == "q" and rows[0]["metrics"] is None


def test_example_script_validates_each_output():
    r = subprocess.run(["bash", os.path.join(EXAMPLES, "json-schemas.sh")], capture_output=True, text=True,
                       env={**os.environ, "PYTHON": sys.executable, "PYTHONPATH": ROOT}, timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:4] == ["valid plan", "valid doctor", "valid bench", "valid status"]
