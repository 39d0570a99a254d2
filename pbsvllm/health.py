"""HTTP probes of a vLLM server: readiness and ``/metrics``.

**Ready** means both (docs/reference/vllm-logs.md, vllm-flags-metrics.md (API key) and
vllm-cpu.md):

1. ``GET <base>/models`` with ``Authorization: Bearer <key>`` returns 200 and
   lists the expected served model id (so a different server that grabbed
   the same port through SO_REUSEPORT, or a wrong ``--served-model-name``,
   is not mistaken for ours), and then
2. a one-token ``POST <base>/completions`` succeeds: a 200 from
   ``/v1/models`` alone does not prove the engine can generate (the
   head_dim=16 crash answered ``/v1/models`` and died on the first request).

Only the standard library (``urllib``) is used, with short timeouts and no
proxies (a login node's ``http_proxy`` must not swallow compute-node URLs).
The API key is sent in a header and never appears in a result or message.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from pbsvllm.errors import ConfigError
from pbsvllm.safety import clean, remember_secret

DEFAULT_TIMEOUT_S = 3.0
COMPLETION_TIMEOUT_S = 30.0
MAX_BODY = 4 * 1024 * 1024

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclasses.dataclass
class Readiness:
    """The outcome of one readiness check.

    ``stage`` is where it stopped: ``unreachable`` (connection refused or
    timed out: normal while vLLM starts), ``unauthorized`` (401/403: wrong or
    missing key), ``models_error`` (another status), ``model_missing`` (200 but
    not our served model: wrong name or someone else's server on the port),
    ``completion_failed`` (listed, but generating one token failed) or
    ``ready``.
    """

    url: str
    model: str
    ready: bool
    stage: str
    detail: str = ""
    http_status: Optional[int] = None
    models: Tuple[str, ...] = ()
    elapsed_s: float = 0.0

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["models"] = list(self.models)
        return d


def base_url(url: str) -> str:
    """``http://h:p/v1`` (no trailing slash); a URL without ``/v1`` gets it."""
    u = url.rstrip("/")
    if not re.search(r"/v\d+$", u):
        u += "/v1"
    return u


def server_root(url: str) -> str:
    """``http://h:p`` from ``http://h:p/v1``: where ``/metrics`` and ``/health`` live."""
    return re.sub(r"/v\d+$", "", url.rstrip("/"))


def _request(url: str, *, api_key: Optional[str], timeout: float, body: Optional[dict] = None,
             accept: str = "application/json") -> Tuple[int, bytes]:
    """(status, body). Raises OSError/URLError for connection problems."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    req.add_header("Accept", accept)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if api_key:
        remember_secret(api_key)  # whatever is printed later is redacted of it
        req.add_header("Authorization", f"Bearer {api_key}")
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read(MAX_BODY)
    except urllib.error.HTTPError as exc:
        try:
            payload = exc.read(MAX_BODY)
        except OSError:
            payload = b""
        return exc.code, payload


def _short(payload: bytes, limit: int = 300) -> str:
    """A server's reply as one printable line: keys it echoed redacted, control
    bytes shown as escapes, cut to ``limit`` characters."""
    text = payload.decode("utf-8", "replace").strip().replace("\n", " ")
    return clean(text, one_line=True, limit=limit)


def _conn_error(exc: BaseException) -> str:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    return str(reason) or type(reason).__name__


def check_models(url: str, model: str, api_key: Optional[str] = None,
                 timeout: float = DEFAULT_TIMEOUT_S) -> Readiness:
    """Step 1 only: ``GET /v1/models`` lists ``model``."""
    t0 = time.monotonic()
    base = base_url(url)
    try:
        status, payload = _request(base + "/models", api_key=api_key, timeout=timeout)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        return Readiness(url, model, False, "unreachable", f"GET {base}/models: {_conn_error(exc)}",
                         elapsed_s=time.monotonic() - t0)
    dt = time.monotonic() - t0
    if status in (401, 403):
        return Readiness(url, model, False, "unauthorized",
                         f"GET {base}/models answered {status}: the API key is missing or wrong "
                         "(the key comes from api_key_file or the variable named by api_key_env)",
                         http_status=status, elapsed_s=dt)
    if status != 200:
        return Readiness(url, model, False, "models_error", f"GET {base}/models answered {status}: {_short(payload)}",
                         http_status=status, elapsed_s=dt)
    try:
        doc = json.loads(payload)
        ids = tuple(str(m.get("id")) for m in doc.get("data", []) if isinstance(m, dict))
    except (ValueError, AttributeError):
        return Readiness(url, model, False, "models_error",
                         f"GET {base}/models answered 200 but not with a model list: {_short(payload)}",
                         http_status=status, elapsed_s=dt)
    if model not in ids:
        return Readiness(url, model, False, "model_missing",
                         f"GET {base}/models lists {clean(repr(list(ids)), one_line=True, limit=300)}, not {model!r}: "
                         "a wrong --served-model-name, "
                         "or another server answers on this port",
                         http_status=status, models=ids, elapsed_s=dt)
    return Readiness(url, model, True, "models_ok", "", http_status=status, models=ids, elapsed_s=dt)


def check_ready(url: str, model: str, api_key: Optional[str] = None, *,
                timeout: float = DEFAULT_TIMEOUT_S,
                completion_timeout: float = COMPLETION_TIMEOUT_S) -> Readiness:
    """Full readiness: the model is listed AND a one-token completion succeeds."""
    t0 = time.monotonic()
    r = check_models(url, model, api_key, timeout)
    if not r.ready:
        return r
    base = base_url(url)
    body = {"model": model, "prompt": "Hello", "max_tokens": 1, "temperature": 0}
    try:
        status, payload = _request(base + "/completions", api_key=api_key, timeout=completion_timeout, body=body)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        return dataclasses.replace(r, ready=False, stage="completion_failed",
                                   detail=f"POST {base}/completions: {_conn_error(exc)}",
                                   elapsed_s=time.monotonic() - t0)
    ok = False
    if status == 200:
        try:
            ok = bool(json.loads(payload).get("choices"))
        except (ValueError, AttributeError):
            ok = False
    if not ok:
        return dataclasses.replace(r, ready=False, stage="completion_failed", http_status=status,
                                   detail=f"POST {base}/completions (1 token) answered {status}: {_short(payload)}",
                                   elapsed_s=time.monotonic() - t0)
    return dataclasses.replace(r, ready=True, stage="ready", http_status=status, elapsed_s=time.monotonic() - t0)


def check_many(targets: Sequence[Tuple[str, str]], api_key: Optional[str] = None, *,
               timeout: float = DEFAULT_TIMEOUT_S, completion_timeout: float = 10.0,
               max_workers: int = 16) -> List[Readiness]:
    """Readiness of many ``(url, model)`` at once (a thread pool), in order."""
    if not targets:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(max_workers, len(targets))) as pool:
        futs = [pool.submit(check_ready, u, m, api_key, timeout=timeout, completion_timeout=completion_timeout)
                for u, m in targets]
        return [f.result() for f in futs]


# ------------------------------------------------------------------ /metrics

_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)")


def parse_prometheus(text: str) -> Dict[str, float]:
    """Sum of every sample of each metric name (all engines, all label sets).

    Histogram series keep their ``_sum``/``_count``/``_bucket`` names.
    Unparsable lines are skipped.
    """
    out: Dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC_LINE.match(line)
        if not m:
            continue
        try:
            v = float(m.group(3))
        except ValueError:
            continue
        out[m.group(1)] = out.get(m.group(1), 0.0) + v
    return out


def scrape_metrics(url: str, timeout: float = DEFAULT_TIMEOUT_S) -> Dict[str, float]:
    """``GET <root>/metrics`` (no key needed: vLLM leaves it open). Raises OSError."""
    root = server_root(url)
    status, payload = _request(root + "/metrics", api_key=None, timeout=timeout, accept="text/plain")
    if status != 200:
        raise OSError(f"GET {root}/metrics answered {status}: {_short(payload)}")
    return parse_prometheus(payload.decode("utf-8", "replace"))


def load_from_metrics(metrics: Mapping[str, float]) -> Dict[str, Optional[float]]:
    """Running/waiting requests and KV usage from a scrape (V0 and V1 names)."""

    def first(*names: str) -> Optional[float]:
        for n in names:
            if n in metrics:
                return metrics[n]
        return None

    kv = first("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
    return {
        "running": first("vllm:num_requests_running"),
        "waiting": first("vllm:num_requests_waiting"),
        "kv_cache_usage_pct": None if kv is None else kv * 100.0,
    }


def wait_for_drain(url: str, *, timeout_s: float, poll_s: float = 1.0,
                   clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> Tuple[bool, str]:
    """Wait until ``vllm:num_requests_running`` + ``waiting`` is 0, at most ``timeout_s``.

    Returns (drained, how). A server whose ``/metrics`` cannot be read counts
    as drained only if it is gone (connection refused).
    """
    deadline = clock() + timeout_s
    last = "no scrape yet"
    while True:
        try:
            load = load_from_metrics(scrape_metrics(url))
            busy = (load["running"] or 0) + (load["waiting"] or 0)
            last = f"running={int(load['running'] or 0)} waiting={int(load['waiting'] or 0)}"
            if busy == 0:
                return True, f"drained ({last})"
        except (OSError, urllib.error.URLError) as exc:
            if "refused" in _conn_error(exc):
                return True, "server already gone (connection refused)"
            last = f"/metrics unreadable: {_conn_error(exc)}"
        if clock() >= deadline:
            return False, f"not drained after {timeout_s:.0f} s ({last})"
        sleep(poll_s)


# ------------------------------------------------------------------ API key

#: The one rule for an API key file, shared with the job script (templates/base.sh.j2):
#: the key is the file's first line without surrounding spaces, tabs and the
#: line end (LF or CRLF); it must be printable ASCII with no space inside.
KEY_FILE_RULE = ("the key is the first line of the file, without surrounding whitespace or the line end;"
                 " it must be printable ASCII with no spaces")
_KEY_RE = re.compile(r"^[!-~]+$")


def key_from_text(text: str, path: str) -> str:
    """The key in an API key file's text (:data:`KEY_FILE_RULE`)."""
    key = text.split("\n", 1)[0].strip(" \t\r\v\f")
    if not key:
        raise ConfigError(f"API key file {path} is empty (its first line holds no key)",
                          hint=KEY_FILE_RULE)
    if not _KEY_RE.match(key):
        raise ConfigError(f"API key file {path} holds a key with spaces, control or non-ASCII characters",
                          hint=KEY_FILE_RULE)
    return key


def read_api_key_file(path: str) -> str:
    """The key in ``path``: a regular file not readable by others (the job
    checks the same), read by :func:`key_from_text`."""
    from pbsvllm.fileio import read_regular

    path = os.path.expanduser(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"API key file {path} (api_key_file) does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read API key file {path}: {exc.strerror}") from None
    if st.st_mode & 0o077:
        raise ConfigError(
            f"API key file {path} is readable by other users (mode {st.st_mode & 0o777:o})",
            hint=f"chmod 600 {path}",
        )
    data = read_regular(path, "API key file", error=ConfigError, max_bytes=64 << 10)
    if data is None:
        raise ConfigError(f"API key file {path} (api_key_file) does not exist")
    key = key_from_text(data.decode("utf-8", "replace"), path)
    remember_secret(key)
    return key


def resolve_api_key(api_key_file: Optional[str] = None, api_key_env: str = "VLLM_API_KEY",
                    env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The key the probes send: from ``api_key_file`` if set (:func:`read_api_key_file`,
    the rule the job uses too), else ``$<api_key_env>``.

    Returns None when neither is set (a server started without --api-key).
    """
    env = os.environ if env is None else env
    if api_key_file:
        return read_api_key_file(api_key_file)
    value = env.get(api_key_env, "").strip(" \t\r\n")
    remember_secret(value)
    return value or None
