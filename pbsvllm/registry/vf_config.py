"""verifiers 0.4 eval config: one TOML file per alias, for ``vf-eval @ FILE``.

verifiers 0.4 has no endpoint registry; ``vf-eval`` takes the endpoint from
``--client.base-url`` / ``--client.api-key-var`` / ``-m`` or from the same
keys in a config file given as ``@ FILE``::

    # pbsvllm alias: qwen3
    model = "qwen3"

    [client]
    base_url = "http://login1:41234/v1"
    api_key_var = "VLLM_API_KEY"

The file is the registry of exactly one alias (named in the first comment
line; else the file name up to its first dot). pbsvllm writes ``model``
and the ``[client]`` keys with tomlkit's style-preserving document model;
every other key and comment the user added (``-r``, taskset, sampling...)
stays.

**Never a silent fallback.** verifiers' default ``base_url`` is a hosted
cloud API (``https://api.pinference.ai/api/v1`` with ``PRIME_API_KEY``), so
a file that lost its ``base_url`` would send prompts off the cluster. When
the alias loses its server, pbsvllm therefore keeps ``base_url`` and
``api_key_var`` and only adds the marker line ``# pbsvllm: no server``;
``vf-eval`` then fails on the old URL (or, behind a router, gets the
router's 503 naming the alias) instead of going elsewhere.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, List

from pbsvllm.errors import RegistryError
from pbsvllm.registry.base import Endpoint, Entries, Registry, not_parsable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10
    import tomli as tomllib

ALIAS_LINE = re.compile(r"^#[ \t]*pbsvllm alias:[ \t]*(\S+)[ \t]*$", re.M)
NO_SERVER = "# pbsvllm: no server"
NO_SERVER_LINE = re.compile(r"^# pbsvllm: no server\b.*$", re.M)
_LINE_COL = re.compile(r"line (\d+), column (\d+)")


class VfConfigRegistry(Registry):
    """A ``vf-eval @ FILE`` config holding one alias (its one, stable URL)."""

    fmt = "vf-config"
    supports_replicas = False
    stores_job_id = False

    def _alias(self, text: str) -> str:
        m = ALIAS_LINE.search(text)
        return m.group(1) if m else os.path.basename(self.path).split(".", 1)[0]

    def parse(self, text: str) -> Entries:
        if not text.strip():
            return {}
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = _LINE_COL.search(str(exc))
            where = f"{self.path}:{m.group(1)}:{m.group(2)}" if m else self.path
            raise not_parsable(self.path, where, str(exc).split(" (at")[0]) from None
        client = data.get("client")
        if NO_SERVER_LINE.search(text) or not isinstance(client, dict):
            return {}
        model, url, key = data.get("model"), client.get("base_url"), client.get("api_key_var")
        if not isinstance(model, str) or not isinstance(url, str):
            return {}
        if key is not None and not isinstance(key, str):
            raise not_parsable(self.path, self.path, "[client] api_key_var must be a string")
        alias = self._alias(text)
        return {alias: [Endpoint(alias=alias, model=model, url=url, key=key or "")]}

    def render(self, text: str, alias: str, entries: List[Endpoint]) -> str:
        import tomlkit

        if len(entries) > 1:
            raise RegistryError(f"{self.path} (a vf-eval config) holds one URL for {alias!r}, not {len(entries)}",
                                hint="put the alias behind its router (`pbsvllm router start " + alias + "`)")
        other = self._alias(text) if text.strip() else alias
        if other != alias:
            raise RegistryError(f"{self.path} is the vf-eval config of alias {other!r}, not {alias!r}",
                                hint="use one config file per alias, e.g. ~/configs/" + alias + ".vf.toml")
        body = NO_SERVER_LINE.sub("", text).lstrip("\n") if text.strip() else ""
        doc: Any = tomlkit.parse(body)
        if not entries:
            # keep base_url and api_key_var: verifiers' defaults point at a cloud API
            return NO_SERVER + f" behind {alias!r} now; vf-eval fails here instead of using its default " \
                "cloud endpoint\n" + (tomlkit.dumps(doc) if body else "")
        ep = entries[0]
        if not body:
            doc.add(tomlkit.comment(f"pbsvllm alias: {alias}"))
            doc.add(tomlkit.comment("written by pbsvllm: `vf-eval @ THIS_FILE` (other keys you add are kept)"))
        doc["model"] = ep.model
        client = doc.get("client")
        if client is None:
            client = tomlkit.table()
            doc["client"] = client
        client["base_url"] = ep.url
        if ep.key:
            client["api_key_var"] = ep.key
        return str(tomlkit.dumps(doc))
