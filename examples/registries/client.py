"""A client that re-reads the registry before each request, so it follows
`pbsvllm swap-endpoint` (and replicas) with no failed request.

    VLLM_API_KEY=... python examples/registries/client.py configs/endpoints.toml qwen3-vl 20
"""

import json
import os
import random
import sys
import urllib.request

from pbsvllm.registry import open_registry  # reads toml, py (without running it), yaml, json


def ask(registry_path: str, alias: str, prompt: str) -> str:
    servers = open_registry(registry_path).lookup(alias)  # fresh read: an atomic rename makes it safe
    if not servers:
        raise SystemExit(f"{alias!r} is not in {registry_path} (not ready yet?)")
    ep = random.choice(servers)  # replicas: spread the load
    key = os.environ.get(ep.key, "")  # the registry names the variable; the key never sits in the file
    req = urllib.request.Request(
        ep.url.rstrip("/") + "/completions",
        data=json.dumps({"model": ep.model, "prompt": prompt, "max_tokens": 16}).encode(),
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.load(resp)["choices"][0]["text"]


if __name__ == "__main__":
    path, alias = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    for i in range(n):
        print(i, repr(ask(path, alias, "Hello")))
