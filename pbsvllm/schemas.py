"""JSON Schemas (draft 2020-12) of the commands' ``--json`` output.

Shipped in the package (``pbsvllm/data/schemas/NAME.schema.json``) so a
script can validate what it reads with any JSON Schema library::

    from pbsvllm.schemas import load_schema
    import jsonschema
    jsonschema.validate(json.loads(out), load_schema("status"))

The documented key sets are stable: a key listed as required is always
present (``null`` when there is no value) and keeps its meaning; new keys are
added to the schema in the same change that adds them (docs/json.md).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Tuple

from pbsvllm.errors import ConfigError

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "schemas")
#: command -> schema name (the file is ``<name>.schema.json``)
COMMANDS: Dict[str, str] = {"plan": "plan", "status": "status", "url": "url", "bench": "bench", "doctor": "doctor",
                            "top": "top"}


def schema_names() -> Tuple[str, ...]:
    return tuple(sorted(COMMANDS.values()))


def schema_path(name: str) -> str:
    if name not in COMMANDS.values():
        raise ConfigError(f"no JSON schema named {name!r}; known: {', '.join(schema_names())}")
    return os.path.join(SCHEMA_DIR, f"{name}.schema.json")


def load_schema(name: str) -> Dict[str, Any]:
    """The schema of one command's ``--json`` output, as a dict."""
    with open(schema_path(name), encoding="utf-8") as fh:
        doc: Dict[str, Any] = json.load(fh)
    return doc
