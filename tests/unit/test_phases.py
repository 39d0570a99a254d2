"""One phase vocabulary: every startup phase the log parser reports is a
pbsvllm.models.Phase, and phases only move forward in the watcher's order."""

from __future__ import annotations

from pbsvllm import vllmlog
from pbsvllm.models import Phase, ServerState


def test_log_phases_are_phase_values():
    assert set(vllmlog.PHASES) <= {p.value for p in Phase}
    for line, phase in [("INFO 11-28 17:57:01 [gpu_model_runner.py:2338] Starting to load model /m...",
                         Phase.LOADING_WEIGHTS),
                        ("INFO:     Application startup complete.", Phase.READY)]:
        assert Phase(vllmlog.detect_phase(line)) is phase


def test_order_labels_and_unknown_values():
    ranks = [p.rank for p in (Phase.SUBMITTED, Phase.QUEUED, Phase.RUNNING, Phase.LOADING_WEIGHTS,
                              Phase.KV_CACHE_ALLOCATED)]
    assert ranks == sorted(ranks) and Phase.READY.rank == -1 and Phase.LOG_READY.rank == -1
    assert Phase.COMPILING.label == "compiling / capturing graphs" and Phase.QUEUED.label == "queued"
    assert Phase.parse("a-newer-phase", Phase.STARTING) is Phase.STARTING
    assert ServerState.FAILED.is_final and ServerState.STOPPED.is_final and not ServerState.READY.is_final
    assert ServerState.parse(None) is ServerState.NONE
