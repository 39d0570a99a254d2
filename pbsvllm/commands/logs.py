"""``pbsvllm logs``: show or follow a job's realtime vLLM log."""

from __future__ import annotations

from typing import Any, List, Optional

import click

from pbsvllm.commands._common import client, echo_json, home_option, json_option


@click.command()
@click.argument("target", metavar="ALIAS|JOB")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing new lines as they are written, until the job ends (or Ctrl-C).")
@click.option("--stats", is_flag=True,
              help="Only the engine-stats lines (throughput, running/waiting, KV cache, prefix hits).")
@click.option("-n", "--lines", "n_lines", type=int, default=None, metavar="N",
              help="Only the last N lines (default: all; with -f, the last 20).")
@click.option("--interval", type=float, default=0.5, show_default=True, metavar="SECONDS",
              help="Poll interval with -f.")
@json_option
@home_option
def command(target: str, follow: bool, stats: bool, n_lines: Optional[int], interval: float, as_json: bool,
            home: Optional[str]) -> None:
    """Print the realtime vLLM log of ALIAS's newest job (or of job JOB),
    written by the job on the shared filesystem while it runs. With --stats,
    only the periodic engine-stats lines (V0 and V1 forms, every engine);
    with --json, those as objects (one JSON document; with -f one per line)."""
    import json
    import time

    from pbsvllm.vllmlog import parse_stats_line, split_line, strip_line

    api = client(home)
    rec, tail = api.log_tail(target, must_exist=not follow)

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

    from pbsvllm.safety import printable  # a log line's control bytes never reach the terminal raw

    first = tail.line_no + 1
    items = select(tail.read_lines(final=not follow), first)
    limit = n_lines if n_lines is not None else (20 if follow else None)
    if limit is not None:
        items = items[-limit:] if limit > 0 else []
    if as_json and not follow:
        echo_json(items)
        return
    for it in items:
        click.echo(json.dumps(it) if as_json else printable(it))
    if not follow:
        return
    next_status = time.monotonic() + 5.0
    try:
        while True:
            time.sleep(interval)
            first = tail.line_no + 1
            for it in select(tail.read_lines(), first):
                click.echo(json.dumps(it) if as_json else printable(it))
            if time.monotonic() >= next_status:  # stop once the job is over (one scheduler call / 5 s)
                next_status = time.monotonic() + 5.0
                ended = api.job_ended(rec)
                if ended is not None:
                    first = tail.line_no + 1
                    for it in select(tail.read_lines(final=True), first):
                        click.echo(json.dumps(it) if as_json else printable(it))
                    if not as_json:
                        click.echo(f"pbsvllm: job {rec.job_id} has ended ({ended.value})", err=True)
                    return
    except KeyboardInterrupt:
        return
