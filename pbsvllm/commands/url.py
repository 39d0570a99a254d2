"""``pbsvllm url ALIAS``: the alias's stable base URL (its router's), for any OpenAI client."""

from __future__ import annotations

from typing import Optional

import click

from pbsvllm.commands._common import client, echo_json, home_option, json_option


@click.command()
@click.argument("alias")
@json_option
@click.option("--write-vf-config", "vf_config", default=None, metavar="FILE",
              help="Also write FILE: a verifiers 0.4 config for `vf-eval @ FILE` (model, [client] base_url, "
                   "api_key_var), kept like any registry (list it in registries to keep it updated).")
@home_option
def command(alias: str, as_json: bool, vf_config: Optional[str], home: Optional[str]) -> None:
    """Print ALIAS's stable base URL (ending in /v1): its router's, the same
    while servers join, leave, scale or swap. --json: url, model and
    api_key_var (the variable holding the key, never the key).

    Without a router the alias has no stable URL: this says how to get one."""
    info = client(home, alias=alias).alias_url(alias, vf_config=vf_config)
    if as_json:
        echo_json(info.to_dict())
    else:
        click.echo(info.url)
