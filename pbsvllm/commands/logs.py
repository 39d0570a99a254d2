"""``pbsvllm logs``: show or follow a job's realtime vLLM log."""

from __future__ import annotations

from typing import Any, List, Optional

import click

from pbsvllm.commands._common import echo_json, json_option


@click.command()
@click.argument("target", metavar="ALIAS|JOB")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing new lines as they are written, until the job ends (or Ctrl-C).")
@click.option("--stats", is_flag=True, help="Only the engine-stats lines (throughput, running/waiting, KV cache, prefix hits).")
@click.option("-n", "--lines", "n_lines", type=int, default=None, metavar="N",
              help="Only the last N lines (default: all; with -f, the last 20).")
@click.option("--interval", type=float, default=0.5, show_default=True, metavar="SECONDS", help="Poll interval with -f.")
@json_option
@click.option("--home", default=None, metavar="DIR", help="PBSVLLM_HOME to read job records from.")
def command(target: str, follow: bool, stats: bool, n_lines: Optional[int], interval: float, as_json: bool,
            home: Optional[str]) -> None:
    """Print the realtime vLLM log of ALIAS's newest job (or of job JOB),
    written by the job on the shared filesystem while it runs. With --stats,
    only the periodic engine-stats lines (V0 and V1 forms, every engine);
    with --json, those as objects (one JSON document; with -f one per line)."""
    import json
    import time

    from pbsvllm.errors import LogParseError
    from pbsvllm.jobs import JobStore
    from pbsvllm.transport import get_transport
    from pbsvllm.vllmlog import parse_stats_line, split_line, strip_line
    from pbsvllm.logtail import LogTail

    from pbsvllm.commands.status import _home

    rec = JobStore(_home(home)).find(target)
    if not rec.log_path:
        raise LogParseError(f"job {rec.job_id} has no log path in its record")
    transport = get_transport(rec.host)
    tail = LogTail(transport, rec.log_path)
    if not tail.exists() and not follow:
        raise LogParseError(
            f"the log {rec.log_path} of job {rec.job_id} does not exist (yet)",
            hint="the job writes it once it starts; `pbsvllm status` shows whether it runs, `-f` waits for it",
        )

    def select(lines: List[str], first_no: int) -> List[Any]:
        out: List[Any] = []
        for i, raw in enumerate(lines, first_no):
            if stats:
                st = parse_stats_line(strip_line(raw))
                if st is None:
                    continue
                if as_json:
                    out.append({"line": i, **st.to_dict()})
                else:
                    ll = split_line(raw)
                    out.append(f"{ll.time}  {ll.message}" if ll.time else ll.message)
            else:
                out.append({"line": i, "text": strip_line(raw)} if as_json else raw)
        return out

    first = tail.line_no + 1
    items = select(tail.read_lines(final=not follow), first)
    limit = n_lines if n_lines is not None else (20 if follow else None)
    if limit is not None:
        items = items[-limit:] if limit > 0 else []
    if as_json and not follow:
        echo_json(items)
        return
    for it in items:
        click.echo(json.dumps(it) if as_json else it)
    if not follow:
        return
    from pbsvllm.launch import refresh_statuses
    from pbsvllm.models import JobState

    store = JobStore(_home(home))
    next_status = time.monotonic() + 5.0
    try:
        while True:
            time.sleep(interval)
            first = tail.line_no + 1
            for it in select(tail.read_lines(), first):
                click.echo(json.dumps(it) if as_json else it)
            if time.monotonic() >= next_status:  # stop once the job is over (one scheduler call / 5 s)
                next_status = time.monotonic() + 5.0
                statuses, _errors = refresh_statuses(store, [rec], skip_terminal=False)
                st = statuses.get(rec.job_id)
                if st is not None and (st.state.is_terminal or st.state == JobState.UNKNOWN):
                    first = tail.line_no + 1
                    for it in select(tail.read_lines(final=True), first):
                        click.echo(json.dumps(it) if as_json else it)
                    if not as_json:
                        click.echo(f"pbsvllm: job {rec.job_id} has ended ({st.state.value})", err=True)
                    return
    except KeyboardInterrupt:
        return
