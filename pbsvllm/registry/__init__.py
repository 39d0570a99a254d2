"""Endpoint registries: one adapter per file format behind one interface.

``open_registry(path, fmt=None)`` picks the adapter from ``fmt`` or the file
name (``*.toml`` verifiers, ``*.py`` legacy verifiers, ``*.yaml``/``*.yml``
LiteLLM, ``*.json`` plain JSON). Every write is locked, atomic, keeps a
``.bak`` and is parsed back; see :mod:`pbsvllm.registry.base`.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Type

from pbsvllm.errors import RegistryError
from pbsvllm.registry.base import DEFAULT_KEY_ENV, Endpoint, Registry

FORMATS = ("toml", "py", "litellm", "json", "vf-config")
_FORMAT_ALIASES = {"toml": "toml", "verifiers": "toml", "py": "py", "python": "py",
                   "litellm": "litellm", "yaml": "litellm", "yml": "litellm", "json": "json",
                   "vf-config": "vf-config", "vf-eval": "vf-config"}
_BY_SUFFIX = {".toml": "toml", ".py": "py", ".yaml": "litellm", ".yml": "litellm", ".json": "json"}

__all__ = ["DEFAULT_KEY_ENV", "Endpoint", "FORMATS", "Registry", "detect_format", "open_registry",
           "open_registries", "spec_of"]


def detect_format(path: str, fmt: Optional[str] = None) -> str:
    """The registry format for ``path``: ``fmt`` if given, else from the suffix."""
    if fmt:
        key = fmt.strip().lower()
        if key not in _FORMAT_ALIASES:
            raise RegistryError(
                f"unknown registry format {fmt!r} for {path}",
                hint="use one of: " + ", ".join(FORMATS),
            )
        return _FORMAT_ALIASES[key]
    if path.lower().endswith(".vf.toml"):  # a verifiers 0.4 `vf-eval @ FILE` config, one alias
        return "vf-config"
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _BY_SUFFIX:
        raise RegistryError(
            f"cannot tell the registry format of {path} from its name",
            hint="name it *.toml, *.py, *.yaml or *.json, or pass --format " + "|".join(FORMATS),
        )
    return _BY_SUFFIX[suffix]


def _classes() -> Dict[str, Type[Registry]]:
    from pbsvllm.registry.json_registry import JsonRegistry
    from pbsvllm.registry.py_registry import PyRegistry
    from pbsvllm.registry.toml_registry import TomlRegistry
    from pbsvllm.registry.vf_config import VfConfigRegistry
    from pbsvllm.registry.yaml_registry import LiteLLMRegistry

    return {"toml": TomlRegistry, "py": PyRegistry, "litellm": LiteLLMRegistry, "json": JsonRegistry,
            "vf-config": VfConfigRegistry}


def open_registry(path: str, fmt: Optional[str] = None, *, lock_timeout_s: Optional[float] = None) -> Registry:
    """The adapter for one registry file (the file need not exist yet).
    ``lock_timeout_s``: how long a write waits for another writer's lock."""
    path = os.path.expanduser(str(path))
    if os.path.isdir(path):
        # like verifiers' -e: a directory means <dir>/endpoints.toml
        path = os.path.join(path, "endpoints.toml")
    return _classes()[detect_format(path, fmt)](path, lock_timeout_s=lock_timeout_s)


def open_registries(specs: List[str], fmt: Optional[str] = None) -> List[Registry]:
    """Adapters for several ``PATH`` or ``FORMAT:PATH`` specs (duplicates dropped)."""
    out: List[Registry] = []
    seen = set()
    for spec in specs:
        f = fmt
        p = spec
        head, sep, tail = spec.partition(":")
        if sep and head.lower() in _FORMAT_ALIASES and tail:
            f, p = head, tail
        reg = open_registry(p, f)
        if reg.path not in seen:
            seen.add(reg.path)
            out.append(reg)
    return out


def spec_of(reg: Registry) -> str:
    """The shortest spec that opens ``reg`` again: its path, or ``FORMAT:PATH``
    when the name alone does not tell the format."""
    try:
        if detect_format(reg.path) == reg.fmt:
            return reg.path
    except RegistryError:
        pass
    return f"{reg.fmt}:{reg.path}"
