"""A site template cannot open an injection, whatever filter or operator it uses
(issue 11 class 9).

Every Jinja built-in filter is tried on a hostile value and on its quoted
form; also slicing, string methods, ``~``, ``+``, ``%``, block filters,
``{% set %}`` blocks and ``autoescape false``. Each template either is
refused with one TemplateError line or renders a script whose block, run
under bash, executes nothing of the value. The profile's ``launcher`` text
is shell-quoted in the log line (it used to run as code there).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pbsvllm.config import resolve
from pbsvllm.errors import TemplateError
from pbsvllm.render import QUOTING_FILTERS, build_context, make_environment, plan_for, prepare_job, render_script

NO_CACHE = {"HF_HUB_CACHE": "/nonexistent-hf-cache"}
#: with quotes (that a broken guard might leave unbalanced) and without (so that a
#: broken guard's output is valid shell and would really run the payload)
PAYLOADS = ("a;touch INJ1;$(touch INJ2)`touch INJ3`'\"$(touch INJ4)\"<x>&amp;",
            "a;touch INJ1;$(touch INJ2)`touch INJ3`;touch INJ4 &amp;")
PAYLOAD = PAYLOADS[0]


def _settings(tmp_path, block: str = "", launcher: str = ""):
    tdir = tmp_path / "tpl"
    tdir.mkdir(exist_ok=True)
    (tdir / "job.sh.j2").write_text('{% extends "base.sh.j2" %}{% block preflight %}\n' + block +
                                    '\n{% endblock %}\n')
    cfg = tmp_path / "config.toml"
    cfg.write_text('[profiles.t]\nbase = "local"\n' + (f"launcher = {launcher!r}\n" if launcher else ""))
    return resolve({"profile": "t", "home": str(tmp_path / "home"), "template_dirs": [str(tdir)]},
                   {"PBSVLLM_CONFIG": str(cfg)})


_CONTEXTS = {}


def _context(tmp_path, value: str):
    """The render context for ``value`` as served model name (planned once per value)."""
    if value not in _CONTEXTS:
        (tmp_path / "ctx").mkdir(exist_ok=True)
        settings_ = _settings(tmp_path / "ctx")
        _facts, plan = plan_for(settings_, str(tmp_path / "no-model"),
                                {"params": "0.5B", "served_model_name": value, "port": 8000}, env=NO_CACHE)
        _CONTEXTS[value] = build_context(settings_, str(tmp_path / "no-model"), "svc", plan,
                                         served_model_name=value, port=8000)
    return _CONTEXTS[value]


def _render(tmp_path, block: str, launcher: str = "", value: str = PAYLOAD):
    if launcher:
        return prepare_job(_settings(tmp_path, block, launcher), str(tmp_path / "no-model"), "svc",
                           {"params": "0.5B", "served_model_name": value}, env=NO_CACHE).script_text
    tdir = tmp_path / "tpl"
    tdir.mkdir(exist_ok=True)
    (tdir / "job.sh.j2").write_text('{% extends "base.sh.j2" %}{% block preflight %}\n' + block +
                                    '\n{% endblock %}\n')
    return render_script(_context(tmp_path, value), [str(tdir)])


def _run_block(tmp_path, script: str) -> str:
    """Run the rendered preflight block (between our markers) under bash in an empty folder."""
    start = script.index("#BEGIN-TEST\n") + len("#BEGIN-TEST\n")
    end = script.index("#END-TEST")
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    r = subprocess.run(["bash", "-c", script[start:end]], cwd=str(work), capture_output=True, text=True, timeout=30)
    made = sorted(p.name for p in work.iterdir())
    assert not made, f"the block executed part of the value: {made}\n{script[start:end]}"
    return r.stdout


def _check(tmp_path, expr: str) -> None:
    block = "#BEGIN-TEST\n" + expr + "\n#END-TEST"
    for value in PAYLOADS:
        try:
            script = _render(tmp_path, block, value=value)
        except TemplateError as exc:
            assert "\n" not in str(exc)
            continue
        _run_block(tmp_path, script)


def _builtin_filters():
    env = make_environment()
    return sorted(n for n in env.filters if n not in QUOTING_FILTERS)


@pytest.mark.parametrize("name", _builtin_filters())
def test_every_builtin_filter_on_a_value_and_a_quoted_value(tmp_path, name):
    for expr in (f"echo {{{{ served_model_name | {name} }}}}",
                 f"echo {{{{ served_model_name | shquote | {name} }}}}"):
        _check(tmp_path, expr)


@pytest.mark.parametrize("name", ["e", "escape", "safe", "tojson", "urlize", "forceescape", "xmlattr", "replace",
                                  "trim", "indent", "center", "truncate", "wordwrap", "upper", "join"])
def test_markup_returning_filters_are_refused_by_name(tmp_path, name):
    args = {"replace": "(\"'\", \"\")", "trim": "(\"'\")", "truncate": "(9)", "center": "(90)"}.get(name, "")
    src = f"echo {{{{ (served_model_name | shquote) | {name}{args} }}}}"
    if name == "xmlattr":
        src = "echo {{ {'a': served_model_name} | xmlattr }}"
    if name == "join":
        src = "echo {{ [served_model_name | shquote, served_model_name] | join(' ') }}"
    with pytest.raises(TemplateError) as info:
        _render(tmp_path, "#BEGIN-TEST\n" + src + "\n#END-TEST")
    assert "quoting filter" in str(info.value) or "cannot" in str(info.value)


@pytest.mark.parametrize("expr", [
    "echo {{ (served_model_name | shquote)[1:-1] }}",
    "echo {{ (served_model_name | shquote).strip(\"'\") }}",
    "echo {{ (served_model_name | shquote).replace(\"'\", \"\") }}",
    "echo {{ 'x' ~ served_model_name }}",
    "echo {{ (served_model_name | shquote) + served_model_name }}",
    "echo {{ (served_model_name | shquote) * 2 }}",
    "echo {{ '%s' % served_model_name }}",
    "{% set x %}{{ served_model_name | shquote }}{% endset %}echo {{ x[1:-1] }}",
    "{% set x %}{{ served_model_name | shquote }}{% endset %}echo {{ x | replace(\"'\", '') }}",
    "{% filter upper %}echo {{ served_model_name | shquote }}{% endfilter %}",
    "{% autoescape false %}echo {{ served_model_name }}{% endautoescape %}",
    "echo {{ served_model_name | map('safe') | join }}",
    "echo {{ served_model_name | attr('strip')() }}",
    "echo {{ lipsum() }}",
    "echo {{ served_model_name.__class__ }}",
    "{% macro m(v) %}{{ v | shquote }}{% endmacro %}echo {{ m(served_model_name)[1:-1] }}",
])
def test_operators_methods_and_blocks_cannot_unquote(tmp_path, expr):
    _check(tmp_path, expr)
    with pytest.raises(TemplateError):
        _render(tmp_path, "#BEGIN-TEST\n" + expr + "\n#END-TEST")


def test_quoted_values_still_render_and_run(tmp_path):
    script = _render(tmp_path, "#BEGIN-TEST\necho {{ served_model_name | shquote }}\n"
                               "echo {{ served_model_name | upper | shquote }}\n"
                               "{% macro m(v) %}{{ v | shquote }}{% endmacro %}echo {{ m(served_model_name) }}\n#END-TEST")
    out = _run_block(tmp_path, script).splitlines()
    assert out == [PAYLOAD, PAYLOAD.upper(), PAYLOAD]


def test_launcher_text_is_quoted_in_the_log_line(tmp_path):
    launcher = f"{sys.executable} -c pass; touch INJ5 $(touch INJ6) `touch INJ7` \"q\""
    script = _render(tmp_path, "", launcher=launcher)
    line = next(ln for ln in script.splitlines() if ln.startswith('log "starting:"'))
    work = tmp_path / "w2"
    work.mkdir()
    r = subprocess.run(["bash", "-c", 'log() { printf "%s\\n" "$*"; }; VLLM_ARGS=(--port 1)\n' + line],
                       cwd=str(work), capture_output=True, text=True, timeout=30)
    assert os.listdir(work) == [], "the launcher text ran as shell code in the log line"
    assert r.stdout.strip() == f"starting: {launcher} --port 1"
