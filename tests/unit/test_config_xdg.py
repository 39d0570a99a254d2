"""The user config file follows the XDG base-directory rules (docs/config.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pbsvllm.config import config_search_path, resolve
from pbsvllm.errors import ConfigError
from tests.paths import ROOT


def _write(path, text: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return str(path)


def _env(tmp_path, **extra: str) -> dict:
    return {"HOME": str(tmp_path / "home"), **extra}


def test_search_path_defaults_and_xdg_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home = str(tmp_path / "home")
    assert config_search_path({}) == (f"{home}/.config/pbsvllm/config.toml", "/etc/xdg/pbsvllm/config.toml")
    env = {"XDG_CONFIG_HOME": "/x/cfg", "XDG_CONFIG_DIRS": "/site/a:relative/b::/site/c"}
    assert config_search_path(env) == ("/x/cfg/pbsvllm/config.toml", "/site/a/pbsvllm/config.toml",
                                       "/site/c/pbsvllm/config.toml")
    # a relative XDG_CONFIG_HOME is ignored, as the specification says
    assert config_search_path({"XDG_CONFIG_HOME": "cfg"})[0] == f"{home}/.config/pbsvllm/config.toml"


def test_xdg_config_home_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _write(tmp_path / "home/.config/pbsvllm/config.toml", 'profile = "torque"\n')
    xdg = _write(tmp_path / "xdg/pbsvllm/config.toml", 'profile = "polaris"\n')
    s = resolve({}, env=_env(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "xdg")))
    assert s.config_path == xdg and s.profile.name == "polaris"


def test_user_file_beats_site_dirs_and_first_site_dir_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    site_a = _write(tmp_path / "a/pbsvllm/config.toml", 'profile = "sophia"\n')
    _write(tmp_path / "b/pbsvllm/config.toml", 'profile = "torque"\n')
    env = _env(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "xdg"), XDG_CONFIG_DIRS=f"{tmp_path}/a:{tmp_path}/b")
    s = resolve({}, env=env)
    assert s.config_path == site_a and s.profile.name == "sophia"
    user = _write(tmp_path / "xdg/pbsvllm/config.toml", 'profile = "polaris"\n')
    s = resolve({}, env=env)
    assert s.config_path == user and s.profile.name == "polaris"


def test_pbsvllm_config_beats_xdg_and_must_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _write(tmp_path / "xdg/pbsvllm/config.toml", 'profile = "polaris"\n')
    mine = _write(tmp_path / "mine.toml", 'profile = "torque"\n')
    s = resolve({}, env=_env(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "xdg"), PBSVLLM_CONFIG=mine))
    assert s.config_path == mine and s.profile.name == "torque"
    with pytest.raises(ConfigError, match="does not exist"):
        resolve({}, env=_env(tmp_path, PBSVLLM_CONFIG=str(tmp_path / "missing.toml")))


def test_no_file_anywhere_is_fine(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    s = resolve({}, env=_env(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "xdg"), XDG_CONFIG_DIRS=str(tmp_path / "none")))
    assert s.config_path is None


def test_cli_profiles_reports_the_xdg_file(tmp_path):
    xdg = _write(tmp_path / "xdg/pbsvllm/config.toml", '[profiles.mine]\nbase = "polaris"\naccount = "P"\n')
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    r = subprocess.run([sys.executable, "-m", "pbsvllm", "profiles", "mine", "--json"], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert '"account": "P"' in r.stdout and xdg in r.stdout


def test_example_script_shows_the_search_order():
    r = subprocess.run(["bash", os.path.join(ROOT, "examples", "xdg-config.sh")], capture_output=True, text=True,
                       env={"PATH": os.environ["PATH"], "PYTHON": sys.executable}, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("  read ")]
    assert lines[0].endswith("/site/pbsvllm/config.toml -> default profile ['sophia']")
    assert lines[1].endswith("/config/pbsvllm/config.toml -> default profile ['polaris']")
