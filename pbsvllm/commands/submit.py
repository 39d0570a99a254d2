"""pbsvllm submit MODEL --alias A: plan, render the PBS script, submit it (--dry-run prints it)."""

from __future__ import annotations

from typing import Any

import click

from pbsvllm.commands._common import echo_json, exit_with, follow_and_report, json_option, registry_options
from pbsvllm.commands.plan import site_options, split_kwargs, workload_options


def submit_options(f: Any) -> Any:
    for opt in reversed([
        click.option("--alias", "-a", required=True, help="Name of this server (job name, log name, registry entry)."),
        click.option("--served-model-name", help="Name clients send as \"model\" (default: the alias)."),
        click.option("--port", type=int, default=8000, show_default=True,
                     help="Requested port; the job takes the next free one from here at start time."),
        click.option("--walltime", help="Walltime, e.g. 04:00:00 (overrides the profile)."),
        click.option("--queue", "-q", help="Queue (overrides the profile)."),
        click.option("--account", "-A", help="Project / account to charge (overrides the profile)."),
        click.option("--host", help="Submit over SSH to this host (user@host or an ~/.ssh/config name)."),
        click.option("--scheduler", type=click.Choice(["auto", "pbspro", "torque", "local"]),
                     help="Scheduler on the target (default: the profile's, auto-detected)."),
        click.option("--api-key-file", type=click.Path(dir_okay=False),
                     help="File (mode 0600) holding the API key; the job reads it into VLLM_API_KEY."),
        click.option("--template",
                     help="Template name to render (default job.sh.j2; searched in template_dirs first)."),
        click.option("--dry-run", is_flag=True, help="Print the rendered script; submit nothing."),
        click.option("--directive", "directives", multiple=True, metavar="'-X VALUE'",
                     help="Extra scheduler directive for this job, e.g. '-l mem=200gb' (repeatable; placed first, "
                          "so it wins over the profile's; -N/-o/-e/-j are pbsvllm's)."),
        click.option("--env", "env", multiple=True, metavar="NAME=VALUE",
                     help="Extra environment variable for the server (repeatable; exported after the profile's "
                          "environment; quoted; no secrets: they would be written into the script)."),
        click.option("--quiet", is_flag=True,
                      help="Print only the job id (like qsub, sbatch --parsable); with --wait, no progress: "
                           "the exit status tells, failures get one line on stderr."),
    ]):
        f = opt(f)
    return f


@click.command()
@click.argument("model")
@submit_options
@click.option("--wait", is_flag=True,
              help="Follow the job until its server really answers (model listed, one-token completion), "
                   "then register it in the endpoint registries; exit 7 if it fails.")
@click.option("--timeout", "timeout_s", type=float, default=None, metavar="SECONDS",
              help="With --wait: give up waiting after this long (the job keeps running).")
@click.option("--keep-alive", "keep_alive", is_flag=True,
              help="Keep the alias served across walltime and failed jobs: successors are submitted before "
                   "the walltime runs out and failed jobs replaced (docs/keepalive.md).")
@click.option("--until", "until", default=None, metavar="DATE|DURATION",
              help="With --keep-alive: when the chain ends (2026-12-09T18:00, 12h, 3d).")
@click.option("--budget", default=None, metavar="NODE_HOURS",
              help="With --keep-alive: never start a job that could take the chain past this many node-hours.")
@click.option("--keep-alive-margin", "keep_alive_margin", type=float, default=None, metavar="SECONDS",
              help="With --keep-alive: the safety margin added to the lead time (default 120 s; docs/keepalive.md).")
@registry_options
@site_options
@workload_options
@json_option
def command(model: str, dry_run: bool, as_json: bool, **kwargs: Any) -> None:
    """Plan MODEL for the profile, render its PBS script and submit it.

    Prints the job id, alias and realtime log path (with --dry-run: the
    script, nothing is submitted)."""
    from pbsvllm.api import Client

    if kwargs.get("quiet") and (as_json or dry_run):
        from pbsvllm.errors import ConfigError

        raise ConfigError(f"--quiet and {'--json' if as_json else '--dry-run'} are exclusive: --quiet prints only "
                          f"the job id")
    keep_alive = bool(kwargs.pop("keep_alive", False))
    until, budget = kwargs.pop("until", None), kwargs.pop("budget", None)
    margin = kwargs.pop("keep_alive_margin", None)
    if (until or budget or margin is not None) and not keep_alive:
        raise click.UsageError("--until, --budget and --keep-alive-margin go with --keep-alive")
    extras = {"directives": kwargs.pop("directives", ()), "env": kwargs.pop("env", ())}
    flags, options = split_kwargs(kwargs)
    options.update({k: v for k, v in extras.items() if v})
    specs = Client.registry_specs(kwargs.get("registries") or (), kwargs.get("registry_format"))
    if specs:
        flags["registries"] = tuple(specs)  # recorded in the job: watch/status use them later
    if kwargs.get("template"):
        options["template"] = kwargs["template"]
    api = Client.from_flags(flags)
    settings = api.settings
    prepared = api.prepare(model, kwargs["alias"], options)
    if dry_run:
        if as_json:
            echo_json({"alias": prepared.alias, "script_path": prepared.script_path, "log_path": prepared.log_path,
                       "server_info_path": prepared.server_info_path, "plan": prepared.plan.to_json(),
                       "script": prepared.script_text})
        else:
            click.echo(prepared.script_text, nl=False)
        return
    record = api.submit(prepared, add_replica=bool(kwargs.get("add_replica")))
    if api.store.last_replaced:  # a reused job id: the earlier job's record is kept, not overwritten
        click.echo(f"pbsvllm: warning: job id {record.job_id} was used before; the earlier job's record was "
                   f"moved to {api.store.last_replaced}", err=True)
    chain = api.keepalive_start(record.alias, until=until, budget=budget, job=record.job_id,
                                margin_s=margin) if keep_alive else None
    if kwargs.get("quiet"):
        click.echo(record.job_id)
        if kwargs.get("wait"):
            exit_with(follow_and_report(api, [record], add_replica=bool(kwargs.get("add_replica")),
                                        timeout_s=kwargs.get("timeout_s"), quiet=True))
        return
    if as_json and not kwargs.get("wait"):
        echo_json(record.to_dict())
        return
    say = (lambda t: click.echo(t, err=True)) if as_json else click.echo
    say(f"submitted {record.job_id}  alias {record.alias}  ({settings.profile.name}, "
        f"TP={prepared.plan.tensor_parallel_size} DP={prepared.plan.data_parallel_size}"
        + (f" PP={prepared.plan.pipeline_parallel_size} on {prepared.plan.nodes} nodes" if prepared.plan.nodes > 1
           else "") + ")")
    say(f"log     {record.log_path}")
    if prepared.plan.nodes > 1:  # docs/multinode.md
        say(f"nodes   {record.log_path.rsplit('.log', 1)[0]}.node<i>.log (Ray / headless ranks per node)")
    say(f"script  {record.script_path}")
    if chain is not None:
        say(f"keep-alive: {chain['lead_time']} (pbsvllm keepalive status {record.alias})")
    if kwargs.get("wait"):
        exit_with(follow_and_report(api, [record], add_replica=bool(kwargs.get("add_replica")),
                                    timeout_s=kwargs.get("timeout_s"), as_json=as_json))
