"""The watcher loop, driven by a virtual clock: real log files, a real HTTP
server, real registry files and job records; the scheduler is the injected
seam, answering from a timeline (one batched status call per tick)."""

from __future__ import annotations

import json
import os

import pytest

from pbsvllm import health
from pbsvllm.config import resolve
from pbsvllm.errors import ServerError
from pbsvllm.jobs import JobRecord, JobStore
from pbsvllm.logtail import LogTail
from pbsvllm.models import JobState
from pbsvllm.registry import Endpoint, open_registry
from pbsvllm.scheduler.base import JobStatus
from pbsvllm.serverinfo import ServerInfo, endpoint_url
from pbsvllm.transport.local import LocalTransport
from pbsvllm.watcher import (
    JobProgress,
    Reporter,
    TextReporter,
    Watcher,
    run_watchers,
    watch_records,
)
from tests.fakes import FakeScheduler
from tests.fakes.vllm import FakeVllm, free_port

SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "watcher")


class Timeline:
    """Virtual time: ``sleep`` advances it and fires the events that are due."""

    def __init__(self):
        self.t = 0.0
        self.events = []  # (time, fn)

    def at(self, t, fn):
        self.events.append((t, fn))
        self.events.sort(key=lambda e: e[0])

    def clock(self):
        return self.t

    def sleep(self, s):
        self.t += s
        while self.events and self.events[0][0] <= self.t:
            _, fn = self.events.pop(0)
            fn()


def TimelineScheduler(tl, plan):
    """The scheduler seam: states by time (job_id -> [(from_time, JobStatus)]), on the timeline's clock."""
    return FakeScheduler(plan, clock=tl.clock, name="timeline")


def st(jid, state, **kw):
    return JobStatus(job_id=jid, state=state, **kw)


def sample_lines(name):
    with open(os.path.join(SAMPLES, name), encoding="utf-8") as fh:
        return fh.read().splitlines(keepends=True)


def append(path, lines):
    with open(path, "a", encoding="utf-8") as fh:
        fh.writelines(lines)


def probe(url, model):
    return health.check_ready(url, model, None, timeout=0.5, completion_timeout=2)


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    (h / "run").mkdir(parents=True)
    (h / "logs").mkdir()
    return h


def make_record(home, jid="101.pbs", alias="tiny-a", registries=()):
    rec = JobRecord(job_id=jid, alias=alias, served_model_name="tiny",
                    log_path=str(home / "logs" / f"{alias}.{jid}.log"),
                    server_info_path=str(home / "run" / f"{jid}.server.json"),
                    registries=list(registries))
    JobStore(str(home)).save(rec)
    return rec


def write_info(rec, port, host="127.0.0.1"):
    info = {"job_id": rec.job_id, "host": host, "port": port, "url": f"http://0.0.0.0:{port}/v1",
            "alias": rec.alias, "served_model_name": "tiny", "log_path": rec.log_path}
    tmp = rec.server_info_path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(info, fh)
    os.replace(tmp, rec.server_info_path)


def make_watcher(tl, sched, home, reporter=None, follow_ready=False):
    store = JobStore(str(home))
    return Watcher(sched, LocalTransport(), probe=probe, clock=tl.clock, reporter=reporter or Reporter(),
                   save=lambda j: store.update(j.job_id, **j.saved_fields()), follow_ready=follow_ready)


# ------------------------------------------------------------------ the happy path

def test_queued_to_ready_registers_with_phases(home, tmp_path):
    reg_path = str(tmp_path / "endpoints.toml")
    rec = make_record(home, registries=[reg_path])
    port = free_port()
    tl = Timeline()
    sched = TimelineScheduler(tl, {rec.job_id: [
        (0, st(rec.job_id, JobState.PENDING, raw_state="Q")),
        (40, st(rec.job_id, JobState.RUNNING, raw_state="R", exec_host="n1")),
    ]})
    lines = sample_lines("vllm-0.32.0-cpu-eager.log")
    ready_idx = next(i for i, l in enumerate(lines) if "Application startup complete" in l)
    servers = []
    tl.at(41, lambda: append(rec.log_path, lines[:10]))
    tl.at(42, lambda: write_info(rec, port))
    tl.at(45, lambda: append(rec.log_path, lines[10:ready_idx]))
    # the server starts answering at t=50 (vLLM refuses connections until then)
    tl.at(50, lambda: (servers.append(FakeVllm(["tiny"], port=port).__enter__()),
                       append(rec.log_path, lines[ready_idx:ready_idx + 1])))
    rep = Reporter()
    w = make_watcher(tl, sched, home, rep)
    w.add(JobProgress.from_record(rec))
    try:
        assert run_watchers([w], timeout_s=300, clock=tl.clock, sleep=tl.sleep)
    finally:
        for s in servers:
            s.__exit__(None)
    job = w.jobs[0]
    assert job.server_state == "ready" and job.url == f"http://127.0.0.1:{port}/v1"
    # registered promptly once the server answers: within one tight poll
    assert 50 <= job.ready_after_s <= 50.5
    # queued polls backed off: few scheduler calls over 40 s of queue
    queued_calls = [t for t, _ in sched.calls if t < 40]
    assert 3 <= len(queued_calls) <= 8
    assert all(len(ids) == 1 for _, ids in sched.calls)
    text = "\n".join(rep.lines)
    order = ["queued", "running on n1", "starting", "loading weights", "KV cache allocated", "ready at"]
    positions = [text.index(o) for o in order]
    assert positions == sorted(positions), text
    assert f"registered tiny-a in {reg_path}" in text
    eps = open_registry(reg_path).lookup("tiny-a")
    assert [(e.model, e.url, e.key) for e in eps] == [("tiny", job.url, "VLLM_API_KEY")]
    # progress is in the job record (for status and for a resumed watcher)
    saved = JobStore(str(home)).get(rec.job_id)
    assert saved.server_state == "ready" and saved.url == job.url
    assert saved.watch.log_offset == os.path.getsize(rec.log_path)
    assert saved.watch.registered == [reg_path]


def test_failure_from_log_is_reported_with_lines_and_never_registered(home, tmp_path):
    reg_path = str(tmp_path / "endpoints.toml")
    rec = make_record(home, registries=[reg_path])
    tl = Timeline()
    sched = TimelineScheduler(tl, {rec.job_id: [(0, st(rec.job_id, JobState.RUNNING, exec_host="n1"))]})
    lines = sample_lines("kv-too-small.log")
    tl.at(1, lambda: append(rec.log_path, lines[:3]))
    tl.at(3, lambda: append(rec.log_path, lines[3:]))
    w = make_watcher(tl, sched, home)
    w.add(JobProgress.from_record(rec))
    assert run_watchers([w], timeout_s=60, clock=tl.clock, sleep=tl.sleep)
    job = w.jobs[0]
    assert job.server_state == "failed" and job.failure == "kv_cache_too_small"
    assert "estimated maximum model length is 9920" in job.failure_detail or "9920" in job.failure_detail
    # the evidence names the log and the line
    kv_line = next(i for i, l in enumerate(lines, 1) if "max seq len" in l)
    assert any(e.startswith(f"{rec.log_path}:{kv_line}: ") for e in job.evidence), job.evidence
    assert tl.t < 5  # detected from the log, long before the job ends
    assert not os.path.exists(reg_path)
    assert JobStore(str(home)).get(rec.job_id).server_state == "failed"


def test_job_ending_before_ready_reports_the_scheduler_reason(home):
    rec = make_record(home)
    tl = Timeline()
    sched = TimelineScheduler(tl, {rec.job_id: [
        (0, st(rec.job_id, JobState.RUNNING)),
        (20, st(rec.job_id, JobState.FAILED, exit_status=-29, exit_reason="killed: walltime exceeded (Exit_status -29)")),
    ]})
    tl.at(1, lambda: append(rec.log_path, ["INFO 11-28 17:40:18 [api_utils.py:286] non-default args: {'port': 1}\n",
                                           "last line without newline"]))
    w = make_watcher(tl, sched, home)
    w.add(JobProgress.from_record(rec))
    assert run_watchers([w], timeout_s=60, clock=tl.clock, sleep=tl.sleep)
    job = w.jobs[0]
    assert job.server_state == "failed" and job.failure == "job_ended"
    assert "walltime exceeded" in job.failure_detail
    # the final read takes the unterminated last line too
    assert job.evidence[-1].endswith(":2: last line without newline")


def test_models_ok_but_completion_fails_is_failure(home, tmp_path):
    reg_path = str(tmp_path / "endpoints.toml")
    rec = make_record(home, registries=[reg_path])
    tl = Timeline()
    sched = TimelineScheduler(tl, {rec.job_id: [(0, st(rec.job_id, JobState.RUNNING))]})
    with FakeVllm(["tiny"]) as fake:
        fake.completion_status = 500
        tl.at(1, lambda: write_info(rec, fake.port))
        tl.at(2, lambda: append(rec.log_path, ["INFO:     Application startup complete.\n"]))
        w = make_watcher(tl, sched, home)
        w.add(JobProgress.from_record(rec))
        assert run_watchers([w], timeout_s=60, clock=tl.clock, sleep=tl.sleep)
    job = w.jobs[0]
    assert job.server_state == "failed" and job.failure == "probe_completion_failed"
    assert "500" in job.failure_detail
    assert not os.path.exists(reg_path)


def test_wrong_served_name_is_failure(home):
    rec = make_record(home)
    tl = Timeline()
    sched = TimelineScheduler(tl, {rec.job_id: [(0, st(rec.job_id, JobState.RUNNING))]})
    with FakeVllm(["someone-elses-model"]) as fake:
        tl.at(1, lambda: write_info(rec, fake.port))
        tl.at(2, lambda: append(rec.log_path, ["INFO:     Application startup complete.\n"]))
        w = make_watcher(tl, sched, home)
        w.add(JobProgress.from_record(rec))
        assert run_watchers([w], timeout_s=60, clock=tl.clock, sleep=tl.sleep)
    assert w.jobs[0].failure == "probe_model_missing"
    assert "someone-elses-model" in w.jobs[0].failure_detail


def test_ready_then_job_ends_removes_entries(home, tmp_path):
    reg_toml, reg_yaml = str(tmp_path / "endpoints.toml"), str(tmp_path / "config.yaml")
    rec = make_record(home, registries=[reg_toml, reg_yaml])
    tl = Timeline()
    sched = TimelineScheduler(tl, {rec.job_id: [
        (0, st(rec.job_id, JobState.RUNNING)),
        (30, st(rec.job_id, JobState.CANCELLED, exit_status=271)),
    ]})
    with FakeVllm(["tiny"]) as fake:
        tl.at(1, lambda: write_info(rec, fake.port))
        w = make_watcher(tl, sched, home, follow_ready=True)
        w.add(JobProgress.from_record(rec))
        seen = []
        tl.at(10, lambda: seen.append(open_registry(reg_yaml).lookup("tiny-a")))
        assert run_watchers([w], timeout_s=120, clock=tl.clock, sleep=tl.sleep)
    assert seen and seen[0][0].job_id == rec.job_id
    job = w.jobs[0]
    assert job.server_state == "stopped"
    assert open_registry(reg_toml).read() == {} and open_registry(reg_yaml).read() == {}


def test_two_jobs_one_status_call_per_tick(home):
    a, b = make_record(home, "1.s", "a"), make_record(home, "2.s", "b")
    tl = Timeline()
    sched = TimelineScheduler(tl, {
        "1.s": [(0, st("1.s", JobState.PENDING)), (5, st("1.s", JobState.FAILED, exit_reason="the script exited with status 1"))],
        "2.s": [(0, st("2.s", JobState.PENDING)), (9, st("2.s", JobState.UNKNOWN, gone=True))],
    })
    w = make_watcher(tl, sched, home)
    w.add(JobProgress.from_record(a))
    w.add(JobProgress.from_record(b))
    assert run_watchers([w], timeout_s=100, clock=tl.clock, sleep=tl.sleep)
    assert all(len(ids) >= 1 for _, ids in sched.calls)
    assert sched.calls[0][1] == ["1.s", "2.s"]  # batched
    assert [j.failure for j in w.jobs] == ["job_ended", "job_ended"]
    assert "does not know the job" in w.jobs[1].failure_detail  # gone, and it never had a server


def test_timeout_and_resume_from_saved_offset(home, tmp_path):
    reg_path = str(tmp_path / "endpoints.toml")
    rec = make_record(home, registries=[reg_path])
    lines = sample_lines("vllm-0.32.0-cpu-eager.log")
    append(rec.log_path, lines[:20])
    tl = Timeline()
    sched = TimelineScheduler(tl, {rec.job_id: [(0, st(rec.job_id, JobState.RUNNING))]})
    w = make_watcher(tl, sched, home)
    w.add(JobProgress.from_record(rec))
    assert run_watchers([w], timeout_s=3, clock=tl.clock, sleep=tl.sleep) is False
    saved = JobStore(str(home)).get(rec.job_id)
    offset = saved.watch.log_offset
    assert offset == os.path.getsize(rec.log_path) and saved.watch.log_line_no == 20
    # a new watcher (a new CLI process) resumes from the record
    append(rec.log_path, lines[20:])
    job2 = JobProgress.from_record(JobStore(str(home)).get(rec.job_id))
    assert job2.log_offset == offset
    tail = LogTail(LocalTransport(), job2.log_path, job2.log_offset, job2.log_line_no)
    new = tail.read_lines()
    assert len(new) == len(lines) - 20 and tail.line_no == len(lines)


def test_logtail_missing_partial_truncated(tmp_path):
    p = str(tmp_path / "x.log")
    t = LogTail(LocalTransport(), p)
    assert t.read_lines() == []  # not there yet
    append(p, ["one\n", "tw"])
    assert t.read_lines() == ["one"]
    append(p, ["o\n"])
    assert t.read_lines() == ["two"] and t.line_no == 2
    with open(p, "w") as fh:
        fh.write("new\n")
    assert t.read_lines() == ["new"] and t.truncated and t.line_no == 1


def test_tty_reporter_grows_one_line():
    out = []
    rep = TextReporter(out.append, tty=True, single_job=True)
    job = JobProgress(job_id="1", alias="q", served_model="q")
    rep.phase(job, "queued", 1)
    rep.phase(job, "running on n1", 12)
    rep.phase(job, "ready at http://n1:8000/v1", 94)
    rep.event(job, "registered q in x.toml")
    rep.close()
    assert out[-3] == "\r\x1b[K   queued 12s -> running on n1 -> ready at http://n1:8000/v1 (94s)"
    assert out[-1] == "   registered q in x.toml\n"
    plain = []
    rep2 = TextReporter(plain.append, tty=False, single_job=True)
    rep2.phase(job, "queued", 1)
    assert plain == ["q (1): queued (1s)\n"]


def test_endpoint_url_rules():
    info = ServerInfo(job_id="1", host="x3006c0s13b1n0", port=8005)
    assert endpoint_url(info) == "http://x3006c0s13b1n0:8005/v1"
    assert endpoint_url(info, hostname_suffix=".hsn.cm.polaris.alcf.anl.gov") == \
        "http://x3006c0s13b1n0.hsn.cm.polaris.alcf.anl.gov:8005/v1"
    full = ServerInfo(job_id="1", host="x3006c0s13b1n0.hsn.cm.polaris.alcf.anl.gov", port=8005)
    assert endpoint_url(full, hostname_suffix=".hsn.cm.polaris.alcf.anl.gov").count("hsn") == 1
    assert endpoint_url(info, url_template="https://{hostname}.proxy/{alias}:{port}", alias="q") == \
        "https://x3006c0s13b1n0.proxy/q:8005"
    assert endpoint_url(ServerInfo(job_id="", host="10.1.2.3", port=1), hostname_suffix=".x") == "http://10.1.2.3:1/v1"
    with pytest.raises(ServerError, match="0.0.0.0"):
        endpoint_url(ServerInfo(job_id="1", host="0.0.0.0", port=1, url="http://0.0.0.0:1/v1"))


def test_watch_records_wiring_with_store(home, tmp_path):
    """watch_records: records in, saved progress out (scheduler and probe injected)."""
    reg_path = str(tmp_path / "reg.json")
    rec = make_record(home, registries=[reg_path])
    tl = Timeline()
    sched = TimelineScheduler(tl, {rec.job_id: [(0, st(rec.job_id, JobState.RUNNING))]})

    settings = resolve({"home": str(home), "profile": "local"}, env={})
    with FakeVllm(["tiny"]) as fake:
        write_info(rec, fake.port)
        res = watch_records(settings, [rec], scheduler=sched, transport=LocalTransport(), probe=probe,
                            clock=tl.clock, sleep=tl.sleep, timeout_s=30)
    assert res.ok and res.to_dicts()[0]["server_state"] == "ready"
    assert json.load(open(reg_path))["tiny-a"]["job_id"] == rec.job_id


def test_replicas_in_server_info_are_all_probed_and_registered(home, tmp_path):
    reg_path = str(tmp_path / "endpoints.toml")
    rec = make_record(home, registries=[reg_path])
    tl = Timeline()
    sched = TimelineScheduler(tl, {rec.job_id: [(0, st(rec.job_id, JobState.RUNNING))]})
    port2 = free_port()
    servers = []
    with FakeVllm(["tiny"]) as f1:
        info = {"job_id": rec.job_id, "host": "127.0.0.1", "port": f1.port,
                "replicas": [{"index": 0, "host": "127.0.0.1", "port": f1.port, "url": f1.url},
                             {"index": 1, "host": "127.0.0.1", "port": port2,
                              "url": f"http://127.0.0.1:{port2}/v1"}]}
        with open(rec.server_info_path, "w") as fh:
            json.dump(info, fh)
        # the second replica answers only from t=5: not ready until both are
        tl.at(5, lambda: servers.append(FakeVllm(["tiny"], port=port2).__enter__()))
        w = make_watcher(tl, sched, home)
        w.add(JobProgress.from_record(rec))
        try:
            assert run_watchers([w], timeout_s=60, clock=tl.clock, sleep=tl.sleep)
        finally:
            for s in servers:
                s.__exit__(None)
    job = w.jobs[0]
    assert job.server_state == "ready" and job.ready_after_s >= 5
    assert [e.url for e in open_registry(reg_path).lookup("tiny-a")] == [f1.url, f"http://127.0.0.1:{port2}/v1"]


def test_scheduler_errors_and_a_transient_unknown_are_survived(home):
    from pbsvllm.errors import SchedulerError

    rec = make_record(home)
    tl = Timeline()

    class Flaky(FakeScheduler):
        def status(self, ids):
            t = self.clock()
            if 2 <= t < 6:
                raise SchedulerError("`qstat -x -f -F json 101.pbs` failed (rc 1): pbs_iff: cannot connect to host")
            if t < 2:  # just submitted: not listed yet once
                self.calls.append((t, list(ids)))
                return {}
            return super().status(ids)

    sched = Flaky({rec.job_id: [(0, st(rec.job_id, JobState.FAILED, exit_reason="the script exited with status 2"))]},
                  clock=tl.clock)
    rep = Reporter()
    w = make_watcher(tl, sched, home, rep)
    w.add(JobProgress.from_record(rec))
    assert run_watchers([w], timeout_s=120, clock=tl.clock, sleep=tl.sleep)
    assert any("could not ask the scheduler" in l and "pbs_iff" in l for l in rep.lines)
    assert w.jobs[0].failure == "job_ended" and "status 2" in w.jobs[0].failure_detail


def test_status_live_rows_reconcile_keeps_a_reused_url(home, tmp_path):
    """Job A ended; job B now serves at the same host:port. Status removes A's
    stale entries but never the entry of B's live server."""
    from pbsvllm import statusview
    from pbsvllm.liveview import live_rows, remove_ended_entries

    reg_toml, reg_json = str(tmp_path / "endpoints.toml"), str(tmp_path / "reg.json")
    store = JobStore(str(home))
    with FakeVllm(["tiny"]) as fake:
        a = make_record(home, "1.s", "old", registries=[reg_toml, reg_json])
        b = make_record(home, "2.s", "new", registries=[reg_toml, reg_json])
        for rec in (a, b):
            store.update(rec.job_id, url=fake.url, server_state="ready",
                         watch={"registered": [reg_toml, reg_json], "urls": [fake.url]})
        for path in (reg_toml, reg_json):
            r = open_registry(path)
            r.register(Endpoint("old", "tiny", fake.url, job_id="1.s"))
            r.register(Endpoint("new", "tiny", fake.url, job_id="2.s"))
        records = store.list()
        statuses = {"1.s": st("1.s", JobState.COMPLETED, exit_status=0),
                    "2.s": st("2.s", JobState.RUNNING, exec_host="n1")}
        rows = statusview.build_rows(records, statuses)

        class S:
            api_key_file = None
            api_key_env = "VLLM_API_KEY"

            @staticmethod
            def registries_for(alias):
                return ()

        view = live_rows(S, records, rows, store=store, transport_for=lambda h: None)
        assert open_registry(reg_json).lookup("old")  # building the rows changes no registry
        notes = view.notes + remove_ended_entries(view, rows)
    by = {r["alias"]: r for r in rows}
    assert by["new"]["server_state"] == "ready" and by["old"]["server_state"] == "stopped"
    # the TOML entry of the old alias has no job id and points at the live server: kept, and listed
    assert sorted(by["new"]["registries"]) == sorted([f"new@{reg_toml}", f"new@{reg_json}", f"old@{reg_toml}"])
    # where the job id is stored, the ended job's entry goes and the live one stays
    assert open_registry(reg_json).lookup("old") == []
    assert open_registry(reg_json).lookup("new")[0].job_id == "2.s"
    assert open_registry(reg_toml).lookup("new")[0].url == fake.url
    assert store.get("1.s").server_state == "stopped"
    assert all("removed new" not in n for n in notes)
    assert any(n.startswith(f"removed old -> {fake.url} from {reg_json}") for n in notes)


def test_metrics_from_real_dp2_log_sum_the_engines():
    from pbsvllm.liveview import metrics_from_lines

    m = metrics_from_lines(sample_lines("vllm-0.32.0-cpu-dp2-1apiserver.log"))
    # the last line of each engine: 120.0 + 184.9 tok/s generation, 7.0 + 7.0 prompt
    assert m["generation_tokens_per_s"] == 304.9 and m["prompt_tokens_per_s"] == 14.0
    assert (m["running"], m["waiting"], m["engines"], m["kv_device"]) == (0, 0, 2, "CPU")
    assert m["kv_cache_usage_pct"] == 0.0 and m["prefix_cache_hit_pct"] == 0.0


def test_metrics_v0_line_and_none():
    from pbsvllm.liveview import metrics_from_lines

    v0 = ("INFO 05-25 06:50:29 [metrics.py:486] Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: "
          "15.5 tokens/s, Running: 1 reqs, Swapped: 0 reqs, Pending: 2 reqs, GPU KV cache usage: 0.5%, "
          "CPU KV cache usage: 0.1%.")
    m = metrics_from_lines(["noise", v0, "more noise"])
    assert (m["generation_tokens_per_s"], m["running"], m["waiting"], m["kv_cache_usage_pct"]) == (15.5, 1, 2, 0.5)
    assert m["prefix_cache_hit_pct"] is None and m["engines"] == 1
    assert metrics_from_lines(["INFO:     Application startup complete."]) is None
