"""pbsvllm models [NAME]: the built-in model catalog and what `plan` would do for each model."""

from __future__ import annotations

from typing import Any, Optional

import click

from pbsvllm.commands._common import echo_json, json_option
from pbsvllm.commands.plan import site_options, split_kwargs


@click.command()
@click.argument("name", required=False)
@click.option("--family", help="Only models whose family contains this (moe, mla, sliding, hybrid, vision, fp8...).")
@click.option("--max-model-len", type=click.IntRange(1, 10**9), help="Plan for this context length.")
@site_options
@json_option
def command(name: Optional[str], family: Optional[str], max_model_len: Optional[int], as_json: bool,
            **kwargs: Any) -> None:
    """List the built-in model catalog (architecture numbers, real checkpoint size and its source,
    the estimate from config.json alone) and what `plan` would do for each on a profile; with
    NAME, one model's numbers, sources and the plan with its reasons."""
    from pbsvllm.api import Client
    from pbsvllm.catalog import format_detail, format_table
    from pbsvllm.commands.plan import format_plan
    from pbsvllm.plan import Hardware

    flags, _ = split_kwargs(kwargs)
    api = Client.from_flags(flags)
    profile = api.settings.profile
    hw = Hardware.from_profile(profile)
    version = kwargs.get("vllm_version") or profile.vllm_version
    hw_text = f"{profile.name} ({hw.describe()}, vLLM {version})"
    rows = api.models(name, family=family, max_model_len=max_model_len, vllm_version=version)
    if name:
        row = rows[0]
        if as_json:
            out = row.to_json()
            out["profile"] = profile.name
            echo_json(out)
            return
        click.echo(format_detail(row))
        click.echo(f"\nplan on {hw_text}:")
        if row.plan is not None:
            click.echo(format_plan(row.plan, row.facts, hw.describe()))
        else:
            click.echo(row.plan_error + (f" ({row.plan_hint})" if row.plan_hint else ""))
        return
    if as_json:
        echo_json({"profile": profile.name, "vllm_version": version, "hardware": hw.describe(),
                   "models": [r.to_json() for r in rows]})
        return
    click.echo(format_table(rows, hw_text))
