"""The scheduler seam: submit, status (ONE call for any number of jobs), cancel.

Pure parts live here and are tested without a machine: the declarative
state tables (every PBS letter -> :class:`JobState`), exit-status
interpretation, duration and ``qstat -f`` text / ``-F json`` parsers. The
parsers raise only :class:`pbsvllm.errors.ParseError`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from pbsvllm.errors import JobNotFoundError, ParseError, SchedulerError, TransportError
from pbsvllm.models import JobState
from pbsvllm.transport.base import Transport, describe_argv

# ---------------------------------------------------------------- state tables

#: PBS Pro / OpenPBS ``job_state`` letters (docs/reference/pbs.md section 6).
PBSPRO_STATES: Dict[str, JobState] = {
    "Q": JobState.PENDING,    # queued
    "W": JobState.PENDING,    # waiting for its -a start time
    "T": JobState.PENDING,    # being moved
    "H": JobState.HELD,       # held
    "S": JobState.HELD,       # suspended
    "U": JobState.HELD,       # cycle-harvest suspended (workstation busy)
    "R": JobState.RUNNING,    # running
    "B": JobState.RUNNING,    # array job: at least one subjob running
    "E": JobState.COMPLETING, # exiting after having run
    "F": JobState.COMPLETED,  # finished (history, needs -x); exit status refines it
    "X": JobState.COMPLETED,  # subjob finished
    "M": JobState.UNKNOWN,    # moved to another server
}

#: Torque letters: no F/X/B/U/M; C is "completed" (kept keep_completed seconds).
TORQUE_STATES: Dict[str, JobState] = {
    "Q": JobState.PENDING,
    "W": JobState.PENDING,
    "T": JobState.PENDING,
    "H": JobState.HELD,
    "S": JobState.HELD,
    "R": JobState.RUNNING,
    "E": JobState.COMPLETING,
    "C": JobState.COMPLETED,
}

#: PBS ``JOB_EXEC_*`` codes (negative Exit_status), docs/reference/pbs.md section 7.
PBS_EXEC_CODES: Dict[int, str] = {
    -1: "the job could not be started (exec failed; not retried)",
    -2: "the job could not be started (exec failed; not retried)",
    -3: "the job could not be started (exec failed; will be retried)",
    -4: "the job was aborted by the MoM during initialisation",
    -10: "the job could not be started: bad user or group id on the node",
    -11: "the job was re-queued to be rerun",
    -15: "the job was checkpointed and re-queued",
    -16: "a hook rejected the job (requeue)",
    -17: "a hook rejected the job (delete)",
    -18: "a hook requested the job be requeued",
    -19: "a hook requested the job be deleted",
    -20: "the job's mother-superior node was lost",
    -22: "a hook raised an error",
    -24: "killed: ncpus limit exceeded",
    -25: "killed: ncpus limit exceeded (sum)",
    -26: "killed: vmem limit exceeded",
    -27: "killed: mem limit exceeded",
    -28: "killed: cput limit exceeded",
    -29: "killed: walltime exceeded",
    -30: "the job's output could not be joined",
}
WALLTIME_EXIT = -29


def map_state(letter: Optional[str], table: Mapping[str, JobState]) -> JobState:
    """The product state of a scheduler letter; anything unknown is UNKNOWN."""
    if not letter:
        return JobState.UNKNOWN
    return table.get(str(letter).strip()[:1].upper(), JobState.UNKNOWN)


#: Highest signal number (Linux: SIGRTMAX = 64). 128+N and 256+N name a signal
#: only for N in 1..MAX_SIGNAL; other numbers are plain exit codes.
MAX_SIGNAL = int(getattr(signal, "SIGRTMAX", 64))


def signal_name(n: int) -> str:
    """``SIGTERM``, ``SIGRTMIN+3``, or ``signal N`` for a number Python has no name for."""
    try:
        return signal.Signals(n).name
    except ValueError:
        rtmin = int(getattr(signal, "SIGRTMIN", 34))
        if rtmin <= n <= MAX_SIGNAL:
            return f"SIGRTMIN+{n - rtmin}"
        return f"signal {n}"


def exit_phrase(code: Optional[int]) -> str:
    """What an exit status says, as a phrase that reads alone and after
    ``cancelled; `` alike (one wording for every backend; a tested table).

    0 success; 1..128 the script's own code; 129..128+MAX_SIGNAL the script
    ended with 128+N (its last command, or the shell itself, ended on signal
    N); higher codes up to 255 are plain codes (255 is often ``exit -1``);
    256+N (N a signal) PBS's way of saying the job's top shell was killed by
    signal N; negative numbers are PBS ``JOB_EXEC`` codes.
    """
    if code is None:
        return "the scheduler did not report an exit status"
    if code == 0:
        return "the script exited 0 (success)"
    if code < 0:
        text = PBS_EXEC_CODES.get(code, "the scheduler ended the job (PBS exec code)")
        return f"{text} (Exit_status {code})"
    if 256 < code <= 256 + MAX_SIGNAL:
        n = code - 256
        return f"the job's shell was killed by {signal_name(n)} (exit status {code} = 256+{n})"
    if 128 < code <= 128 + MAX_SIGNAL:
        n = code - 128
        return f"the script exited {code} = 128+{n}: it ended on {signal_name(n)}"
    return f"the script exited with status {code}"


def interpret_exit_status(code: Optional[int]) -> Tuple[JobState, str]:
    """Terminal state and a human reason for a PBS/Torque exit status
    (:func:`exit_phrase`). None: the scheduler did not say; the job counts
    as COMPLETED with that reason, never as a success."""
    if code is None:
        return JobState.COMPLETED, "finished; the scheduler did not report an exit status"
    return (JobState.COMPLETED if code == 0 else JobState.FAILED), exit_phrase(code)


# ---------------------------------------------------------------- job status


@dataclasses.dataclass
class JobStatus:
    """What the scheduler says about one job (never the server's state)."""

    job_id: str
    state: JobState
    raw_state: str = ""
    exit_status: Optional[int] = None
    exit_reason: str = ""
    queue: str = ""
    exec_host: str = ""
    walltime_used_s: Optional[int] = None
    walltime_limit_s: Optional[int] = None
    comment: str = ""
    name: str = ""
    #: The scheduler said outright that it does not know this id ("Unknown Job
    #: Id", rc 153). Not proof that the job ended (a restarted server, another
    #: server answering): callers end a job on it only when its server is gone too.
    gone: bool = False
    #: When the scheduler expects a queued job to start (epoch seconds), where it says
    #: (PBS Pro's ``estimated.start_time``); None otherwise.
    estimated_start: Optional[float] = None

    @property
    def walltime_left_s(self) -> Optional[int]:
        if self.walltime_limit_s is None or self.walltime_used_s is None:
            return None
        return max(0, self.walltime_limit_s - self.walltime_used_s)

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["state"] = self.state.value
        d["walltime_left_s"] = self.walltime_left_s
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobStatus:
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in fields}
        try:
            kw["state"] = JobState(kw.get("state", "UNKNOWN"))
        except ValueError:
            kw["state"] = JobState.UNKNOWN
        kw.setdefault("job_id", "")
        return cls(**kw)


def unknown_status(job_id: str, why: str = "", *, gone: bool = False) -> JobStatus:
    """UNKNOWN: the scheduler's answer does not tell this job's state. ``gone``:
    it named the id as unknown (see :attr:`JobStatus.gone`); else it just left
    the job out (an empty or partial answer: silence, not evidence)."""
    if not why:
        why = ("the scheduler says it does not know this job id (finished and purged, or never its job)"
               if gone else "the scheduler's answer did not include this job")
    return JobStatus(job_id=job_id, state=JobState.UNKNOWN, comment=why, gone=gone)


# ---------------------------------------------------------------- submit options


@dataclasses.dataclass
class SubmitOptions:
    """Command-line overrides for qsub. Most settings live in the script's
    own ``#PBS`` lines; these are added on the command line.

    ``env`` is passed with ``-v`` and must never hold secrets (API keys are
    read by the job from a 0600 file).
    """

    queue: Optional[str] = None
    account: Optional[str] = None
    job_name: Optional[str] = None
    walltime: Optional[str] = None
    resources: List[str] = dataclasses.field(default_factory=list)
    env: Dict[str, str] = dataclasses.field(default_factory=dict)
    workdir: Optional[str] = None
    depend: Optional[str] = None
    extra_args: List[str] = dataclasses.field(default_factory=list)
    ncpus: Optional[int] = None

    @classmethod
    def coerce(cls, options: Any) -> SubmitOptions:
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        if isinstance(options, Mapping):
            names = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(options) - names)
            if unknown:
                raise SchedulerError(
                    f"unknown submit option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
                )
            return cls(**dict(options))
        raise SchedulerError(f"submit options must be a SubmitOptions or a dict, not {type(options).__name__}")


# ---------------------------------------------------------------- parsing helpers

_DURATION_RE = re.compile(r"^\s*(?:(\d+):)?(?:(\d+):)?(\d+)(?:\.\d+)?\s*$")
#: Slurm shows an unlimited time as 71582788:15:00 (INFINITE); anything
#: over ten years is treated as "no limit".
_NO_LIMIT_S = 10 * 365 * 86400


def parse_duration(value: Any) -> Optional[int]:
    """``HH:MM:SS`` / ``MM:SS`` / seconds -> seconds; None if absent, unlimited or malformed."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        secs = int(value)
    else:
        m = _DURATION_RE.match(str(value))
        if not m:
            return None
        parts = [p for p in m.groups() if p is not None]
        secs = 0
        for p in parts:
            secs = secs * 60 + int(p)
    if secs < 0 or secs >= _NO_LIMIT_S:
        return None
    return secs


def parse_ctime(value: Any) -> Optional[float]:
    """``Fri Jul  1 14:42:57 2022`` (local time) -> epoch seconds, or None."""
    if not isinstance(value, str):
        return None
    try:
        return time.mktime(time.strptime(" ".join(value.split()), "%a %b %d %H:%M:%S %Y"))
    except (ValueError, OverflowError):
        return None


def first_host(exec_host: Any) -> str:
    """``host/0+host/1*2+h2/0`` -> ``host`` (the mother-superior node)."""
    if not exec_host:
        return ""
    text = str(exec_host)
    return text.split("+", 1)[0].split("/", 1)[0].strip()


def all_hosts(exec_host: Any) -> str:
    """``h1/0*64+h2/0*64`` -> ``h1+h2``: every node of a (multi-node) job, once each, mother superior
    first (docs/multinode.md); ``host/0+host/1`` -> ``host``."""
    seen: List[str] = []
    for part in str(exec_host or "").split("+"):
        host = part.split("/", 1)[0].strip()
        if host and host not in seen:
            seen.append(host)
    return "+".join(seen)


def _int_or_none(value: Any) -> Optional[int]:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


_JOB_ID_LINE_RE = re.compile(r"^\d+(?:\[\d*\])?(?:\.[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def parse_job_id(stdout: str, command: str = "qsub") -> str:
    """The job id qsub printed (last non-empty line), exactly as printed.

    Accepts ``123``, ``123.server.domain`` and array ids ``123[].server``.
    """
    lines = [ln.strip() for ln in (stdout or "").splitlines() if ln.strip()]
    if lines and _JOB_ID_LINE_RE.match(lines[-1]):
        return lines[-1]
    raise ParseError(
        f"{command} succeeded but printed no job id: expected a line matching"
        f" {_JOB_ID_LINE_RE.pattern!r}, got {stdout[:500]!r}",
        hint="check for a qsub wrapper or profile script that prints extra text",
    )


def split_job_id(job_id: str) -> Tuple[str, str]:
    """``123.server.dom`` -> (``123``, ``server.dom``)."""
    seq, _, server = str(job_id).partition(".")
    return seq, server


def ids_match(requested: str, reported: str) -> bool:
    """Short and long ids name the same job: same sequence number and one
    server name a prefix of the other (``123`` = ``123.pbs01`` = ``123.pbs01.dom``)."""
    if requested == reported:
        return True
    rs, rsv = split_job_id(requested)
    ps, psv = split_job_id(reported)
    if rs != ps:
        return False
    if not rsv or not psv:
        return True
    return rsv.startswith(psv + ".") or psv.startswith(rsv + ".")


def match_ids(requested: Sequence[str], found: Mapping[str, Any]) -> Dict[str, str]:
    """requested id -> key in ``found`` naming the same job."""
    out: Dict[str, str] = {}
    by_seq: Dict[str, List[str]] = {}
    for key in found:
        by_seq.setdefault(split_job_id(key)[0], []).append(key)
    for rid in requested:
        if rid in found:
            out[rid] = rid
            continue
        for key in by_seq.get(split_job_id(rid)[0], ()):
            if ids_match(rid, key):
                out[rid] = key
                break
    return out


def _flatten(prefix: str, value: Any, out: Dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def parse_pbs_json(text: str) -> Dict[str, Dict[str, Any]]:
    """``qstat -f -F json`` -> {full job id: flat attributes} (nested
    resources become ``Resource_List.walltime`` like the text form).

    Tolerates a plaintext preamble before the JSON (PR #2675) and a missing
    ``Jobs`` key (no jobs). Invalid JSON raises ParseError (callers fall
    back to ``qstat -f -w`` text).
    """
    if not isinstance(text, str):
        raise ParseError(f"qstat -F json output must be text, got {type(text).__name__}")
    body = text.strip()
    if not body:
        return {}
    if not body.startswith("{"):
        idx = body.find("\n{")
        if idx < 0:
            raise ParseError(f"qstat -F json printed no JSON object: {text[:300]!r}")
        body = body[idx + 1:]
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ParseError(
            f"qstat -F json printed invalid JSON ({exc}); known PBS bugs (#1255, #2541) cause this",
            hint="pbsvllm falls back to `qstat -f -w` text",
        ) from None
    if not isinstance(doc, dict):
        raise ParseError(f"qstat -F json: expected a JSON object, got {type(doc).__name__}: {text[:200]!r}")
    jobs = doc.get("Jobs", {})
    if jobs is None:
        return {}
    if not isinstance(jobs, dict):
        raise ParseError(f"qstat -F json: \"Jobs\" should be an object, got {type(jobs).__name__}")
    out: Dict[str, Dict[str, Any]] = {}
    for job_id, attrs in jobs.items():
        if not isinstance(attrs, dict):
            raise ParseError(f"qstat -F json: job {job_id!r} should be an object, got {type(attrs).__name__}")
        flat: Dict[str, Any] = {}
        try:
            _flatten("", attrs, flat)
        except RecursionError:
            raise ParseError(f"qstat -F json: job {job_id!r} is nested too deeply") from None
        out[str(job_id)] = flat
    return out


_JOB_HEADER_RE = re.compile(r"^Job Id:\s*(\S+)\s*$")
_ATTR_RE = re.compile(r"^(?P<indent>    |\t)(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*) = ?(?P<value>.*)$")


def parse_qstat_f_text(text: str) -> Dict[str, Dict[str, str]]:
    """``qstat -f`` text (PBS Pro, Torque, slurm-torque) -> {job id: attributes}.

    Blocks start with ``Job Id: <id>``; attributes are ``name = value``
    indented by 4 spaces (PBS/Torque) or a TAB (slurm-torque). In 4-space
    blocks a line starting with a TAB continues the previous value (PBS
    wraps at 78 columns; the TAB is dropped, the rest appended).
    """
    if not isinstance(text, str):
        raise ParseError(f"qstat -f output must be text, got {type(text).__name__}")
    jobs: Dict[str, Dict[str, str]] = {}
    cur: Optional[Dict[str, str]] = None
    cur_id = ""
    indent: Optional[str] = None
    last: Optional[str] = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            last = None if indent == "\t" else last
            continue
        m = _JOB_HEADER_RE.match(line)
        if m:
            cur_id = m.group(1)
            cur = jobs.setdefault(cur_id, {})
            indent = None
            last = None
            continue
        if cur is None:
            raise ParseError(
                f"qstat -f: line {lineno} comes before any 'Job Id:' line: {line[:200]!r}",
            )
        a = _ATTR_RE.match(line)
        if a and (indent is None or a.group("indent") == indent):
            if indent is None:
                indent = a.group("indent")
            last = a.group("name")
            cur[last] = a.group("value")
            continue
        if line.startswith("\t") and last is not None:
            # wrapped continuation of the previous value
            cur[last] += line[1:] if indent == "    " else line.strip()
            continue
        raise ParseError(
            f"qstat -f: cannot read line {lineno} of job {cur_id}: expected '    name = value'"
            f" or a TAB continuation, got {line[:200]!r}",
        )
    return jobs


# ---------------------------------------------------------------- from attributes


def status_from_attrs(
    job_id: str,
    attrs: Mapping[str, Any],
    table: Mapping[str, JobState],
    now: Optional[float] = None,
) -> JobStatus:
    """Build a :class:`JobStatus` from flat ``qstat -f`` attributes (text or JSON)."""
    raw = str(attrs.get("job_state", "") or "").strip()
    state = map_state(raw, table)
    exit_raw = attrs.get("Exit_status", attrs.get("exit_status"))
    exit_status = _int_or_none(exit_raw)
    reason = ""
    comment = str(attrs.get("comment", "") or "")
    if state is JobState.UNKNOWN and exit_status is None:
        note = (f"job_state {raw[:20]!r} is not one pbsvllm knows; its state is unknown" if raw
                else "the scheduler gave no job_state")
        comment = f"{note}; {comment}" if comment else note
    elif state is JobState.UNKNOWN:
        state = JobState.COMPLETED  # an exit status is positive evidence, whatever the letter
    if state is JobState.COMPLETED:
        state, reason = interpret_exit_status(exit_status)
    elif exit_status is not None:
        reason = interpret_exit_status(exit_status)[1]
    used = parse_duration(attrs.get("resources_used.walltime"))
    limit = parse_duration(attrs.get("Resource_List.walltime"))
    if used is None and state is JobState.RUNNING:
        start = parse_ctime(attrs.get("stime"))
        if start is None:
            st = _int_or_none(attrs.get("start_time"))  # Torque: epoch seconds
            start = float(st) if st else None
        if start is not None:
            used = max(0, int((now if now is not None else time.time()) - start))
    return JobStatus(
        job_id=job_id,
        state=state,
        raw_state=raw,
        exit_status=exit_status,
        exit_reason=reason,
        queue=str(attrs.get("queue", "") or ""),
        exec_host=all_hosts(attrs.get("exec_host")),  # every node of a multi-node job (status shows them)
        walltime_used_s=used,
        walltime_limit_s=limit,
        comment=comment,
        name=str(attrs.get("Job_Name", "") or ""),
        estimated_start=parse_ctime(attrs.get("estimated.start_time")) if state is JobState.PENDING else None,
    )


# ---------------------------------------------------------------- the seam

#: Scheduler/network messages that mean "try again": the request did not
#: reach the server, so repeating it is safe (also for qsub).
TRANSIENT_PATTERNS = (
    "pbs_iff",
    "cannot connect to server",
    "could not connect to",
    "connection refused",
    "communication failure",
    "connection timed out",
    "unable to contact slurm controller",
    "socket timed out",
    "resource temporarily unavailable",
    "temporary failure in name resolution",
)


def is_transient(text: str) -> bool:
    low = text.lower()
    return any(p in low for p in TRANSIENT_PATTERNS)


class Scheduler:
    """Base of the backends. Subclasses set ``name`` and implement
    :meth:`submit`, :meth:`status` and :meth:`cancel`."""

    name = "base"
    #: Seconds a scheduler command may take.
    command_timeout = 60.0

    def __init__(
        self,
        transport: Transport,
        *,
        retries: int = 3,
        backoff_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        timeout_s: Optional[float] = None,
    ) -> None:
        self.transport = transport
        self.retries = retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        #: Scheduler commands run (benchmarks and tests count them).
        self.calls = 0
        #: The caller's own time limit (``--timeout``): no command, retry or
        #: backoff runs past it (monotonic clock; None: only ``command_timeout``).
        self.deadline: Optional[float] = None
        if timeout_s is not None:
            self.set_timeout(timeout_s)

    def set_timeout(self, timeout_s: Optional[float]) -> None:
        """Every scheduler command from now on ends within ``timeout_s`` seconds
        in all (None: no overall limit)."""
        self.deadline = None if timeout_s is None else time.monotonic() + max(0.0, float(timeout_s))

    def _time_left(self, argv: Sequence[str]) -> float:
        """Seconds the next command may take; raises once the caller's time is up."""
        if self.deadline is None:
            return self.command_timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise SchedulerError(
                f"`{describe_argv(argv)}` on {self.transport.host} was not run: the time limit"
                " (--timeout) ran out before the scheduler answered",
                hint="the scheduler may be slow or unreachable; nothing was changed, try again later",
            )
        return min(self.command_timeout, left)

    def _backoff(self, argv: Sequence[str], attempt: int) -> None:
        delay = self.backoff_s * (2 ** attempt)
        if self.deadline is not None:
            delay = min(delay, max(0.0, self.deadline - time.monotonic()))
        self._sleep(delay)
        self._time_left(argv)

    # -- the interface
    def submit(self, script_path: str, options: Any = None) -> str:
        raise NotImplementedError

    def status(self, job_ids: Iterable[str]) -> Dict[str, JobStatus]:
        raise NotImplementedError

    def cancel(self, job_id: str, force: bool = False) -> str:
        """Ask the scheduler to end the job; returns a one-line message.
        Raises JobNotFoundError for a job it does not know."""
        raise NotImplementedError

    # -- helpers for backends
    def _run(self, argv: Sequence[str], *, safe_to_repeat: bool, input: Optional[str] = None) -> Tuple[int, str, str]:
        """Run a scheduler command; transient failures are retried
        ``retries`` times with exponential backoff, then reported plainly.

        ``safe_to_repeat``: also retry when the transport dropped mid-command
        (then we cannot know whether the command ran: fine for qstat, not for qsub).
        """
        attempt = 0
        while True:
            limit = self._time_left(argv)
            self.calls += 1
            try:
                rc, out, err = self.transport.run(argv, timeout=limit, input=input)
            except TransportError as exc:
                if safe_to_repeat and getattr(exc, "transient", False) and attempt < self.retries:
                    self._backoff(argv, attempt)
                    attempt += 1
                    continue
                raise
            if rc != 0 and is_transient(out + "\n" + err) and attempt < self.retries:
                self._backoff(argv, attempt)
                attempt += 1
                continue
            if rc != 0 and is_transient(out + "\n" + err):
                raise SchedulerError(
                    f"`{describe_argv(argv)}` on {self.transport.host} kept failing after"
                    f" {self.retries} retries (rc {rc}): {(err or out).strip()[:800]}",
                    hint="the scheduler server looks unreachable; try again later",
                )
            if rc == 127:
                raise SchedulerError(
                    f"`{argv[0]}` was not found on {self.transport.host} (rc 127): {err.strip()[:300]}",
                    hint=f"is this a {self.name} host? pass --scheduler or pick another profile",
                )
            return rc, out, err

    def _fail(self, argv: Sequence[str], rc: int, out: str, err: str, what: str, hint: str = "") -> SchedulerError:
        text = "; ".join(x for x in (err.strip(), out.strip()) if x)[:1500] or "(no output)"
        return SchedulerError(
            f"{what}: `{describe_argv(argv)}` on {self.transport.host} exited {rc}: {text}",
            hint=hint,
        )

    def describe(self) -> str:
        return f"{self.name} on {self.transport.host}"


def not_found(job_id: str, where: str, detail: str = "") -> JobNotFoundError:
    return JobNotFoundError(
        f"job {job_id} is not known to {where}" + (f": {detail}" if detail else ""),
        hint="it may have finished and been purged; `pbsvllm status` lists tracked jobs",
    )
