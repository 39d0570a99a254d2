"""pbsvllm profiles [NAME]: list the built-in and user site profiles, or show one."""

from __future__ import annotations

import dataclasses
from typing import Optional

import click

from pbsvllm.commands._common import echo_json, json_option


@click.command()
@click.argument("name", required=False)
@json_option
def command(name: Optional[str], as_json: bool) -> None:
    """List site profiles (built-in and from your config file), or show NAME in full."""
    from pbsvllm.config import builtin_profile_names, load_profile, resolve, user_profile_tables

    settings = resolve({"profile": name} if name else {})
    if name:
        prof = settings.profile
        data = dataclasses.asdict(prof)
        data["env"] = dict(prof.env)
        if as_json:
            echo_json(data)
            return
        for key, value in data.items():
            click.echo(f"{key:<17} {value}")
        return
    user_profiles = user_profile_tables(settings.config_path)
    names = sorted(set(builtin_profile_names()) | set(user_profiles))
    rows = []
    for n in names:
        p = load_profile(n, user_profiles, settings.config_path or "")
        rows.append({"name": n, "origin": "user" if n in user_profiles else "built-in",
                     "default": n == settings.profile.name, "scheduler": p.scheduler, "dialect": p.dialect,
                     "gpus_per_node": p.gpus_per_node, "gpu_memory_gib": p.gpu_memory_gib,
                     "interconnect": p.interconnect, "device": p.device, "description": p.description})
    if as_json:
        echo_json({"config_path": settings.config_path, "profiles": rows})
        return
    click.echo(f"config file: {settings.config_path or 'none (~/.config/pbsvllm/config.toml or $PBSVLLM_CONFIG)'}")
    for r in rows:
        mark = "*" if r["default"] else " "
        hw = (f"{r['gpus_per_node']}x {r['gpu_memory_gib']:g} GiB {r['interconnect']}" if r["device"] == "cuda"
              else "cpu")
        click.echo(f"{mark} {r['name']:<12} {r['origin']:<8} {r['scheduler']:<7} {r['dialect']:<7} {hw:<24} "
                   f"{r['description']}")

