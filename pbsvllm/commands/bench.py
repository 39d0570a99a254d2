"""``pbsvllm bench``: load-test an endpoint (or two side by side)."""

from __future__ import annotations

import sys
import time
from typing import Optional, Tuple

import click

from pbsvllm.commands._common import client, echo_json, home_option, json_option


class _Progress:
    """One self-overwriting status line on stderr (used only when stderr is a terminal)."""

    def __init__(self) -> None:
        self.last = 0.0
        self.label = ""
        self.started = time.monotonic()

    def __call__(self, label: str, done: int, total: int, errors: int) -> None:
        now = time.monotonic()
        if label != self.label:
            self.label, self.started = label, now
        elif done < total and now - self.last < 0.1:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-6)
        line = f"{label}: {done}/{total} done, {errors} errors, {rate:.1f} req/s"
        click.echo("\r\x1b[2K" + line, nl=False, err=True)
        if done == total:
            click.echo("", err=True)


@click.command(context_settings={"show_default": True})
@click.argument("target")
@click.option("-n", "--requests", "n", type=int, default=200, help="Requests per concurrency level.")
@click.option("-c", "--concurrency", default="1,8,64", help="Comma-separated concurrency levels.")
@click.option("--vs", "other", metavar="OTHER", default=None,
              help="A second alias or URL: same requests, side by side, ratio OTHER/TARGET per figure.")
@click.option("--model", default=None, help="Served model name (required when TARGET is a URL).")
@click.option("--vs-model", default=None, help="Served model name for a --vs URL (default: --model).")
@click.option("--input-len", type=int, default=128, help="Synthetic prompt length, in words (~tokens).")
@click.option("--output-len", type=int, default=128, help="max_tokens per request (exact with ignore_eos).")
@click.option("--prompts", "prompts_file", type=click.Path(dir_okay=False), default=None,
              help="JSONL file of prompts (a string, or {\"prompt\": ..., \"max_tokens\": N} per line).")
@click.option("--seed", type=int, default=0, help="Seed of the synthetic prompts: same seed, same requests.")
@click.option(
    "--timeout", "timeout_s", type=float, default=60.0, help="Seconds per request before it counts as a timeout."
)
@click.option("--warmup", type=int, default=0, help="Uncounted requests sent to each target first (concurrency 1).")
@click.option(
    "--ignore-eos/--no-ignore-eos",
    default=True,
    help="Ask the server to generate exactly max_tokens (vLLM's ignore_eos); turn off for servers that reject it.",
)
@click.option("--api-key-env", default="VLLM_API_KEY",
              help="Environment variable holding the API key for a URL target (aliases use their registry's).")
@click.option(
    "--registry",
    "registries",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Registry file to look an alias up in (repeatable); default: the job records and configured registries.",
)
@home_option
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (one row per target and level) instead of a table.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Also write FILE.html: throughput and latency against concurrency, every target on one chart; "
                   "one self-contained page that opens offline (needs: pip install 'pbsvllm[plot]').")
@json_option
def command(target: str, n: int, concurrency: str, other: Optional[str], model: Optional[str],
            vs_model: Optional[str], input_len: int, output_len: int, prompts_file: Optional[str], seed: int,
            timeout_s: float, warmup: int, ignore_eos: bool, api_key_env: str, registries: Tuple[str, ...],
            home: Optional[str], as_csv: bool, plot_path: Optional[str], as_json: bool) -> None:
    """Load-test TARGET (an alias or a URL like http://node:8005/v1).

    Sends N streamed /v1/completions requests at each concurrency level and
    reports requests/s, output tokens/s, time to first token p50/p99,
    end-to-end latency p50/p99 and errors by kind. With --vs, OTHER gets the
    same requests, level by level, and the ratio OTHER/TARGET is printed.
    """
    from pbsvllm import bench
    from pbsvllm.api import all_failed_error
    from pbsvllm.errors import ConfigError

    if as_csv and as_json:
        raise ConfigError("--json and --csv are exclusive: pick one output format")
    levels = bench.parse_concurrency(concurrency)
    if plot_path:  # fail before the load test, not after it
        from pbsvllm.plots import check_plot_path

        check_plot_path(plot_path)
    if warmup < 0:
        raise ConfigError(f"--warmup must be 0 or more, got {warmup}")
    if prompts_file:
        try:
            with open(prompts_file, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ConfigError(f"cannot read --prompts file {prompts_file}: {exc.strerror}") from None
        requests = bench.parse_prompts(text, prompts_file, n, output_len)
    else:
        requests = bench.synthetic_requests(n, input_len, output_len, seed)

    api = client(home)
    targets = [api.bench_target(target, model, api_key_env, registries)]
    if other:
        targets.append(api.bench_target(other, vs_model or model, api_key_env, registries))

    settings = {
        "n": n, "concurrency": levels, "input_len": None if prompts_file else input_len,
        "output_len": output_len, "prompts_file": prompts_file, "seed": seed, "timeout_s": timeout_s,
        "warmup": warmup, "ignore_eos": ignore_eos,
    }
    progress = _Progress() if sys.stderr.isatty() else None
    report = api.bench(targets, requests, levels, timeout_s=timeout_s, ignore_eos=ignore_eos,
                       warmup=warmup, settings=settings, progress=progress)

    if as_json:
        echo_json(report.to_json())
    elif as_csv:
        click.echo(bench.to_csv(report), nl=False)
    else:
        click.echo(bench.format_table(report))

    if plot_path:
        from pbsvllm.plots import bench_html, write_page

        write_page(plot_path, bench_html(report.to_json()))
        click.echo(f"plot written to {plot_path}", err=True)

    error = all_failed_error(report, targets)
    if error is not None:
        raise error
