"""Fake scheduler commands (``qstat``, ``qsub``, ``qdel``, ``scontrol``) as real
executables on ``PATH``, answering what a test scripted.

Each command is a small Python program. It appends its argv to
``calls.jsonl`` and answers from ``answers/<command>.json``: a list of
answers, taken in order; the last one repeats. An answer is
``{"rc": int, "out": str, "out_hex": str, "err": str, "sleep": float}``
(``out_hex`` gives raw bytes, e.g. Latin-1 text; ``sleep`` hangs first).
The backends run them through the real :class:`LocalTransport` (subprocess,
timeouts, decoding), so tests cover everything between the scheduler's
bytes and pbsvllm's state.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from typing import Any, Dict, List

import pytest

COMMANDS = ("qstat", "qsub", "qdel", "scontrol", "scancel")

_PROGRAM = r'''#!{python}
import json, os, sys, time
root = {root!r}
name = os.path.basename(sys.argv[0])
with open(os.path.join(root, "calls.jsonl"), "a") as fh:
    fh.write(json.dumps([name] + sys.argv[1:]) + "\n")
path = os.path.join(root, "answers", name + ".json")
try:
    with open(path) as fh:
        answers = json.load(fh)
except FileNotFoundError:
    sys.stderr.write(name + ": no answer scripted\n")
    sys.exit(99)
answer = answers[0]
if len(answers) > 1:
    with open(path + ".tmp", "w") as fh:
        json.dump(answers[1:], fh)
    os.replace(path + ".tmp", path)
if answer.get("sleep"):
    time.sleep(float(answer["sleep"]))
out = bytes.fromhex(answer["out_hex"]) if "out_hex" in answer else answer.get("out", "").encode()
sys.stdout.buffer.write(out)
sys.stderr.write(answer.get("err", ""))
sys.exit(int(answer.get("rc", 0)))
'''


class FakeScheduler:
    """The fake commands' folder; put :attr:`bin` first on PATH (the fixture does)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.bin = os.path.join(root, "bin")
        os.makedirs(self.bin)
        os.makedirs(os.path.join(root, "answers"))
        program = _PROGRAM.format(python=sys.executable, root=root)
        for name in COMMANDS:
            path = os.path.join(self.bin, name)
            with open(path, "w") as fh:
                fh.write(program)
            os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def answer(self, command: str, *answers: Dict[str, Any]) -> None:
        """Script ``command``'s next answers (the last repeats)."""
        with open(os.path.join(self.root, "answers", command + ".json"), "w") as fh:
            json.dump(list(answers), fh)

    def calls(self, command: str = "") -> List[List[str]]:
        try:
            with open(os.path.join(self.root, "calls.jsonl")) as fh:
                rows = [json.loads(line) for line in fh if line.strip()]
        except FileNotFoundError:
            return []
        return [r for r in rows if not command or r[0] == command]


@pytest.fixture
def fake_sched(tmp_path, monkeypatch) -> FakeScheduler:
    fake = FakeScheduler(str(tmp_path / "fakesched"))
    monkeypatch.setenv("PATH", fake.bin + os.pathsep + os.environ.get("PATH", ""))
    return fake
