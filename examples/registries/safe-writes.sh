#!/bin/bash
# What pbsvllm does with registries that are not plain files you may write
# (docs/registries.md, "How a write is made safe"). Runs anywhere, in a
# temporary folder: bash examples/registries/safe-writes.sh
set -euo pipefail
cd "$(mktemp -d)"
py() { python3 -c "import sys; from pbsvllm.registry import Endpoint, open_registry
from pbsvllm.errors import RegistryError
try:
    open_registry(sys.argv[1]).register(Endpoint('qwen3-vl', 'qwen3-vl', 'http://node:8005/v1'))
    print('registered in', sys.argv[1])
except RegistryError as e:
    print('refused:', e)" "$@"; }

mkdir real && ln -s real/endpoints.toml endpoints.toml   # a link: the target is edited, the link stays
py endpoints.toml && ls -l endpoints.toml real/

mkfifo pipe.toml && py pipe.toml                          # a FIFO: refused at once, never read
printf '[[endpoint]]\r\nendpoint_id = "old"\r\nmodel = "m"\r\nurl = "http://n0:1/v1"\r\nkey = "K"\r\n' > crlf.toml
py crlf.toml && grep -c $'\r$' crlf.toml                  # CRLF file: every line still ends in CRLF
cp crlf.toml locked.toml && chmod 444 locked.toml && py locked.toml   # write-protected: left alone
