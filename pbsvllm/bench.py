"""Load generator for OpenAI-compatible (vLLM) endpoints, and its report.

``pbsvllm bench`` sends the same seeded list of ``/v1/completions`` requests
to one target (or two, side by side with ``--vs``) at each chosen
concurrency and reports, per level: requests/s, output tokens/s, time to
first token p50/p99 (streaming), end-to-end latency p50/p99 and errors by
kind.

Layout (pure core, I/O at the edge):

- pure: request lists (:func:`synthetic_requests`, :func:`parse_prompts`),
  statistics (:func:`percentile`, :func:`summarize`, :func:`ratios`), the
  stream parser (:class:`StreamParser`) and the renderers
  (:func:`format_table`, :func:`to_csv`, :meth:`BenchReport.to_json`);
- edge: :func:`run_bench` drives an ``httpx.AsyncClient`` (imported inside
  the function so ``pbsvllm --help`` stays fast).

Error kinds (keys of ``errors`` in the report):

``http_<status>``  the server answered with that HTTP status (e.g. ``http_500``)
``timeout``        no complete answer within ``--timeout`` seconds
``connection``     refused, reset, or closed before the answer was complete
``bad_body``       a 200 whose body is not an OpenAI completion stream
``stream_error``   the stream carried an ``{"error": ...}`` object (vLLM does
                   this when the engine fails mid-request)
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit, urlunsplit

from pbsvllm.errors import ConfigError, PbsvllmError

if TYPE_CHECKING:
    from pbsvllm.config import Settings

DEFAULT_API_KEY_ENV = "VLLM_API_KEY"

# Figures compared by --vs: (key, column title, unit, higher_is_better)
FIGURES: Tuple[Tuple[str, str, str, bool], ...] = (
    ("requests_per_s", "req/s", "1/s", True),
    ("output_tokens_per_s", "out tok/s", "tokens/s", True),
    ("ttft_p50_s", "TTFT p50", "s", False),
    ("ttft_p99_s", "TTFT p99", "s", False),
    ("latency_p50_s", "lat p50", "s", False),
    ("latency_p99_s", "lat p99", "s", False),
)

# Common English words; most tokenizers encode " word" as one token, so a
# prompt of N words is roughly N tokens. The server's own count is reported.
_WORDS = (
    "the of and to in is was for on that with as by at from his it an were are which this be "
    "or has had first one their its new after but who not they have her she two been other when "
    "there all during into school time may years more most only over city some world would where "
    "later up such used many can state about national out known university united then made also "
    "team under year part well three most between three while early film game house music family "
    "water people river small great war work group high long left right could these both season "
    "since north south east west each number through around until same found four home being five "
    "album day life name old line second several best public system days based because series"
).split()


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Endpoint:
    """One server to send requests to: base URL (ending in ``/v1``) and model."""

    url: str
    model: str
    api_key: Optional[str] = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Target:
    """What the user named (alias or URL) resolved to one or more endpoints.

    Requests are spread round-robin over the endpoints (replicas of an alias).
    """

    name: str
    endpoints: Tuple[Endpoint, ...]
    source: str
    api_key_env: str = DEFAULT_API_KEY_ENV

    def to_json(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "urls": [e.url for e in self.endpoints],
            "model": self.endpoints[0].model if self.endpoints else None,
            "api_key_env": self.api_key_env,
            "api_key_set": any(e.api_key for e in self.endpoints),
        }


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def normalize_base_url(url: str) -> str:
    """``http://node:8005`` and ``http://node:8005/v1/`` both become ``http://node:8005/v1``.

    A URL whose path is neither empty nor ends in ``/v1`` is kept as given
    (a proxy that mounts the API elsewhere), minus a trailing slash.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"{url!r} is not an http(s) URL; give the server's base URL, e.g. http://node:8005/v1"
        )
    path = parts.path.rstrip("/")
    if path == "":
        path = "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def url_target(
    url: str, model: Optional[str], api_key_env: str = DEFAULT_API_KEY_ENV,
    environ: Optional[Mapping[str, str]] = None,
) -> Target:
    """A target given as a URL: ``--model`` is required, the key comes from ``api_key_env``."""
    if not model:
        raise ConfigError(
            f"benchmarking the URL {url} needs the served model name: pass --model NAME "
            f"(the id that GET {normalize_base_url(url)}/models lists)"
        )
    env = os.environ if environ is None else environ
    key = env.get(api_key_env) or None
    return Target(
        name=url,
        endpoints=(Endpoint(normalize_base_url(url), model, key),),
        source="url",
        api_key_env=api_key_env,
    )


def resolve_target(
    name: str, model: Optional[str] = None, api_key_env: str = DEFAULT_API_KEY_ENV,
    registries: Sequence[str] = (), environ: Optional[Mapping[str, str]] = None,
    settings: Optional[Settings] = None,
) -> Target:
    """A URL (``--model`` required) or an alias looked up in registries / job records."""
    if is_url(name):
        return url_target(name, model, api_key_env, environ)
    target = alias_target(name, registries, environ, settings)
    if model:  # --model overrides the served name the registry or job record gives
        eps = tuple(Endpoint(e.url, model, e.api_key) for e in target.endpoints)
        target = Target(target.name, eps, target.source, target.api_key_env)
    return target


def alias_target(alias: str, registries: Sequence[str] = (),
                 environ: Optional[Mapping[str, str]] = None, settings: Optional[Settings] = None) -> Target:
    """The endpoint(s) an alias stands for, and their API key.

    Looked up, first match wins: the ``registries`` given (``--registry``);
    the registries configured for the alias (``settings``: user config /
    profile); the job records under ``settings.home`` (servers of that
    alias with a URL, ready ones first). Without ``settings`` only the
    registries given are looked at. Several entries are replicas: requests are spread
    over them. The key is read from the environment variable each entry
    names (never from the file itself).
    """
    from pbsvllm.errors import JobNotFoundError
    from pbsvllm.registry import open_registries

    env = os.environ if environ is None else environ
    tried: List[str] = []
    regs = list(registries)
    explicit = len(regs)
    if not regs and settings is not None:
        regs = list(settings.registries_for(alias))
    for i, reg in enumerate(open_registries(regs)):
        tried.append(reg.path)
        if not os.path.exists(reg.path):
            if i < explicit:
                raise ConfigError(f"registry {reg.path} (given with --registry) does not exist")
            continue
        found = reg.lookup(alias)
        if found:
            return _target_from_entries(alias, found, f"registry {reg.path}", env)
    if not explicit and settings is not None:
        from pbsvllm.jobs import JobStore
        from pbsvllm.models import ServerState

        store = JobStore(settings.home)
        tried.append(f"job records in {store.dir}")
        records = [r for r in store.list() if r.alias == alias and r.url]
        ready = [r for r in records if r.server_state == ServerState.READY]
        chosen = ready or records[-1:]
        if chosen:
            endpoints = tuple(
                Endpoint(normalize_base_url(r.url), r.served_model_name or r.model,
                         env.get(r.api_key_env or DEFAULT_API_KEY_ENV) or None)
                for r in chosen
            )
            state = "ready" if ready else f"server state {chosen[0].server_state.value}"
            return Target(alias, endpoints, f"job record(s) {', '.join(r.job_id for r in chosen)} ({state})",
                          chosen[0].api_key_env or DEFAULT_API_KEY_ENV)
    raise JobNotFoundError(
        f"no endpoint is known for alias {alias!r}"
        + (f" (looked in {'; '.join(tried)})" if tried else ""),
        hint="wait until `pbsvllm status` shows it ready, pass --registry FILE, or give the URL with --model NAME",
    )


def _target_from_entries(alias: str, entries: Sequence[Any], source: str, env: Mapping[str, str]) -> Target:
    key_env = entries[0].key or DEFAULT_API_KEY_ENV
    endpoints = tuple(
        Endpoint(normalize_base_url(e.url), e.model, env.get(e.key or DEFAULT_API_KEY_ENV) or None)
        for e in entries
    )
    return Target(name=alias, endpoints=endpoints, source=source, api_key_env=key_env)


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class BenchRequest:
    index: int
    prompt: str
    max_tokens: int


def synthetic_requests(n: int, input_len: int, output_len: int, seed: int) -> List[BenchRequest]:
    """``n`` prompts of ``input_len`` words each, the same for the same seed."""
    if n < 1:
        raise ConfigError(f"-n must be at least 1 (got {n})")
    if input_len < 1 or output_len < 1:
        raise ConfigError(
            f"--input-len and --output-len must be at least 1 (got {input_len} and {output_len})"
        )
    rng = random.Random(seed)
    return [
        BenchRequest(i, " ".join(rng.choice(_WORDS) for _ in range(input_len)), output_len)
        for i in range(n)
    ]


def parse_prompts(text: str, source: str, n: int, output_len: int) -> List[BenchRequest]:
    """Requests from JSONL text: one prompt per line, used in file order, repeated to ``n``.

    A line is a JSON string, or an object with ``"prompt"`` (a string) and
    optionally ``"max_tokens"`` (or ``"output_len"``) overriding ``--output-len``.
    Blank lines are ignored.
    """
    if n < 1:
        raise ConfigError(f"-n must be at least 1 (got {n})")
    prompts: List[Tuple[str, int]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise ConfigError(
                f"{source}:{lineno}: not valid JSON ({why}); each line must be a JSON string "
                f'or an object like {{"prompt": "...", "max_tokens": 64}}'
            ) from None
        if isinstance(obj, str):
            prompt, max_tokens = obj, output_len
        elif isinstance(obj, dict) and isinstance(obj.get("prompt"), str):
            prompt = obj["prompt"]
            asked = obj.get("max_tokens", obj.get("output_len", output_len))
            if not isinstance(asked, int) or isinstance(asked, bool) or asked < 1:
                raise ConfigError(f"{source}:{lineno}: max_tokens must be a positive integer, got {asked!r}")
            max_tokens = asked
        else:
            raise ConfigError(
                f'{source}:{lineno}: expected a JSON string or an object with a "prompt" string, '
                f"got {type(obj).__name__}"
            )
        prompts.append((prompt, max_tokens))
    if not prompts:
        raise ConfigError(f"{source}: no prompts (the file is empty); put one JSON prompt per line")
    return [BenchRequest(i, *prompts[i % len(prompts)]) for i in range(n)]


def request_body(req: BenchRequest, model: str, ignore_eos: bool = True) -> Dict[str, Any]:
    """The ``/v1/completions`` body for one request (streaming, usage included)."""
    body: Dict[str, Any] = {
        "model": model,
        "prompt": req.prompt,
        "max_tokens": req.max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if ignore_eos:
        # vLLM extension: generate exactly max_tokens, so output length is controlled.
        body["ignore_eos"] = True
    return body


# --------------------------------------------------------------------------- results and statistics


@dataclass
class RequestResult:
    index: int
    ok: bool
    latency_s: float
    ttft_s: Optional[float] = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    error: Optional[str] = None
    detail: str = ""


@dataclass
class LevelReport:
    concurrency: int
    requests: int
    ok: int
    errors: Dict[str, int]
    duration_s: float
    requests_per_s: float
    output_tokens_per_s: float
    ttft_p50_s: Optional[float]
    ttft_p99_s: Optional[float]
    latency_p50_s: Optional[float]
    latency_p99_s: Optional[float]
    mean_prompt_tokens: Optional[float]
    mean_output_tokens: Optional[float]
    error_examples: Dict[str, str] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """The q-th percentile (0..100) with linear interpolation; None for no values."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def summarize(results: Sequence[RequestResult], concurrency: int, duration_s: float) -> LevelReport:
    """Figures for one concurrency level; throughput counts successful requests only."""
    ok = [r for r in results if r.ok]
    errors: Dict[str, int] = {}
    examples: Dict[str, str] = {}
    for r in results:
        if not r.ok:
            kind = r.error or "unknown"
            errors[kind] = errors.get(kind, 0) + 1
            examples.setdefault(kind, r.detail)
    dur = max(duration_s, 1e-9)
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    lats = [r.latency_s for r in ok]
    return LevelReport(
        concurrency=concurrency,
        requests=len(results),
        ok=len(ok),
        errors=dict(sorted(errors.items())),
        duration_s=duration_s,
        requests_per_s=len(ok) / dur,
        output_tokens_per_s=sum(r.output_tokens for r in ok) / dur,
        ttft_p50_s=percentile(ttfts, 50),
        ttft_p99_s=percentile(ttfts, 99),
        latency_p50_s=percentile(lats, 50),
        latency_p99_s=percentile(lats, 99),
        mean_prompt_tokens=(sum(r.prompt_tokens for r in ok) / len(ok)) if ok else None,
        mean_output_tokens=(sum(r.output_tokens for r in ok) / len(ok)) if ok else None,
        error_examples=examples,
    )


def ratios(base: LevelReport, other: LevelReport) -> Dict[str, Optional[float]]:
    """other ÷ base for every figure (None where base is zero or missing)."""
    out: Dict[str, Optional[float]] = {}
    for key, _title, _unit, _hib in FIGURES:
        a, b = getattr(base, key), getattr(other, key)
        out[key] = (b / a) if (a and b is not None) else None
    return out


# --------------------------------------------------------------------------- stream parsing


class BadBody(Exception):
    """The answer is not an OpenAI completion stream."""


class StreamError(Exception):
    """The stream carried an error object."""


class StreamParser:
    """Reads the server-sent-event lines of a streamed completion.

    ``feed(line)`` returns True when the chunk carried the first generated
    text (the moment that defines time to first token). ``finish()`` checks
    the stream ended properly and returns ``(prompt_tokens, output_tokens)``,
    taken from the final usage chunk or, if the server sent none, from the
    number of text chunks.
    """

    def __init__(self) -> None:
        self.done = False
        self.first_seen = False
        self.text_chunks = 0
        self.usage: Optional[Dict[str, Any]] = None

    def feed(self, line: str) -> bool:
        line = line.strip()
        if not line or line.startswith(":") or self.done:
            return False
        if not line.startswith("data:"):
            if line.startswith(("event:", "id:", "retry:")):
                return False
            raise BadBody(f"unexpected line in the event stream: {line[:80]!r}")
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return False
        try:
            obj = json.loads(data)
        except ValueError:
            raise BadBody(f"event is not JSON: {data[:80]!r}") from None
        if not isinstance(obj, dict):
            raise BadBody(f"event is not a JSON object: {data[:80]!r}")
        if obj.get("error"):
            err = obj["error"]
            msg = err.get("message", err) if isinstance(err, dict) else err
            raise StreamError(str(msg)[:200])
        if isinstance(obj.get("usage"), dict):
            self.usage = obj["usage"]
        choices = obj.get("choices")
        if choices is None:
            if self.usage is None:
                raise BadBody(f"event has neither choices nor usage: {data[:80]!r}")
            return False
        if not isinstance(choices, list):
            raise BadBody(f"choices is not a list: {data[:80]!r}")
        first = False
        for ch in choices:
            if not isinstance(ch, dict):
                raise BadBody(f"a choice is not an object: {data[:80]!r}")
            text = ch.get("text")
            if text is None and isinstance(ch.get("delta"), dict):
                text = ch["delta"].get("content")
            if text:
                self.text_chunks += 1
                if not self.first_seen:
                    self.first_seen = first = True
        return first

    def finish(self) -> Tuple[int, int]:
        if not self.done:
            raise BadBody("the stream ended without 'data: [DONE]'")
        if self.usage is not None:
            try:
                return int(self.usage.get("prompt_tokens") or 0), int(self.usage.get("completion_tokens") or 0)
            except (TypeError, ValueError):
                raise BadBody(f"usage has non-numeric token counts: {self.usage!r}") from None
        if not self.text_chunks:
            raise BadBody("the stream carried no text and no usage")
        return 0, self.text_chunks


# --------------------------------------------------------------------------- the report


@dataclass
class TargetRun:
    target: Target
    levels: List[LevelReport]


@dataclass
class BenchReport:
    settings: Dict[str, Any]
    runs: List[TargetRun]
    started_at: str = ""

    def comparison(self) -> List[Dict[str, Any]]:
        if len(self.runs) < 2:
            return []
        base, other = self.runs[0], self.runs[1]
        return [
            {"concurrency": a.concurrency, "ratios": ratios(a, b)}
            for a, b in zip(base.levels, other.levels)
        ]

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "started_at": self.started_at,
            "settings": self.settings,
            "runs": [
                {"target": run.target.to_json(), "levels": [lv.to_json() for lv in run.levels]}
                for run in self.runs
            ],
        }
        if len(self.runs) > 1:
            out["comparison"] = {
                "ratio": f"{self.runs[1].target.name} / {self.runs[0].target.name}",
                "levels": self.comparison(),
            }
        return out

    def total_ok(self) -> int:
        return sum(lv.ok for run in self.runs for lv in run.levels)

    def total_requests(self) -> int:
        return sum(lv.requests for run in self.runs for lv in run.levels)


def _fmt(value: Optional[float], key: str) -> str:
    if value is None:
        return "-"
    if key.endswith("_s") and not key.endswith("per_s"):
        return f"{value * 1000:.0f}ms" if value < 10 else f"{value:.1f}s"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _fmt_errors(errors: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in errors.items()) or "0"


def _table(rows: List[List[str]]) -> List[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def format_table(report: BenchReport) -> str:
    """The terminal report: one table per target, then the ratio table for --vs."""
    s = report.settings
    lines: List[str] = []
    head = ["conc", "ok/sent"] + [title for _k, title, _u, _h in FIGURES] + ["errors"]
    for run in report.runs:
        t = run.target
        urls = ", ".join(e.url for e in t.endpoints)
        model = t.endpoints[0].model if t.endpoints else "?"
        lines.append(f"{t.name}  ({urls}, model {model}, from {t.source})")
        rows = [head]
        for lv in run.levels:
            rows.append([str(lv.concurrency), f"{lv.ok}/{lv.requests}"]
                        + [_fmt(getattr(lv, k), k) for k, _t, _u, _h in FIGURES]
                        + [_fmt_errors(lv.errors)])
        lines.extend("  " + r for r in _table(rows))
        for lv in run.levels:
            for kind, example in lv.error_examples.items():
                if example:
                    lines.append(f"  c={lv.concurrency} {kind}: {example}")
        lines.append("")
    if len(report.runs) > 1:
        a, b = report.runs[0].target.name, report.runs[1].target.name
        lines.append(f"ratio {b} / {a}  (throughput: >1 means {b} is faster; latency: <1 means {b} is faster)")
        rows = [["conc"] + [title for _k, title, _u, _h in FIGURES]]
        for cmp in report.comparison():
            rows.append([str(cmp["concurrency"])]
                        + [("-" if cmp["ratios"][k] is None else f"{cmp['ratios'][k]:.2f}x")
                           for k, _t, _u, _h in FIGURES])
        lines.extend("  " + r for r in _table(rows))
        lines.append("")
    prompts = s.get("prompts_file") or f"synthetic ~{s.get('input_len')} words, seed {s.get('seed')}"
    lines.append(f"{s.get('n')} requests per level; prompts: {prompts}; max_tokens {s.get('output_len')}; "
                 f"timeout {s.get('timeout_s')}s; ignore_eos {s.get('ignore_eos')}")
    return "\n".join(lines)


CSV_COLUMNS = (
    ["target", "url", "concurrency", "requests", "ok", "duration_s"]
    + [k for k, _t, _u, _h in FIGURES]
    + ["mean_prompt_tokens", "mean_output_tokens", "errors"]
)


def to_csv(report: BenchReport) -> str:
    """One row per target and level; with --vs, extra rows whose target is ``ratio``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for run in report.runs:
        for lv in run.levels:
            w.writerow(
                [run.target.name, " ".join(e.url for e in run.target.endpoints), lv.concurrency,
                 lv.requests, lv.ok, f"{lv.duration_s:.4f}"]
                + ["" if getattr(lv, k) is None else f"{getattr(lv, k):.6g}" for k, _t, _u, _h in FIGURES]
                + ["" if lv.mean_prompt_tokens is None else f"{lv.mean_prompt_tokens:.1f}",
                   "" if lv.mean_output_tokens is None else f"{lv.mean_output_tokens:.1f}",
                   ";".join(f"{k}={v}" for k, v in lv.errors.items())]
            )
    for cmp in report.comparison():
        w.writerow(["ratio", "", cmp["concurrency"], "", "", ""]
                   + ["" if cmp["ratios"][k] is None else f"{cmp['ratios'][k]:.4f}" for k, _t, _u, _h in FIGURES]
                   + ["", "", ""])
    return buf.getvalue()


# --------------------------------------------------------------------------- the I/O edge

ProgressFn = Callable[[str, int, int, int], None]  # (label, done, total, errors)


async def _one_request(client: Any, endpoint: Endpoint, req: BenchRequest, timeout_s: float,
                       ignore_eos: bool) -> RequestResult:
    import httpx

    body = request_body(req, endpoint.model, ignore_eos)
    headers = {"Accept": "text/event-stream"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    start = time.perf_counter()
    ttft: List[float] = []

    async def stream() -> RequestResult:
        parser = StreamParser()
        async with client.stream("POST", endpoint.url + "/completions", json=body, headers=headers) as resp:
            if resp.status_code != 200:
                raw = await resp.aread()
                text = raw[:300].decode("utf-8", "replace").strip().replace("\n", " ")
                return RequestResult(req.index, False, time.perf_counter() - start,
                                     error=f"http_{resp.status_code}", detail=text[:200])
            async for line in resp.aiter_lines():
                if parser.feed(line) and not ttft:
                    ttft.append(time.perf_counter() - start)
        prompt_tokens, output_tokens = parser.finish()
        return RequestResult(req.index, True, time.perf_counter() - start, ttft[0] if ttft else None,
                             prompt_tokens, output_tokens)

    def failed(kind: str, exc: BaseException) -> RequestResult:
        detail = f"{type(exc).__name__}: {exc}".strip()
        return RequestResult(req.index, False, time.perf_counter() - start, error=kind, detail=detail[:200])

    try:
        return await asyncio.wait_for(stream(), timeout_s)
    except (asyncio.TimeoutError, httpx.TimeoutException) as exc:
        return failed("timeout", exc if str(exc) else TimeoutError(f"no complete answer within {timeout_s:g}s"))
    except (BadBody, httpx.DecodingError, UnicodeDecodeError) as exc:
        return failed("bad_body", exc)
    except StreamError as exc:
        return failed("stream_error", exc)
    except httpx.TransportError as exc:  # connect/read/write errors, protocol errors (peer closed)
        return failed("connection", exc)


async def _run_level(target: Target, requests: Sequence[BenchRequest], concurrency: int, timeout_s: float,
                     ignore_eos: bool, progress: Optional[ProgressFn], label: str) -> Tuple[List[RequestResult], float]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(timeout_s)
    results: List[Optional[RequestResult]] = [None] * len(requests)
    next_index = 0
    done = 0
    errors = 0
    eps = target.endpoints

    # trust_env=False: talk to cluster nodes directly, never through HTTP(S)_PROXY.
    async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as client:

        async def worker() -> None:
            nonlocal next_index, done, errors
            while next_index < len(requests):
                i = next_index
                next_index += 1
                res = await _one_request(client, eps[i % len(eps)], requests[i], timeout_s, ignore_eos)
                results[i] = res
                done += 1
                errors += 0 if res.ok else 1
                if progress is not None:
                    progress(label, done, len(requests), errors)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(requests)))))
        duration = time.perf_counter() - start
    return [r for r in results if r is not None], duration


def run_bench(
    targets: Sequence[Target],
    requests: Sequence[BenchRequest],
    concurrencies: Sequence[int],
    *,
    timeout_s: float = 60.0,
    ignore_eos: bool = True,
    warmup: int = 0,
    settings: Optional[Dict[str, Any]] = None,
    progress: Optional[ProgressFn] = None,
) -> BenchReport:
    """Run every concurrency level against every target (interleaved per level).

    Targets take turns at each level (A c=1, B c=1, A c=8, ...) so slow drift
    of a shared machine affects both alike. ``warmup`` requests (the first
    ones of the list, at concurrency 1) go to each target first and are not
    counted.
    """
    if not targets:
        raise ConfigError("nothing to benchmark: no target given")
    for t in targets:
        if not t.endpoints:
            raise PbsvllmError(f"{t.name} has no endpoint to send requests to ({t.source})")
    if not concurrencies or any(c < 1 for c in concurrencies):
        raise ConfigError(f"-c needs positive concurrency levels, got {list(concurrencies)}")
    if timeout_s <= 0:
        raise ConfigError(f"--timeout must be positive, got {timeout_s}")

    async def main() -> List[TargetRun]:
        runs = [TargetRun(t, []) for t in targets]
        for run in runs:
            if warmup:
                await _run_level(run.target, list(requests[:warmup]), 1, timeout_s, ignore_eos, progress,
                                 f"{run.target.name} warm-up")
        for c in concurrencies:
            for run in runs:
                label = f"{run.target.name} c={c}"
                results, duration = await _run_level(run.target, requests, c, timeout_s, ignore_eos,
                                                     progress, label)
                run.levels.append(summarize(results, c, duration))
        return runs

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    runs = asyncio.run(main())
    return BenchReport(settings=dict(settings or {}), runs=runs, started_at=started)


def parse_concurrency(text: str) -> List[int]:
    """``"1,8,64"`` -> ``[1, 8, 64]``."""
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"-c takes comma-separated positive integers like 1,8,64, got {text!r}") from None
    if not levels or any(c < 1 for c in levels):
        raise ConfigError(f"-c takes comma-separated positive integers like 1,8,64, got {text!r}")
    return levels
