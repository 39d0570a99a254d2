"""submit --wait / watch progress: notes from real vLLM log lines, the scheduler's
estimated start, the live line and the plain heartbeat, NO_COLOR and TERM=dumb."""

from __future__ import annotations

import os
import re
import time

from pbsvllm.models import JobState
from pbsvllm.progress import ProgressReporter, estimated_start_note, fmt_elapsed, log_detail
from pbsvllm.scheduler.base import PBSPRO_STATES, status_from_attrs
from pbsvllm.vllmlog import split_line
from pbsvllm.watcher import JobProgress
from tests.fakes.vllm import free_port
from tests.paths import DATA, EXAMPLES
from tests.unit.test_watcher_submit import pbsvllm, site  # noqa: F401  (site is a fixture)


def notes(path: str):
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [n for n in (log_detail(split_line(line).message) for line in fh) if n]


def test_notes_from_recorded_logs():
    assert notes(os.path.join(DATA, "watcher", "vllm-0.32.0-cpu-eager.log"))[:2] == [
        "weight shards 0/1", "weight shards 1/1"]
    gpu = notes(os.path.join(EXAMPLES, "doctor", "qwen3-vl-tp4-eager.log"))
    assert "weights loaded (1.1042 GiB in 6.5 s)" in gpu


def test_notes_for_compile_and_graph_capture_lines_as_vllm_prints_them():
    assert log_detail("Capturing CUDA graphs (mixed prefill-decode, PIECEWISE):  45%|████▌     | 30/67 "
                      "[00:01<00:01, 21.2it/s]") == "capturing CUDA graphs 30/67"
    assert log_detail("torch.compile takes 21.37 s in total") == "torch.compile done in 21.4 s"
    assert log_detail("Graph capturing finished in 14 secs, took 0.53 GiB") == "CUDA graphs captured in 14 s"
    assert log_detail("Dynamo bytecode transform time: 5.21 s") == "compiling (Dynamo 5.2 s)"
    assert log_detail("Loading weights took 3.20 seconds") == "weights loaded in 3.2 s"
    assert log_detail("Avg prompt throughput: 1.0 tokens/s") is None


def test_estimated_start_from_pbs_pro_qstat():
    start = time.mktime(time.strptime("Mon Dec  7 14:05:00 2026", "%a %b %d %H:%M:%S %Y"))
    st = status_from_attrs("1.pbs", {"job_state": "Q", "estimated.start_time": "Mon Dec  7 14:05:00 2026"},
                           PBSPRO_STATES)
    assert st.state is JobState.PENDING and st.estimated_start == start
    assert estimated_start_note(start, now=start - 725) == "estimated start ~14:05 (in 12m05s)"
    running = status_from_attrs("1.pbs", {"job_state": "R", "estimated.start_time": "Mon Dec  7 14:05:00 2026"},
                                PBSPRO_STATES)
    assert running.estimated_start is None
    assert fmt_elapsed(5) == "5s" and fmt_elapsed(3725) == "1h02m"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def job() -> JobProgress:
    return JobProgress(job_id="12.pbs", alias="q", served_model="q")


def test_plain_lines_with_a_heartbeat_when_not_a_terminal():
    out, clock = [], Clock()
    r = ProgressReporter(out.append, tty=False, single_job=True, env={}, clock=clock)
    j = job()
    r.phase(j, "queued", 0)
    r.detail(j, "estimated start ~14:05 (in 12m)", 1)
    for s in range(1, 61):  # a minute in the queue, ticked every second
        clock.t += 1
        r.heartbeat(j, s)
    r.phase(j, "loading weights", 61)
    for n in range(1, 5):
        r.detail(j, f"weight shards {n}/4", 61 + n)
    text = "".join(out)
    assert "\x1b" not in text and "\r" not in text
    assert text.splitlines() == [
        "q (12.pbs): queued (0s)",
        "q (12.pbs): estimated start ~14:05 (in 12m) (1s)",
        "q (12.pbs): still queued, estimated start ~14:05 (in 12m) (30s)",
        "q (12.pbs): still queued, estimated start ~14:05 (in 12m) (1m00s)",
        "q (12.pbs): loading weights (1m01s)",
        "q (12.pbs): weight shards 1/4 (1m02s)",
        "q (12.pbs): weight shards 4/4 (1m05s)",
    ]


def test_live_line_redraws_in_place_with_elapsed_time_and_colour_unless_no_color():
    for env, coloured in (({}, True), ({"NO_COLOR": "1"}, False)):
        out, clock = [], Clock()
        r = ProgressReporter(out.append, tty=True, single_job=True, env=env, clock=clock)
        j = job()
        r.phase(j, "queued", 0)
        clock.t += 5
        r.heartbeat(j, 5)
        r.phase(j, "loading weights", 6)
        r.detail(j, "weight shards 2/4", 7)
        r.event(j, "FAILED: cuda_oom")
        text = "".join(out)
        assert "\r\x1b[K   queued · 5s" in text
        assert "queued 6s" in text and "loading weights" in text and "weight shards 2/4 · 7s" in text
        assert ("\x1b[31mFAILED: cuda_oom\x1b[0m" in text) is coloured
        assert bool(re.search(r"\x1b\[3\dm", text)) is coloured


def test_term_dumb_gets_plain_lines_even_on_a_terminal():
    out = []
    r = ProgressReporter(out.append, tty=True, single_job=True, env={"TERM": "dumb"}, clock=Clock())
    r.phase(job(), "queued", 0)
    assert out == ["q (12.pbs): queued (0s)\n"]


def test_submit_wait_piped_shows_the_weight_shards_and_no_escapes(site):  # noqa: F811
    site["jobs"].append("prog")
    r = pbsvllm(site, "submit", site["model"], "--alias", "prog", "--port", str(free_port()), "--wait",
                "--timeout", "90")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "prog (" in r.stdout and ": weight shards 1/1 (" in r.stdout and ": loading weights (" in r.stdout
    assert "\x1b" not in r.stdout and "\r" not in r.stdout
