"""Escape hatches per submit: extra scheduler directives and environment variables.

``submit --directive "-l mem=200gb" --env NCCL_DEBUG=INFO`` (repeatable), as
dask-jobqueue's ``job_extra_directives`` and ``job_script_prologue`` give. Both
are checked here, where they enter, and quoted where they are written:

- a directive is one scheduler option and at most one value (``-l mem=200gb``,
  ``-m abe``, ``-W depend=afterok:123.pbs01``; ``#PBS`` in front is optional),
  from the characters a ``#PBS`` value may hold. The options pbsvllm itself
  relies on (``-N``, ``-o``, ``-e``, ``-j``) are refused; every other one is
  placed **before** the profile's and the generated directives, so it wins
  (PBS takes the first of duplicates: ``--directive "-l walltime=02:00:00"``
  overrides the walltime);
- an environment variable is ``NAME=VALUE``: a shell name, a one-line value
  (single-quoted in the script, so ``$``, spaces and quotes stay literal),
  exported **after** the profile's variables and ``env_lines`` (it has the
  last word). Names pbsvllm manages (``PBSVLLM_*``, ``CUDA_VISIBLE_DEVICES``,
  ``VLLM_API_KEY``) and names that look like secrets (``*KEY*``, ``*TOKEN*``,
  ``*SECRET*``, ``*PASSWORD*``) are refused: a value given here is written
  into the job script and the job record.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, Tuple

from pbsvllm.errors import ConfigError

_OPTION_VALUE_RE = re.compile(r"^-([A-Za-z])(?:\s+([A-Za-z0-9_.:=+@/,%~\-]+))?$")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MANAGED_OPTIONS = {"N": "the job name (from --alias)", "o": "the output file (the profile's log_dir)",
                   "e": "the error file (joined into the log)", "j": "joining stdout and stderr"}
_SECRET_RE = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.I)


def directive_line(text: str) -> str:
    """``-l mem=200gb`` or ``#PBS -l mem=200gb`` -> ``#PBS -l mem=200gb`` (ConfigError naming the problem)."""
    raw = str(text)
    if any(c in raw for c in "\n\r\x00"):
        raise ConfigError(f"--directive {raw!r} must be one line")
    s = raw.strip()
    if s.startswith("#PBS"):
        s = s[4:].strip()
    m = _OPTION_VALUE_RE.match(s)
    if not m:
        raise ConfigError(f"--directive {raw!r} must be one scheduler option and at most one value, like "
                          f"\"-l mem=200gb\" (values may hold letters, digits and _.:=+@/,%~-)")
    if m.group(1) in MANAGED_OPTIONS:
        raise ConfigError(f"--directive {raw!r}: -{m.group(1)} is set by pbsvllm ({MANAGED_OPTIONS[m.group(1)]}) "
                          f"and cannot be overridden")
    return f"#PBS {' '.join(s.split())}"


def env_pair(text: str) -> Tuple[str, str]:
    """``NAME=VALUE`` -> (NAME, VALUE)."""
    raw = str(text)
    name, sep, value = raw.partition("=")
    if not sep:
        raise ConfigError(f"--env {raw!r} must be NAME=VALUE")
    if not _NAME_RE.match(name):
        raise ConfigError(f"--env {name!r} is not a valid environment variable name")
    if any(c in value for c in "\n\r\x00"):
        raise ConfigError(f"--env {name}: the value must be one line")
    if name.startswith("PBSVLLM_") or name in ("CUDA_VISIBLE_DEVICES", "VLLM_API_KEY"):
        raise ConfigError(f"--env {name} is set by pbsvllm itself and cannot be overridden")
    if _SECRET_RE.search(name):
        raise ConfigError(f"--env {name}: this looks like a secret; it would be written into the job script and "
                          f"record", hint="keep secrets in a file: api_key_file for the server's key, or a file "
                                          "your profile's env_lines source")
    return name, value


def parse(directives: Iterable[str], env: Iterable[str]) -> Tuple[List[str], Dict[str, str]]:
    """Checked ``--directive`` lines and ``--env`` variables (later ``--env`` of one name wins)."""
    lines = [directive_line(d) for d in directives]
    out: Dict[str, str] = {}
    for item in env:
        name, value = env_pair(item)
        out[name] = value
    return lines, out
