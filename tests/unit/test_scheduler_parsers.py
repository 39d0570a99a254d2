"""Scheduler parsers on the real recorded samples (tests/data/{pbs,torque,slurm-torque}),
the state tables, exit-status interpretation, and hypothesis fuzzing."""

from __future__ import annotations

import os
import re
from typing import Dict, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbsvllm.errors import ParseError
from pbsvllm.models import JobState
from pbsvllm.scheduler.base import (
    PBSPRO_STATES,
    TORQUE_STATES,
    ids_match,
    interpret_exit_status,
    map_state,
    parse_duration,
    parse_job_id,
    parse_pbs_json,
    parse_qstat_f_text,
    status_from_attrs,
)
from pbsvllm.scheduler.torque import parse_scontrol_show_job, script_directives

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")


def read(*parts: str) -> str:
    with open(os.path.join(DATA, *parts), encoding="utf-8") as fh:
        return fh.read()


def transcript(name: str) -> Dict[str, Tuple[str, int]]:
    """``$ cmd`` / output / ``[rc=N]`` transcript -> {cmd: (output, rc)} (first occurrence)."""
    out: Dict[str, Tuple[str, int]] = {}
    cmd, buf = None, []
    for line in read("slurm-torque", name).splitlines():
        if line.startswith("$ "):
            cmd, buf = line[2:], []
            continue
        m = re.match(r"^\[rc=(\d+)\]$", line)
        if m and cmd is not None:
            out.setdefault(cmd, ("\n".join(buf) + "\n", int(m.group(1))))
            cmd = None
            continue
        buf.append(line)
    return out


# ---------------------------------------------------------------- PBS Pro JSON


def test_pbs_json_one_job():
    jobs = parse_pbs_json(read("pbs", "qstat-f-F-json-1job-pbs20.0.1.json"))
    assert list(jobs) == ["1008.qot-calc0"]
    st_ = status_from_attrs("1008", jobs["1008.qot-calc0"], PBSPRO_STATES)
    assert st_.state is JobState.RUNNING
    assert st_.queue == "atom-sim"
    assert st_.exec_host == "qot-calc0"
    assert st_.walltime_used_s == 0
    assert st_.walltime_limit_s == 4 * 3600
    assert st_.walltime_left_s == 4 * 3600
    assert st_.comment.startswith("Job run at Wed Apr 14")


def test_pbs_json_two_jobs_irregular_indent():
    jobs = parse_pbs_json(read("pbs", "qstat-f-F-json-2jobs-pbs20.0.1.json"))
    assert sorted(jobs) == ["1006.qot-calc0", "1007.qot-calc0"]
    st_ = status_from_attrs("1006.qot-calc0", jobs["1006.qot-calc0"], PBSPRO_STATES)
    assert st_.walltime_used_s == 110  # 00:01:50
    assert jobs["1007.qot-calc0"]["queue"] == "linopt-sim"
    assert jobs["1007.qot-calc0"]["Variable_List.PYTHON_SCRIPT"] == "myscript2.py"


def test_pbs_json_cjson_writer_layout_parses_when_complete():
    # The cJSON writer (tabs, "key":\tvalue); the recorded excerpt is abridged
    # ("... job details"), so it is invalid as a whole -> ParseError ...
    text = read("pbs", "qstat-f-F-json-cjson-openpbs-main-2025.excerpt.txt")
    with pytest.raises(ParseError):
        parse_pbs_json(text)
    # ... and parses once the reporter's elision line is removed.
    fixed = "\n".join(ln for ln in text.splitlines() if "... job details" not in ln)
    jobs = parse_pbs_json(fixed)
    assert jobs["10.ip-10-0-6-176"]["Job_Name"] == "STDIN"


def test_pbs_json_invalid_finished_excerpt_raises_parse_error():
    # ALCF excerpt: trailing comma after Exit_status -> invalid JSON
    with pytest.raises(ParseError) as ei:
        parse_pbs_json(read("pbs", "qstat-f-F-json-x-finished-alcf.excerpt.txt"))
    assert "invalid JSON" in str(ei.value)


def test_pbs_json_finished_job_exit_status():
    text = read("pbs", "qstat-f-F-json-x-finished-alcf.excerpt.txt").replace('"Exit_status":0,', '"Exit_status":0')
    jobs = parse_pbs_json(text)
    st_ = status_from_attrs("2154", jobs["2154.edtb-01.mcp.alcf.anl.gov"], PBSPRO_STATES)
    assert st_.state is JobState.COMPLETED and st_.exit_status == 0
    assert "and finished" in st_.comment


def test_pbs_json_all_digit_env_value_bug_1255_is_parse_error():
    text = '{"Jobs":{"1.s":{"job_state":"R","Variable_List":{"foo":005}}}}'
    with pytest.raises(ParseError):
        parse_pbs_json(text)


def test_pbs_json_plaintext_preamble_pr2675_and_missing_jobs():
    table = read("pbs", "qstat-table-openpbs-main-2025.txt")
    doc = read("pbs", "qstat-f-F-json-1job-pbs20.0.1.json")
    assert list(parse_pbs_json(table + doc)) == ["1008.qot-calc0"]
    assert parse_pbs_json('{"timestamp": 1, "pbs_version": "x"}') == {}
    assert parse_pbs_json("") == {}


# ---------------------------------------------------------------- qstat -f text


def test_pbs_text_openpbs_19():
    text = read("pbs", "qstat-f-text-openpbs19.1.1.txt")
    # the reporter cut the output with a '    ...' line: that line is not an attribute
    with pytest.raises(ParseError):
        parse_qstat_f_text(text)
    jobs = parse_qstat_f_text(text.replace("    ...\n", ""))
    st_ = status_from_attrs("4", jobs["4.scheduler"], PBSPRO_STATES)
    assert st_.state is JobState.RUNNING and st_.exec_host == "execute-2"
    assert st_.walltime_used_s == 10
    assert jobs["4.scheduler"]["Resource_List.place"] == "scatter:excl"


def test_pbs_text_wrapped_continuation_lines():
    text = (
        "Job Id: 7.srv\n"
        "    job_state = R\n"
        "    Variable_List = PBS_O_HOME=/home/u,PBS_O_LANG=C,\n"
        "\tPBS_O_PATH=/usr/bin:/bin,PBS_O_WORKDIR=/home/u\n"
        "    queue = workq\n"
    )
    jobs = parse_qstat_f_text(text)
    assert jobs["7.srv"]["Variable_List"].endswith("PBS_O_LANG=C,PBS_O_PATH=/usr/bin:/bin,PBS_O_WORKDIR=/home/u")
    assert jobs["7.srv"]["queue"] == "workq"


def test_torque_text_completed_lowercase():
    jobs = parse_qstat_f_text(read("torque", "qstat-f-text.txt"))
    attrs = dict(jobs["522083.barnacle.ucsd.edu"])
    st_ = status_from_attrs("522083", attrs, TORQUE_STATES)
    assert st_.raw_state == "C" and st_.state is JobState.COMPLETED
    assert st_.exit_status is None and "did not report" in st_.exit_reason
    assert st_.exec_host == "brncl-31" and st_.walltime_used_s == 14
    attrs["exit_status"] = "271"
    st2 = status_from_attrs("522083", attrs, TORQUE_STATES)
    assert st2.state is JobState.FAILED and "SIGTERM" in st2.exit_reason


def test_slurm_torque_qstat_f_samples():
    t = transcript("qstat-outputs.txt")
    queued = parse_qstat_f_text(t["qstat -f 17"][0])["17"]
    running = parse_qstat_f_text(t["qstat -f 15"][0])["15"]
    done = parse_qstat_f_text(t["qstat -f 14"][0])["14"]
    assert status_from_attrs("17", queued, TORQUE_STATES).state is JobState.PENDING
    r = status_from_attrs("15", running, TORQUE_STATES)
    assert r.state is JobState.RUNNING and r.exec_host == "vm" and r.walltime_limit_s == 600
    d = status_from_attrs("14", done, TORQUE_STATES)
    assert d.raw_state == "C" and d.walltime_limit_s is None  # 71582788:15:00 = no limit
    assert t["qstat -f 99999"] == ("\n", 153)
    assert t["qstat -f -F json 15"][1] == 2


def test_scontrol_show_job_sample():
    jobs = parse_scontrol_show_job(read("slurm-torque", "scontrol-show-job-running.txt"))
    assert jobs["15"]["JobState"] == "RUNNING" and jobs["15"]["ExitCode"] == "0:0"
    assert jobs["15"]["StdOut"].endswith("sleeper.sh.o15")
    one = parse_scontrol_show_job("JobId=15 JobName=s JobState=CANCELLED ExitCode=143:0\n")
    assert one["15"]["ExitCode"] == "143:0"


# ---------------------------------------------------------------- tables and codes


def test_every_pbs_letter_has_a_state():
    for letter in "QRESHWTUXBMF":
        assert letter in PBSPRO_STATES, letter
    assert set(TORQUE_STATES) == set("QRECHWTS")
    assert map_state("C", TORQUE_STATES) is JobState.COMPLETED
    assert map_state("M", PBSPRO_STATES) is JobState.UNKNOWN
    assert map_state("Z", PBSPRO_STATES) is JobState.UNKNOWN
    assert map_state("", PBSPRO_STATES) is JobState.UNKNOWN
    assert map_state("B", PBSPRO_STATES) is JobState.RUNNING
    assert map_state("U", PBSPRO_STATES) is JobState.HELD


@pytest.mark.parametrize(
    "code,state,words",
    [
        (0, JobState.COMPLETED, "success"),
        (3, JobState.FAILED, "status 3"),
        (143, JobState.FAILED, "SIGTERM"),
        (265, JobState.FAILED, "killed by SIGKILL"),
        (271, JobState.FAILED, "killed by SIGTERM"),
        (-29, JobState.FAILED, "walltime exceeded"),
        (-27, JobState.FAILED, "mem limit"),
        (-11, JobState.FAILED, "rerun"),
        (-99, JobState.FAILED, "PBS exec code"),
        (None, JobState.COMPLETED, "did not report"),
    ],
)
def test_interpret_exit_status(code, state, words):
    got_state, reason = interpret_exit_status(code)
    assert got_state is state
    assert words in reason


def test_job_ids_and_matching():
    assert parse_job_id("1013.vm-priboy\n") == "1013.vm-priboy"
    assert parse_job_id("1234567.polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov\n").startswith("1234567.polaris")
    assert parse_job_id("17\n") == "17"
    assert parse_job_id("123[].srv\n") == "123[].srv"
    with pytest.raises(ParseError):
        parse_job_id("qsub: waiting for job\n")
    with pytest.raises(ParseError):
        parse_job_id("")
    assert ids_match("123", "123.pbs01")
    assert ids_match("123.pbs01", "123.pbs01.dom.org")
    assert not ids_match("123.pbs01", "123.other")
    assert not ids_match("12", "123.pbs01")


def test_durations():
    assert parse_duration("04:00:00") == 14400
    assert parse_duration("10:00") == 600
    assert parse_duration(90) == 90
    assert parse_duration("71582788:15:00") is None
    assert parse_duration("abc") is None
    assert parse_duration(None) is None


def test_script_directives():
    text = "#!/bin/bash\n#PBS -N my job\n#PBS -l select=1:ncpus=4\n#PBS -l walltime=01:00:00\n#PBS -j oe\n#PBS -o /x/y.out\necho hi\n#PBS -q late\n"
    d = script_directives('#!/bin/bash\n#PBS -N "my job"\n' + text.split("\n", 2)[2])
    assert d["-N"] == "my job"
    assert d["-l"] == "select=1:ncpus=4,walltime=01:00:00"
    assert d["-j"] == "oe" and d["-o"] == "/x/y.out"
    assert "-q" not in d  # directives after the first command are ignored, like qsub


# ---------------------------------------------------------------- fuzzing


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_fuzz_json_parser_raises_only_parse_error(text):
    try:
        parse_pbs_json(text)
    except ParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)))
def test_fuzz_json_parser_structured(doc):
    import json

    for text in (json.dumps(doc), json.dumps({"Jobs": doc}), json.dumps({"Jobs": {"1.s": doc}})):
        try:
            parse_pbs_json(text)
        except ParseError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["Job Id: 1.s", "Job Id:\t2", "    job_state = R", "\tqueue = q", "\tcont", "", "garbage", "    a = b", " x"]) | st.text(), max_size=12))
def test_fuzz_text_parser_raises_only_parse_error(lines):
    text = "\n".join(lines)
    try:
        jobs = parse_qstat_f_text(text)
    except ParseError:
        return
    for jid, attrs in jobs.items():
        status_from_attrs(jid, attrs, PBSPRO_STATES)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_fuzz_other_parsers(text):
    for fn in (parse_job_id, parse_scontrol_show_job, parse_qstat_f_text):
        try:
            fn(text)
        except ParseError:
            pass
    parse_duration(text)
    script_directives(text)


def test_slurm_completing_is_not_final_yet():
    from pbsvllm.scheduler.torque import SlurmTorqueScheduler
    from tests.fakes import FakeTransport

    def answer(argv):
        if argv[0] == "qstat":
            return 0, "Job Id:\t7\n\tjob_state = C\n\tqueue = debug\n\n", ""
        return 0, "JobId=7 JobName=x JobState=COMPLETING Reason=None ExitCode=0:9\n", ""

    st_ = SlurmTorqueScheduler(FakeTransport(respond=answer)).status(["7"])["7"]
    assert st_.state is JobState.COMPLETING and st_.exit_status is None
