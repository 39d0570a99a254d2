"""Keys (issue 11 class 7) and output hygiene (class 10).

* One rule for reading an API key file: the job script's shell code (the
  rendered ``api_key`` block, run under bash) and the CLI's probes
  (``health.read_api_key_file``) read the same key from the same file, or
  both refuse it -- for CRLF, trailing spaces, tabs, blank lines, inner
  spaces, control and non-ASCII characters, and random text.
* A key echoed by a server (error bodies of a real HTTP server on
  loopback), a vLLM "non-default args" line, ``--api-key`` and ``Bearer``
  values are redacted in everything pbsvllm prints; control bytes a
  server sends are printed as escapes.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbsvllm import health
from pbsvllm.config import resolve
from pbsvllm.errors import ConfigError, ServerError
from pbsvllm.render import prepare_job
from pbsvllm.safety import clean, printable, redact

NO_CACHE = {"HF_HUB_CACHE": "/nonexistent-hf-cache"}


@pytest.fixture(scope="module")
def key_block(tmp_path_factory) -> str:
    """The rendered job script's API-key block, exactly as a job runs it."""
    tmp = tmp_path_factory.mktemp("keyblock")
    key = tmp / "key"
    key.write_text("x-key\n")
    os.chmod(key, 0o600)
    settings_ = resolve({"profile": "local", "home": str(tmp / "home"), "api_key_file": str(key)},
                        {"PBSVLLM_CONFIG": os.devnull})
    prepared = prepare_job(settings_, str(tmp / "no-model"), "k", {"params": "0.5B", "port": 18000}, env=NO_CACHE)
    text = prepared.script_text
    start = text.index("# --- API key:")
    end = text.index("export VLLM_API_KEY", start) + len("export VLLM_API_KEY")
    block = text[start:end]
    assert "API_KEY_FILE=" in block
    return block


def job_reads(block: str, path: str):
    """(key, None) as the job script reads ``path``, or (None, error line)."""
    line = next(ln for ln in block.splitlines() if ln.startswith("API_KEY_FILE="))
    body = block.replace(line, f"API_KEY_FILE={path}")
    script = 'log() { printf "%s\\n" "$*" >&2; }\n' + body + '\nprintf "%s" "$VLLM_API_KEY"\n'
    r = subprocess.run(["bash", "-c", script], capture_output=True, timeout=30)
    if r.returncode != 0:
        return None, r.stderr.decode("utf-8", "replace")
    return r.stdout.decode("utf-8", "surrogateescape"), None


def cli_reads(path: str):
    try:
        return health.read_api_key_file(path), None
    except ConfigError as exc:
        return None, str(exc)


def write_key(tmp_path, data: bytes) -> str:
    path = tmp_path / "api_key"
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return str(path)


KEY_FILES = {
    "plain": (b"sk-abc123\n", "sk-abc123"),
    "no newline": (b"sk-abc123", "sk-abc123"),
    "CRLF": (b"sk-abc123\r\n", "sk-abc123"),
    "trailing space": (b"sk-abc123 \n", "sk-abc123"),
    "trailing tab and CR": (b"sk-abc123\t\r\n", "sk-abc123"),
    "leading spaces": (b"   sk-abc123\n", "sk-abc123"),
    "second line ignored": (b"sk-abc123\nsomething else\n", "sk-abc123"),
    "empty": (b"", None),
    "blank first line": (b"\nsk-abc123\n", None),
    "only spaces": (b"  \t \r\n", None),
    "inner space": (b"sk abc\n", None),
    "control char": (b"sk-\x1b[2Jabc\n", None),
    "non-ASCII": ("sk-äbc\n".encode(), None),
    "latin-1 byte": (b"sk-\xe4bc\n", None),
}


@pytest.mark.parametrize("case", sorted(KEY_FILES))
def test_job_and_cli_read_a_key_file_alike(tmp_path, key_block, case):
    data, want = KEY_FILES[case]
    path = write_key(tmp_path, data)
    job_key, job_err = job_reads(key_block, path)
    cli_key, cli_err = cli_reads(path)
    assert job_key == cli_key == want, (job_err, cli_err)
    if want is None:
        assert job_err and cli_err and "\n" not in cli_err.strip()


@settings(max_examples=120, deadline=None)
@given(st.binary(max_size=40) | st.text(alphabet=st.sampled_from("ab- \t\r\n\x00é~"), max_size=20).map(str.encode))
def test_job_and_cli_agree_on_any_file(tmp_path_factory, key_block, data):
    tmp = tmp_path_factory.mktemp("k")
    if b"\x00" in data.split(b"\n", 1)[0]:
        return  # bash variables cannot hold NUL; both refuse such keys anyway (NUL is a control character)
    path = write_key(tmp, data)
    job_key, _ = job_reads(key_block, path)
    cli_key, _ = cli_reads(path)
    assert job_key == cli_key


def test_key_file_readable_by_others_refused_by_both(tmp_path, key_block):
    path = write_key(tmp_path, b"sk-abc123\n")
    os.chmod(path, 0o644)
    assert job_reads(key_block, path)[0] is None and "chmod 600" in cli_reads(path)[1]


def test_key_file_that_is_a_fifo_does_not_hang_the_cli(tmp_path):
    path = str(tmp_path / "key")
    os.mkfifo(path, 0o600)
    key, err = cli_reads(path)
    assert key is None and "FIFO" in err


# ------------------------------------------------------------------ redaction and escapes

class EchoServer(http.server.BaseHTTPRequestHandler):
    """Answers every request with an error body that echoes the key it got,
    wrapped in terminal escape sequences."""

    def do_GET(self):
        self._answer()

    def do_POST(self):
        self._answer()

    def _answer(self):
        auth = self.headers.get("Authorization", "")
        body = (f"\x1b]0;pwned\x07\x1b[31minvalid key {auth.split()[-1] if auth else ''} "
                f"(you sent: {auth})\x1b[0m\r\n\u202eevil").encode()
        self.send_response(500 if self.path.endswith("/models") else 400)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def echo_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoServer)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def test_server_echoing_the_key_is_redacted_and_escaped(echo_server):
    key = "sk-echo-SECRET-42"
    got = health.check_ready(echo_server, "m", api_key=key, timeout=5)
    assert not got.ready and got.stage == "models_error"
    assert key not in got.detail and "***" in got.detail
    assert "\x1b" not in got.detail and "\x07" not in got.detail and "\u202e" not in got.detail
    assert "\\x1b" in got.detail and "\n" not in got.detail


def test_everything_the_cli_prints_is_redacted(tmp_path):
    """The real cli.main with a command printing what a server or a log may hold."""
    key = tmp_path / "key"
    key.write_text("sk-file-key-77\r\n")
    os.chmod(key, 0o600)
    code = f"""
import click, sys
from pbsvllm import cli, health
from pbsvllm.errors import ServerError

@cli.cli.command("leak")
def leak():
    k = health.read_api_key_file({str(key)!r})
    click.echo("INFO non-default args: {{'model': 'm', 'api_key': ['sk-log-key-1'], 'port': 8000}}")
    click.echo("vllm serve m --api-key sk-flag-key-2 --port 1")
    click.echo("server said: bad key " + k, err=True)
    raise ServerError("probe failed: \\x1b[2J body echoes " + k + "\\nsecond line")

cli.main(["leak"])
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == ServerError.exit_code, r.stderr
    both = r.stdout + r.stderr
    for secret in ("sk-file-key-77", "sk-log-key-1", "sk-flag-key-2"):
        assert secret not in both
    assert "'api_key': [***]" in r.stdout and "--api-key ***" in r.stdout
    err_line = [ln for ln in r.stderr.splitlines() if ln.startswith("pbsvllm: error:")]
    assert len(err_line) == 1 and "\\x1b[2J" in err_line[0] and "\x1b" not in r.stderr
    assert "\\nsecond line" in err_line[0]


@pytest.mark.parametrize("text,want", [
    ("non-default args: {'api_key': ['k1234'], 'port': 1}", "non-default args: {'api_key': [***], 'port': 1}"),
    ("Namespace(api_key='k1234', port=1)", "Namespace(api_key='***', port=1)"),
    ("api_key=None", "api_key=None"),
    ('{"api_key": "k1234"}', '{"api_key": "***"}'),
    ("api_key: os.environ/VLLM_API_KEY", "api_key: os.environ/VLLM_API_KEY"),
    ("api_key_env = VLLM_API_KEY", "api_key_env = VLLM_API_KEY"),
    ("--api-key=k1234 --port 1", "--api-key=*** --port 1"),
    ("Authorization: Bearer k1234", "Authorization: Bearer ***"),
])
def test_redact_patterns(text, want):
    assert redact(text) == want


def test_printable_keeps_text_and_escapes_controls():
    assert printable("a\tb\nc") == "a\tb\nc"
    assert printable("a\x1b[1mb\x9bc\x00d\u2066e") == "a\\x1b[1mb\\x9bc\\x00d\\u2066e"
    assert clean("x\ny", one_line=True) == "x\\ny"
    assert printable("é日本") == "é日本"


def test_key_file_given_at_submit_is_used_by_a_later_status(tmp_path, fake_sched):
    """The record remembers the key file of the submit; a later `status` without
    --api-key-file probes with it (the CRLF in the file does not matter)."""
    import json as _json

    from pbsvllm.api import Client
    from pbsvllm.jobs import JobRecord, JobStore
    from pbsvllm.models import ServerState
    from tests.fakes.vllm import FakeVllm, free_port

    key = tmp_path / "key"
    key.write_bytes(b"sk-remembered-1\r\n")
    os.chmod(key, 0o600)
    home = tmp_path / "home"
    settings_ = resolve({"home": str(home), "profile": "local"}, {"PBSVLLM_CONFIG": os.devnull})
    assert settings_.api_key_file is None
    fake_sched.answer("qstat", {"rc": 0, "out": _json.dumps({"Jobs": {"9.pbs": {"job_state": "R"}}})})
    with FakeVllm(models=["svc"], api_key="sk-remembered-1", port=free_port()) as server:
        store = JobStore(str(home))
        store.save(JobRecord(job_id="9.pbs", alias="svc", served_model_name="svc", scheduler="pbspro",
                             url=server.url, api_key_file=str(key), server_state=ServerState.STARTING))
        row = Client(settings_, store).status().rows[0]
        assert row["server_state"] == "ready", row
        assert all(r.get("Authorization") in (None, "Bearer sk-remembered-1") for r in server.requests)


def test_status_table_and_logs_print_remote_text_escaped(tmp_path):
    """A job name or comment from the scheduler and a line of the job's log are
    printed with control bytes as escapes (the status table, `pbsvllm logs`)."""
    from pbsvllm import statusview
    from pbsvllm.jobs import JobRecord, JobStore
    from pbsvllm.models import JobState
    from pbsvllm.scheduler.base import JobStatus

    rec = JobRecord(job_id="5.pbs", alias="svc",
                    last_status=JobStatus("5.pbs", JobState.RUNNING, comment="x\x1b[2Jy\u202e"))
    table = statusview.format_table(statusview.build_rows([rec], {}))
    assert "\x1b" not in table and "\u202e" not in table
    home = tmp_path / "home"
    log = tmp_path / "svc.log"
    log.write_bytes(b"INFO started \x1b]0;pwned\x07 \x1b[31mred\x1b[0m api_key='sk-log-key-9'\n")
    JobStore(str(home)).save(JobRecord(job_id="5.pbs", alias="svc", log_path=str(log)))
    env = dict(os.environ, PBSVLLM_HOME=str(home), PBSVLLM_CONFIG=os.devnull)
    r = subprocess.run([sys.executable, "-m", "pbsvllm", "logs", "svc"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert "\\x1b]0;pwned\\x07" in r.stdout and "sk-log-key-9" not in r.stdout
