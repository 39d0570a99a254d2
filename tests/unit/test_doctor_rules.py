"""Every doctor finding function is listed in RULES and named in docs/doctor.md's table of findings."""

from __future__ import annotations

import inspect
import re

from pbsvllm.doctor import findings
from tests.paths import ROOT


def _doc_table_functions() -> set:
    with open(f"{ROOT}/docs/doctor.md", encoding="utf-8") as fh:
        text = fh.read()
    names = set()
    for line in text.splitlines():
        if line.startswith("| `") and line.count("|") == 6:
            last = line.rstrip(" |").rsplit("|", 1)[1]
            names.update(re.findall(r"`(\w+)`", last))
    return names


def test_every_rule_is_documented_and_every_documented_function_is_a_rule():
    rules = {r.__name__ for r in findings.RULES}
    public = {name for name, obj in inspect.getmembers(findings, inspect.isfunction)
              if obj.__module__ == findings.__name__ and not name.startswith("_")}
    assert public == rules, "a public function of doctor/findings.py that is not in RULES (or the reverse)"
    assert _doc_table_functions() == rules
