"""Configuration: built-in profiles + user config file + environment + flags.

Everything is resolved ONCE, by :func:`resolve`, into a frozen
:class:`Settings`. Nothing else in pbsvllm reads the config file or the
``PBSVLLM_*`` environment.

Precedence (highest first)::

    command-line flags  >  PBSVLLM_* environment  >  user config file
                        >  profile (built-in or user-defined)  >  built-in defaults

The user config file is ``$PBSVLLM_CONFIG`` if set, else the first that
exists of ``$XDG_CONFIG_HOME/pbsvllm/config.toml`` (``~/.config`` when unset)
and ``pbsvllm/config.toml`` under each of ``$XDG_CONFIG_DIRS`` (``/etc/xdg``)
-- see :func:`config_search_path`; none is fine. Its layout::

    profile = "mine"                 # default profile
    home = "~/.pbsvllm"              # PBSVLLM_HOME (must be on a shared filesystem)
    api_key_file = "~/.config/pbsvllm/api_key"
    template_dirs = ["~/.config/pbsvllm/templates"]

    [profiles.mine]                  # a user profile, inheriting a built-in one
    base = "polaris"
    account = "MyProject"
    queue = "preemptable"

    [aliases.qwen3-vl]
    registries = ["~/configs/endpoints.toml"]

Unknown keys and bad values raise :class:`~pbsvllm.errors.ConfigError` naming
the file and the key.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

from pbsvllm.errors import ConfigError

if sys.version_info >= (3, 11):  # pragma: no cover - version dependent
    import tomllib as _toml
else:  # pragma: no cover
    import tomli as _toml

BUILTIN_PROFILE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "profiles")
DEFAULT_CONFIG_PATH = "~/.config/pbsvllm/config.toml"
DEFAULT_HOME = "~/.pbsvllm"

SCHEDULERS = ("auto", "pbspro", "torque", "local")
DIALECTS = ("pbspro", "torque")
INTERCONNECTS = ("nvlink", "pcie", "none")
DEVICES = ("cuda", "cpu")
NODE_LAUNCHERS = ("auto", "mpiexec", "pbsdsh", "srun", "ssh", "local")
_NODE_RANGE_RE = re.compile(r"^(\d+)(?:-(\d+))?$")
_IFACE_RE = re.compile(r"^[A-Za-z0-9_.:@-]{0,15}$")
SSH_CLIENTS = ("paramiko", "openssh")

_WALLTIME_RE = re.compile(r"^(\d+:)?\d{1,2}:\d{2}:\d{2}$|^\d+$")
_VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+)?([.+-]?[A-Za-z0-9.]+)?$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ---------------------------------------------------------------------------
# value checkers: each takes (value, where) and returns the normalised value
# ---------------------------------------------------------------------------

def _where(path: str, key: str) -> str:
    return f"{path}: key '{key}'"


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise ConfigError(f"{where} must be a string, got {type(v).__name__} {v!r}")
    if "\n" in v or "\r" in v or "\x00" in v:
        raise ConfigError(f"{where} must be one line (it contains a newline or NUL)")
    return v


def _optstr(v: Any, where: str) -> Optional[str]:
    if v is None or v == "":
        return None
    return _str(v, where)


def _int(minimum: int) -> Callable[[Any, str], int]:
    def check(v: Any, where: str) -> int:
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise ConfigError(f"{where} must be an integer >= {minimum}, got {v!r}")
        try:
            iv = int(v)
        except ValueError:
            raise ConfigError(f"{where} must be an integer >= {minimum}, got {v!r}") from None
        if iv < minimum:
            raise ConfigError(f"{where} must be an integer >= {minimum}, got {v!r}")
        return iv
    return check


def _posfloat(v: Any, where: str) -> float:
    if isinstance(v, bool):
        raise ConfigError(f"{where} must be a positive number, got {v!r}")
    try:
        fv = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a positive number, got {v!r}") from None
    if not fv > 0 or fv == float("inf"):
        raise ConfigError(f"{where} must be a positive (finite) number, got {v!r}")
    return fv


def _bool(v: Any, where: str) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return v.lower() in ("1", "true", "yes", "on")
    raise ConfigError(f"{where} must be true or false, got {v!r}")


def _choice(choices: Tuple[str, ...]) -> Callable[[Any, str], str]:
    def check(v: Any, where: str) -> str:
        s = _str(v, where).lower()
        if s not in choices:
            raise ConfigError(f"{where} must be one of {', '.join(choices)}; got {v!r}")
        return s
    return check


def _walltime(v: Any, where: str) -> str:
    s = _str(v, where)
    if not _WALLTIME_RE.match(s):
        raise ConfigError(f"{where} must be a walltime like 01:00:00 or 72:00:00, got {v!r}")
    return s


def _version(v: Any, where: str) -> str:
    s = _str(v, where)
    if not _VERSION_RE.match(s):
        raise ConfigError(f"{where} must be a vLLM version like 0.11.0, got {v!r}")
    return s


def _strlist(v: Any, where: str) -> Tuple[str, ...]:
    if isinstance(v, str):  # env vars and flags give one string: split on os.pathsep
        return tuple(p for p in v.split(os.pathsep) if p)
    if not isinstance(v, (list, tuple)):
        raise ConfigError(f"{where} must be a list of strings, got {v!r}")
    return tuple(_str(x, f"{where}[{i}]") for i, x in enumerate(v))


def _linelist(v: Any, where: str) -> Tuple[str, ...]:
    if isinstance(v, str):
        return tuple(line for line in v.splitlines())
    return _strlist(v, where)


def _envmap(v: Any, where: str) -> Dict[str, str]:
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where} must be a table of NAME = \"value\", got {v!r}")
    out: Dict[str, str] = {}
    for k, val in v.items():
        if not _ENV_NAME_RE.match(str(k)):
            raise ConfigError(f"{where}.{k} is not a valid environment variable name")
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            raise ConfigError(f"{where}.{k} must be a string or number, got {val!r}")
        out[str(k)] = _str(str(val), f"{where}.{k}")
    return out


def _interface(v: Any, where: str) -> str:
    s = _str(v, where)
    if not _IFACE_RE.match(s):
        raise ConfigError(f"{where} must be a network interface name like hsn0 or ib0 (letters, digits, _.:@-; "
                          f"at most 15 characters), got {v!r}")
    return s


def _abspath(v: Any, where: str) -> str:
    s = _str(v, where)
    if not s.startswith("/"):
        raise ConfigError(f"{where} must be an absolute path on the compute nodes (e.g. /tmp), got {v!r}")
    return s


def _port(v: Any, where: str) -> int:
    p = _int(1024)(v, where)
    if p > 65000:
        raise ConfigError(f"{where} must be a port from 1024 to 65000 (the job takes the next free ones above it), "
                          f"got {v!r}")
    return p


def _node_range(v: Any) -> Tuple[int, int]:
    m = _NODE_RANGE_RE.match(str(v).strip())
    if not m:
        raise ValueError(v)
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) else lo
    if lo < 1 or hi < lo:
        raise ValueError(v)
    return lo, hi


def _queue_nodes(v: Any, where: str) -> Dict[str, str]:
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where} must be a table of queue = \"MIN-MAX\" node counts, e.g. debug = \"1-2\"")
    out: Dict[str, str] = {}
    for q, r in v.items():
        try:
            lo, hi = _node_range(r)
        except ValueError:
            raise ConfigError(f"{where}.{q} must be a node count range like \"1-2\" or \"10-496\", got {r!r}") from None
        out[_str(str(q), f"{where} (queue name)")] = f"{lo}-{hi}"
    return out


def _walltime_map(v: Any, where: str) -> Dict[str, str]:
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where} must be a table of QUEUE = \"HH:MM:SS\", got {v!r}")
    out: Dict[str, str] = {}
    for q, w in v.items():
        text = _str(w, f"{where}.{q}")
        if not re.match(r"^\d+:\d{2}:\d{2}$", text):
            raise ConfigError(f"{where}.{q} must be a walltime like 01:00:00 or 168:00:00, got {w!r}")
        out[str(q)] = text
    return out


def _url_template(v: Any, where: str) -> str:
    s = _str(v, where)
    for name in re.findall(r"{([^{}]*)}", s):
        if name not in ("host", "port", "hostname", "alias"):
            raise ConfigError(
                f"{where}: unknown placeholder {{{name}}}; use {{host}}, {{port}}, {{hostname}}, {{alias}}"
            )
    if "{port}" not in s:
        raise ConfigError(f"{where} must contain {{port}} (the port is chosen when the job starts), got {v!r}")
    return s


# ---------------------------------------------------------------------------
# Profile
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Profile:
    """A site: how to ask PBS for a node, what the node has, how to set up vLLM."""

    name: str = "local"
    description: str = ""
    scheduler: str = "auto"            # auto | pbspro | torque | local
    dialect: str = "pbspro"            # directive syntax: pbspro (select=) | torque (nodes:ppn:gpus)
    queue: Optional[str] = None
    account: Optional[str] = None
    walltime: str = "01:00:00"
    filesystems: Optional[str] = None  # PBS Pro -l filesystems= (ALCF: home:eagle)
    select_extra: Optional[str] = None  # appended to the select chunk, e.g. system=polaris
    place: Optional[str] = None        # -l place=
    request_ncpus: bool = True         # put ncpus=<cpus_per_node> in the select chunk / ppn
    request_ngpus: bool = True         # put ngpus=<gpus> in the select chunk / gpus=
    nodes: int = 1                     # most nodes the planner may use for one server
    gpus_per_node: int = 0
    gpu_memory_gib: float = 0.0
    gpu_name: str = ""
    interconnect: str = "none"         # nvlink | pcie | none
    cpus_per_node: int = 1
    cpu_cores_per_server: int = 0  # cpu device: bind each server to its own block of this many cores (0: vLLM's auto)
    device: str = "cuda"               # cuda | cpu
    env_lines: Tuple[str, ...] = ()  # verbatim shell lines: module load, conda activate, source venv
    env: Dict[str, str] = field(
        default_factory=dict
    )  # exported variables (values quoted in the script); treat as read-only
    log_dir: Optional[str] = None      # default: $PBSVLLM_HOME/logs
    hostname_suffix: str = ""          # appended to `hostname -s` to build a reachable name
    url_template: str = "http://{host}:{port}/v1"
    bind_host: str = "0.0.0.0"
    launcher: str = "vllm serve"
    model_flag: str = ""               # "" = model is positional (vllm serve M); e.g. "--model" for vf-vllm
    vllm_version: str = "0.11.0"
    extra_directives: Tuple[str, ...] = ()  # verbatim '#PBS ...' lines, placed BEFORE the generated ones
    registries: Tuple[str, ...] = ()
    queues: Tuple[str, ...] = ()       # documentation: the site's queues
    # --- multi-node jobs (docs/multinode.md) ---
    max_nodes: int = 0                 # most nodes a job may ask for at this site (0: no limit known)
    queue_nodes: Dict[str, str] = field(default_factory=dict)  # queue -> "MIN-MAX" nodes a job of it may use
    node_launcher: str = "auto"        # starts a command on another node of the job: auto|mpiexec|pbsdsh|srun|ssh|local
    node_launcher_args: Tuple[str, ...] = ()  # extra words after the launcher (e.g. mpiexec --cpu-bind none)
    node_interface: str = ""           # fast interface Ray / vLLM / NCCL bind to (Polaris: hsn0); "" = the node's name
    ray_port: int = 6379               # Ray head (GCS) port; the job takes the first free one from here
    ray_temp_dir: str = "/tmp"         # node-local directory for Ray's session files (short: socket paths <108 chars)
    ray_wait_s: int = 600              # how long the job waits for every Ray node and GPU
    dp_rpc_port: int = 13345           # vLLM multi-node data parallel RPC port (first free one from here)
    ssh_client: str = "paramiko"       # paramiko | openssh (the system ssh over a ControlMaster: MFA sites)
    # queue -> the longest walltime it takes (checked before qsub)
    max_walltime: Dict[str, str] = field(default_factory=dict)
    router: str = "auto"               # stable URL per alias: auto (when vllm-router is installed) | on | off
    router_host: str = "127.0.0.1"     # address the alias's router binds and clients use (docs/router.md)
    router_policy: str = "cache_aware"  # vllm-router --policy
    router_python: str = ""            # a Python with vllm-router installed ("": pbsvllm's own, pbsvllm[router])
    router_placement: str = "local"    # where the router runs: local = where pbsvllm runs (login node); docs/router.md
    source: str = "built-in defaults"  # where this profile came from (file paths)

    @property
    def cpu_kvcache_space_gib(self) -> float:
        """KV cache size for vLLM's CPU backend (``VLLM_CPU_KVCACHE_SPACE``, GiB)."""
        raw = self.env.get("VLLM_CPU_KVCACHE_SPACE", "4")
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(
                f"profile '{self.name}' ({self.source}): env.VLLM_CPU_KVCACHE_SPACE must be a number of GiB, "
                f"got {raw!r}"
            ) from None

    def node_range(self) -> Tuple[int, int, str]:
        """(min, max, why) nodes a job of this profile's queue may use; max 0 = no known limit."""
        lo, hi, why = 1, self.max_nodes, f"max_nodes = {self.max_nodes}" if self.max_nodes else ""
        if self.queue and self.queue in self.queue_nodes:
            qlo, qhi = _node_range(self.queue_nodes[self.queue])
            lo, why = qlo, f"queue {self.queue} takes {qlo}-{qhi} nodes (queue_nodes)"
            if not hi or qhi < hi:
                hi = qhi
        return lo, hi, why

    def check_nodes(self, nodes: int, what: str) -> None:
        """Refuse ``nodes`` (from ``what``: --nodes, the plan) outside the site's limits, in one line."""
        lo, hi, why = self.node_range()
        if hi and nodes > hi:
            raise ConfigError(f"{what}: {nodes} nodes, but profile '{self.name}' allows at most {hi} ({why}); "
                              f"use --nodes {hi} or another queue (-q)")
        if nodes < lo:
            raise ConfigError(f"{what}: {nodes} node(s), but profile '{self.name}' needs at least {lo} ({why}); "
                              f"pick a queue for small jobs (-q)")


PROFILE_FIELDS: Dict[str, Callable[[Any, str], Any]] = {
    "description": _str,
    "scheduler": _choice(SCHEDULERS),
    "dialect": _choice(DIALECTS),
    "queue": _optstr,
    "account": _optstr,
    "walltime": _walltime,
    "filesystems": _optstr,
    "select_extra": _optstr,
    "place": _optstr,
    "request_ncpus": _bool,
    "request_ngpus": _bool,
    "nodes": _int(1),
    "gpus_per_node": _int(0),
    "gpu_memory_gib": _posfloat,
    "gpu_name": _str,
    "interconnect": _choice(INTERCONNECTS),
    "cpus_per_node": _int(1),
    "cpu_cores_per_server": _int(0),
    "device": _choice(DEVICES),
    "env_lines": _linelist,
    "env": _envmap,
    "log_dir": _optstr,
    "hostname_suffix": _str,
    "url_template": _url_template,
    "bind_host": _str,
    "launcher": _str,
    "model_flag": _str,
    "vllm_version": _version,
    "extra_directives": _strlist,
    "registries": _strlist,
    "queues": _strlist,
    "max_nodes": _int(0),
    "queue_nodes": _queue_nodes,
    "node_launcher": _choice(NODE_LAUNCHERS),
    "node_launcher_args": _strlist,
    "node_interface": _interface,
    "ray_port": _port,
    "ray_temp_dir": _abspath,
    "ray_wait_s": _int(10),
    "dp_rpc_port": _port,
    "ssh_client": _choice(SSH_CLIENTS),
    "max_walltime": _walltime_map,
    "router": _choice(("auto", "on", "off")),
    "router_host": _str,
    "router_policy": _choice(("cache_aware", "round_robin", "random", "power_of_two", "consistent_hash")),
    "router_placement": _choice(("local",)),
    "router_python": _str,
}

# Profile fields that PBSVLLM_<NAME> environment variables and flags may override.
ENV_PROFILE_FIELDS = (
    "queue", "account", "walltime", "filesystems", "log_dir", "vllm_version", "nodes",
    "gpus_per_node", "gpu_memory_gib", "interconnect", "device", "launcher", "hostname_suffix", "ssh_client",
    "router", "router_host", "router_policy", "router_python",
    "node_launcher", "node_interface", "ray_port", "ray_temp_dir", "ray_wait_s", "dp_rpc_port",
)

SETTINGS_KEYS: Dict[str, Callable[[Any, str], Any]] = {
    "profile": _str,
    "home": _str,
    "host": _optstr,
    "scheduler": _choice(SCHEDULERS),
    "api_key_file": _optstr,
    "api_key_env": _str,
    "template_dirs": _strlist,
    "registries": _strlist,
    "ssh_config": _optstr,
    "ssh_accept_new": _bool,
}

ALIAS_KEYS: Dict[str, Callable[[Any, str], Any]] = {
    "registries": _strlist,
    "profile": _str,
}


@dataclass(frozen=True)
class Settings:
    """Everything a command needs, resolved once."""

    home: str
    profile: Profile
    host: Optional[str] = None
    scheduler: str = "auto"
    api_key_file: Optional[str] = None
    api_key_env: str = "VLLM_API_KEY"
    registries: Tuple[str, ...] = ()
    template_dirs: Tuple[str, ...] = ()
    config_path: Optional[str] = None          # the user config file read (None: none found)
    alias_registries: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()
    ssh_config: Optional[str] = None           # ssh_config file instead of ~/.ssh/config (PBSVLLM_SSH_CONFIG)
    ssh_accept_new: bool = False               # record unknown host keys, like accept-new (PBSVLLM_SSH_ACCEPT_NEW)

    def transport_options(self) -> Dict[str, Any]:
        """SSH options for :func:`pbsvllm.transport.get_transport` (set once by the API)."""
        opts: Dict[str, Any] = {}
        if self.ssh_config:
            opts["ssh_config"] = self.ssh_config
        if self.ssh_accept_new:
            opts["accept_unknown_host"] = True
        return opts

    def registries_for(self, alias: str) -> Tuple[str, ...]:
        """Registries to update for ``alias``: its own list if set, else the default ones."""
        for name, regs in self.alias_registries:
            if name == alias:
                return regs
        return self.registries

    @property
    def log_dir(self) -> str:
        """Realtime-log directory: the profile's log_dir, default $PBSVLLM_HOME/logs
        ('~' kept as is for a remote host, expanded here for this machine)."""
        if not self.profile.log_dir:
            return os.path.join(self.home, "logs")
        return self.profile.log_dir if self.host else os.path.expanduser(self.profile.log_dir)


# ---------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------

#: A config file larger than this is not one (a log or a binary given by mistake).
MAX_CONFIG_BYTES = 4 << 20


def _read_toml(path: str) -> Dict[str, Any]:
    """A TOML config file as a table; every failure is one ConfigError naming
    the file: missing, not a regular file (a FIFO never blocks), too large,
    not UTF-8 (a binary), not TOML, or nested too deeply."""
    from pbsvllm.fileio import read_regular
    from pbsvllm.safety import nesting_depth

    if os.path.realpath(path) == os.devnull:
        return {}  # PBSVLLM_CONFIG=/dev/null: "no config file", the usual idiom
    data = read_regular(path, "config file", error=ConfigError, max_bytes=MAX_CONFIG_BYTES,
                        hint="set PBSVLLM_CONFIG (or --config) to your TOML config file")
    if data is None:
        raise ConfigError(f"config file {path} does not exist (set PBSVLLM_CONFIG to an existing file or unset it)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}): is it a binary file?",
                          hint="a config file is TOML text") from None
    try:
        table = _toml.loads(text)
    except _toml.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except (RecursionError, MemoryError):
        raise ConfigError(f"{path} is nested too deeply to be a config file") from None
    if nesting_depth(table, MAX_CONFIG_DEPTH) > MAX_CONFIG_DEPTH:
        raise ConfigError(f"{path} is nested deeper than {MAX_CONFIG_DEPTH} levels; no pbsvllm setting is")
    return table


#: Deepest nesting a config file needs: [profiles.NAME.env] is 3.
MAX_CONFIG_DEPTH = 8


def user_profile_tables(config_path: Optional[str]) -> Dict[str, Any]:
    """The raw [profiles.*] tables of a user config file ({} without one)."""
    if not config_path or not os.path.exists(config_path):
        return {}
    tables = _read_toml(config_path).get("profiles", {})
    if not isinstance(tables, Mapping):
        raise ConfigError(f"{config_path}: key 'profiles' must be a table of tables ([profiles.NAME])")
    return dict(tables)


def builtin_profile_names() -> Tuple[str, ...]:
    try:
        names = [f[:-5] for f in os.listdir(BUILTIN_PROFILE_DIR) if f.endswith(".toml")]
    except OSError:
        names = []
    return tuple(sorted(names))


def _builtin_profile_table(name: str) -> Tuple[Dict[str, Any], str]:
    path = os.path.join(BUILTIN_PROFILE_DIR, f"{name}.toml")
    return _read_toml(path), path


def _check_table(table: Mapping[str, Any], allowed: Mapping[str, Callable], path: str, prefix: str,
                 extra_ok: Iterable[str] = ()) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    extra = set(extra_ok)
    for key, value in table.items():
        full = f"{prefix}{key}"
        if key in extra:
            continue
        if key not in allowed:
            known = ", ".join(sorted(set(allowed) | extra))
            raise ConfigError(f"{path}: unknown key '{full}' (known keys: {known})")
        out[key] = allowed[key](value, _where(path, full))
    return out


def _profile_from_layers(name: str, layers: Iterable[Tuple[Mapping[str, Any], str]]) -> Profile:
    values: Dict[str, Any] = {"name": name}
    sources = []
    for table, where in layers:
        for key, value in table.items():
            if key == "env":  # env tables merge down the base chain; other keys replace
                values["env"] = {**values.get("env", {}), **value}
            else:
                values[key] = value
        sources.append(where)
    values["source"] = " + ".join(sources) if sources else "built-in defaults"
    return Profile(**values)


def _profile_layers(name: str, user_profiles: Mapping[str, Any], path: str,
                    seen: Tuple[str, ...] = ()) -> list:
    """Tables (checked) from the root base to ``name``, each with its source."""
    if name in seen:
        raise ConfigError(f"{path}: profiles.{name}: 'base' inheritance loops ({' -> '.join(seen + (name,))})")
    layers = []
    user = user_profiles.get(name)
    if user is not None and not isinstance(user, Mapping):
        raise ConfigError(f"{path}: key 'profiles.{name}' must be a table")
    base = None
    if user is not None and "base" in user:
        base = _str(user["base"], _where(path, f"profiles.{name}.base"))
    if base is not None:
        if base == name and name in builtin_profile_names():
            layers.extend(_builtin_layers(name))
        else:
            layers.extend(_profile_layers(base, user_profiles, path, seen + (name,)))
    elif name in builtin_profile_names():
        layers.extend(_builtin_layers(name))
    elif user is None:
        known = ", ".join(sorted(set(builtin_profile_names()) | set(user_profiles)))
        where = f" in {path}" if path else ""
        raise ConfigError(f"unknown profile '{name}'{where}; known profiles: {known} "
                          f"(define [profiles.{name}] in your config file or pass --profile with one of these)")
    if user is not None:
        layers.append((_check_table(user, PROFILE_FIELDS, path, f"profiles.{name}.", extra_ok=("base",)),
                       f"{path} [profiles.{name}]"))
    return layers


def _builtin_layers(name: str) -> list:
    table, bpath = _builtin_profile_table(name)
    return [(_check_table(table, PROFILE_FIELDS, bpath, ""), bpath)]


def load_profile(name: str, user_profiles: Optional[Mapping[str, Any]] = None, config_path: str = "") -> Profile:
    """A profile by name: built-in, user-defined, or user-defined on top of a base."""
    return _profile_from_layers(name, _profile_layers(name, user_profiles or {}, config_path))


def _xdg_dir(env: Mapping[str, str], name: str, default: str) -> str:
    """An XDG base directory: the variable when it holds an absolute path,
    else the default (the specification says to ignore a relative one)."""
    value = env.get(name, "")
    return value if os.path.isabs(value) else os.path.expanduser(default)


def config_search_path(env: Mapping[str, str] = os.environ) -> Tuple[str, ...]:
    """The user config files looked for, in order, when neither ``--config``
    nor ``$PBSVLLM_CONFIG`` names one (XDG Base Directory Specification 0.8):
    ``$XDG_CONFIG_HOME/pbsvllm/config.toml`` (default ``~/.config``), then
    ``pbsvllm/config.toml`` in each folder of ``$XDG_CONFIG_DIRS`` (default
    ``/etc/xdg``; relative entries are ignored). The first that exists is read."""
    paths = [os.path.join(_xdg_dir(env, "XDG_CONFIG_HOME", "~/.config"), "pbsvllm", "config.toml")]
    dirs = [d for d in env.get("XDG_CONFIG_DIRS", "").split(":") if os.path.isabs(d)] or ["/etc/xdg"]
    paths += [os.path.join(d, "pbsvllm", "config.toml") for d in dirs]
    return tuple(dict.fromkeys(paths))


def _config_file(env: Mapping[str, str], config_path: Optional[str]) -> Tuple[Optional[str], bool]:
    """(path, must_exist)."""
    if config_path:
        return os.path.expanduser(config_path), True
    if env.get("PBSVLLM_CONFIG"):
        return os.path.expanduser(env["PBSVLLM_CONFIG"]), True
    candidates = config_search_path(env)
    for path in candidates:
        if os.path.exists(path):
            return path, False
    return candidates[0], False


def default_profile_name(host: Optional[str]) -> str:
    """With no profile anywhere: 'pbspro' (scheduler auto-detected) when a qsub
    is reachable or a remote host is given, else 'local' (run on this machine)."""
    if host:
        return "pbspro"
    return "pbspro" if shutil.which("qsub") else "local"


def resolve(cli_flags: Mapping[str, Any], env: Mapping[str, str] = os.environ,
            config_path: Optional[str] = None) -> Settings:
    """Merge flags > PBSVLLM_* env > user config > profile > defaults into Settings.

    ``cli_flags`` keys: any of ``profile home host scheduler api_key_file
    api_key_env template_dirs registries alias`` and any profile field
    (``queue account walltime log_dir gpus_per_node ...``). ``None`` values
    mean "not given".
    """
    flags = {k: v for k, v in cli_flags.items() if v is not None and v != ()}
    path, must_exist = _config_file(env, config_path)
    user: Dict[str, Any] = {}
    used_path: Optional[str] = None
    if path and (must_exist or os.path.exists(path)):
        user = _read_toml(path)
        used_path = path
    where = used_path or "<no config file>"

    user_profiles = user.get("profiles", {})
    user_aliases = user.get("aliases", {})
    if not isinstance(user_profiles, Mapping):
        raise ConfigError(f"{where}: key 'profiles' must be a table of tables ([profiles.NAME])")
    if not isinstance(user_aliases, Mapping):
        raise ConfigError(f"{where}: key 'aliases' must be a table of tables ([aliases.NAME])")
    top = {k: v for k, v in user.items() if k not in ("profiles", "aliases")}
    top = _check_table(top, SETTINGS_KEYS, where, "")
    aliases: Dict[str, Dict[str, Any]] = {}
    for aname, atable in user_aliases.items():
        if not isinstance(atable, Mapping):
            raise ConfigError(f"{where}: key 'aliases.{aname}' must be a table")
        aliases[aname] = _check_table(atable, ALIAS_KEYS, where, f"aliases.{aname}.")

    def pick(key: str, env_name: str, default: Any) -> Any:
        if key in flags:
            return SETTINGS_KEYS[key](flags[key], f"command-line option --{key.replace('_', '-')}")
        if env.get(env_name):
            return SETTINGS_KEYS[key](env[env_name], f"environment variable {env_name}")
        if key in top:
            return top[key]
        return default

    host = pick("host", "PBSVLLM_HOST", None)
    alias = flags.get("alias")
    alias_profile = aliases.get(alias, {}).get("profile") if alias else None
    # an alias's own profile beats the config file's default profile, not flags/env
    if "profile" not in flags and not env.get("PBSVLLM_PROFILE") and alias_profile:
        profile_name = alias_profile
    else:
        profile_name = pick("profile", "PBSVLLM_PROFILE", None) or default_profile_name(host)

    profile = load_profile(profile_name, user_profiles, where)

    # profile fields overridden by env then flags
    overrides: Dict[str, Any] = {}
    for fname in ENV_PROFILE_FIELDS:
        env_name = "PBSVLLM_" + fname.upper()
        if env.get(env_name):
            overrides[fname] = PROFILE_FIELDS[fname](env[env_name], f"environment variable {env_name}")
    for fname, value in flags.items():
        if fname in PROFILE_FIELDS:
            overrides[fname] = PROFILE_FIELDS[fname](value, f"command-line option --{fname.replace('_', '-')}")
    if overrides:
        srcs = profile.source + " + overrides (" + ", ".join(sorted(overrides)) + ")"
        profile = dataclasses.replace(profile, source=srcs, **overrides)
    _check_profile(profile)

    # Paths the JOB uses (home, log_dir, api_key_file) live on the cluster: with a
    # remote host, '~' is left for the remote side (transport / job script) to expand.
    if host and profile.ssh_client == "openssh" and "://" not in host:
        host = "openssh://" + host  # the job record keeps it: later commands reach the host the same way
    expand = (lambda x: x) if host else os.path.expanduser
    home = expand(pick("home", "PBSVLLM_HOME", DEFAULT_HOME))
    scheduler = pick("scheduler", "PBSVLLM_SCHEDULER", None) or profile.scheduler
    api_key_file = pick("api_key_file", "PBSVLLM_API_KEY_FILE", None)
    if api_key_file:
        api_key_file = expand(api_key_file)
    api_key_env = pick("api_key_env", "PBSVLLM_API_KEY_ENV", "VLLM_API_KEY")
    if not _ENV_NAME_RE.match(api_key_env):
        raise ConfigError(f"api_key_env must be an environment variable name, got {api_key_env!r}")
    template_dirs = tuple(os.path.expanduser(p) for p in pick("template_dirs", "PBSVLLM_TEMPLATE_DIRS", ()))
    registries = pick("registries", "PBSVLLM_REGISTRIES", None)
    if registries is None:
        registries = profile.registries
    registries = tuple(os.path.expanduser(p) for p in registries)
    alias_regs = tuple(
        (name, tuple(os.path.expanduser(p) for p in a["registries"]))
        for name, a in sorted(aliases.items()) if "registries" in a
    )
    if "registries" in flags:  # explicit flag wins for every alias
        alias_regs = ()
    if not host:
        # the folder whose files receive the API key must be the user's alone
        from pbsvllm.fileio import check_private_dir

        check_private_dir(home, "PBSVLLM_HOME", error=ConfigError)
    ssh_config = pick("ssh_config", "PBSVLLM_SSH_CONFIG", None)
    return Settings(
        home=home,
        profile=profile,
        host=host,
        scheduler=scheduler,
        api_key_file=api_key_file,
        api_key_env=api_key_env,
        registries=registries,
        template_dirs=template_dirs,
        config_path=used_path,
        alias_registries=alias_regs,
        ssh_config=os.path.expanduser(ssh_config) if ssh_config else None,
        ssh_accept_new=pick("ssh_accept_new", "PBSVLLM_SSH_ACCEPT_NEW", False),
    )


def _check_profile(p: Profile) -> None:
    """Cross-field checks (single fields are checked while loading)."""
    if p.device == "cuda" and (p.gpus_per_node < 1 or p.gpu_memory_gib <= 0):
        raise ConfigError(
            f"profile '{p.name}' ({p.source}): device is 'cuda' but the GPUs are not described; "
            f"set gpus_per_node and gpu_memory_gib, or device = \"cpu\""
        )
    if p.scheduler == "torque" and p.dialect != "torque":
        raise ConfigError(f"profile '{p.name}' ({p.source}): scheduler 'torque' needs dialect = \"torque\"")
