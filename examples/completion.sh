#!/usr/bin/env bash
# What a TAB offers, without a shell (docs/completion.md). Uses a throwaway
# job store with two tracked aliases.
#   bash examples/completion.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export PBSVLLM_HOME="$(mktemp -d)/pbsvllm"
"$PY" - <<'PYEOF'
from pbsvllm.jobs import JobRecord, JobStore
from pbsvllm.config import resolve
store = JobStore(resolve({}).home)
store.save(JobRecord(job_id="101.pbs01", alias="qwen3-vl", submitted_at=1.0))
store.save(JobRecord(job_id="7.pbs01", alias="llama", submitted_at=2.0))
PYEOF
tab() {  # tab "LINE": the candidates for a TAB at the end of LINE
  local line="$1" n
  n=$(wc -w <<< "$line"); [[ "$line" == *" " ]] || n=$((n - 1))
  echo "\$ $line<TAB>"
  COMP_WORDS="$line" COMP_CWORD=$n _PBSVLLM_COMPLETE=bash_complete "$PY" -m pbsvllm | sed 's/^plain,/    /'
}
tab "pbsvllm cancel "
tab "pbsvllm logs q"
tab "pbsvllm plan Qwen/Qwen3-8B --profile p"
echo "install: eval \"\$(pbsvllm completion bash)\"   (zsh: completion zsh; fish: completion fish)"
