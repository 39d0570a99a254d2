"""Run INSIDE the verifiers 0.4 venv (scripts/setup-verifiers.sh), not by pytest.

    python tests/vf_client.py CONFIG.toml

Loads CONFIG through verifiers' own `vf-eval` argument and config parsing
(the same calls as ``verifiers.v1.cli.eval.main``: ``@ FILE`` resolved by
pydantic-config into an ``EvalConfig``), builds verifiers' own eval client
from ``config.client`` and sends one chat completion through it. Prints one
JSON line: the parsed model/base_url/api_key_var and the reply (or the error).
"""

import asyncio
import json
import sys

from pydantic_config import cli
from verifiers.v1.cli.resolve import narrow_config, with_positional_taskset
from verifiers.v1.clients.client import resolve_client
from verifiers.v1.configs.cli.eval import EvalConfig
from verifiers.v1.dialects.chat import ChatDialect
from verifiers.v1.types import SamplingConfig


async def complete(config: EvalConfig) -> dict:
    client = resolve_client(config.client)
    try:
        body = {"model": config.model, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4}
        resp = await client.get_response(ChatDialect(), body, SamplingConfig(max_tokens=4))
        return {"ok": True, "model": resp.model, "finish_reason": str(resp.finish_reason)}
    except Exception as exc:  # the test reads the message
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:800]}
    finally:
        await client.close()


def main() -> None:
    argv = with_positional_taskset(["@", sys.argv[1]])
    sys.argv = ["vf-eval", *argv]
    config = cli(narrow_config(EvalConfig, argv))
    out = {"model": config.model, "base_url": config.client.base_url, "api_key_var": config.client.api_key_var}
    out["reply"] = asyncio.run(complete(config))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
