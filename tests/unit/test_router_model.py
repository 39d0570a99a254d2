"""The router's pure core: state round trip, membership rule, reconcile steps, validation."""

from __future__ import annotations

import json

import pytest

from pbsvllm.errors import ConfigError
from pbsvllm.router.model import (
    Member,
    MemberState,
    RouterSettings,
    RouterState,
    check_alias,
    check_server_url,
    desired_workers,
    no_server_message,
    reconcile_steps,
    set_member_state,
    with_member,
    without_member,
    worker_url,
)

A = "http://n1:8000/v1"
B = "http://n2:8001/v1"


def state(*members: Member) -> RouterState:
    return RouterState(alias="tiny", port=9000, placeholder_port=9100, members=members)


def test_url_ends_in_v1_and_worker_url_drops_it():
    assert state().url == "http://127.0.0.1:9000/v1"
    assert state().admin_url == "http://127.0.0.1:9000"
    assert worker_url(A) == "http://n1:8000"
    assert worker_url("http://n1:8000/") == "http://n1:8000"
    assert RouterState(alias="t", host="::1", port=5).url == "http://[::1]:5/v1"


def test_state_round_trips_through_json():
    st = state(Member(A, MemberState.ACTIVE, "1.pbs", 5.0), Member(B, MemberState.DRAINING, "2.pbs", 6.0))
    back = RouterState.from_dict(json.loads(st.to_json()))
    assert back == st


def test_no_active_member_means_the_placeholder():
    assert desired_workers(state()) == ["http://127.0.0.1:9100"]
    drained = state(Member(A, MemberState.DRAINING))
    assert desired_workers(drained) == ["http://127.0.0.1:9100"]
    assert desired_workers(state(Member(A), Member(B, MemberState.DRAINING))) == ["http://n1:8000"]


def test_reconcile_adds_before_it_removes_and_ignores_trailing_parts():
    adds, removes = reconcile_steps(["http://127.0.0.1:9100"], ["http://n1:8000"])
    assert adds == ["http://n1:8000"] and removes == ["http://127.0.0.1:9100"]
    assert reconcile_steps(["http://n1:8000/"], [A]) == ([], [])


def test_member_changes_are_by_server_not_by_spelling():
    st = with_member(state(), Member(A, job_id="1"))
    st = with_member(st, Member("http://n1:8000/v1/", job_id="2"))
    assert [m.job_id for m in st.members] == ["2"]
    st = set_member_state(st, "http://n1:8000", MemberState.DRAINING)
    assert st.members[0].state is MemberState.DRAINING
    assert without_member(st, A).members == ()


@pytest.mark.parametrize("bad", ["", "-x", "a/b", "a b", "..", "x" * 129, "a\nb"])
def test_bad_aliases_are_refused(bad):
    with pytest.raises(ConfigError):
        check_alias(bad)


@pytest.mark.parametrize("bad", ["n1:8000", "ftp://n1:8000/v1", "http://n1:8000/v1; rm -rf /", "http://a b:1/v1"])
def test_bad_server_urls_are_refused(bad):
    with pytest.raises(ConfigError):
        check_server_url(bad)


def test_settings_validate_their_values():
    with pytest.raises(ConfigError):
        RouterSettings(policy="fastest")
    with pytest.raises(ConfigError):
        RouterSettings(placement="cloud")
    with pytest.raises(ConfigError):
        RouterSettings(host="a;b")


def test_the_no_server_message_names_the_alias_and_what_to_do():
    msg = no_server_message("qwen3")
    assert "'qwen3'" in msg and "pbsvllm scale qwen3 1" in msg
