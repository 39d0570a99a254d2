"""Shell completion: click's protocol answers with aliases, job ids and profile
names, and the generated scripts work in real bash, zsh (under tmux) and fish."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from typing import Dict, List

import pytest

from pbsvllm.jobs import JobRecord, JobStore
from tests.paths import ROOT


@pytest.fixture()
def shellenv(tmp_path) -> Dict[str, str]:
    """A PATH with a `pbsvllm` launcher, a job store with two aliases, a user profile."""
    home = tmp_path / "pbsvllm-home"
    store = JobStore(str(home))
    store.save(JobRecord(job_id="101.pbs01", alias="qwen3-vl", submitted_at=1.0))
    store.save(JobRecord(job_id="102.pbs01", alias="qwen3-vl", submitted_at=2.0))
    store.save(JobRecord(job_id="7.pbs01", alias="llama", submitted_at=3.0))
    cfg = tmp_path / "config.toml"
    cfg.write_text('[profiles.mysite]\nbase = "polaris"\naccount = "P"\n')
    bindir = tmp_path / "bin"
    bindir.mkdir()
    launcher = bindir / "pbsvllm"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} -m pbsvllm \"$@\"\n")
    launcher.chmod(0o755)
    return {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path), "PBSVLLM_HOME": str(home),
            "PBSVLLM_CONFIG": str(cfg), "PYTHONPATH": ROOT, "TERM": "xterm"}


def protocol(env: Dict[str, str], shell: str, line: str) -> List[str]:
    """What `pbsvllm` answers a TAB at the end of ``line`` (click's completion protocol)."""
    words = line.split()
    cword = len(words) if line.endswith(" ") else len(words) - 1
    r = subprocess.run([sys.executable, "-m", "pbsvllm"], capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env={**env, "COMP_WORDS": line, "COMP_CWORD": str(cword),
                            "_PBSVLLM_COMPLETE": f"{shell}_complete"})
    assert r.returncode == 0 and not r.stderr, r.stderr
    return [ln for ln in r.stdout.splitlines() if ln]


def test_targets_complete_to_aliases_then_job_ids_newest_first(shellenv):
    assert protocol(shellenv, "bash", "pbsvllm status ") == [
        "plain,llama", "plain,qwen3-vl", "plain,7.pbs01", "plain,102.pbs01", "plain,101.pbs01"]
    assert protocol(shellenv, "bash", "pbsvllm cancel q") == ["plain,qwen3-vl"]
    assert protocol(shellenv, "bash", "pbsvllm logs 10") == ["plain,102.pbs01", "plain,101.pbs01"]
    assert protocol(shellenv, "bash", "pbsvllm watch llama q") == ["plain,qwen3-vl"]
    # zsh gets the help text too
    assert protocol(shellenv, "zsh", "pbsvllm cancel q") == ["plain", "qwen3-vl", "alias (newest job 102.pbs01)"]


def test_profiles_aliases_only_and_files(shellenv):
    assert protocol(shellenv, "bash", "pbsvllm plan m --profile p") == ["plain,pbspro", "plain,polaris"]
    assert "plain,mysite" in protocol(shellenv, "bash", "pbsvllm submit m --profile ")
    assert protocol(shellenv, "bash", "pbsvllm profiles my") == ["plain,mysite"]
    assert protocol(shellenv, "bash", "pbsvllm bench ") == ["plain,llama", "plain,qwen3-vl"]  # no job ids
    assert protocol(shellenv, "bash", "pbsvllm swap-endpoint l") == ["plain,llama"]
    assert protocol(shellenv, "bash", "pbsvllm doctor ")[0] == "file,"  # a log file, or a tracked job
    assert "plain,completion" in protocol(shellenv, "bash", "pbsvllm c")


def test_a_broken_config_or_store_gives_no_candidates_and_no_error(shellenv, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("this is [ not toml\n")
    env = {**shellenv, "PBSVLLM_CONFIG": str(bad)}
    assert protocol(env, "bash", "pbsvllm status ") == []
    assert "plain,polaris" in protocol(env, "bash", "pbsvllm plan m --profile ")


def test_real_bash_runs_the_generated_script(shellenv):
    script = ('eval "$(pbsvllm completion bash)"\n'
              'COMP_WORDS=(pbsvllm cancel q); COMP_CWORD=2\n'
              '_pbsvllm_completion pbsvllm cancel q\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n'
              'complete -p pbsvllm\n')
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True,
                       env=shellenv, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["qwen3-vl", "complete -o nosort -F _pbsvllm_completion pbsvllm"]


def test_real_fish_runs_the_generated_script(shellenv):
    fish = shutil.which("fish")
    assert fish, "fish is installed by scripts/setup-system.sh"
    r = subprocess.run([fish, "--no-config", "-c",
                        "pbsvllm completion fish | source; complete -C 'pbsvllm status q'; "
                        "complete -C 'pbsvllm plan m --profile my'"],
                       capture_output=True, text=True, env=shellenv, timeout=60)
    assert r.returncode == 0, r.stderr
    assert [ln.split("\t") for ln in r.stdout.splitlines()] == [
        ["qwen3-vl", "alias (newest job 102.pbs01)"], ["mysite", f"profile from {shellenv['PBSVLLM_CONFIG']}"]]


def test_real_zsh_completes_in_a_terminal(shellenv, tmp_path):
    zsh, tmux = shutil.which("zsh"), shutil.which("tmux")
    assert zsh and tmux, "zsh and tmux are installed by scripts/setup-system.sh"
    sock = str(tmp_path / "tmux.sock")
    session = "c" + uuid.uuid4().hex[:8]
    env = {**shellenv, "ZDOTDIR": str(tmp_path)}
    (tmp_path / ".zshrc").write_text('PS1="%% "\nautoload -U compinit; compinit -u\neval "$(pbsvllm completion zsh)"\n')

    def tm(*args: str) -> str:
        return subprocess.run([tmux, "-S", sock, *args], capture_output=True, text=True, env=env,
                              timeout=30).stdout

    tm("new-session", "-d", "-s", session, "-x", "120", "-y", "20", zsh, "-i")
    try:
        deadline = time.monotonic() + 30
        while "%" not in tm("capture-pane", "-p", "-t", session) and time.monotonic() < deadline:
            time.sleep(0.2)
        tm("send-keys", "-t", session, "pbsvllm cancel q", "Tab")
        screen = ""
        while time.monotonic() < deadline:
            screen = tm("capture-pane", "-p", "-t", session)
            if "pbsvllm cancel qwen3-vl" in screen:
                break
            time.sleep(0.2)
        assert "pbsvllm cancel qwen3-vl" in screen, screen
    finally:
        tm("kill-server")


def test_completion_command_prints_each_script_and_refuses_others():
    for shell, marker in (("bash", "complete -o nosort -F _pbsvllm_completion pbsvllm"),
                          ("zsh", "#compdef pbsvllm"), ("fish", "complete --no-files --command pbsvllm")):
        r = subprocess.run([sys.executable, "-m", "pbsvllm", "completion", shell], capture_output=True, text=True,
                           cwd=ROOT, timeout=60)
        assert r.returncode == 0 and marker in r.stdout
    r = subprocess.run([sys.executable, "-m", "pbsvllm", "completion", "tcsh"], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "tcsh" in r.stderr


def test_normal_runs_do_not_load_the_completion_module():
    code = ("import sys\nfrom pbsvllm.cli import cli\n"
            "try:\n    cli.main(['status', '--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
            "print('pbsvllm.completion' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env={k: v for k, v in os.environ.items() if k != "_PBSVLLM_COMPLETE"})
    assert r.stdout.strip().splitlines()[-1] == "False"


def test_example_script():
    r = subprocess.run(["bash", os.path.join(ROOT, "examples", "completion.sh")], capture_output=True, text=True,
                       env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
                            "PYTHON": sys.executable}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "$ pbsvllm logs q<TAB>\n    qwen3-vl\n" in r.stdout
    assert "    polaris\n" in r.stdout and "    7.pbs01\n" in r.stdout
