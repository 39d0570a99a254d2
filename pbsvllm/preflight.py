"""Checks made before ``qsub``: fail in a second, not after the queue.

What :func:`check_submit` verifies, for a job that :func:`pbsvllm.render.prepare_job`
has already planned and rendered (so the model's facts, the vLLM flags for the
target version and the template are checked by then):

- every registry the job will be written to: its folder exists (a missing
  folder is **refused**, not created: a typo must not make a new tree), the
  file and folder are writable, and an existing file parses;
- the rendered script is valid shell (``bash -n``);
- the walltime is within the queue's limit, where the profile knows it
  (``max_walltime``);
- the API key file exists, is a regular file, is not readable by others
  (mode 0600 or stricter) and is not empty -- on this machine, or with one
  command over the job's transport for a remote host;
- on this machine: ``PBSVLLM_HOME`` and the log folder exist or can be made.

Each problem is one :class:`~pbsvllm.errors.PbsvllmError` (all of them, in
one message, when there are several), raised before anything is written on
the target. Nothing here has side effects.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

from pbsvllm.errors import ConfigError, RegistryError, TemplateError

if TYPE_CHECKING:  # pragma: no cover
    from pbsvllm.config import Settings
    from pbsvllm.render import PreparedJob
    from pbsvllm.transport.base import Transport


def walltime_seconds(text: str) -> int:
    """``[[D:]HH:]MM:SS`` or plain seconds -> seconds (PBS's forms)."""
    parts = [int(p) for p in text.strip().split(":")]
    if len(parts) == 1:
        return parts[0]
    while len(parts) < 4:
        parts.insert(0, 0)
    d, h, m, s = parts[-4:]
    return ((d * 24 + h) * 60 + m) * 60 + s


def check_walltime(walltime: str, queue: Optional[str], limits: dict[str, str], profile: str) -> None:
    """ConfigError when ``walltime`` is over the queue's limit (when the profile knows one)."""
    if not queue or queue not in limits:
        return
    if walltime_seconds(walltime) > walltime_seconds(limits[queue]):
        raise ConfigError(f"walltime {walltime} is over the limit of queue '{queue}' ({limits[queue]}, profile "
                          f"'{profile}')", hint=f"pass --walltime {limits[queue]} or less, or another --queue")


def registry_problems(specs: Sequence[str]) -> List[str]:
    """Why each registry could not take the job's entry (empty: all fine)."""
    from pbsvllm.registry import open_registries

    problems: List[str] = []
    for spec in specs:
        try:
            (reg,) = open_registries([spec])
        except RegistryError as exc:
            problems.append(str(exc))
            continue
        path = reg.path
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            problems.append(f"the folder of registry {path} does not exist (create it first: mkdir -p {folder})")
            continue
        if os.path.exists(path):
            if not os.access(path, os.W_OK):
                problems.append(f"registry {path} is not writable")
                continue
            try:
                reg.read()
            except RegistryError as exc:
                problems.append(str(exc))
                continue
        if not os.access(folder, os.W_OK | os.X_OK):
            problems.append(f"the folder of registry {path} is not writable (the file is replaced atomically "
                            f"through a temporary file in {folder})")
    return problems


def script_problem(text: str) -> Optional[str]:
    """``bash -n`` on the rendered script: a syntax error from a custom template."""
    bash = shutil.which("bash")
    if bash is None:
        return None
    r = subprocess.run([bash, "-n"], input=text, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        first = next((ln for ln in r.stderr.splitlines() if ln.strip()), "syntax error")
        return f"the rendered job script is not valid shell: {first.replace('bash: ', '', 1)}"
    return None


def _ancestor_writable(path: str) -> Tuple[bool, str]:
    cur = os.path.abspath(path)
    while not os.path.exists(cur):
        parent = os.path.dirname(cur)
        if parent == cur:
            break
        cur = parent
    return os.path.isdir(cur) and os.access(cur, os.W_OK | os.X_OK), cur


def local_folder_problems(folders: Sequence[Tuple[str, str]]) -> List[str]:
    out = []
    for what, folder in folders:
        if os.path.isdir(folder):
            if not os.access(folder, os.W_OK | os.X_OK):
                out.append(f"{what} {folder} is not writable")
            continue
        if os.path.exists(folder):
            out.append(f"{what} {folder} is not a folder")
            continue
        ok, base = _ancestor_writable(folder)
        if not ok:
            out.append(f"{what} {folder} cannot be created ({base} is not writable)")
    return out


_KEY_PROBE = ('test -e "$1" || { echo missing; exit 0; }; test -f "$1" || { echo notfile; exit 0; }; '
              'test -r "$1" || { echo unreadable; exit 0; }; test -s "$1" || { echo empty; exit 0; }; '
              'stat -c %a "$1" 2>/dev/null || stat -f %Lp "$1"')


def key_file_problem(path: str, transport: Optional[Transport] = None) -> Optional[str]:
    """The API key file as the job will read it: present, a file, not for others' eyes, not empty."""
    if transport is None or transport.is_local:
        p = os.path.expanduser(path)
        if not os.path.exists(p):
            state = "missing"
        elif not os.path.isfile(p):
            state = "notfile"
        elif not os.access(p, os.R_OK):
            state = "unreadable"
        elif os.path.getsize(p) == 0:
            state = "empty"
        else:
            state = format(os.stat(p).st_mode & 0o777, "o")
    else:
        rc, out, err = transport.run(["sh", "-c", _KEY_PROBE, "sh", path], timeout=30)
        if rc != 0:
            return f"cannot check the API key file {path} on {transport.host}: {err.strip() or rc}"
        state = out.strip()
    where = f" on {transport.host}" if transport is not None and not transport.is_local else ""
    if state == "missing":
        return f"the API key file {path} does not exist{where}"
    if state == "notfile":
        return f"the API key file {path}{where} is not a regular file"
    if state == "unreadable":
        return f"the API key file {path}{where} is not readable"
    if state == "empty":
        return f"the API key file {path}{where} is empty (its first line must hold the key)"
    try:
        mode = int(state, 8)
    except ValueError:
        return f"cannot read the mode of the API key file {path}{where}: {state!r}"
    if mode & 0o077:
        return f"the API key file {path}{where} has mode {mode:o}: others can read it (run: chmod 600 {path})"
    return None


def check_submit(settings: Settings, prepared: PreparedJob, *, registries: Optional[Sequence[str]] = None,
                 transport: Optional[Transport] = None) -> None:
    """Everything that can be checked before ``qsub`` (see the module doc); raises on the first
    kind of problem found, naming every instance of it."""
    profile = settings.profile
    check_walltime(profile.walltime, profile.queue, dict(profile.max_walltime), profile.name)
    specs = list(registries if registries is not None else settings.registries_for(prepared.alias))
    problems = registry_problems(specs)
    if problems:
        raise RegistryError("; ".join(problems), hint="nothing was submitted")
    bad_script = script_problem(prepared.script_text)
    if bad_script:
        raise TemplateError(bad_script, hint="nothing was submitted; check your template")
    if settings.api_key_file:
        key = key_file_problem(settings.api_key_file, transport)
        if key:
            raise ConfigError(key, hint="nothing was submitted")
    if transport is None or transport.is_local:
        local = local_folder_problems([("PBSVLLM_HOME", settings.home), ("the log folder", settings.log_dir)])
        if local:
            raise ConfigError("; ".join(local), hint="nothing was submitted")


__all__ = ["check_submit", "check_walltime", "registry_problems", "script_problem", "key_file_problem",
           "walltime_seconds"]
