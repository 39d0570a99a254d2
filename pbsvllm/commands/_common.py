"""Options shared by several commands, and output helpers."""

from __future__ import annotations

import json
from typing import Any, Callable

import click


def json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")(f)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))
