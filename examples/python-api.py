"""The Python face of pbsvllm (pbsvllm.api.Client): what every command calls.

Runs offline: plans and renders a job for the seed's model on a Polaris node
(nothing is submitted), diagnoses a recorded vLLM log, and shows the status of
the jobs tracked in a scratch home (none yet).

    .venv/bin/python examples/python-api.py
"""

from __future__ import annotations

import os
import tempfile

from pbsvllm.api import Client, DoctorOptions

here = os.path.dirname(os.path.abspath(__file__))
home = tempfile.mkdtemp(prefix="pbsvllm-api-demo-")
os.environ.setdefault("PBSVLLM_CONFIG", os.devnull)  # ignore your own config for this demo

client = Client.from_flags({"profile": "polaris", "home": home})   # flags > PBSVLLM_* > config > profile

facts, plan = client.plan("Qwen/Qwen3-VL-2B-Instruct", {})
print(f"plan: TP={plan.tensor_parallel_size} DP={plan.data_parallel_size} on {client.settings.profile.name}")
for flag, why in list(plan.to_json()["reasons"].items())[:3]:
    print(f"  {flag}: {why[:90]}")

prepared = client.prepare("Qwen/Qwen3-VL-2B-Instruct", "qwen3-vl", {})
print(f"script for {prepared.alias}: {len(prepared.script_text.splitlines())} lines, log {prepared.log_path}")
# client.submit(prepared) would write the script, qsub it and save the job record;
# client.follow([record]) then waits until the server answers and registers it.

diag = client.doctor(os.path.join(here, "doctor", "qwen3-vl-tp4-eager.log"), DoctorOptions(profile="polaris"))
print("doctor:", ", ".join(f.id for f in diag.findings[:5]))

report = client.status()                    # rows (status --json), notes, errors
print(f"status: {len(report.rows)} tracked job(s) in {home}")
