"""The streaming scanner: feed lines in order, read :class:`LogFacts`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from pbsvllm.vllmlog.errors import _ERROR_RULES
from pbsvllm.vllmlog.facts import LogFacts
from pbsvllm.vllmlog.lines import LogLine, _f, _i, split_line, strip_line
from pbsvllm.vllmlog.multinode import NEEDLES as MULTINODE_NEEDLES
from pbsvllm.vllmlog.phases import _BANNER_VERSION_RE, _PHASE_RULES, detect_phase
from pbsvllm.vllmlog.reprs import _clean_dtype, _scalar, _to_bool, _to_float, _to_int, parse_dict_repr, parse_kv_repr
from pbsvllm.vllmlog.stats import _V0_PREFIX_RE, EngineStats, StatsRow, StatsSample, StatsSeries, parse_stats_line

_CFG_VERSION_RE = re.compile(r"LLM engine \(v([^)\s]+)\)")
_SERVER_VERSION_RE = re.compile(r"vLLM (?:API )?server version:? v?(\d+\.\d+[\w.+\-]*)")
_SERVING_MODEL_RE = re.compile(r"serving model (\S+)")
_BANNER_MODEL_RE = re.compile(r"[\u2580-\u259f ] model +(\S+)")
_CHUNKED_RE = re.compile(r"Chunked prefill is enabled with max_num_batched_tokens=([\d,]+)")
_MAX_MODEL_LEN_RE = re.compile(r"Using max model len ([\d,]+)")
_KV_SIZE_RE = re.compile(r"(\w+) KV cache size: ([\d,]+) tokens")
_MAX_CONC_RE = re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d,]*\.?\d+)x")
_BLOCKS_RE = re.compile(r"# GPU blocks: ([\d,]+), # CPU blocks: ([\d,]+)")
_GPU_BLOCKS_RE = re.compile(r"# (\w+) blocks: ([\d,]+)")
_AVAIL_KV_RE = re.compile(r"Available KV cache memory: ([\d.]+) ?GiB")
_CPU_KV_SET_RE = re.compile(r"Explicitly set \(([\d.]+)/[\d.]+\) GiB for KV cache")
_LOAD_RE = re.compile(r"Model loading took ([\d.]+) ?GiB(?: memory)? and ([\d.]+) ?s")
_LOAD_V0_RE = re.compile(r"Loading model weights took ([\d.]+) ?GB")
_GRAPH_RE = re.compile(r"Graph capturing finished in ([\d.]+) secs?, took ([\d.\-]+) GiB")
_COMPILE_RE = re.compile(r"torch\.compile takes ([\d.]+) s in total")
_INIT_RE = re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) ?s")
_API_COUNT_RE = re.compile(r"api_server_count to data_parallel_size \((\d+)\)")

#: Substrings that make a line worth looking at once startup is over. The
#: fast file path (:func:`scan_bytes`) searches exactly these with
#: ``bytes.find``; the line path checks the same ones, so both give the same
#: facts.
STEADY_KEYWORDS = (
    "Avg prompt throughput: ",  # every stats line, V0 and V1
    "rror",  # exceptions: OutOfMemoryError, OSError, EngineDeadError, "CUDA error: out of memory"...
    "hutdown",  # shutdown triggered / Application shutdown complete
    "with config",  # a restart: the engine config line
    "non-default args",  # a restart (>= 0.10.2)
    "Namespace(",  # a restart (<= 0.9: args: Namespace(...))
    "Prefix cache hit rate: GPU",  # V0's second stats line
    "preempted by",  # V0 preemption warnings
)


def steady_keywords(facts: LogFacts) -> Tuple[str, ...]:
    """The :data:`STEADY_KEYWORDS` that can occur in this server's log: the
    V0-only lines are left out for a V1 engine, the other version's restart
    line for a known version. Fewer keywords, fewer passes over a big file."""
    v: Optional[Tuple[int, ...]] = None
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", facts.vllm_version or "")
    if m:
        v = (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    out = ["Avg prompt throughput: ", "rror", "hutdown", "with config"]
    if v is None or v >= (0, 10, 0):
        out.append("non-default args")
    if v is None or v < (0, 10, 2):
        out.append("Namespace(")
    if facts.engine_version != "V1":
        out += ["Prefix cache hit rate: GPU", "preempted by"]
    return tuple(out)


# Every substring any handler of LogScanner._examine looks for (errors,
# phases, config, KV, timings, warnings): a line holding none is skipped
# without being taken apart. tests/unit/test_vllmlog_props.py checks the samples give
# the same facts with the prefilter off.
_HANDLER_NEEDLES = (
    "EngineDeadError",
    "fatal error",
    "shutdown triggered",
    "received signal",
    "Prefix cache hit rate",
    "with config:",
    "non-default args:",
    "args: Namespace(",
    "version",
    " model ",
    "KV cache",
    "blocks:",
    "Maximum concurrency",
    "took",
    "Chunked prefill is enabled",
    "Using max model len",
    "llreduce",
    "Cudagraph is disabled",
    "Enforce eager set",
    "CUDA graph is disabled",
    "disabling stats logging",
    "Defaulting api_server_count",
    "preempted by",
    "EngineCore_DP",
    "cpu.py:",
    "cpu_worker.py:",
    "cpu_model_runner.py:",
    "gpu_worker.py:",
    "gpu_model_runner.py:",
    "cuda.py:",
) + MULTINODE_NEEDLES
_PLATFORM_SOURCES = (
    ("cpu.py:", "cpu"),
    ("cpu_worker.py:", "cpu"),
    ("cpu_model_runner.py:", "cpu"),
    ("gpu_worker.py:", "cuda"),
    ("gpu_model_runner.py:", "cuda"),
    ("cuda.py:", "cuda"),
)
_ALL_NEEDLES = sorted(
    set(_HANDLER_NEEDLES)
    | {n for _, needles, _ in _ERROR_RULES for n in needles}
    | {n for _, needles in _PHASE_RULES for n in needles},
    key=len,
    reverse=True,
)


def _trie_regex(words: List[str]) -> str:
    """One regex matching any of ``words``, factored by common prefixes (a
    trie), so the engine tries one branch per position instead of all."""
    trie: Dict[str, Any] = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: Dict[str, Any]) -> str:
        if "" in node:
            return ""  # a shorter word ends here: matching it is enough for a prefilter
        alts = [re.escape(ch) + build(child) for ch, child in sorted(node.items())]
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return build(trie)


_PREFILTER_RE = re.compile(_trie_regex(_ALL_NEEDLES))


class LogScanner:
    """Feed vLLM log lines in order; read :attr:`facts` at any time.

    Until the server is up (``Application startup complete.`` or the first
    stats line) every line is examined; after that only lines that hold one
    of :data:`STEADY_KEYWORDS` (stats, errors, shutdown, a restart), which is
    what keeps a multi-GB log fast to read.
    """

    def __init__(self) -> None:
        self.facts = LogFacts()
        self._steady = False
        self.steady_kw: Tuple[str, ...] = STEADY_KEYWORDS
        self.steady_bytes: Tuple[bytes, ...] = ()
        self._series_by_digits: Dict[bytes, Tuple[int, str, StatsSeries]] = {}
        self._last_stats_key: Optional[str] = None
        self._last_stats_busy = False

    @property
    def steady(self) -> bool:
        """True once the server is up: only lines holding :attr:`steady_kw`
        are examined from then on."""
        return self._steady

    @steady.setter
    def steady(self, value: bool) -> None:
        if value and not self._steady:
            self.steady_kw = steady_keywords(self.facts)
            # the bytes path finds stats lines with one regex, the rest with bytes.find
            self.steady_bytes = tuple(k.encode() for k in self.steady_kw[1:])
        self._steady = value

    # -- public -----------------------------------------------------------
    def feed(self, line: str, line_no: Optional[int] = None) -> None:
        """Examine one line (with or without its newline)."""
        f = self.facts
        if line_no is None:
            line_no = f.lines + 1
        if line_no > f.lines:
            f.lines = line_no
        if self._steady:
            for k in self.steady_kw:
                if k in line:
                    break
            else:
                return
        try:
            self._examine(line, line_no)
        except Exception as exc:  # a parser that stops on odd text is worse than a miss
            f.parse_problems += 1
            if f.first_parse_problem is None:
                f.first_parse_problem = f"line {line_no}: {type(exc).__name__}: {exc}"

    def feed_stats(self, st: EngineStats, line_no: int) -> None:
        """Record a stats line parsed elsewhere (the fast bytes path)."""
        if line_no > self.facts.lines:
            self.facts.lines = line_no
        self._add_stats(st, line_no)

    def add_stats_rows(self, data: bytes, rows: Sequence[Tuple[Optional[int], re.Match[bytes]]], base_pos: int,
                       base_line: int) -> None:
        """Record common-shape ``Engine NNN:`` stats lines found by the bytes
        path: ``(line start or None, match)`` in file order; the line starting at
        ``base_pos`` (<= every start) is line ``base_line``. The same result
        as :meth:`feed_stats` line by line, through the same aggregation
        (:meth:`StatsSeries.add_rows`), without building an
        :class:`EngineStats` or counting the line number for the lines no
        aggregate keeps (most)."""
        f = self.facts
        stats = f.stats
        top_engine = -1
        count = data.count
        at_pos, at_line = base_pos, base_line

        def make(st: Optional[int], m: re.Match[bytes]) -> StatsSample:
            nonlocal at_pos, at_line
            if st is None:
                st = data.rfind(b"\n", 0, m.start()) + 1
            # count from the previous line asked for (mostly just before this one)
            if st >= at_pos:
                at_line += count(b"\n", at_pos, st)
            else:
                at_line -= count(b"\n", st, at_pos)
            at_pos = st
            pt, gt, run, wait, dev, kv, pre = m.groups()
            eng = int(data[m.start() - 5 : m.start() - 2])
            return StatsSample(at_line, EngineStats(
                eng, float(pt.replace(b",", b"")), float(gt.replace(b",", b"")), int(run), int(wait), None,
                float(kv), dev.decode(), float(pre) if pre is not None else None,
                raw=data[st:m.end()].decode("utf-8", "replace").rstrip("\r")))

        def sampler(grows: List[Tuple[Optional[int], re.Match[bytes]]]) -> Callable[[int], StatsSample]:
            return lambda i: make(*grows[i])

        by_digits = self._series_by_digits
        # group by engine (file order kept within each), then aggregate each engine's rows in one call
        groups: Dict[bytes, List[Tuple[Optional[int], re.Match[bytes]]]] = {}
        for row in rows:
            at = row[1].start()
            digits = data[at - 5 : at - 2]
            g = groups.get(digits)
            if g is None:
                groups[digits] = [row]
            else:
                g.append(row)
        for digits, grows in groups.items():
            hit = by_digits.get(digits)
            if hit is None or stats.get(hit[1]) is not hit[2]:
                eng = int(digits)
                k = str(eng)
                ser = stats.get(k)
                if ser is None:
                    ser = stats[k] = StatsSeries()
                hit = by_digits[digits] = (eng, k, ser)
            eng, k, ser = hit
            if eng > top_engine:
                top_engine = eng
            # (bytes.replace gives the same object back when there is no comma: cheap)
            values: List[StatsRow] = [
                (float(pt.replace(b",", b"")), float(gt.replace(b",", b"")), int(run), int(wait), float(kv_b),
                 None if pre_b is None else float(pre_b), None)
                for pt, gt, run, wait, _dev, kv_b, pre_b in [m.groups() for _st, m in grows]
            ]
            ser.add_rows(values, sampler(grows))
        # the stats line that came last in the file decides what "last" means across engines
        m_last = rows[-1][1]
        key = str(int(data[m_last.start() - 5 : m_last.start() - 2]))
        gl = m_last.groups()
        busy = int(gl[2]) > 0 or float(gl[1].replace(b",", b"")) > 0 or float(gl[0].replace(b",", b"")) > 0
        last_item = stats[key].last
        f.engine_stats_lines += len(rows)
        if last_item is not None:
            if last_item.line_no > f.lines:
                f.lines = last_item.line_no
            f.last_stats = last_item.stats
            if f.kv_cache_device is None:
                f.kv_cache_device = rows[0][1].group(5).decode()
        self._last_stats_key = key
        self._last_stats_busy = busy
        if top_engine >= 1 and (f.data_parallel_size is None or f.data_parallel_size < top_engine + 1):
            f.data_parallel_size = top_engine + 1
        self.steady = True

    def advance_to(self, line_no: int) -> None:
        """Record that lines up to ``line_no`` were read (skipped ones too)."""
        if line_no > self.facts.lines:
            self.facts.lines = line_no

    # -- internals --------------------------------------------------------
    def _examine(self, raw: str, line_no: int) -> None:
        f = self.facts
        # stats lines first: by far the most frequent interesting line
        if "throughput:" in raw:
            st = parse_stats_line(raw)
            if st is not None:
                self._add_stats(st, line_no)
                return
        if _PREFILTER_RE.search(raw) is None:
            return
        ll = split_line(raw)
        msg = ll.message
        if not msg:
            return
        text = strip_line(raw)

        # errors first: they matter most and a line may also be a phase line
        kind = f.errors.feed(msg, line_no, text)
        if kind is not None:
            f.add_evidence("error:" + kind, line_no, text)
        elif "EngineDeadError" in msg or "encountered a fatal error" in msg:
            f.add_evidence("engine_dead", line_no, text)

        if any(n in raw for n in MULTINODE_NEEDLES):
            f.multinode.feed(raw, line_no, text)

        phase = detect_phase(msg)
        if phase is not None:
            if phase not in f.phases:
                f.phases[phase] = line_no
            f.phase = phase
            if phase == "ready":
                f.ready_count += 1
                f.add_evidence("ready", line_no, text)
                self.steady = True
            elif phase == "shutting_down":
                f.add_evidence("shutdown", line_no, text)

        if "Prefix cache hit rate: GPU" in msg or (
            msg.startswith("Prefix cache hit rate:") and self._last_stats_key is not None
        ):
            m = _V0_PREFIX_RE.search(msg)
            if m and self._last_stats_key is not None:
                f.stats[self._last_stats_key].add_prefix(_f(m.group(1)), self._last_stats_busy)
            return

        if "with config:" in msg:
            self._config_line(msg, line_no, text)
        elif "non-default args:" in msg:
            self._args_dict(msg, line_no, text)
        elif "args: Namespace(" in msg:
            self._args_namespace(msg, line_no, text)

        if "version" in msg:
            m = _SERVER_VERSION_RE.search(msg) or _BANNER_VERSION_RE.search(msg)
            if m:
                f.vllm_version = m.group(1)
                f.add_evidence("version", line_no, text)
            m2 = _SERVING_MODEL_RE.search(msg)
            if m2 and f.model is None:
                f.model = m2.group(1)
        if " model " in msg and f.model is None:
            m = _BANNER_MODEL_RE.search(msg)
            if m:
                f.model = m.group(1)

        if "KV cache" in msg or "blocks:" in msg or "Maximum concurrency" in msg:
            self._kv_lines(msg, line_no, text, ll)
        if "took" in msg or "torch.compile takes" in msg:
            self._timings(msg, line_no, text)
        if "Chunked prefill is enabled" in msg:
            m = _CHUNKED_RE.search(msg)
            if m:
                f.enable_chunked_prefill = True
                if "max_num_batched_tokens" not in f.args:
                    f.max_num_batched_tokens = _i(m.group(1))
                f.add_evidence("chunked_prefill", line_no, text)
        if "Using max model len" in msg:
            m = _MAX_MODEL_LEN_RE.search(msg)
            if m:
                f.max_model_len = _i(m.group(1))
                f.add_evidence("max_model_len", line_no, text)
        if "llreduce" in msg and "disabled" in msg:
            self._allreduce(msg, line_no, text)
        if "Cudagraph is disabled" in msg or "Enforce eager set" in msg or "CUDA graph is disabled" in msg:
            f.cudagraph_disabled = True
            f.add_evidence("eager", line_no, text)
        if "disabling stats logging" in msg:
            f.stats_logging_disabled = True
            f.add_evidence("stats_disabled", line_no, text)
        if "Defaulting api_server_count" in msg:
            m = _API_COUNT_RE.search(msg)
            if m:
                f.api_server_count = int(m.group(1))
        if "preempted by" in msg and "KV cache" in msg:
            f.v0_preemption_warnings += 1
            f.add_evidence("preemption", line_no, text)
        if f.platform_hint is None and ll.source:
            for src, plat in _PLATFORM_SOURCES:
                if ll.source.startswith(src):
                    f.platform_hint = plat
                    break
        if ll.process.startswith("EngineCore_DP") and ll.rank is not None:
            n = ll.rank + 1
            if f.data_parallel_size is None or f.data_parallel_size < n:
                if "data_parallel_size" not in f.args and "data_parallel_size" not in f.engine_config:
                    f.data_parallel_size = n

    def _add_stats(self, st: EngineStats, line_no: int) -> None:
        f = self.facts
        key = "all" if st.engine is None else str(st.engine)
        series = f.stats.get(key)
        if series is None:
            series = f.stats[key] = StatsSeries()
        series.add(st, line_no)
        f.engine_stats_lines += 1
        f.last_stats = st
        self._last_stats_key = key
        self._last_stats_busy = st.running > 0 or st.generation_tokens_per_s > 0 or st.prompt_tokens_per_s > 0
        if st.engine is not None and st.engine >= 1:
            n = st.engine + 1
            if f.data_parallel_size is None or f.data_parallel_size < n:
                f.data_parallel_size = n
        if f.kv_cache_device is None:
            f.kv_cache_device = st.kv_device
        self.steady = True

    def _config_line(self, msg: str, line_no: int, text: str) -> None:
        f = self.facts
        head, _, body = msg.partition("with config:")
        if "Dumping input data" in head:
            return
        m = _CFG_VERSION_RE.search(head)
        if m:
            f.vllm_version = m.group(1)
        if "V1 LLM engine" in head:
            f.engine_version = "V1"
        elif "V0 LLM engine" in head or "an LLM engine" in head:
            f.engine_version = "V0"
        self._start_seen()
        f.add_evidence("config", line_no, text)
        cfg = parse_kv_repr(body)
        f.engine_config = {k: v for k, v in cfg.items() if _scalar(v)}
        c = f.engine_config
        if isinstance(c.get("model"), str):
            f.model = c["model"]
        if c.get("served_model_name") not in (None, ""):
            f.served_model_name = str(c["served_model_name"])
        for key, attr in (
            ("tensor_parallel_size", "tensor_parallel_size"),
            ("pipeline_parallel_size", "pipeline_parallel_size"),
            ("data_parallel_size", "data_parallel_size"),
            ("max_seq_len", "max_model_len"),
        ):
            v = _to_int(c.get(key))
            if v is not None:
                setattr(f, attr, v)
        ee = _to_bool(c.get("enforce_eager"))
        if ee is not None:
            f.enforce_eager = ee
        if "dtype" in c:
            f.dtype = _clean_dtype(c["dtype"])
        if "kv_cache_dtype" in c:
            f.kv_cache_dtype = _clean_dtype(c["kv_cache_dtype"])
        if "quantization" in c:
            q = c["quantization"]
            f.quantization = None if q in (None, "None") else str(q)
        for key in ("enable_prefix_caching",):
            b = _to_bool(c.get(key))
            if b is not None:
                f.enable_prefix_caching = b
        for key in ("enable_chunked_prefill", "chunked_prefill_enabled"):
            b = _to_bool(c.get(key))
            if b is not None:
                f.enable_chunked_prefill = b
        if "device_config" in c:
            f.device = str(c["device_config"])
        bs = _to_int(c.get("block_size"))
        if bs:
            f.block_size = bs
        self._apply_args()

    def _start_seen(self) -> None:
        """A startup line: after the server was up, it is a restart."""
        f = self.facts
        if self.steady:
            f.server_starts += 1
            self.steady = False
        elif f.server_starts == 0:
            f.server_starts = 1

    def _args_dict(self, msg: str, line_no: int, text: str) -> None:
        f = self.facts
        body = msg.split("non-default args:", 1)[1]
        self._start_seen()
        f.args = parse_dict_repr(body)
        f.args_source = "non_default_args"
        f.add_evidence("args", line_no, text)
        self._apply_args()

    def _args_namespace(self, msg: str, line_no: int, text: str) -> None:
        f = self.facts
        body = msg.split("Namespace(", 1)[1]
        if body.endswith(")"):
            body = body[:-1]
        self._start_seen()
        f.args = parse_kv_repr(body)
        f.args_source = "namespace"
        f.add_evidence("args", line_no, text)
        self._apply_args()

    def _apply_args(self) -> None:
        """The user's flags win over what the config line derived."""
        f = self.facts
        a = f.args
        if not a:
            return
        if isinstance(a.get("model"), str) and f.model is None:
            f.model = a["model"]
        smn = a.get("served_model_name")
        if isinstance(smn, list) and smn:
            f.served_model_name = str(smn[0])
        elif isinstance(smn, str) and smn:
            f.served_model_name = smn
        for key in (
            "tensor_parallel_size",
            "pipeline_parallel_size",
            "data_parallel_size",
            "max_num_seqs",
            "max_num_batched_tokens",
            "max_model_len",
            "api_server_count",
        ):
            v = _to_int(a.get(key))
            if v is not None:
                setattr(f, key, v)
        g = _to_float(a.get("gpu_memory_utilization"))
        if g is not None:
            f.gpu_memory_utilization = g
        for key in ("enforce_eager", "enable_prefix_caching", "enable_chunked_prefill"):
            if key in a:
                b = _to_bool(a[key])
                if b is not None:
                    setattr(f, key, b)
        if "quantization" in a and a["quantization"] not in (None, "None"):
            f.quantization = str(a["quantization"])
        if "kv_cache_dtype" in a and a["kv_cache_dtype"] not in (None, "auto"):
            f.kv_cache_dtype = str(a["kv_cache_dtype"])
        if "dtype" in a and f.dtype is None and a["dtype"] not in (None, "auto"):
            f.dtype = _clean_dtype(a["dtype"])
        bs = _to_int(a.get("block_size"))
        if bs:
            f.block_size = bs

    def _kv_lines(self, msg: str, line_no: int, text: str, ll: LogLine) -> None:
        f = self.facts
        m = _KV_SIZE_RE.search(msg)
        if m:
            tokens = _i(m.group(2))
            f.kv_cache_device = m.group(1)
            eng = ll.rank if ll.rank is not None else len(f.kv_cache_tokens_by_engine)
            if eng not in f.kv_cache_tokens_by_engine:
                f.kv_cache_tokens_by_engine[eng] = tokens
            if f.kv_cache_tokens is None:
                f.kv_cache_tokens = tokens
            f.add_evidence("kv_size", line_no, text)
        c = _MAX_CONC_RE.search(msg)
        if c:
            per_req = _i(c.group(1))
            conc = _f(c.group(2))
            if f.max_concurrency is None:
                f.max_concurrency = conc
                f.max_concurrency_tokens_per_request = per_req
                if f.kv_cache_tokens is None and f.engine_version == "V0":
                    f.kv_cache_tokens = int(round(conc * per_req))
            f.add_evidence("max_concurrency", line_no, text)
        b = _BLOCKS_RE.search(msg)
        if b:
            f.gpu_blocks = _i(b.group(1))
            f.cpu_blocks = _i(b.group(2))
            if f.kv_cache_tokens is None:
                f.kv_cache_tokens = f.gpu_blocks * (f.block_size or 16)
                f.kv_cache_device = "GPU"
            f.add_evidence("kv_size", line_no, text)
        elif "blocks:" in msg and msg.lstrip().startswith("#"):
            g = _GPU_BLOCKS_RE.search(msg)
            if g and f.kv_cache_tokens is None:
                f.gpu_blocks = _i(g.group(2))
                f.kv_cache_tokens = f.gpu_blocks * (f.block_size or 16)
                f.kv_cache_device = g.group(1)
                f.add_evidence("kv_size", line_no, text)
        a = _AVAIL_KV_RE.search(msg)
        if a:
            f.available_kv_cache_gib = float(a.group(1))
            f.add_evidence("kv_memory", line_no, text)
        cpu = _CPU_KV_SET_RE.search(msg)
        if cpu:
            f.available_kv_cache_gib = float(cpu.group(1))
            f.add_evidence("kv_memory", line_no, text)

    def _timings(self, msg: str, line_no: int, text: str) -> None:
        f = self.facts
        m = _LOAD_RE.search(msg)
        if m:
            f.model_load_gib = float(m.group(1))
            f.model_load_seconds = float(m.group(2))
            f.add_evidence("model_load", line_no, text)
            return
        m = _LOAD_V0_RE.search(msg)
        if m:
            f.model_load_gib = float(m.group(1))
            f.add_evidence("model_load", line_no, text)
            return
        m = _GRAPH_RE.search(msg)
        if m:
            f.graph_capture_seconds = float(m.group(1))
            try:
                f.graph_capture_gib = float(m.group(2))
            except ValueError:
                pass
            f.add_evidence("graph_capture", line_no, text)
            return
        m = _COMPILE_RE.search(msg)
        if m:
            f.compile_seconds = float(m.group(1))
            return
        m = _INIT_RE.search(msg)
        if m:
            f.init_engine_seconds = float(m.group(1))
            f.add_evidence("init_engine", line_no, text)

    def _allreduce(self, msg: str, line_no: int, text: str) -> None:
        f = self.facts
        if "Custom allreduce is disabled" not in msg and "custom allreduce is disabled" not in msg.lower():
            return
        if "PCIe-only" in msg or "PCIe only" in msg:
            f.custom_allreduce_pcie_warning = True
            f.custom_allreduce_disabled_reason = "pcie_only"
        elif "P2P" in msg:
            f.custom_allreduce_disabled_reason = "no_p2p"
        elif "world size" in msg:
            f.custom_allreduce_disabled_reason = "world_size"
        elif "across nodes" in msg or "spans" in msg:
            f.custom_allreduce_disabled_reason = "multi_node"
        else:
            f.custom_allreduce_disabled_reason = f.custom_allreduce_disabled_reason or "other"
        f.add_evidence("allreduce", line_no, text)


def parse_log(lines: Iterable[str]) -> LogFacts:
    """Read an iterable of lines (a file object, a generator...) in one pass,
    in bounded memory; return the facts.

    Line numbers count the lines given. To number them as :func:`parse_file`
    and editors do (``\n`` only: vLLM's progress bars hold bare ``\r``), open
    text files with ``newline="\n"``."""
    sc = LogScanner()
    n = 0
    for n, line in enumerate(lines, 1):
        sc.feed(line, n)
    sc.advance_to(n)
    return sc.facts
