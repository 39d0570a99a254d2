"""A scheduler that says nothing is not a scheduler that says "ended" (issue 11
class 1, the scheduler side; class 6 for qstat bytes that are not UTF-8).

The real backends run fake ``qstat``/``qdel`` executables through the real
local transport (tests/plugins/fakesched.py): empty documents, ``{}``,
"Unknown Job Id" with rc 153, unfamiliar state letters, Latin-1 bytes,
garbage and hangs. A job comes back terminal only on positive evidence (a
finished letter or an exit status); everything else is UNKNOWN, and only an
explicit "unknown id" sets ``gone``. Plus the table of exit statuses
(issue 16 item 14) and a property test over arbitrary qstat answers.
"""

from __future__ import annotations

import json
import time
from typing import Dict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbsvllm.errors import PbsvllmError, SchedulerError, TransportError
from pbsvllm.models import JobState
from pbsvllm.scheduler import get_scheduler
from pbsvllm.scheduler.base import PBSPRO_STATES, TORQUE_STATES, exit_phrase, interpret_exit_status
from pbsvllm.transport.local import LocalTransport
from tests.fakes.transport import FakeTransport

ID = "1008.pbs01"


def pbs_doc(state: str = "R", name: str = "srv", extra: Dict[str, object] = None) -> str:
    attrs: Dict[str, object] = {"Job_Name": name, "job_state": state, "queue": "q",
                                "Resource_List": {"walltime": "01:00:00"}}
    attrs.update(extra or {})
    return json.dumps({"pbs_version": "2022.1", "Jobs": {ID: attrs}})


def torque_text(state: str = "R", name: str = "srv") -> str:
    return (f"Job Id: {ID}\n    Job_Name = {name}\n    job_state = {state}\n    queue = batch\n"
            "    Resource_List.walltime = 01:00:00\n")


def pbspro(timeout_s: float = None):
    return get_scheduler("pbspro", LocalTransport(), sleep=lambda s: None, timeout_s=timeout_s)


# ------------------------------------------------------------------ silence is UNKNOWN

SILENT_PBS = {
    "empty output": {"rc": 0, "out": ""},
    "empty object": {"rc": 0, "out": "{}"},
    "no Jobs": {"rc": 0, "out": '{"pbs_version": "2022.1"}'},
    "Jobs null": {"rc": 0, "out": '{"Jobs": null}'},
    "Jobs empty": {"rc": 0, "out": '{"Jobs": {}}'},
    "other job only": {"rc": 0, "out": json.dumps({"Jobs": {"77.pbs01": {"job_state": "F", "Exit_status": 0}}})},
    "whitespace": {"rc": 0, "out": "\n \n"},
}


@pytest.mark.parametrize("case", sorted(SILENT_PBS))
def test_pbspro_silence_is_unknown_never_ended(fake_sched, case):
    fake_sched.answer("qstat", SILENT_PBS[case], {"rc": 0, "out": ""})
    got = pbspro().status([ID])[ID]
    assert got.state is JobState.UNKNOWN and not got.state.is_terminal
    assert not got.gone, "silence is not the scheduler saying the job is gone"
    assert "did not include this job" in got.comment


def test_pbspro_unknown_job_id_rc153_is_unknown_and_gone_not_ended(fake_sched):
    fake_sched.answer("qstat", {"rc": 153, "out": "", "err": f"qstat: Unknown Job Id {ID}\n"})
    got = pbspro().status([ID])[ID]
    assert got.state is JobState.UNKNOWN and got.gone
    assert "does not know this job id" in got.comment


def test_pbspro_unknown_for_one_of_three_only_marks_that_one(fake_sched):
    doc = json.loads(pbs_doc("R"))
    fake_sched.answer("qstat", {"rc": 153, "out": json.dumps(doc), "err": "qstat: Unknown Job Id 1010.pbs01\n"},
                      {"rc": 0, "out": "{}"})
    got = pbspro().status([ID, "1009.pbs01", "1010.pbs01"])
    assert got[ID].state is JobState.RUNNING
    assert got["1010.pbs01"].state is JobState.UNKNOWN and got["1010.pbs01"].gone
    assert got["1009.pbs01"].state is JobState.UNKNOWN and not got["1009.pbs01"].gone


@pytest.mark.parametrize("letter", ["Z", "?", "1", "Ω", "", " ", "null"])
def test_unfamiliar_state_letter_is_unknown(fake_sched, letter):
    fake_sched.answer("qstat", {"rc": 0, "out": pbs_doc(letter)})
    got = pbspro().status([ID])[ID]
    if letter.strip().upper()[:1] in PBSPRO_STATES:  # "null" starts with N: not a PBS letter either
        pytest.fail(f"test letter {letter!r} is a known letter")
    assert got.state is JobState.UNKNOWN and not got.gone
    assert "not one pbsvllm knows" in got.comment or "no job_state" in got.comment


def test_unfamiliar_letter_with_an_exit_status_is_evidence(fake_sched):
    fake_sched.answer("qstat", {"rc": 0, "out": pbs_doc("Z", extra={"Exit_status": 271})})
    got = pbspro().status([ID])[ID]
    assert got.state is JobState.FAILED and "SIGTERM" in got.exit_reason


def test_finished_letter_is_evidence(fake_sched):
    fake_sched.answer("qstat", {"rc": 0, "out": pbs_doc("F", extra={"Exit_status": 0})})
    assert pbspro().status([ID])[ID].state is JobState.COMPLETED


@pytest.mark.parametrize("kind", ["torque", "slurm-torque"])
def test_torque_rc153_is_gone_and_empty_is_silence(fake_sched, kind):
    sched = get_scheduler(kind, LocalTransport(), sleep=lambda s: None)
    fake_sched.answer("qstat", {"rc": 153, "out": ""})
    got = sched.status([ID])[ID]
    assert got.state is JobState.UNKNOWN and got.gone
    fake_sched.answer("qstat", {"rc": 0, "out": ""})
    got = sched.status([ID])[ID]
    assert got.state is JobState.UNKNOWN and not got.gone
    fake_sched.answer("qstat", {"rc": 0, "out": torque_text("Y")})
    got = sched.status([ID])[ID]
    assert got.state is JobState.UNKNOWN and "'Y'" in got.comment


# ------------------------------------------------------------------ bytes that are not UTF-8

def test_latin1_job_name_in_pbs_json(fake_sched):
    doc = pbs_doc("R", name="NAME").encode().replace(b"NAME", "Müller".encode("latin-1"))
    fake_sched.answer("qstat", {"rc": 0, "out_hex": doc.hex()})
    got = pbspro().status([ID])[ID]
    assert got.state is JobState.RUNNING and got.name.startswith("M") and got.name.endswith("ller")


@pytest.mark.parametrize("kind", ["torque", "slurm-torque"])
def test_latin1_job_name_in_qstat_f_text(fake_sched, kind):
    text = torque_text("R", name="NAME").encode().replace(b"NAME", "Ærø\xff".encode("latin-1"))
    fake_sched.answer("qstat", {"rc": 0, "out_hex": text.hex()})
    got = get_scheduler(kind, LocalTransport(), sleep=lambda s: None).status([ID])[ID]
    assert got.state is JobState.RUNNING and "\ufffd" in got.name


def test_binary_garbage_is_one_line_error(fake_sched):
    fake_sched.answer("qstat", {"rc": 0, "out_hex": bytes(range(256)).hex()})
    with pytest.raises(PbsvllmError) as info:
        pbspro().status([ID])
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ the caller's timeout

def test_a_hanging_qstat_ends_within_the_callers_timeout(fake_sched):
    fake_sched.answer("qstat", {"rc": 0, "out": "{}", "sleep": 30})
    t0 = time.monotonic()
    with pytest.raises((SchedulerError, TransportError)) as info:
        pbspro(timeout_s=1.5).status([ID])
    assert time.monotonic() - t0 < 10
    assert "\n" not in str(info.value)


def test_retries_and_backoff_stop_at_the_callers_timeout(fake_sched):
    fake_sched.answer("qstat", {"rc": 1, "err": "pbs_iff: cannot connect to host\n"})
    sched = get_scheduler("pbspro", LocalTransport(), backoff_s=5.0, retries=10, timeout_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(SchedulerError, match="time limit"):
        sched.status([ID])
    assert time.monotonic() - t0 < 8
    assert 1 <= len(fake_sched.calls("qstat")) <= 3


# ------------------------------------------------------------------ exit statuses (issue 16 item 14)

EXIT_TABLE = [
    (None, JobState.COMPLETED, "finished; the scheduler did not report an exit status"),
    (0, JobState.COMPLETED, "the script exited 0 (success)"),
    (1, JobState.FAILED, "the script exited with status 1"),
    (127, JobState.FAILED, "the script exited with status 127"),
    (128, JobState.FAILED, "the script exited with status 128"),
    (129, JobState.FAILED, "the script exited 129 = 128+1: it ended on SIGHUP"),
    (137, JobState.FAILED, "the script exited 137 = 128+9: it ended on SIGKILL"),
    (143, JobState.FAILED, "the script exited 143 = 128+15: it ended on SIGTERM"),
    (162, JobState.FAILED, "the script exited 162 = 128+34: it ended on SIGRTMIN"),
    (192, JobState.FAILED, "the script exited 192 = 128+64: it ended on SIGRTMAX"),
    (193, JobState.FAILED, "the script exited with status 193"),
    (255, JobState.FAILED, "the script exited with status 255"),
    (256, JobState.FAILED, "the script exited with status 256"),
    (265, JobState.FAILED, "the job's shell was killed by SIGKILL (exit status 265 = 256+9)"),
    (271, JobState.FAILED, "the job's shell was killed by SIGTERM (exit status 271 = 256+15)"),
    (320, JobState.FAILED, "the job's shell was killed by SIGRTMAX (exit status 320 = 256+64)"),
    (321, JobState.FAILED, "the script exited with status 321"),
    (-1, JobState.FAILED, "the job could not be started (exec failed; not retried) (Exit_status -1)"),
    (-29, JobState.FAILED, "killed: walltime exceeded (Exit_status -29)"),
    (-99, JobState.FAILED, "the scheduler ended the job (PBS exec code) (Exit_status -99)"),
]


@pytest.mark.parametrize("code,state,reason", EXIT_TABLE)
def test_exit_status_table(code, state, reason):
    assert interpret_exit_status(code) == (state, reason)


@pytest.mark.parametrize("code", [c for c, _, _ in EXIT_TABLE])
def test_cancelled_reason_reads_as_one_sentence(code):
    text = f"cancelled; {exit_phrase(code)}"
    assert "then the script" not in text and text.count("the script") <= 1
    if code is not None and code > 128 + 64 and code <= 256:
        assert "signal" not in text and "SIG" not in text, "exit 193..256 is not a signal"


def test_local_backend_cancelled_job_wording(tmp_path):
    from pbsvllm.scheduler.local import LocalScheduler

    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\ntrap 'exit 255' TERM\nsleep 30 & wait\n")
    sched = LocalScheduler(LocalTransport(), home=str(tmp_path / "home"), grace_s=5)
    jid = sched.submit(str(script))
    deadline = time.monotonic() + 20
    while sched.status([jid])[jid].state is not JobState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.1)
    sched.cancel(jid)
    while not sched.status([jid])[jid].state.is_terminal and time.monotonic() < deadline:
        time.sleep(0.1)
    got = sched.status([jid])[jid]
    assert got.state is JobState.CANCELLED
    assert got.exit_reason == "cancelled; the script exited with status 255"


# ------------------------------------------------------------------ any answer at all

_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                            lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                            max_leaves=12)
_attrs = st.fixed_dictionaries({}, optional={"job_state": st.one_of(st.text(max_size=3), _json_values),
                                             "Exit_status": _json_values, "comment": _json_values})
_docs = st.one_of(
    st.text(max_size=200),
    _json_values.map(json.dumps),
    st.dictionaries(st.sampled_from([ID, "1008", "9.pbs01", "x"]), _attrs, max_size=3).map(lambda j: json.dumps({"Jobs": j})),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rc=st.sampled_from([0, 1, 2, 153, 255]), out=_docs, err=st.sampled_from(["", f"qstat: Unknown Job Id {ID}\n", "junk"]),
       kind=st.sampled_from(["pbspro", "torque"]))
def test_any_answer_gives_status_or_one_line_error_and_ends_only_on_evidence(rc, out, err, kind):
    sched = get_scheduler(kind, FakeTransport(respond=lambda argv: (rc, out, err)), sleep=lambda s: None, retries=0)
    try:
        got = sched.status([ID])
    except PbsvllmError as exc:
        assert "\n" not in exc.message
        return
    st_ = got[ID]
    if st_.state.is_terminal:  # only from a finished letter or an exit status in the answer
        assert st_.exit_status is not None or (PBSPRO_STATES if kind == "pbspro" else TORQUE_STATES).get(
            st_.raw_state[:1].upper()) is JobState.COMPLETED
    if st_.gone:
        assert rc == 153 or "Unknown Job Id" in err

