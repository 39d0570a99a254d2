"""vLLM command-line flags by version (docs/reference/vllm-flags-metrics.md).

One table: each flag with the version that added it, the version that
deprecated it, the version that removed it, and what replaces it. The planner
emits only flags the target version knows; user ``--vllm-arg`` values are
checked here, and ``doctor`` uses :func:`deprecations` to flag old flags it
sees in a log.

Flags without an ``added`` version predate 0.6.3 (the oldest version read);
flags absent from the table are "unknown to pbsvllm" and refused unless the
caller allows unknown flags (pbsvllm cannot vouch for them).
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from pbsvllm.errors import FlagError

Version = Tuple[int, ...]


def parse_version(v: str) -> Version:
    """'0.6.3.post1' -> (0, 6, 3); '0.32.0+cpu' -> (0, 32, 0); '0.11' -> (0, 11, 0)."""
    m = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", str(v))
    if not m:
        raise FlagError(f"'{v}' is not a vLLM version (expected something like 0.11.0)")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


@dataclass(frozen=True)
class Flag:
    name: str
    takes_value: bool = True
    added: Optional[str] = None
    deprecated: Optional[str] = None
    removed: Optional[str] = None
    replacement: str = ""
    aliases: Tuple[str, ...] = ()
    note: str = ""

    def known_in(self, version: str) -> bool:
        v = parse_version(version)
        if self.added and v < parse_version(self.added):
            return False
        if self.removed and v >= parse_version(self.removed):
            return False
        return True

    def deprecated_in(self, version: str) -> bool:
        if not self.deprecated:
            return False
        return parse_version(version) >= parse_version(self.deprecated) and self.known_in(version)


_V = True   # takes a value
_B = False  # boolean switch

# name, takes_value, added, deprecated, removed, replacement, aliases, note
_TABLE: List[Flag] = [
    # parallelism (docs/reference/vllm-flags-metrics.md)
    Flag("--tensor-parallel-size", _V, aliases=("-tp",)),
    Flag("--pipeline-parallel-size", _V, aliases=("-pp",)),
    Flag("--data-parallel-size", _V, added="0.8.5", aliases=("-dp",)),
    Flag("--data-parallel-size-local", _V, added="0.9.2", aliases=("-dpl",)),
    Flag("--data-parallel-address", _V, added="0.9.2", aliases=("-dpa",)),
    Flag("--data-parallel-rpc-port", _V, added="0.9.2", aliases=("-dpp",)),
    Flag("--data-parallel-start-rank", _V, added="0.9.2", aliases=("-dpr",)),
    Flag("--data-parallel-backend", _V, added="0.9.2", aliases=("-dpb",)),
    Flag("--data-parallel-rank", _V, added="0.11.0"),
    Flag("--data-parallel-hybrid-lb", _B, added="0.11.0"),
    Flag("--api-server-count", _V, added="0.9.2", aliases=("-asc",)),
    Flag("--headless", _B, added="0.9.2"),
    Flag("--nnodes", _V, added="0.12.0"),
    Flag("--node-rank", _V, added="0.12.0"),
    Flag("--master-addr", _V, added="0.12.0"),
    Flag("--master-port", _V, added="0.12.0"),
    Flag("--distributed-executor-backend", _V),
    Flag("--enable-expert-parallel", _B, added="0.8.5"),
    Flag("--disable-custom-all-reduce", _B),
    # model and memory
    Flag("--model", _V),
    Flag("--served-model-name", _V),
    Flag("--tokenizer", _V),
    Flag("--revision", _V),
    Flag("--tokenizer-mode", _V),
    Flag("--trust-remote-code", _B),
    Flag("--download-dir", _V),
    Flag("--load-format", _V),
    Flag("--dtype", _V),
    Flag("--kv-cache-dtype", _V),
    Flag("--quantization", _V, aliases=("-q",)),
    Flag("--max-model-len", _V),
    Flag("--gpu-memory-utilization", _V),
    Flag("--device-memory-utilization", _V, added="0.32.0", note="alias of --gpu-memory-utilization"),
    Flag("--swap-space", _V),
    Flag("--cpu-offload-gb", _V),
    Flag("--num-gpu-blocks-override", _V),
    Flag("--block-size", _V),
    Flag("--enable-prefix-caching", _B),
    Flag("--no-enable-prefix-caching", _B, added="0.8.5"),
    Flag("--enable-chunked-prefill", _B),
    Flag("--no-enable-chunked-prefill", _B, added="0.8.5"),
    Flag("--max-num-batched-tokens", _V),
    Flag("--max-num-seqs", _V),
    Flag("--max-logprobs", _V),
    Flag("--seed", _V),
    Flag("--rope-scaling", _V),
    Flag("--rope-theta", _V),
    Flag("--hf-overrides", _V, added="0.7.3"),
    Flag("--enforce-eager", _B, note="disables CUDA graphs: much slower decoding; for debugging only"),
    Flag("--compilation-config", _V, added="0.7.3", aliases=("-O",)),
    Flag("--async-scheduling", _B, added="0.10.0"),
    Flag("--limit-mm-per-prompt", _V),
    Flag("--mm-processor-kwargs", _V),
    Flag("--enable-sleep-mode", _B, added="0.7.3"),
    Flag("--scheduling-policy", _V),
    Flag("--generation-config", _V, added="0.7.3"),
    Flag("--override-generation-config", _V, added="0.7.3"),
    # LoRA
    Flag("--enable-lora", _B),
    Flag("--max-loras", _V),
    Flag("--max-lora-rank", _V),
    Flag("--lora-modules", _V),
    # speculative decoding
    Flag("--speculative-model", _V, removed="0.8.5",
         replacement="--speculative-config '{\"model\": \"<draft>\", \"num_speculative_tokens\": N}'"),
    Flag("--num-speculative-tokens", _V, removed="0.8.5",
         replacement="--speculative-config '{\"method\": ..., \"num_speculative_tokens\": N}'"),
    Flag("--speculative-config", _V, added="0.7.3"),
    # server
    Flag("--host", _V),
    Flag("--port", _V),
    Flag("--api-key", _V,
         note="never pass the key on the command line: pbsvllm reads it from a 0600 file into VLLM_API_KEY"),
    Flag("--uvicorn-log-level", _V),
    Flag("--disable-uvicorn-access-log", _B, added="0.8.5"),
    Flag("--allow-credentials", _B),
    Flag("--allowed-origins", _V),
    Flag("--allowed-methods", _V),
    Flag("--allowed-headers", _V),
    Flag("--chat-template", _V),
    Flag("--chat-template-content-format", _V, added="0.7.3"),
    Flag("--response-role", _V),
    Flag("--ssl-keyfile", _V),
    Flag("--ssl-certfile", _V),
    Flag("--root-path", _V),
    Flag("--middleware", _V),
    Flag("--enable-auto-tool-choice", _B),
    Flag("--tool-call-parser", _V),
    Flag("--reasoning-parser", _V, added="0.7.3"),
    Flag("--disable-frontend-multiprocessing", _B),
    Flag("--max-log-len", _V),
    Flag("--disable-log-stats", _B, note="turns off the periodic stats lines that status and doctor read"),
    Flag("--disable-log-requests", _B, deprecated="0.10.2", removed="0.17.0", replacement="--enable-log-requests "
         "(from 0.10.2 requests are not logged by default, so simply drop the flag)"),
    Flag("--enable-log-requests", _B, added="0.10.2"),
    Flag("--show-hidden-metrics-for-version", _V, added="0.8.5"),
    Flag("--otlp-traces-endpoint", _V),
    Flag("--config", _V, added="0.11.0"),
]

FLAGS: Dict[str, Flag] = {}
for _f in _TABLE:
    FLAGS[_f.name] = _f
    for _a in _f.aliases:
        FLAGS[_a] = _f


def lookup(name: str) -> Optional[Flag]:
    """The table entry for a flag name or alias (``--x=1`` is looked up as ``--x``)."""
    return FLAGS.get(name.split("=", 1)[0])


def canonical(name: str) -> str:
    f = lookup(name)
    return f.name if f else name.split("=", 1)[0]


def is_known(name: str, version: str) -> bool:
    f = lookup(name)
    return f is not None and f.known_in(version)


def split_user_args(values: Iterable[str]) -> List[str]:
    """``--vllm-arg`` values (each may hold several words, shell-style) -> one argv list."""
    out: List[str] = []
    for v in values:
        try:
            out.extend(shlex.split(v))
        except ValueError as exc:
            raise FlagError(f"cannot split --vllm-arg {v!r}: {exc}") from None
    return out


def group_args(args: Sequence[str]) -> List[Tuple[str, List[str]]]:
    """argv -> [(flag, [values...])]; ``--x=1`` becomes ('--x', ['1'])."""
    groups: List[Tuple[str, List[str]]] = []
    for tok in args:
        if tok.startswith("-") and not _is_number(tok):
            if "=" in tok and tok.startswith("--"):
                name, val = tok.split("=", 1)
                groups.append((name, [val]))
            else:
                groups.append((tok, []))
        else:
            if not groups:
                raise FlagError(f"vLLM argument {tok!r} comes before any flag; pass flags like --max-num-seqs 512")
            groups[-1][1].append(tok)
    return groups


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def check_user_args(args: Sequence[str], version: str, *, allow_unknown: bool = False) -> List[Tuple[str, List[str]]]:
    """Check user vLLM args against ``version``; return them grouped with canonical names.

    Raises FlagError for a flag removed in (or not yet in) that version, naming
    the replacement, and for flags pbsvllm does not know (with close matches)
    unless ``allow_unknown``. ``--api-key`` is always refused (the key must
    never be on a command line).
    """
    groups = group_args(args)
    out: List[Tuple[str, List[str]]] = []
    for name, values in groups:
        f = lookup(name)
        if f is None:
            if allow_unknown:
                out.append((name, values))
                continue
            close = difflib.get_close_matches(name, list(FLAGS), n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise FlagError(
                f"vLLM flag {name} is not in pbsvllm's flag table for vLLM {version}",
                hint=f"{hint}if your vLLM really has it, pass --allow-unknown-vllm-args",
            )
        if f.name == "--api-key":
            raise FlagError("--api-key must not be passed as a vLLM argument: it would be visible in `ps` and the "
                            "script", hint="put the key in a file with mode 0600 and pass --api-key-file FILE")
        if not f.known_in(version):
            if f.added and parse_version(version) < parse_version(f.added):
                raise FlagError(f"vLLM flag {name} needs vLLM >= {f.added}; the target is vLLM {version}",
                                hint="set vllm_version in your profile or pass --vllm-version if the cluster has a "
                                     "newer vLLM")
            raise FlagError(f"vLLM flag {name} was removed in vLLM {f.removed} (target: {version})",
                            hint=f"use {f.replacement}" if f.replacement else "drop it")
        if f.takes_value and not values:
            raise FlagError(f"vLLM flag {name} needs a value (e.g. {name} VALUE)")
        if not f.takes_value and values:
            raise FlagError(f"vLLM flag {name} takes no value, got {' '.join(values)!r}")
        out.append((f.name, values))
    return out


def deprecations(args: Iterable[str], version: str) -> List[Dict[str, str]]:
    """Deprecated or removed flags among ``args`` for ``version`` (for doctor):
    ``[{"flag", "status": "deprecated"|"removed", "since", "replacement"}]``."""
    found = []
    for name in args:
        f = lookup(name)
        if f is None:
            continue
        if f.removed and parse_version(version) >= parse_version(f.removed):
            found.append({"flag": f.name, "status": "removed", "since": f.removed, "replacement": f.replacement})
        elif f.deprecated_in(version):
            found.append({"flag": f.name, "status": "deprecated", "since": f.deprecated or "",
                          "replacement": f.replacement})
    return found
