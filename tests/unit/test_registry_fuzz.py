"""Property tests: any alias/model/URL text round-trips through every format,
and the other entries of a hand-written file are left exactly as they were."""

from __future__ import annotations

import os
import shutil
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbsvllm.errors import RegistryError
from pbsvllm.registry import Endpoint, open_registry

EX = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples", "registries")
FILES = ["endpoints.toml", "endpoints.py", "config.yaml", "endpoints.json"]

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1,
               max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alias=text, model=text, url=text, key=st.from_regex(r"[A-Z_][A-Z0-9_]{0,12}", fullmatch=True),
       replicas=st.integers(1, 3))
def test_any_text_round_trips_and_others_are_untouched(alias, model, url, key, replicas):
    for name in FILES:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, name)
            shutil.copy(os.path.join(EX, name), path)
            reg = open_registry(path)
            before = reg.read()
            eps = [Endpoint(alias, model, url + ("" if i == 0 else f"/{i}"), key, job_id=f"{i}.x")
                   for i in range(replicas)]
            try:
                reg.register(eps[0])
                for ep in eps[1:]:
                    reg.register(ep, replace=False)
            except RegistryError as exc:  # only ever a clean refusal, with the file intact
                assert "internal error" not in str(exc), (name, exc)
                assert reg.read() == before
                continue
            after = reg.read()
            got = [(e.alias, e.model, e.url, e.key) for e in after[alias]]
            assert got == [(e.alias, e.model, e.url, e.key) for e in eps], name
            for other, entries in before.items():
                if other != alias:
                    assert after[other] == entries, (name, other)
            reg.unregister(alias)
            after2 = reg.read()
            assert alias not in after2
            assert {a: v for a, v in after2.items()} == {a: v for a, v in before.items() if a != alias}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_files_are_refused_untouched_or_edited_correctly(data):
    """Random edits of the example files: whatever still parses is updated with
    the other entries intact; whatever does not is refused byte-for-byte."""
    name = data.draw(st.sampled_from(FILES))
    with open(os.path.join(EX, name), encoding="utf-8") as fh:
        src = fh.read()
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(src)))
        op = data.draw(st.sampled_from(["delete", "insert"]))
        if op == "delete" and src:
            src = src[:pos] + src[pos + 1:]
        else:
            src = src[:pos] + data.draw(st.sampled_from(list("[]{}\"'#:,-= \n\tab\\"))) + src[pos:]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(src)
        reg = open_registry(path)
        try:
            before = reg.read()
        except RegistryError:
            before = None
        try:
            reg.register(Endpoint("fuzz-alias", "m", "http://n:1/v1", "VLLM_API_KEY", job_id="1"))
        except RegistryError as exc:
            assert "internal error" not in str(exc), exc
            with open(path, encoding="utf-8") as fh:
                assert fh.read() == src  # refused: byte-for-byte
            return
        assert before is not None
        after = reg.read()
        assert [e.url for e in after["fuzz-alias"]] == ["http://n:1/v1"]
        for alias, entries in before.items():
            if alias != "fuzz-alias":
                assert after[alias] == entries, (name, alias)
