"""Everything checkable before qsub is checked before it: nothing is submitted,
written or recorded when a registry, the key file, the walltime or the script is
wrong, and the line says what to do (docs/lifecycle.md, "Before the queue")."""

from __future__ import annotations

import os

import pytest

from pbsvllm.errors import ConfigError, RegistryError, TemplateError
from pbsvllm.preflight import check_walltime, key_file_problem, registry_problems, script_problem, walltime_seconds
from tests.fakes.vllm import free_port
from tests.unit.test_watcher_submit import pbsvllm, site  # noqa: F401  (site is a fixture)


def nothing_submitted(site) -> bool:  # noqa: F811
    """No script written, no job recorded."""
    home = site["home"]
    return not (home / "scripts").exists() and not any((home / "jobs").glob("*"))


def submit(site, *args, env=None):  # noqa: F811
    return pbsvllm(site, "submit", site["model"], "--alias", "pre", "--port", str(free_port()), *args, env=env)


def test_missing_registry_folder_is_refused_before_qsub(site):  # noqa: F811
    reg = site["tmp"] / "configs" / "endpoints.toml"  # configs/ does not exist
    r = submit(site, "--wait", "--timeout", "30", "--registry", str(reg))
    assert r.returncode == RegistryError.exit_code == 6, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and f"mkdir -p {reg.parent}" in r.stderr and "nothing was submitted" in r.stderr
    assert nothing_submitted(site) and not reg.parent.exists()


def test_unparseable_registry_is_refused(site):  # noqa: F811
    reg = site["tmp"] / "endpoints.toml"
    reg.write_text("[[endpoint\nbroken = \n")
    r = submit(site, "--registry", str(reg))
    assert r.returncode == 6 and "endpoints.toml" in r.stderr, r.stderr
    assert reg.read_text() == "[[endpoint\nbroken = \n" and nothing_submitted(site)


def test_key_file_readable_by_others_is_refused(site):  # noqa: F811
    key = site["tmp"] / "api_key"
    os.chmod(key, 0o644)
    r = submit(site)
    assert r.returncode == ConfigError.exit_code, r.stderr
    assert f"has mode 644: others can read it (run: chmod 600 {key})" in r.stderr and nothing_submitted(site)
    assert "sk-test" not in r.stderr  # never the key itself


def test_broken_custom_template_is_refused(site):  # noqa: F811
    tdir = site["tmp"] / "templates"
    tdir.mkdir()
    (tdir / "broken.sh.j2").write_text('{% extends "base.sh.j2" %}\n{% block launch %}\nif [ x; then\n'
                                       '{% endblock %}\n')
    cfg = site["tmp"] / "config.toml"
    cfg.write_text(cfg.read_text().replace('profile = "fake"', f'profile = "fake"\ntemplate_dirs = ["{tdir}"]'))
    r = submit(site, "--template", "broken.sh.j2")
    assert r.returncode == TemplateError.exit_code, r.stdout + r.stderr
    assert "the rendered job script is not valid shell" in r.stderr and nothing_submitted(site)


def test_walltime_over_the_queues_limit_is_refused_before_qsub(tmp_path):
    import subprocess
    import sys

    from tests.paths import ROOT

    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PBSVLLM_HOME": str(tmp_path / "h"),
           "PYTHONPATH": ROOT}
    r = subprocess.run([sys.executable, "-m", "pbsvllm", "submit", "Qwen/Qwen3-VL-2B-Instruct", "--alias", "w",
                        "--profile", "polaris", "--queue", "debug", "--walltime", "02:00:00"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 10, r.stderr
    assert "walltime 02:00:00 is over the limit of queue 'debug' (01:00:00" in r.stderr
    assert "--walltime 01:00:00 or less" in r.stderr and not (tmp_path / "h" / "scripts").exists()


def test_pure_checks():
    assert walltime_seconds("01:00:00") == 3600 and walltime_seconds("168:00:00") == 168 * 3600
    assert walltime_seconds("90") == 90 and walltime_seconds("1:30") == 90
    check_walltime("72:00:00", "preemptable", {"preemptable": "72:00:00"}, "polaris")
    check_walltime("99:00:00", "unknown-queue", {"debug": "01:00:00"}, "polaris")  # no limit known: fine
    with pytest.raises(ConfigError, match="over the limit"):
        check_walltime("72:00:01", "preemptable", {"preemptable": "72:00:00"}, "polaris")
    assert script_problem("echo ok\n") is None
    assert "not valid shell" in (script_problem("if then fi\n") or "")


def test_registry_and_key_problems(tmp_path):
    assert registry_problems([str(tmp_path / "ok.toml")]) == []
    (tmp_path / "r.yaml").write_text("model_list: [\n")
    (problem,) = registry_problems([str(tmp_path / "r.yaml")])
    assert "r.yaml" in problem
    (missing,) = registry_problems([str(tmp_path / "nope" / "e.toml")])
    assert "does not exist (create it first: mkdir -p" in missing
    key = tmp_path / "k"
    assert "does not exist" in (key_file_problem(str(key)) or "")
    key.write_text("")
    os.chmod(key, 0o600)
    assert "is empty" in (key_file_problem(str(key)) or "")
    key.write_text("sk-x\n")
    assert key_file_problem(str(key)) is None
    os.chmod(key, 0o640)
    assert "mode 640" in (key_file_problem(str(key)) or "")
