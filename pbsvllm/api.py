"""The library face of pbsvllm: what the command line calls, usable from Python.

Like vector-inference's ``VecInfClient`` for its CLI: every command parses its
options, calls one method of :class:`Client`, and prints what comes back.
Nothing here prints or exits; domain errors are raised as
:class:`pbsvllm.errors.PbsvllmError` (the CLI maps them to one line and an
exit code in ``pbsvllm.cli.main``)::

    from pbsvllm.api import Client

    client = Client.from_flags({"profile": "polaris"})   # flags > env > config > profile
    prepared = client.prepare("Qwen/Qwen2.5-7B-Instruct", "qwen", {})
    record = client.submit(prepared)
    result = client.follow([record], timeout_s=1800)     # until ready (or failed)
    report = client.status()                             # rows, notes, errors

Settings are resolved once (:func:`pbsvllm.config.resolve`) into the frozen
``Settings`` the client holds; its SSH options are handed to the transport
layer here, so the environment is read only in :mod:`pbsvllm.config`.

This module imports only light modules at load time; planning, rendering,
registries, HTTP and the log parser are imported by the methods that use
them (``pbsvllm --help`` stays fast).
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, Callable, Collection, Dict, List, Mapping, Optional, Sequence, Tuple

from pbsvllm.errors import JobNotFoundError, LogParseError, PbsvllmError, ServerError
from pbsvllm.jobs import JobRecord, JobStore
from pbsvllm.models import JobState, ServerState

if TYPE_CHECKING:
    from pbsvllm.bench import BenchReport, BenchRequest, Target
    from pbsvllm.catalog import CatalogRow
    from pbsvllm.config import Settings
    from pbsvllm.doctor import Diagnosis
    from pbsvllm.logtail import LogTail
    from pbsvllm.modelfacts import ModelFacts
    from pbsvllm.plan import Plan
    from pbsvllm.render import PreparedJob
    from pbsvllm.router import RouterState, RouterStatus
    from pbsvllm.scale import ScaleResult
    from pbsvllm.scheduler.base import JobStatus
    from pbsvllm.swap import SwapResult
    from pbsvllm.vllmlog import LogFacts
    from pbsvllm.watcher import Reporter, WatchResult


@dataclasses.dataclass
class StatusReport:
    """What ``status`` shows: one row per job (the ``--json`` document),
    notes for the user, and the hosts that could not be asked."""

    rows: List[Dict[str, Any]]
    notes: List[str]
    errors: List[str]
    live: bool  # server columns filled (not --offline)
    routers: List[RouterStatus] = dataclasses.field(default_factory=list)  # aliases' routers, members, health


@dataclasses.dataclass(frozen=True)
class DoctorOptions:
    """What ``doctor`` may be told about the node and the plan it compares with."""

    profile: Optional[str] = None
    gpus_per_node: Optional[int] = None
    gpu_memory_gib: Optional[float] = None
    interconnect: Optional[str] = None
    device: Optional[str] = None
    vllm_version: Optional[str] = None
    model: Optional[str] = None
    params: Optional[str] = None
    alias: Optional[str] = None


class Client:
    """One user's pbsvllm: settings resolved once, the job records under
    ``settings.home``, and every operation of the command line."""

    def __init__(self, settings: Settings, store: Optional[JobStore] = None) -> None:
        from pbsvllm import transport

        self.settings = settings
        self.store = store if store is not None else JobStore(settings.home)
        transport.configure(**settings.transport_options())

    @classmethod
    def from_flags(cls, flags: Optional[Mapping[str, Any]] = None) -> Client:
        """Resolve ``flags`` > ``PBSVLLM_*`` environment > user config > site
        profile > defaults, once."""
        from pbsvllm.config import resolve

        return cls(resolve(dict(flags or {})))

    # ------------------------------------------------------------------ plan and submit

    def plan(self, model: str, options: Mapping[str, Any]) -> Tuple[ModelFacts, Plan]:
        """The model's facts and the tuned vLLM flags (each with its reason)
        for the profile's node."""
        from pbsvllm.render import plan_for

        facts, plan = plan_for(self.settings, model, options)
        return facts, plan

    def prepare(self, model: str, alias: str, options: Mapping[str, Any]) -> PreparedJob:
        """Plan and render the job script; nothing is written or submitted."""
        from pbsvllm.render import prepare_job

        return prepare_job(self.settings, model, alias, options)

    def submit(self, prepared: PreparedJob, *, add_replica: bool = False) -> JobRecord:
        """Write the script on the target, qsub it, save the job record.
        ``add_replica``: once ready, register it as one more server of the
        alias instead of replacing the alias's entry."""
        from pbsvllm.launch import submit_prepared

        self.preflight(prepared)
        record = submit_prepared(self.settings, prepared, store=self.store)
        if add_replica:
            record = self.store.update(record.job_id,
                                       watch=dataclasses.replace(record.watch, add_replica=True))
        return record

    # ------------------------------------------------------------------ follow

    def find(self, target: str) -> JobRecord:
        """A tracked job by id, short id, or alias (its newest job)."""
        return self.store.find(target)

    def pending(self, *, follow_ready: bool = False) -> List[JobRecord]:
        """Tracked jobs a watcher still has to follow: not failed or stopped,
        not ready (unless ``follow_ready``), not ended, not cancelled."""
        return [r for r in self.store.list()
                if not r.server_state.is_final and (follow_ready or r.server_state != ServerState.READY)
                and not (r.last_state is not None and r.last_state.is_terminal) and not r.cancelled_at]

    def follow(self, records: Sequence[JobRecord], *, registries: Optional[Sequence[str]] = None,
               add_replica: bool = False, timeout_s: Optional[float] = None, follow_ready: bool = False,
               reporter: Optional[Reporter] = None) -> WatchResult:
        """Follow ``records`` until each server is ready (then registered),
        failed, or gone; ``follow_ready`` also follows ready ones until their
        jobs end (their entries are then removed). Resumable."""
        from pbsvllm.router.membership import RouterMembership
        from pbsvllm.watcher import watch_records

        return watch_records(self.settings, records, store=self.store, registries=registries,
                             add_replica=add_replica, timeout_s=timeout_s, reporter=reporter,
                             follow_ready=follow_ready, membership=RouterMembership(self.settings))

    @staticmethod
    def registry_specs(paths: Sequence[str], fmt: Optional[str] = None) -> Optional[List[str]]:
        """``--registry`` paths (and ``--format``) as registry specs; None when none given."""
        if not paths:
            return None
        from pbsvllm.registry import open_registries

        return [f"{r.fmt}:{r.path}" for r in open_registries(list(paths), fmt)]

    # ------------------------------------------------------------------ status

    def status(self, target: Optional[str] = None, *, offline: bool = False,
               remove_ended: bool = True, timeout_s: Optional[float] = None) -> StatusReport:
        """Every tracked job (or ``target``) in one view.

        Steps, in order: (1) ask each (host, scheduler) group for its jobs'
        states in ONE call, jobs already finished are not asked again (skipped
        with ``offline``); (2) build the rows; (3) the server columns: probe
        running servers, read engine metrics from the end of their logs, list
        the registry entries that point at each server; (4) with
        ``remove_ended``, remove the registry entries that point at servers of
        jobs that have ended (an explicit step: the only one that changes a
        registry; never an entry of a live server).
        """
        from pbsvllm import statusview
        from pbsvllm.launch import refresh_statuses

        records = [self.store.find(target)] if target else self.store.list()
        statuses: Dict[str, JobStatus] = {}
        errors: List[str] = []
        if not offline:
            statuses, errors = refresh_statuses(self.store, records, timeout_s=timeout_s)
        rows = statusview.build_rows(records, statuses)
        notes: List[str] = []
        live = not offline and bool(records)
        if live:
            from pbsvllm.liveview import live_rows, remove_ended_entries

            view = live_rows(self.settings, records, rows, store=self.store,
                             gone={jid for jid, st in statuses.items() if st.gone})
            notes = list(view.notes)
            if remove_ended:
                notes += remove_ended_entries(view, rows)
        routers: List[RouterStatus] = []
        if not offline:
            from pbsvllm import router
            from pbsvllm.router.membership import prune_ended

            if remove_ended:  # a job that ended leaves its alias's router (when no watcher saw it end)
                notes += prune_ended(self.settings.home, records,
                                     [j for j, st in statuses.items() if st.state.is_terminal])
            with_router = router.aliases(home=self.settings.home)
            wanted = {r.alias for r in records} if target else set(with_router)
            routers = [router.status(a, home=self.settings.home) for a in with_router if a in wanted]
            notes += self._keepalive_notes({r.alias for r in records} if target else None)
        return StatusReport(rows=rows, notes=notes, errors=errors, live=live, routers=routers)

    def _keepalive_notes(self, aliases: Optional[Collection[str]]) -> List[str]:
        """One line per keep-alive chain (its lead time and why its last job
        ended); a chain whose supervisor died gets a new one (the "next run"
        that recovers from a killed supervisor, docs/keepalive.md)."""
        from pbsvllm.keepalive import service

        out = []
        for c in service.status(None, home=self.settings.home):
            if aliases is not None and c["alias"] not in aliases:
                continue
            line = f"keep-alive {c['alias']}: {c['state']}"
            if c["stop_reason"]:
                line += f" ({c['stop_reason']})"
            line += f"; {c['lead_time']}"
            last = c["last_end"]
            if last:
                line += f"; last ended: {last['job_id']} {last['cause']} ({last['detail']})"
            out.append(line)
        return out

    # ------------------------------------------------------------------ logs

    def log_tail(self, target: str, *, must_exist: bool = True) -> Tuple[JobRecord, LogTail]:
        """The job's realtime log, to read (or follow) through its host's transport."""
        from pbsvllm.logtail import LogTail
        from pbsvllm.transport import get_transport

        rec = self.store.find(target)
        if not rec.log_path:
            raise LogParseError(f"job {rec.job_id} has no log path in its record")
        tail = LogTail(get_transport(rec.host), rec.log_path)
        if must_exist and not tail.exists():
            raise LogParseError(
                f"the log {rec.log_path} of job {rec.job_id} does not exist (yet)",
                hint="the job writes it once it starts; `pbsvllm status` shows whether it runs, `-f` waits for it",
            )
        return rec, tail

    def job_ended(self, record: JobRecord) -> Optional[JobState]:
        """The job's final state if its scheduler says it is over (one call), else None."""
        from pbsvllm.launch import refresh_statuses

        statuses, _errors = refresh_statuses(self.store, [record], skip_terminal=False)
        st = statuses.get(record.job_id)
        if st is not None and (st.state.is_terminal or (st.state == JobState.UNKNOWN and st.gone)):
            return st.state  # UNKNOWN only when the scheduler says it does not know the id
        return None

    # ------------------------------------------------------------------ swap and cancel

    def swap(self, alias: str, to_job: str, *, registries: Optional[Sequence[str]] = None, add: bool = False,
             cancel_old: bool = False, drain_timeout_s: float = 120.0,
             say: Callable[[str], None] = lambda s: None) -> SwapResult:
        """Point ``alias`` at ``to_job``'s server (checked ready first) in every
        registry that holds it; ``cancel_old`` drains then cancels the old one."""
        from pbsvllm.swap import swap_endpoint

        return swap_endpoint(self.settings, alias, to_job, store=self.store, registries=registries, add=add,
                             cancel_old=cancel_old, drain_timeout_s=drain_timeout_s, say=say)

    def cancel(self, target: str, *, force: bool = False, drain_timeout_s: float = 120.0,
               say: Callable[[str], None] = lambda s: None) -> Tuple[JobRecord, str]:
        """Cancel a tracked job through its scheduler; returns the record and
        the scheduler's message. A server behind its alias's router leaves it
        first (drained, at most ``drain_timeout_s``; not with ``force``)."""
        from pbsvllm.launch import cancel_job
        from pbsvllm.router.membership import leave_then_cancel

        rec = self.store.find(target)
        if force:
            return cancel_job(self.store, rec.job_id, force=True)
        out: List[Tuple[JobRecord, str]] = []

        def do_cancel() -> str:
            out.append(cancel_job(self.store, rec.job_id))
            return out[0][1]

        leave_then_cancel(self.settings.home, rec, do_cancel, drain_timeout_s=drain_timeout_s, say=say)
        return out[0]

    # ------------------------------------------------------------------ doctor

    def doctor(self, target: str, options: DoctorOptions = DoctorOptions()) -> Diagnosis:
        """Diagnose a vLLM server from its log: ``target`` is a log file, or
        the alias / id of a tracked job (its log, profile and model come from
        the record; a remote job's log is read through its transport)."""
        from pbsvllm import doctor

        record: Optional[JobRecord] = None
        log_path = target
        if not os.path.isfile(target):
            if os.sep in target or target.endswith((".log", ".gz", ".txt")):
                raise LogParseError(f"vLLM log not found: {target}",
                                    hint="pass an existing log file, or the alias/id of a tracked job")
            record = self.store.find(target)
            if not record.log_path:
                raise LogParseError(f"job {record.job_id} has no log path in its record")
            log_path = record.log_path
        facts = self._log_facts(log_path, record)
        profile_name = options.profile or (record.profile if record is not None and record.profile else None)
        profile = None
        if profile_name:
            from pbsvllm.config import resolve

            profile = resolve({"profile": profile_name}).profile
        node = doctor.node_shape(facts, profile, options.gpus_per_node, options.gpu_memory_gib,
                                 options.interconnect, options.device)
        model = options.model or (record.model if record is not None and record.model else None)
        alias = options.alias or (record.alias if record is not None and record.alias else None)
        extra: Dict[str, Any] = {"params": options.params} if options.params else {}
        req = doctor.plan_request(facts, node, model=model, alias=alias, profile_name=profile_name,
                                  vllm_version=options.vllm_version, extra_options=extra,
                                  profile_device=profile.device if profile is not None else None)
        if options.params:
            req.submit_argv += ["--params", str(options.params)]
        plan, plan_error = None, ""
        if not req.model:
            plan_error = "the log names no model; pass --model"
        elif node.device != "cpu" and not node.gpu_memory_gib:
            plan_error = ("the GPUs' memory is unknown: pass --profile (a site profile) or --gpu-memory GiB to get "
                          "the planner's flags")
        else:
            try:
                from pbsvllm.config import resolve
                from pbsvllm.render import plan_for

                _facts, plan = plan_for(resolve(req.resolve_flags), req.model, req.options)
            except PbsvllmError as exc:
                plan_error = f"the planner could not plan {req.model}: {exc}"
        diag = doctor.diagnose(facts, node, plan=plan, plan_req=req, plan_error=plan_error, log_path=log_path)
        if record is not None and record.plan.get("vllm_args"):
            diag.recommendation.notes.append(doctor.recorded_plan_note(record.job_id, record.plan, facts))
        return diag

    @staticmethod
    def _log_facts(log_path: str, record: Optional[JobRecord]) -> LogFacts:
        """The log's facts, with the fast byte-level scanner either way: a
        file on this machine is read directly (gzip too); a remote job's log
        is read through the job's transport in large ranges."""
        from pbsvllm import vllmlog

        if record is None or record.host is None:
            return vllmlog.parse_file(log_path)
        from pbsvllm.logtail import LogTail, RangeReader
        from pbsvllm.transport import get_transport

        transport = get_transport(record.host)
        tail = LogTail(transport, log_path)
        if not tail.exists():
            raise LogParseError(f"the log {log_path} of job {record.job_id} does not exist on {record.host} (yet)",
                                hint="`pbsvllm status` shows whether the job has started")
        # the bytes path over range reads: bounded memory per line and per log
        return vllmlog.parse_stream(RangeReader(transport, log_path))

    # ------------------------------------------------------------------ bench

    def bench_target(self, name: str, model: Optional[str] = None, api_key_env: str = "VLLM_API_KEY",
                     registries: Sequence[str] = ()) -> Target:
        """A URL (``model`` required), or an alias looked up in ``registries``,
        else the alias's configured registries, else the job records."""
        from pbsvllm import bench

        return bench.resolve_target(name, model, api_key_env, registries=list(registries), settings=self.settings)

    def bench(self, targets: Sequence[Target], requests: Sequence[BenchRequest], levels: Sequence[int], *,
              timeout_s: float, ignore_eos: bool = True, warmup: int = 0,
              settings: Optional[Dict[str, Any]] = None,
              progress: Optional[Callable[[str, int, int, int], None]] = None) -> BenchReport:
        """Load-test ``targets`` level by level; ServerError when every request failed."""
        from pbsvllm import bench

        report = bench.run_bench(list(targets), list(requests), list(levels), timeout_s=timeout_s,
                                 ignore_eos=ignore_eos, warmup=warmup, settings=settings or {}, progress=progress)
        return report

    # ------------------------------------------------------------------ router, url, scale

    def alias_url(self, alias: str, *, vf_config: Optional[str] = None) -> AliasUrl:
        """The alias's stable URL (its router's); ``vf_config``: also write that
        verifiers 0.4 ``vf-eval @ FILE`` config. Without a router: a
        NoRouterError that says how to get one and where the alias is now."""
        from pbsvllm import router

        if alias not in router.aliases(home=self.settings.home):
            now = [u for r in self.store.list() if r.alias == alias and r.server_state == ServerState.READY
                   for u in r.urls]
            where = f"; it is served now at {', '.join(now)}, which changes with each job" if now else ""
            if not router.available(router.settings_for(self.settings.profile).python):
                raise router.NoRouterError(f"alias {alias!r} has no stable URL: vllm-router is not installed{where}",
                                           hint=router.install_hint())
            raise router.NoRouterError(f"alias {alias!r} has no router yet{where}",
                                       hint=f"`pbsvllm router start {alias}` (its servers join it once ready)")
        st = router.ensure_running(alias, router.settings_for(self.settings.profile), home=self.settings.home)
        info = AliasUrl(alias=alias, url=st.url, model=st.model or alias, api_key_var=st.api_key_var)
        if vf_config:
            from pbsvllm.registry import Endpoint, open_registry

            open_registry(vf_config, "vf-config").register(
                Endpoint(alias=alias, model=info.model, url=info.url, key=info.api_key_var))
        return info

    def router_start(self, alias: str, *, port: int = 0, model: str = "") -> RouterState:
        """Start the alias's router (or find it running); its port is kept from the first start."""
        from pbsvllm import router

        recs = [r for r in self.store.list() if r.alias == alias]
        cfg = dataclasses.replace(router.settings_for(self.settings.profile), port=port)
        return router.ensure_running(alias, cfg, home=self.settings.home,
                                     model=model or (recs[-1].served_name if recs else ""),
                                     api_key_var=self.settings.api_key_env)

    def router_stop(self, alias: str) -> bool:
        from pbsvllm import router

        return router.stop(alias, home=self.settings.home)

    def router_status(self, alias: Optional[str] = None) -> List[RouterStatus]:
        """The router of ``alias`` (default: every alias that has one)."""
        from pbsvllm import router

        names = [alias] if alias else router.aliases(home=self.settings.home)
        return [router.status(a, home=self.settings.home) for a in names]

    def scale(self, alias: str, n: int, *, wait: bool = False, timeout_s: Optional[float] = None,
              drain_timeout_s: float = 120.0, say: Callable[[str], None] = lambda s: None) -> ScaleResult:
        """Submit or cancel jobs until ``n`` servers of ``alias`` run (``wait``: are ready)."""
        from pbsvllm.scale import scale

        return scale(self.settings, self.store, alias, n, wait=wait, timeout_s=timeout_s,
                     drain_timeout_s=drain_timeout_s, say=say)

    # ------------------------------------------------------------------ before qsub (ux)

    def preflight(self, prepared: PreparedJob) -> None:
        """Everything checkable before ``qsub`` (registries, script, walltime, key file, folders:
        :mod:`pbsvllm.preflight`); raises before anything is written on the target."""
        from pbsvllm.preflight import check_submit
        from pbsvllm.transport import get_transport

        check_submit(self.settings, prepared, transport=get_transport(self.settings.host))

    # ------------------------------------------------------------------ model catalog

    def models(self, name: Optional[str] = None, *, family: Optional[str] = None,
               max_model_len: Optional[int] = None, vllm_version: Optional[str] = None) -> List[CatalogRow]:
        """The built-in model catalog planned on the profile's node (one row, or every row of a
        family): numbers, real checkpoint size and source, the estimate, the plan or why none."""
        from pbsvllm.catalog import catalog_row, catalog_rows
        from pbsvllm.plan import Hardware, Workload

        hw = Hardware.from_profile(self.settings.profile)
        version = vllm_version or self.settings.profile.vllm_version
        workload = Workload(max_model_len=max_model_len)
        if name:
            return [catalog_row(name, hw, version, workload)]
        return catalog_rows(hw, version, workload, family=family)


    # ------------------------------------------------------------------ keep-alive (docs/keepalive.md)

    def keepalive_start(self, alias: str, *, until: Optional[str] = None, budget: Optional[str] = None,
                        job: Optional[str] = None, margin_s: Optional[float] = None) -> Dict[str, Any]:
        """Keep ``alias`` served across walltime and failures, from ``job``
        (default: the alias's newest); starts its supervisor."""
        from pbsvllm.keepalive import service

        return service.start(alias, home=self.settings.home, until=until, budget=budget, job=job, margin_s=margin_s)

    def keepalive_stop(self, alias: str, *, cancel: bool = False) -> str:
        """End the chain of ``alias`` (``cancel``: drain and cancel its jobs too)."""
        from pbsvllm.keepalive import service

        return service.stop(alias, home=self.settings.home, cancel=cancel)

    def keepalive_status(self, alias: Optional[str] = None) -> List[Dict[str, Any]]:
        """Each chain's summary (reviving a supervisor that died)."""
        from pbsvllm.keepalive import service

        return service.status(alias, home=self.settings.home)

    def keepalive_ensure(self) -> Dict[str, Optional[int]]:
        """Revive the supervisor of every running chain; new pids by alias."""
        from pbsvllm.keepalive import service

        return service.ensure(home=self.settings.home)


@dataclasses.dataclass(frozen=True)
class AliasUrl:
    """What ``pbsvllm url ALIAS --json`` prints."""

    alias: str
    url: str
    model: str
    api_key_var: str

    def to_dict(self) -> Dict[str, str]:
        return {"url": self.url, "model": self.model, "api_key_var": self.api_key_var, "alias": self.alias}


def all_failed_error(report: BenchReport, targets: Sequence[Target]) -> Optional[ServerError]:
    """The error to raise when no request of a bench run succeeded (None otherwise)."""
    if report.total_ok() != 0:
        return None
    kinds: List[str] = sorted({k for run in report.runs for lv in run.levels for k in lv.errors})
    hint = "check the URL, --model and the API key variable; the report above shows an example of each error"
    if "http_401" in kinds:
        unset = sorted({t.api_key_env for t in targets if not any(e.api_key for e in t.endpoints)})
        hint = ("the server wants an API key: " + (f"${' and $'.join(unset)} is not set"
                if unset else "the key sent was refused") + " (--api-key-env NAME picks the variable)")
    return ServerError(f"all {report.total_requests()} requests failed ({', '.join(kinds)})", hint=hint)


__all__ = ["AliasUrl", "Client", "DoctorOptions", "StatusReport", "all_failed_error", "JobNotFoundError"]
