"""One table of exit codes: errors.EXIT_CODES, docs/exit-codes.md and the CLI agree,
and no domain error shares click's usage-error status 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from pbsvllm import errors
from tests.paths import ROOT


def test_no_error_class_uses_the_usage_status_and_each_is_in_the_table():
    for cls in errors.error_classes():
        assert cls.exit_code != errors.USAGE, cls
        assert cls.exit_code in errors.EXIT_CODES, cls
        assert cls.__name__ in errors.EXIT_CODES[cls.exit_code][0], cls


def test_distinct_meanings_get_distinct_codes():
    # ParseError is a SchedulerError-like failure of scheduler output: the only shared code
    by_code: dict = {}
    for cls in errors.error_classes():
        if cls is errors.PbsvllmError:
            continue
        by_code.setdefault(cls.exit_code, []).append(cls.__name__)
    shared = {c: names for c, names in by_code.items() if len(names) > 1}
    assert shared == {4: ["SchedulerError", "ParseError"]}


def test_docs_table_is_the_code_table():
    with open(os.path.join(ROOT, "docs", "exit-codes.md"), encoding="utf-8") as fh:
        text = fh.read()
    rows = re.findall(r"^\| (\d+) \| (.+?) \| (.+?) \|$", text, re.M)
    assert {int(c): (o, m) for c, o, m in rows} == errors.EXIT_CODES


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pbsvllm", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


def test_usage_error_is_2_and_config_error_is_10(tmp_path):
    r = _cli("plan", "--no-such-option")
    assert r.returncode == 2 and "No such option" in r.stderr
    bad = tmp_path / "config.toml"
    bad.write_text("profile = 3\n")
    r = subprocess.run([sys.executable, "-m", "pbsvllm", "profiles"], capture_output=True, text=True, cwd=ROOT,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PBSVLLM_CONFIG": str(bad)}, timeout=60)
    assert r.returncode == errors.ConfigError.exit_code == 10
    assert r.stderr.startswith("pbsvllm: error: ") and "key 'profile'" in r.stderr


def test_example_script_shows_each_code():
    r = subprocess.run(["bash", os.path.join(ROOT, "examples", "exit-codes.sh")], capture_output=True, text=True,
                       env={**os.environ, "PYTHON": sys.executable}, timeout=120)
    codes = [int(m) for m in re.findall(r"^exit (\d+) ", r.stdout, re.M)]
    assert codes == [2, 10, 11, 12, 5], r.stdout + r.stderr
