"""Render the PBS job script (Jinja2) for a planned vLLM server.

- Templates: the user's ``template_dirs`` are searched before the built-in
  directory (``pbsvllm/templates`` in a wheel, ``templates/`` in a source
  tree); the built-ins are also reachable as ``builtin/<name>`` so a user
  ``job.sh.j2`` can ``{% extends "base.sh.j2" %}`` and override one block.
- ``StrictUndefined``: a missing variable is an error, never an empty string.
- Every ``{{ value }}`` must pass through a filter that makes it safe for its
  place (``shquote``, ``directive``, ``comment``, ``raw_shell``, ``envname``);
  a bare string is refused at render time, so a template cannot forget to
  quote. Numbers are allowed as they are. The guard holds for every filter
  and operator: Jinja's own filters may not produce script text (``e``,
  ``safe``, ``tojson``, ``urlize``, ``forceescape``, ``replace`` on a quoted
  value... are refused), and the sandboxed environment allows no string
  methods, slicing, ``~`` or ``+`` on text, which could unquote a value.
- Jinja comments are ``{## ... ##}`` (bash's ``${#array[@]}`` would open a
  default ``{# #}`` comment).

jinja2 is imported inside the functions (``pbsvllm --help`` stays light).
The job-file contract (paths, server-info keys) is in docs/architecture.md.
"""

from __future__ import annotations

import datetime
import functools
import os
import re
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from markupsafe import Markup

from pbsvllm import __version__
from pbsvllm.config import Profile, Settings
from pbsvllm.errors import ConfigError, PbsvllmError, PlanError, TemplateError

if TYPE_CHECKING:
    from pbsvllm.modelfacts import ModelFacts
    from pbsvllm.plan import Plan

TEMPLATE_NAME = "job.sh.j2"
_DIRECTIVE_RE = re.compile(r"^[A-Za-z0-9_.:=+@/,%~-]+$")
_ENVNAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def builtin_template_dir() -> str:
    """``pbsvllm/templates`` (installed wheel) or ``<source tree>/templates``."""
    here = os.path.dirname(os.path.abspath(__file__))
    for cand in (os.path.join(here, "templates"), os.path.join(os.path.dirname(here), "templates")):
        if os.path.isfile(os.path.join(cand, TEMPLATE_NAME)):
            return cand
    raise TemplateError(f"the built-in templates are missing: no {TEMPLATE_NAME} in {here}/templates or "
                        f"{os.path.dirname(here)}/templates (reinstall pbsvllm)")


class Safe(Markup):
    """A string a filter has made safe for its place in the script.

    A ``Markup`` subclass so that Jinja's autoescape (on, with this class as the
    only way through ``finalize``) passes it unchanged; ``super()`` and macro
    output are ``Markup`` too and pass as already-rendered template text."""


def _shquote(v: Any) -> Safe:
    return Safe(shlex.quote(str(v)))


def _shpath(v: Any) -> Safe:
    """A path as a shell word; a leading '~/' becomes "$HOME"/ (expanded on the node)."""
    s = str(v)
    if s == "~":
        return Safe('"$HOME"')
    if s.startswith("~/"):
        return Safe('"$HOME"/' + shlex.quote(s[2:]))
    return Safe(shlex.quote(s))


def _directive(v: Any) -> Safe:
    s = str(v)
    if not _DIRECTIVE_RE.match(s):
        raise TemplateError(f"value {s!r} cannot go into a #PBS directive (allowed: letters, digits and _.:=+@/,%~-); "
                            f"fix it in the profile or on the command line")
    return Safe(s)


def _directive_line(v: Any) -> Safe:
    s = str(v)
    if "\n" in s or "\r" in s or not s.startswith("#PBS "):
        raise TemplateError(
            f"extra directive {s!r} must be one line starting with '#PBS ' (profile key extra_directives)"
        )
    return Safe(s)


def _comment(v: Any) -> Safe:
    return Safe(re.sub(r"[\x00-\x1f\x7f]+", " ", str(v)))


def _raw_shell(v: Any) -> Safe:
    s = str(v)
    if "\n" in s or "\x00" in s:
        raise TemplateError(f"profile env_lines entry {s!r} must be one line")
    return Safe(s)


def _heredoc(v: Any, delimiter: str) -> Safe:
    """A block of rendered text that goes between ``<<'DELIMITER'`` and ``DELIMITER``: no line of it
    may equal the delimiter (that line would end the here-document early and run the rest as script)."""
    s = str(v)
    if any(line.strip() == delimiter for line in s.splitlines()):
        raise TemplateError(f"a rendered value contains a line {delimiter!r}, which would end the node helper "
                            f"script early; remove it (profile env_lines / env)")
    return Safe(s)


def _envname(v: Any) -> Safe:
    s = str(v)
    if not _ENVNAME_RE.match(s):
        raise TemplateError(f"{s!r} is not an environment variable name (profile key env)")
    return Safe(s)


def _finalize(v: Any) -> Any:
    if isinstance(v, Markup) or (isinstance(v, (int, float)) and not isinstance(v, bool)):
        return v
    raise TemplateError(f"template printed {v!r} without a quoting filter; use | shquote (shell word), "
                        f"| directive (#PBS value) or | comment (comment text)")


#: pbsvllm's own filters: the only ones whose output may be (or become) script text.
QUOTING_FILTERS = ("shquote", "shpath", "directive", "directive_line", "comment", "raw_shell", "envname")


def _no_markup_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A Jinja built-in filter that may not produce script text: ``e``, ``safe``,
    ``tojson``, ``urlize``, ``forceescape``, ``replace`` or ``trim`` on a quoted
    value... would all hand the guard "markup" that is not quoted for a shell.
    Their results are fine as input to a quoting filter (``v | upper | shquote``)."""

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        out = func(*args, **kwargs)
        if isinstance(out, Markup):
            raise TemplateError(
                f"filter '{name}' cannot put text into a job script: its result is not quoted for the shell; "
                f"end the expression with one of pbsvllm's quoting filters ({', '.join(QUOTING_FILTERS)})"
            )
        return out

    return guarded


def _sandbox_class() -> Any:
    """A sandboxed Jinja environment in which a template can change a string only
    through filters: no string methods, no slicing, no ``~``/``+``/``%`` on
    strings (each could turn a quoted value back into bare shell text)."""
    import jinja2.compiler
    import jinja2.sandbox

    class NoConcat(jinja2.compiler.CodeGenerator):
        def visit_Concat(self, node: Any, frame: Any) -> None:
            self.fail("'~' cannot be used in a pbsvllm job template: it joins text the guard cannot check; "
                      "print each value with its own quoting filter", node.lineno)

        def visit_Getitem(self, node: Any, frame: Any) -> None:
            import jinja2.nodes

            if isinstance(node.arg, jinja2.nodes.Slice):  # Jinja slices bypass environment.getitem
                self.fail("slicing ([a:b]) cannot be used in a pbsvllm job template: it can cut the quotes off a "
                          "quoted value", node.lineno)
            super().visit_Getitem(node, frame)

    class ScriptEnvironment(jinja2.sandbox.SandboxedEnvironment):
        code_generator_class = NoConcat
        intercepted_binops = frozenset(["+", "*", "%"])

        def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
            if isinstance(obj, str):
                return False  # Markup.replace/strip/format... would keep it "markup"
            return bool(super().is_safe_attribute(obj, attr, value))

        def getitem(self, obj: Any, argument: Any) -> Any:
            if isinstance(obj, str):
                raise TemplateError("a pbsvllm job template cannot index or slice text "
                                    f"({obj[:40]!r}[{argument!r}]); print whole values through a quoting filter")
            return super().getitem(obj, argument)

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if isinstance(left, str) or isinstance(right, str):
                raise TemplateError(f"'{operator}' on text cannot be used in a pbsvllm job template; "
                                    "print each value with its own quoting filter")
            return super().call_binop(context, operator, left, right)

    return ScriptEnvironment


def make_environment(template_dirs: Sequence[str] = ()) -> Any:
    import jinja2

    builtin = builtin_template_dir()
    user = [d for d in template_dirs if d]
    for d in user:
        if not os.path.isdir(d):
            raise TemplateError(f"template directory {d} does not exist (config key template_dirs)")
    loader = jinja2.ChoiceLoader([
        jinja2.PrefixLoader({"builtin": jinja2.FileSystemLoader(builtin)}),
        jinja2.FileSystemLoader(user + [builtin]),
    ])
    env = _sandbox_class()(loader=loader, undefined=jinja2.StrictUndefined, autoescape=True,
                           trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                           finalize=_finalize, comment_start_string="{##", comment_end_string="##}")
    for name, func in list(env.filters.items()):
        env.filters[name] = _no_markup_filter(name, func)
    env.filters.update(shquote=_shquote, shpath=_shpath, directive=_directive, directive_line=_directive_line,
                       comment=_comment, raw_shell=_raw_shell, envname=_envname,
                       heredoc=_heredoc)
    env.globals.pop("lipsum", None)  # returns markup
    return env


# ---------------------------------------------------------------------------
# planning from settings + options (shared by `plan`, `submit` and others)
# ---------------------------------------------------------------------------

WORKLOAD_KEYS = ("max_model_len", "concurrency", "prompt_len", "output_len", "kv_cache_dtype")
FACT_KEYS = ("params", "dtype", "num_layers", "num_kv_heads", "head_dim", "weight_gib")


def plan_for(settings: Settings, model: str, options: Mapping[str, Any],
             env: Optional[Mapping[str, str]] = None) -> Tuple[ModelFacts, Plan]:
    """(facts, plan) for ``model`` on the settings' profile. ``options`` keys:
    served_model_name, port, vllm_args (list of --vllm-arg values), allow_unknown_vllm_args,
    quantization, vllm_version, and the WORKLOAD_KEYS / FACT_KEYS."""
    from pbsvllm.flags import split_user_args
    from pbsvllm.modelfacts import load_model_facts
    from pbsvllm.plan import Hardware, Workload, make_plan

    o = {k: v for k, v in options.items() if v is not None}
    facts = load_model_facts(model, {k: o[k] for k in FACT_KEYS if k in o}, **({"env": env} if env is not None else {}))
    p = settings.profile
    lo, hi, why = p.node_range()
    if hi and p.nodes > hi:
        raise ConfigError(f"--nodes {p.nodes}: profile '{p.name}' allows at most {hi} ({why})",
                          hint=f"use --nodes {hi}, or a queue that takes more nodes (-q)")
    user_args = split_user_args(o.get("vllm_args", ()))
    if o.get("quantization"):
        user_args += ["--quantization", str(o["quantization"])]
    workload = Workload(**{k: o[k] for k in WORKLOAD_KEYS if k in o})
    model_arg = model
    plan = make_plan(
        facts, Hardware.from_profile(p), workload, o.get("vllm_version") or p.vllm_version, user_args,
        served_model_name=o.get("served_model_name"), host=p.bind_host, port=int(o.get("port") or 8000),
        model_arg=model_arg, model_flag=p.model_flag, allow_unknown_flags=bool(o.get("allow_unknown_vllm_args")),
    )
    return facts, plan


# ---------------------------------------------------------------------------
# multi-node layouts (docs/multinode.md)
# ---------------------------------------------------------------------------

def multinode_mode(plan: Any) -> str:
    """How a plan spans its nodes: ``ray`` (TP inside a node, PP across nodes, vLLM's Ray executor on a
    Ray cluster the job forms) or ``dp`` (vLLM's native multi-node data parallel: each node runs its own
    engine ranks, the other nodes headless). ``""`` for a one-node plan."""
    if plan.nodes <= 1:
        return ""
    if plan.pipeline_parallel_size > 1 or plan.arg("--distributed-executor-backend") is not None:
        return "ray"
    if plan.data_parallel_size > 1 and plan.data_parallel_mode == "vllm":
        return "dp"
    raise PlanError(f"the plan spans {plan.nodes} nodes with TP={plan.tensor_parallel_size} "
                    f"PP={plan.pipeline_parallel_size} DP={plan.data_parallel_size}: neither pipeline parallel "
                    f"(Ray) nor vLLM data parallel across the nodes, so pbsvllm cannot render it")


def multinode_context(p: Profile, plan: Any) -> Optional[Dict[str, Any]]:
    """The template's ``multinode`` values for a plan of several nodes (None for one node); refuses
    layouts the site's limits or the target vLLM version cannot run, before anything is queued."""
    from pbsvllm.flags import is_known

    p.check_nodes(plan.nodes, f"the plan ({plan.nodes} nodes)")
    mode = multinode_mode(plan)
    if not mode:
        return None
    version = plan.vllm_version
    dp_local = 0
    if mode == "ray":
        backend = plan.arg("--distributed-executor-backend")
        if backend is None or tuple(backend.values) != ("ray",):
            raise PlanError(f"the plan spans {plan.nodes} nodes with PP={plan.pipeline_parallel_size} but does not "
                            f"use --distributed-executor-backend ray; pbsvllm forms a Ray cluster for it",
                            hint="drop the --vllm-arg that sets another backend")
        if plan.tensor_parallel_size * plan.pipeline_parallel_size > plan.nodes * max(1, plan.gpus_per_node) and \
                plan.device == "cuda":
            raise PlanError(f"TP={plan.tensor_parallel_size} x PP={plan.pipeline_parallel_size} needs more GPUs than "
                            f"{plan.nodes} nodes x {plan.gpus_per_node}")
    else:
        missing = [f for f in ("--data-parallel-size-local", "--data-parallel-address", "--data-parallel-rpc-port",
                               "--data-parallel-start-rank", "--headless") if not is_known(f, version)]
        if missing:
            raise PlanError(f"multi-node data parallel needs {', '.join(missing)}, which vLLM {version} does not have "
                            f"(added in 0.9.2)", hint="serve with a newer vLLM (--vllm-version) or on one node")
        if plan.data_parallel_size % plan.nodes:
            raise PlanError(f"DP={plan.data_parallel_size} does not split evenly over {plan.nodes} nodes; "
                            f"use a multiple of {plan.nodes}")
        dp_local = plan.data_parallel_size // plan.nodes
    if p.node_launcher == "pbsdsh" and p.scheduler == "local":
        raise ConfigError(f"profile {p.name}: node_launcher pbsdsh needs a PBS job; the local backend uses 'local'")
    return {
        "nodes": plan.nodes,
        "mode": mode,
        "launcher": p.node_launcher,
        "launcher_args": list(p.node_launcher_args),
        "interface": p.node_interface,
        "ray_port": p.ray_port,
        "ray_temp_dir": p.ray_temp_dir,
        "ray_wait_s": p.ray_wait_s,
        "dp_rpc_port": p.dp_rpc_port,
        "dp_local": dp_local,
        "gpus_per_node": plan.gpus_per_node if plan.device == "cuda" else 0,
        "cpus_per_node": p.cpus_per_node,
    }


# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PreparedJob:
    """What ``submit`` hands to ``pbsvllm.launch.submit_prepared``.

    ``log_path`` and ``server_info_path`` hold the literal ``{job_id}``
    placeholder (the id is known only after qsub); use :meth:`log_path_for`
    / :meth:`server_info_path_for` once it is. With a remote host, paths may
    start with ``~/`` (expanded on the cluster)."""

    alias: str
    model: str
    served_model_name: str
    plan: Any                 # pbsvllm.plan.Plan
    script_text: str
    script_path: str          # $PBSVLLM_HOME/scripts/<alias>-<timestamp>.pbs (not yet written)
    log_path: str             # <log_dir>/<alias>.{job_id}.log
    server_info_path: str     # $PBSVLLM_HOME/run/{job_id}.server.json
    log_dir: str
    home: str
    job_name: str
    port: int

    def log_path_for(self, job_id: str) -> str:
        return self.log_path.replace("{job_id}", job_id)

    def server_info_path_for(self, job_id: str) -> str:
        return self.server_info_path.replace("{job_id}", job_id)

    @property
    def dirs(self) -> Tuple[str, ...]:
        """Directories the submitter creates (0700) before qsub."""
        return (self.home, os.path.join(self.home, "scripts"), os.path.join(self.home, "run"), self.log_dir)


def check_alias(alias: str) -> str:
    if not alias or alias in (".", "..") or "/" in alias or re.search(r"[\x00-\x1f\x7f]", alias) or len(alias) > 100:
        raise ConfigError(f"alias {alias!r} is not usable: it names files (<alias>.<job_id>.log), so it must be "
                          f"1-100 characters without '/' or control characters")
    return alias


def job_name_for(alias: str, dialect: str) -> str:
    """A #PBS -N value: letters, digits, _ . - only, starting with a letter (Torque: 15 chars)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", alias)
    if not name[:1].isalpha():
        name = "v" + name
    return name[:15] if dialect == "torque" else name[:63]


def build_context(settings: Settings, model: str, alias: str, plan: Any, *, served_model_name: str,
                  port: int, extra_directives: Sequence[str] = (),
                  submit_env: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    p = settings.profile
    multinode = multinode_context(p, plan)
    # replicas mode: N independent servers on the node, each on its own TP x PP GPU set
    replicas = plan.data_parallel_size if plan.data_parallel_mode == "replicas" else 1
    home = settings.home
    log_dir = settings.log_dir
    if not log_dir.startswith("~") and not _DIRECTIVE_RE.match(log_dir):
        raise ConfigError(f"profile {p.name}: log_dir {log_dir!r} must be a plain path (letters, digits, _.-/) "
                          f"because it goes into '#PBS -o'")
    pbs = {
        "dialect": p.dialect,
        "job_name": job_name_for(alias, p.dialect),
        "nodes": plan.nodes,
        "ncpus": p.cpus_per_node if p.request_ncpus else 0,
        "ngpus": plan.gpus_per_node if (p.request_ngpus and plan.device == "cuda") else 0,
        "select_extra": p.select_extra or "",
        "place": p.place or "",
        "filesystems": p.filesystems or "",
        "walltime": p.walltime,
        "queue": p.queue or "",
        "account": p.account or "",
        # '#PBS -o <dir>/': a path without a file name; PBS Pro then names the spool file <dir>/<jobid>.OU
        # (qsub(1B)); a '~' path (remote host, not yet expanded) cannot go into a directive: PBS's default then
        # applies
        "output": "" if log_dir.startswith("~") else log_dir.rstrip("/") + "/",
        "extra_directives": list(extra_directives) + list(p.extra_directives),  # per-submit ones first: they win
    }
    launcher = shlex.split(p.launcher)
    if not launcher:
        raise ConfigError(f"profile {p.name}: launcher is empty (e.g. \"vllm serve\")")
    url_host = "127.0.0.1" if p.bind_host in _LOOPBACK else ""
    summary = (f"TP={plan.tensor_parallel_size} PP={plan.pipeline_parallel_size} DP={plan.data_parallel_size} on "
               f"{plan.gpus_per_node or 'no'} GPU(s); {plan.kv_cache_tokens:,} KV tokens per replica; "
               f"max concurrency {plan.max_concurrency:.1f} at {plan.max_model_len:,} tokens")
    return {
        "pbsvllm_version": __version__,
        "alias": alias,
        "model": model,
        "served_model_name": served_model_name,
        "home": home,
        "log_dir": log_dir,
        "profile": p,
        "pbs": pbs,
        "device": plan.device,
        "gpus": plan.gpus_per_node,
        "replicas": replicas,
        "replica_gpus": plan.tensor_parallel_size * plan.pipeline_parallel_size,
        "api_key_file": settings.api_key_file or "",
        "port": int(port),
        "bind_host": p.bind_host,
        "url_host": url_host,
        "hostname_suffix": p.hostname_suffix,
        "url_template": p.url_template,
        "launcher": launcher,
        "launcher_text": p.launcher,
        "model_args": list(plan.model_args),
        "args": list(plan.args),
        "plan": plan,
        "plan_summary": summary,
        "submit_env": dict(submit_env or {}),  # --env NAME=VALUE: exported after the profile's lines
        "multinode": multinode,
    }


def render_script(context: Mapping[str, Any], template_dirs: Sequence[str] = (),
                  template_name: str = TEMPLATE_NAME) -> str:
    """Render ``template_name`` with ``context`` (see :func:`build_context`)."""
    import jinja2

    env = make_environment(template_dirs)
    try:
        text: str = env.get_template(template_name).render(**context)
        return text
    except PbsvllmError:
        raise
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(
            f"template {exc.name} not found in {', '.join(list(template_dirs) + [builtin_template_dir()])}"
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template {exc.filename or exc.name}:{exc.lineno}: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(
            f"template {template_name}: {exc.message} (a variable the template uses is not provided)"
        ) from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"template {template_name}: {exc} (job templates may not do this)") from None
    except (jinja2.TemplateError, TypeError, ValueError, AttributeError, LookupError, RecursionError) as exc:
        raise TemplateError(f"template {template_name} failed: {type(exc).__name__}: {exc}") from None


def prepare_job(settings: Settings, model: str, alias: str, options: Mapping[str, Any],
                now: Optional[datetime.datetime] = None, env: Optional[Mapping[str, str]] = None) -> PreparedJob:
    """Plan + rendered script + the paths the job will use. Pure apart from reading
    model facts and templates; writes nothing (the submitter writes the script)."""
    check_alias(alias)
    served = options.get("served_model_name") or alias
    port = int(options.get("port") or 8000)
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be 1-65535, got {port}")
    opts = dict(options)
    opts["served_model_name"] = served
    opts["port"] = port
    _facts, plan = plan_for(settings, model, opts, env=env)
    from pbsvllm.extras import parse as parse_extras

    directives, submit_env = parse_extras(options.get("directives") or (), options.get("env") or ())
    context = build_context(settings, model, alias, plan, served_model_name=served, port=port,
                            extra_directives=directives, submit_env=submit_env)
    text = render_script(context, settings.template_dirs, options.get("template") or TEMPLATE_NAME)
    stamp = (now or datetime.datetime.now(datetime.timezone.utc)).strftime(
        "%Y%m%dT%H%M%S.%f"
    )  # microseconds: two submits in one second differ
    script_path = os.path.join(settings.home, "scripts", f"{alias}-{stamp}.pbs")
    return PreparedJob(alias=alias, model=model, served_model_name=served, plan=plan, script_text=text,
                       script_path=script_path,
                       log_path=os.path.join(settings.log_dir, f"{alias}.{{job_id}}.log"),
                       server_info_path=os.path.join(settings.home, "run", "{job_id}.server.json"),
                       log_dir=settings.log_dir, home=settings.home,
                       job_name=context["pbs"]["job_name"], port=port)


__all__ = ["PreparedJob", "prepare_job", "render_script", "build_context", "plan_for", "make_environment",
           "builtin_template_dir", "check_alias", "job_name_for"]
