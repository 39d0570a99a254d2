"""``pbsvllm top``: a live view of every tracked server (``--once``: one plain snapshot)."""

from __future__ import annotations

import os
import sys
from typing import Any, List, Optional, Tuple

import click

from pbsvllm.commands._common import echo_json, home_option, json_option


@click.command()
@click.option("--once", is_flag=True,
              help="Print one plain snapshot and exit (also what a pipe or TERM=dumb gets).")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True, metavar="SECONDS",
              help="Refresh (and /metrics scrape) interval of the live view.")
@click.option("--status-every", type=click.FloatRange(min=1.0), default=15.0, show_default=True, metavar="SECONDS",
              help="Ask the scheduler for job states at most this often.")
@click.option("--sample", "sample_s", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              metavar="SECONDS", help="--once: seconds between the two scrapes the rates come from.")
@click.option("--all", "show_ended", is_flag=True, help="Also show jobs that have ended.")
@json_option
@home_option
def command(once: bool, interval: float, status_every: float, sample_s: float, show_ended: bool, as_json: bool,
            home: Optional[str]) -> None:
    """Every tracked server at a glance: job and server state, generation
    tokens/s with a short history, requests running/waiting, KV cache use,
    prefix-cache hit rate and time to first token, from each server's
    /metrics. Refreshes in place; q quits."""
    from pbsvllm import top
    from pbsvllm.commands._common import client

    api = client(home)
    live = not once and not as_json and sys.stdout.isatty() and os.environ.get("TERM", "") != "dumb"
    if not live:
        views = top.snapshot(api, sample_s=sample_s, show_ended=show_ended)
        if as_json:
            echo_json([v.to_json() for v in views])
        else:
            click.echo(top.render(views), nl=False)
        return
    color = not os.environ.get("NO_COLOR")
    with _Terminal() as term:
        top.run_live(api, interval=interval, status_every=status_every, write=term.write,
                     key_pressed=term.key, size=term.size, color=color, show_ended=show_ended)


class _Terminal:
    """The alternate screen, no cursor, keys read one at a time; all restored on exit."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno() if sys.stdin.isatty() else None
        self.saved: Optional[List[Any]] = None

    def __enter__(self) -> _Terminal:
        if self.fd is not None:
            import termios
            import tty

            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        self.write("\x1b[?1049h\x1b[?25l")
        return self

    def __exit__(self, *exc: object) -> bool:
        self.write("\x1b[?25h\x1b[?1049l")
        if self.fd is not None and self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
        return isinstance(exc[1], KeyboardInterrupt)  # Ctrl-C: a normal way out of a live view

    @staticmethod
    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def key(self, timeout: float) -> Optional[str]:
        import select
        import time

        if self.fd is None:
            time.sleep(timeout)
            return None
        ready, _, _ = select.select([self.fd], [], [], timeout)
        return os.read(self.fd, 1).decode("utf-8", "replace") if ready else None

    @staticmethod
    def size() -> Tuple[int, int]:
        import shutil

        s = shutil.get_terminal_size((120, 40))
        return s.columns, s.lines
