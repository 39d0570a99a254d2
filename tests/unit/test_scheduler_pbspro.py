"""PBS Pro backend against recorded PBS outputs, through a scripted transport
(PBS Pro cannot run here; the transport seam is what the backend talks to)."""

from __future__ import annotations

import os
from typing import Tuple

import pytest

from pbsvllm.errors import JobNotFoundError, ParseError, SchedulerError, TransportError
from pbsvllm.models import JobState
from pbsvllm.scheduler import get_scheduler
from pbsvllm.scheduler.pbspro import PBSProScheduler
from tests.fakes import FakeTransport

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "pbs")


def sample(name: str) -> str:
    with open(os.path.join(DATA, name), encoding="utf-8") as fh:
        return fh.read()


class ScriptedTransport(FakeTransport):
    """The fake transport on host pbs.example: each command answered from a list of (argv prefix, (rc, out,
    err)); calls recorded; no files."""

    def __init__(self, answers):
        super().__init__(answers, host="pbs.example")


def sched(answers) -> Tuple[PBSProScheduler, ScriptedTransport]:
    t = ScriptedTransport(answers)
    return PBSProScheduler(t, sleep=lambda s: None), t


def test_status_of_two_jobs_is_one_call_and_matches_short_ids():
    s, t = sched([(["qstat", "-x", "-f", "-F", "json"], (0, sample("qstat-f-F-json-2jobs-pbs20.0.1.json"), ""))])
    got = s.status(["1006", "1007.qot-calc0"])
    assert t.argvs == [["qstat", "-x", "-f", "-F", "json", "1006", "1007.qot-calc0"]]
    assert got["1006"].state is JobState.RUNNING and got["1006"].queue == "atom"
    assert got["1007.qot-calc0"].queue == "linopt-sim"


def test_unknown_ids_become_unknown_not_completed():
    err = sample("qstat-unknown-ids-pbs20.0.1.stderr.txt")
    s, t = sched([(["qstat"], (153, sample("qstat-f-F-json-1job-pbs20.0.1.json"), err))])
    got = s.status(["1008", "2001.g3", "2002.g3"])
    assert len(t.argvs) == 1
    assert got["1008"].state is JobState.RUNNING
    assert got["2001.g3"].state is JobState.UNKNOWN
    assert "does not know this job id" in got["2002.g3"].comment
    assert got["2001.g3"].gone and got["2002.g3"].gone and not got["1008"].gone


def test_invalid_json_falls_back_to_text():
    bad = '{"Jobs":{"4.scheduler":{"job_state":"R","Variable_List":{"foo":005}}}}'
    text = sample("qstat-f-text-openpbs19.1.1.txt").replace("    ...\n", "")
    s, t = sched([
        (["qstat", "-x", "-f", "-F", "json"], (0, bad, "")),
        (["qstat", "-x", "-f", "-w"], (0, text, "")),
    ])
    got = s.status(["4.scheduler"])
    assert [a[:4] for a in t.argvs] == [["qstat", "-x", "-f", "-F"], ["qstat", "-x", "-f", "-w"]]
    assert got["4.scheduler"].state is JobState.RUNNING and got["4.scheduler"].exec_host == "execute-2"


def test_only_first_job_comes_back_bug_2672_asks_for_the_rest():
    one = sample("qstat-f-F-json-2jobs-pbs20.0.1.json")
    import json

    doc = json.loads(one)
    first = {"Jobs": {"1006.qot-calc0": doc["Jobs"]["1006.qot-calc0"]}}
    second = {"Jobs": {"1007.qot-calc0": doc["Jobs"]["1007.qot-calc0"]}}
    s, t = sched([
        (["qstat", "-x", "-f", "-F", "json", "1006", "1007"], (0, json.dumps(first), "")),
        (["qstat", "-x", "-f", "-F", "json", "1007"], (0, json.dumps(second), "")),
    ])
    got = s.status(["1006", "1007"])
    assert len(t.argvs) == 2
    assert got["1007"].queue == "linopt-sim"


def test_finished_job_from_history():
    text = sample("qstat-f-F-json-x-finished-alcf.excerpt.txt").replace('"Exit_status":0,', '"Exit_status":-29')
    s, _ = sched([(["qstat"], (0, text, ""))])
    got = s.status(["2154.edtb-01.mcp.alcf.anl.gov"])["2154.edtb-01.mcp.alcf.anl.gov"]
    assert got.state is JobState.FAILED and "walltime exceeded" in got.exit_reason


def test_transient_failures_are_retried_then_reported():
    busy = (15010 % 256, "", "pbs_iff: cannot connect to host\nqstat: cannot connect to server pbs01 (errno=15010)")
    s, t = sched([(["qstat"], busy), (["qstat"], busy), (["qstat"], (0, sample("qstat-f-F-json-1job-pbs20.0.1.json"), ""))])
    assert s.status(["1008"])["1008"].state is JobState.RUNNING
    assert len(t.argvs) == 3
    s, t = sched([(["qstat"], busy)] * 4)
    with pytest.raises(SchedulerError) as ei:
        s.status(["1008"])
    assert "kept failing after 3 retries" in str(ei.value) and "pbs_iff" in str(ei.value)
    assert len(t.argvs) == 4


def test_dropped_connection_is_retried_for_status_but_never_for_qsub():
    drop = TransportError("connection dropped")
    drop.transient = True
    s, t = sched([(["qstat"], drop), (["qstat"], (0, sample("qstat-f-F-json-1job-pbs20.0.1.json"), ""))])
    assert s.status(["1008"])["1008"].state is JobState.RUNNING
    s, t = sched([(["qsub"], drop)])
    with pytest.raises(TransportError):
        s.submit("/x/job.pbs")
    assert len(t.argvs) == 1


def test_qsub_id_exactly_as_printed_and_options():
    s, t = sched([(["qsub"], (0, "1234567.polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov\n", ""))])
    jid = s.submit("/home/u/job.pbs", {"queue": "debug", "account": "proj", "resources": ["select=1:ncpus=64"], "walltime": "01:00:00", "env": {"A": "x,y"}})
    assert jid == "1234567.polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov"
    assert t.argvs[0] == ["qsub", "-q", "debug", "-A", "proj", "-l", "select=1:ncpus=64,walltime=01:00:00", "-v", "A=x\\,y", "/home/u/job.pbs"]


def test_qsub_unknown_queue_is_clear():
    s, _ = sched([(["qsub"], (170, "", "qsub: Unknown queue\n"))])
    with pytest.raises(SchedulerError) as ei:
        s.submit("/home/u/job.pbs", {"queue": "nosuch"})
    msg = str(ei.value)
    assert "exited 170" in msg and "Unknown queue" in msg and "qstat -Q" in msg and "qsub -q nosuch" in msg


def test_qsub_garbage_output_is_parse_error():
    s, _ = sched([(["qsub"], (0, "Welcome to the cluster!\n", ""))])
    with pytest.raises(ParseError):
        s.submit("/x.pbs")


def test_qdel_outcomes():
    s, t = sched([(["qdel", "-W", "force", "5.s"], (0, "", ""))])
    assert "forced" in s.cancel("5.s", force=True)
    s, _ = sched([(["qdel"], (153, "", "qdel: Unknown Job Id 6.s\n"))])
    with pytest.raises(JobNotFoundError):
        s.cancel("6.s")
    s, _ = sched([(["qdel"], (35, "", "qdel: Job has finished 7.s\n"))])
    assert "already finished" in s.cancel("7.s")
    s, _ = sched([(["qdel"], (159, "", "qdel: Unauthorized Request  8.s\n"))])
    with pytest.raises(SchedulerError):
        s.cancel("8.s")


def test_missing_qstat_says_so():
    s, _ = sched([(["qstat"], (127, "", "bash: qstat: command not found"))])
    with pytest.raises(SchedulerError) as ei:
        s.status(["1"])
    assert "not found on pbs.example" in str(ei.value)


def test_detection_from_version_output():
    for out, want in (("pbs_version = 2022.1.1\n", "pbspro"), ("Version: 6.1.3\n", "torque")):
        t = ScriptedTransport([(["qstat", "--version"], (0, out, ""))])
        assert get_scheduler("auto", t).name == want
    t = ScriptedTransport([(["qstat", "--version"], (127, "", "not found"))])
    with pytest.raises(Exception) as ei:  # local backend refuses a remote target
        get_scheduler("auto", type("R", (ScriptedTransport,), {"is_local": False})([(["qstat", "--version"], (127, "", ""))]))
    assert "no scheduler answered on pbs.example" in str(ei.value)
    t = ScriptedTransport([(["qstat", "--version"], (2, "", "Unknown option: version\nUsage:\n")), (["scontrol", "--version"], (0, "slurm-wlm 22.05.8\n", ""))])
    assert get_scheduler("auto", t).name == "slurm-torque"


def test_many_missing_ids_asks_for_all_jobs_once():
    import json

    doc = json.loads(sample("qstat-f-F-json-1job-pbs20.0.1.json"))
    job = doc["Jobs"]["1008.qot-calc0"]
    all_jobs = {"Jobs": {f"{2000 + i}.qot-calc0": job for i in range(30)}}
    first = {"Jobs": {"2000.qot-calc0": job}}
    ids = [str(2000 + i) for i in range(30)]
    s, t = sched([
        (["qstat", "-x", "-f", "-F", "json", "2000", "2001"], (0, json.dumps(first), "")),
        (["qstat", "-x", "-f", "-F", "json"], (0, json.dumps(all_jobs), "")),
    ])
    got = s.status(ids)
    assert t.argvs[1] == ["qstat", "-x", "-f", "-F", "json"] and len(t.argvs) == 2
    assert all(g.state is JobState.RUNNING for g in got.values())
