"""Status cost: one scheduler call however many jobs are tracked.

    .venv/bin/python benchmarks/bench_status.py [--jobs 1000] [--pbs-jobs 5000]

1. PBS Pro: parse a 5,000-job ``qstat -x -f -F json`` document (built from
   the recorded PBS 20.0.1 sample, ids varied) and map it to JobStatus; the
   same through ``PBSProScheduler.status`` replaying the document: calls counted.
2. The real Slurm stand-in: 1,000 tracked jobs (held, so they never use the
   node), ``refresh_statuses`` over their records with a transport that counts
   every real command; wall time in-process and for the ``pbsvllm status
   --json`` CLI; against it, the per-job polling baseline (one ``qstat -f``
   per job, timed on 20 jobs and scaled).
Writes benchmarks/results/status.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _bench_common import ROOT, cancel_by_name, median_time, slurm_up, submit_held, write_result

from pbsvllm.jobs import JobRecord, JobStore
from pbsvllm.launch import refresh_statuses
from pbsvllm.scheduler import get_scheduler
from pbsvllm.scheduler.base import PBSPRO_STATES, parse_pbs_json, status_from_attrs
from pbsvllm.scheduler.pbspro import PBSProScheduler
from pbsvllm.transport.base import Transport
from pbsvllm.transport.local import LocalTransport


class CountingTransport(LocalTransport):
    def __init__(self) -> None:
        super().__init__()
        self.argv0 = []

    def run(self, argv, timeout, input=None, env=None):
        self.argv0.append(argv[0])
        return super().run(argv, timeout, input, env)


class ReplayTransport(Transport):
    """Answers qstat with a recorded document (PBS Pro cannot run here)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def run(self, argv, timeout, input=None, env=None):
        self.calls += 1
        return 0, self.text, ""

    def read_text(self, path):
        raise NotImplementedError

    def write_text(self, path, text, mode=0o600):
        raise NotImplementedError

    def exists(self, path):
        return False

    def size(self, path):
        return None

    def read_range(self, path, offset, length):
        raise NotImplementedError


def pbs_doc(n: int) -> str:
    with open(os.path.join(ROOT, "tests", "data", "pbs", "qstat-f-F-json-1job-pbs20.0.1.json")) as fh:
        doc = json.load(fh)
    job = doc["Jobs"]["1008.qot-calc0"]
    jobs = {}
    for i in range(n):
        j = copy.deepcopy(job)
        j["job_state"] = "RQHF"[i % 4]
        if j["job_state"] == "F":
            j["Exit_status"] = [0, 271, -29][i % 3]
        jobs[f"{100000 + i}.qot-calc0"] = j
    doc["Jobs"] = jobs
    return json.dumps(doc, indent=4)


def bench_pbs(n: int) -> dict:
    text = pbs_doc(n)
    parse_s = median_time(lambda: parse_pbs_json(text))
    jobs = parse_pbs_json(text)
    map_s = median_time(lambda: [status_from_attrs(k, v, PBSPRO_STATES) for k, v in jobs.items()])
    ids = [f"{100000 + i}" for i in range(n)]  # short ids, matched to the long ones
    t = ReplayTransport(text)
    sched = PBSProScheduler(t)
    status_s = median_time(lambda: sched.status(ids), repeat=3)
    t.calls = 0
    got = sched.status(ids)
    return {
        "jobs": n,
        "document_mb": round(len(text) / 1e6, 2),
        "parse_s": round(parse_s, 4),
        "map_to_status_s": round(map_s, 4),
        "scheduler_status_s": round(status_s, 4),
        "scheduler_calls_per_status": t.calls,
        "jobs_per_s": round(n / status_s),
        "all_matched": sum(1 for s in got.values() if s.state.value != "UNKNOWN") == n,
    }


def bench_slurm(n: int) -> dict:
    slurm_up()
    name = f"pbsvllm-bench-{os.getpid()}"
    home = tempfile.mkdtemp(prefix="pbsvllm-bench-home-")
    try:
        t0 = time.perf_counter()
        ids = submit_held(n, name)
        submit_s = time.perf_counter() - t0
        store = JobStore(home)
        for i, jid in enumerate(ids):
            store.save(JobRecord(job_id=jid, alias=f"a{i}", scheduler="slurm-torque", submitted_at=time.time()))
        records = store.list()
        # first refresh writes every record's cached state; the second only what changed
        runs = []
        for label in ("first", "second", "third"):
            t = CountingTransport()
            sched = get_scheduler("slurm-torque", t)
            t0 = time.perf_counter()
            statuses, errors = refresh_statuses(store, records, scheduler_for=lambda h, s, sched=sched: sched)
            runs.append({"run": label, "seconds": round(time.perf_counter() - t0, 3), "scheduler_calls": t.calls,
                         "commands": sorted(set(t.argv0)), "jobs_answered": len(statuses), "errors": errors})
        env = dict(os.environ, PYTHONPATH=ROOT)
        cli = []
        for _ in range(3):
            t0 = time.perf_counter()
            r = subprocess.run(
                [sys.executable, "-m", "pbsvllm", "status", "--json", "--home", home],
                capture_output=True,
                text=True,
                timeout=600,
                env=env,
            )
            cli.append(time.perf_counter() - t0)
            if r.returncode != 0:
                raise SystemExit(f"pbsvllm status failed: {r.stderr}")
        rows = json.loads(r.stdout)
        # baseline: one qstat -f per job (what per-job polling costs), 20 samples
        sample = ids[:20]
        t = LocalTransport()
        t0 = time.perf_counter()
        for jid in sample:
            t.run(["qstat", "-f", jid], timeout=60)
        per_job_s = (time.perf_counter() - t0) / len(sample)
        batched = statistics.median(r_["seconds"] for r_ in runs[1:])
        return {
            "jobs": n,
            "submit_held_jobs_s": round(submit_s, 1),
            "refresh": runs,
            "cli_status_json_s_median": round(statistics.median(cli), 3),
            "cli_rows": len(rows),
            "per_job_qstat_s": round(per_job_s, 4),
            "per_job_polling_projected_s": round(per_job_s * n, 1),
            "batched_status_s": round(batched, 3),
            "speedup_batched_vs_per_job": round(per_job_s * n / batched, 1),
        }
    finally:
        cancel_by_name(name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--pbs-jobs", type=int, default=5000)
    a = ap.parse_args()
    pbs = bench_pbs(a.pbs_jobs)
    print(f"PBS Pro JSON, {pbs['jobs']} jobs ({pbs['document_mb']} MB): parse {pbs['parse_s']*1000:.0f} ms, "
          f"status() {pbs['scheduler_status_s']*1000:.0f} ms in {pbs['scheduler_calls_per_status']} call")
    sl = bench_slurm(a.jobs)
    print(
        f"Slurm stand-in, {sl['jobs']} tracked jobs: scheduler calls per status "
        f"{[r['scheduler_calls'] for r in sl['refresh']]}, "
        f"{sl['batched_status_s']} s in-process, CLI {sl['cli_status_json_s_median']} s; per-job polling would take "
        f"{sl['per_job_polling_projected_s']} s ({sl['speedup_batched_vs_per_job']}x)"
    )
    path = write_result(
        "status",
        {
            "command": f".venv/bin/python benchmarks/bench_status.py --jobs {a.jobs} --pbs-jobs {a.pbs_jobs}",
            "headline": f"{sl['jobs']} jobs: {sl['refresh'][1]['scheduler_calls']} scheduler call, "
            f"{sl['batched_status_s']} s ({sl['speedup_batched_vs_per_job']}x faster than per-job qstat); "
            f"5,000-job PBS JSON parsed in {pbs['parse_s'] * 1000:.0f} ms",
            "pbspro_json": pbs,
            "slurm_stand_in": sl,
            "notes": [
                "PBS Pro cannot run here: its 5,000-job document is built from the recorded PBS 20.0.1 sample "
                "and replayed through the backend.",
                "The Slurm jobs are held (never run); their records are real job records in a temporary PBSVLLM_HOME.",
                "The first refresh writes each record's cached state (for --offline); later ones write only what "
                "changed.",
                "The per-job baseline is one `qstat -f <id>` per job, timed on 20 jobs and scaled to the job count.",
            ],
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
