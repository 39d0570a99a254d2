"""A client of an alias's stable URL: ask pbsvllm once, then never re-read anything.

    VLLM_API_KEY=... python examples/router/client.py ALIAS [N]

The URL stays the same while servers join, leave, scale or swap behind the
alias's router; when the alias has no server the URL answers 503 with a
message naming the alias (the client stops: nothing is sent elsewhere).
"""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request


def alias_endpoint(alias: str) -> dict:
    out = subprocess.run(["pbsvllm", "url", alias, "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # {"url", "model", "api_key_var", "alias"}


def complete(ep: dict, prompt: str) -> str:
    key = os.environ.get(ep["api_key_var"], "")  # the variable's NAME comes from pbsvllm, never the key
    req = urllib.request.Request(
        ep["url"].rstrip("/") + "/completions",
        data=json.dumps({"model": ep["model"], "prompt": prompt, "max_tokens": 8}).encode(),
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.load(resp)["choices"][0]["text"]
    except urllib.error.HTTPError as exc:
        if exc.code == 503:  # the alias has no server right now: the message says which and what to do
            raise SystemExit(json.load(exc)["error"]["message"]) from None
        raise


if __name__ == "__main__":
    alias = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    ep = alias_endpoint(alias)
    for i in range(n):
        print(i, repr(complete(ep, "Hello")))
