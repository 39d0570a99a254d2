"""No tracked file cites a file outside the repository: facts are cited from docs/reference/, which gives
their public sources (the lookalike patterns are built by concatenation so this file does not match itself)."""

from __future__ import annotations

import re
import subprocess

from tests.paths import ROOT

SHARED = "shared" + "/"
OUTSIDE = [
    re.compile(re.escape(SHARED) + r"(reference|seed)"),  # the team's working notes, not in the repository
    re.compile(r"\.\./" + re.escape(SHARED)),
    re.compile(r"\bvllm" + r"\.md\b"),  # no such file here: docs/reference/vllm-*.md
    re.compile(r"(?<!reference/)\bpbs" + r"\.md (section|§)"),
    re.compile(r"\b(vllm|pbs|registries)" + r"\.md §"),
]
# outside docs/reference/, the bare name means the notes' file; there, it is the page next door
BARE_PBS = re.compile(r"(?<![\w/])pbs" + r"\.md\b")


# verbatim records of what a command printed on a device at the time (kept as captured)
RECORDS = ("tests/data/gpu/",)


def _tracked_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p]


def test_no_citation_of_files_outside_the_repository():
    bad = []
    for rel in _tracked_files():
        if rel.startswith(RECORDS):
            continue
        try:
            with open(f"{ROOT}/{rel}", encoding="utf-8") as fh:
                text = fh.read()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        pats = list(OUTSIDE) + ([] if rel.startswith("docs/reference/") else [BARE_PBS])
        for n, line in enumerate(text.splitlines(), 1):
            for pat in pats:
                if pat.search(line):
                    bad.append(f"{rel}:{n}: {line.strip()[:120]}")
                    break
    assert not bad, "cite docs/reference/ instead:\n" + "\n".join(bad)
