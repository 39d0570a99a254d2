"""Property-based: the parser never raises, on arbitrary text, on truncated
real lines, or on real lines with bytes flipped; and the fast bytes path
always agrees with the line path."""

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbsvllm import vllmlog as V
from pbsvllm.vllmlog import fastpath, scanner

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "vllm")


def _real_lines():
    out = []
    for name in sorted(os.listdir(DATA)):
        if name.endswith((".log", ".txt")):
            with open(os.path.join(DATA, name), "rb") as fh:
                out += fh.read().decode("utf-8", "replace").split("\n")
    # keep the interesting ones (startup, stats, errors) and a few others
    keep = [ln for ln in out if scanner._PREFILTER_RE.search(ln) or "throughput" in ln]
    return keep + out[:200]


REAL = _real_lines()
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(text, max_size=30))
def test_arbitrary_text_never_raises(lines):
    f = V.parse_log(lines)
    f.to_json_facts()
    for ln in lines:
        V.strip_line(ln)
        V.split_line(ln)
        V.parse_stats_line(ln)
        V.classify_error(ln)
        V.detect_phase(ln)
    assert f.parse_problems == 0, f.first_parse_problem


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(REAL), st.integers(0, 2000)), min_size=1, max_size=40))
def test_truncated_real_lines_never_raise(picks):
    lines = [ln[:cut] for ln, cut in picks]
    f = V.parse_log(lines)
    f.to_json_facts()
    assert f.parse_problems == 0, f.first_parse_problem
    for ln in lines:
        st_ = V.parse_stats_line(ln)
        if st_ is not None:
            assert st_.running >= 0 and st_.waiting >= 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(REAL), st.integers(0, 500), st.sampled_from("\x00,:%()[]{}'\"=\x1b0")),
                min_size=1, max_size=30))
def test_corrupted_real_lines_never_raise(picks):
    lines = [ln[:i] + ch + ln[i + 1:] for ln, i, ch in picks]
    f = V.parse_log(lines)
    f.to_json_facts()
    assert f.parse_problems == 0, f.first_parse_problem


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(REAL), min_size=1, max_size=60), st.binary(max_size=40),
       st.integers(1, 4096))
def test_bytes_path_agrees_with_line_path(lines, junk, window):
    """Any mix of real lines (plus a line of junk bytes), any window size."""
    data = ("\n".join(lines) + "\n").encode() + junk + b"\n"
    sc = V.LogScanner()
    old = fastpath.STEADY_WINDOW_MIN
    fastpath.STEADY_WINDOW_MIN = window
    try:
        n = V.scan_bytes(sc, data, 1)
    finally:
        fastpath.STEADY_WINDOW_MIN = old
    text_lines = data.decode("utf-8", "replace").split("\n")[:-1]
    ref = V.parse_log(text_lines)
    assert n == len(text_lines) == ref.lines == sc.facts.lines
    assert sc.facts.to_json_facts() == ref.to_json_facts()
    assert sc.facts.evidence == ref.evidence
    assert {k: s.summary() for k, s in sc.facts.stats.items()} == {k: s.summary() for k, s in ref.stats.items()}


def test_prefilter_changes_nothing_on_the_samples(monkeypatch):
    """Every handler's needle is in the prefilter: with it off (every line
    examined) the facts are the same."""
    import re

    names = [n for n in sorted(os.listdir(DATA)) if n.endswith((".log", ".txt"))]
    real = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "vllm-real")
    paths = [os.path.join(DATA, n) for n in names] + [os.path.join(real, n) for n in sorted(os.listdir(real))
                                                      if n.endswith(".log")]
    with_pf = [V.parse_file(p) for p in paths]
    monkeypatch.setattr(scanner, "_PREFILTER_RE", re.compile(""))
    without = [V.parse_file(p) for p in paths]
    for p, a, b in zip(paths, with_pf, without):
        assert a.to_json_facts() == b.to_json_facts(), p
        assert a.evidence == b.evidence, p
        assert a.platform_hint == b.platform_hint and a.args == b.args, p


def test_follower_reads_only_appended_bytes(tmp_path):
    src = os.path.join(DATA, "vllm-0.32.0-cpu-dp2-1apiserver.log")
    with open(src, "rb") as fh:
        data = fh.read()
    half = data.index(b"\n", len(data) // 2) + 1
    log = tmp_path / "server.log"
    log.write_bytes(data[:half] + b"partial line without newl")
    fl = V.LogFollower(str(log))
    first = fl.poll()
    assert first == half and fl.bytes_read == len(data[:half]) + len(b"partial line without newl")
    before = fl.bytes_read
    with open(log, "ab") as fh:
        fh.write(b"ine\n")
        fh.write(data[half:])
    got = fl.poll()
    # the second poll starts at the partial line: it reads it again plus the appended bytes, nothing else
    assert fl.bytes_read - before == len(b"partial line without newl") + len(b"ine\n") + len(data) - half
    assert got == fl.bytes_read - before
    whole = V.parse_log(data[:half].decode().split("\n")[:-1] + ["partial line without newline"]
                        + data[half:].decode().split("\n")[:-1])
    assert fl.facts.to_json_facts() == whole.to_json_facts()
    assert fl.facts.engine_stats_lines == 36
    # truncation: read again from the start with fresh facts
    log.write_bytes(data[:1000])
    fl.poll(final=True)
    assert fl.facts.engine_stats_lines == 0 and fl.offset == 1000
