"""Torque: ``qstat -f`` text, state C, lower-case ``exit_status``, no history.

:class:`SlurmTorqueScheduler` is a thin variant for Slurm's Debian
``slurm-wlm-torque`` wrappers (the suite's real scheduler; docs/reference/pbs.md
section 12). Its quirks stay here and never reach the PBS Pro path.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from pbsvllm.errors import ParseError
from pbsvllm.models import JobState
from pbsvllm.scheduler.base import (
    TORQUE_STATES,
    WALLTIME_EXIT,
    JobStatus,
    SubmitOptions,
    ids_match,
    interpret_exit_status,
    match_ids,
    not_found,
    parse_ctime,
    parse_qstat_f_text,
    status_from_attrs,
    unknown_status,
)
from pbsvllm.scheduler.qsub import UNKNOWN_ID_RE, QsubScheduler, qsub_argv


class TorqueScheduler(QsubScheduler):
    name = "torque"
    states = TORQUE_STATES

    def status(self, job_ids: Iterable[str]) -> Dict[str, JobStatus]:
        ids = list(dict.fromkeys(str(j) for j in job_ids))
        if not ids:
            return {}
        argv = self.status_argv(ids)
        rc, out, err = self._run(argv, safe_to_repeat=True)
        named = set(UNKNOWN_ID_RE.findall(err or ""))
        if rc != 0 and not out.strip() and not named and not self._all_unknown_rc(rc):
            raise self._fail(argv, rc, out, err, "cannot read job status")
        found = parse_qstat_f_text(out)
        mapping = match_ids(ids, found)
        # rc 153 (PBSE_UNKJOBID) with nothing printed: none of the ids is known
        all_unknown = self._all_unknown_rc(rc) and not out.strip()
        result: Dict[str, JobStatus] = {}
        for jid in ids:
            key = mapping.get(jid)
            if key is None:
                gone = all_unknown or any(ids_match(jid, n) or ids_match(_numeric(jid), n) for n in named)
                result[jid] = unknown_status(jid, gone=gone)
            else:
                result[jid] = status_from_attrs(jid, found[key], self.states)
        return self.refine(result, found, mapping)

    def status_argv(self, ids: Sequence[str]) -> List[str]:
        return ["qstat", "-f", *ids]

    def _all_unknown_rc(self, rc: int) -> bool:
        return rc == 153  # PBSE_UNKJOBID mod 256

    def refine(
        self, result: Dict[str, JobStatus], found: Mapping[str, Any], mapping: Mapping[str, str]
    ) -> Dict[str, JobStatus]:
        return result

    def cancel_argv(self, job_id: str, force: bool) -> List[str]:
        return ["qdel", "-p", job_id] if force else ["qdel", job_id]

    def cancel_outcome(self, job_id: str, rc: int, text: str) -> Optional[str]:
        if "Request invalid for state of job" in text or "Job has finished" in text:
            return f"job {job_id} had already finished"
        return None


# ---------------------------------------------------------------- slurm-torque

_SCONTROL_KV_RE = re.compile(r"(\S+?)=(\S*)")


def parse_scontrol_show_job(text: str) -> Dict[str, Dict[str, str]]:
    """``scontrol show job [-o]`` -> {JobId: {key: value}} (multi-line or one-line records)."""
    if not isinstance(text, str):
        raise ParseError(f"scontrol output must be text, got {type(text).__name__}")
    jobs: Dict[str, Dict[str, str]] = {}
    cur: Optional[Dict[str, str]] = None
    for line in text.splitlines():
        if not line.strip():
            continue
        pairs = _SCONTROL_KV_RE.findall(line)
        if line.lstrip().startswith("JobId="):
            cur = {}
            jobs[pairs[0][1]] = cur
        if cur is None:
            if line.strip().startswith("No jobs") or "Invalid job id" in line:
                continue
            raise ParseError(f"scontrol show job: expected 'JobId=...' first, got {line[:200]!r}")
        for k, v in pairs:
            cur.setdefault(k, v)
    return jobs


#: Slurm JobState of a finished job -> (pbsvllm state, reason) overrides.
SLURM_END_STATES = {
    "CANCELLED": JobState.CANCELLED,
    "TIMEOUT": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "DEADLINE": JobState.FAILED,
    "PREEMPTED": JobState.FAILED,
}


def _slurm_exit(code: str) -> Tuple[Optional[int], Optional[int]]:
    """``143:0`` -> (143, 0) (exit code, signal)."""
    try:
        a, _, b = code.partition(":")
        return int(a), int(b or 0)
    except ValueError:
        return None, None


class SlurmTorqueScheduler(TorqueScheduler):
    """Slurm behind Debian's ``slurm-wlm-torque`` wrappers.

    Quirks handled here (docs/reference/pbs.md section 12): job ids are bare numbers; the
    wrapper overrides the script's ``#PBS -N/-o/-e/-j`` (we repeat them on
    the command line); only the last ``-l`` counts (base already joins);
    unknown ids are silently left out (rc 153 when none is known); states
    are only Q/R/S/C and ``qstat -f`` has no exit status, so finished jobs
    are completed from ONE extra ``scontrol -o show job`` call; the
    running time comes from ``mtime`` (start); ``qdel -W force`` does not
    exist (``scancel -s KILL`` instead).
    """

    name = "slurm-torque"

    def submit_argv(self, script_path: str, opts: SubmitOptions) -> List[str]:
        directives = script_directives(self._read_script(script_path))
        extra: List[str] = []
        name = opts.job_name or directives.get("-N")
        if name and not opts.job_name:
            extra += ["-N", name]
        join = directives.get("-j")
        out_path = _slurm_path(directives.get("-o"), name or posixpath.basename(script_path), "o")
        err_path = _slurm_path(directives.get("-e"), name or posixpath.basename(script_path), "e")
        if join and join.startswith("o"):
            extra += ["-j", "oe"]
            if out_path:
                extra += ["-o", out_path]
        else:
            if out_path:
                extra += ["-o", out_path]
            if err_path:
                extra += ["-e", err_path]
        argv = qsub_argv(script_path, opts)
        return argv[:1] + extra + argv[1:]

    def _read_script(self, path: str) -> str:
        try:
            return self.transport.read_text(path)
        except Exception:
            return ""

    def status_argv(self, ids: Sequence[str]) -> List[str]:
        return ["qstat", "-f", *[_numeric(i) for i in ids]]

    def refine(
        self, result: Dict[str, JobStatus], found: Mapping[str, Any], mapping: Mapping[str, str]
    ) -> Dict[str, JobStatus]:
        now = time.time()
        for jid, st in result.items():
            attrs = found.get(mapping.get(jid, ""), {})
            if st.state is JobState.RUNNING and st.walltime_used_s is None:
                start = parse_ctime(attrs.get("mtime"))
                if start is not None:
                    st.walltime_used_s = max(0, int(now - start))
            if st.walltime_used_s is None and st.raw_state == "C":
                start, end = parse_ctime(attrs.get("mtime")), parse_ctime(attrs.get("ctime"))
                if start is not None and end is not None:
                    st.walltime_used_s = max(0, int(end - start))
        finished = [j for j, st in result.items() if st.raw_state == "C" and st.exit_status is None]
        if not finished:
            return result
        # scontrol takes one id or none (all jobs): one call either way.
        argv = ["scontrol", "-o", "show", "job"]
        if len(finished) == 1:
            argv.append(_numeric(finished[0]))
        rc, out, err = self._run(argv, safe_to_repeat=True)
        if rc != 0:
            return result  # exit codes stay unknown; never guess
        info = parse_scontrol_show_job(out)
        for jid in finished:
            rec = info.get(_numeric(jid))
            if not rec:
                continue
            st = result[jid]
            code, sig = _slurm_exit(rec.get("ExitCode", ""))
            slurm_state = rec.get("JobState", "")
            if code is not None:
                st.exit_status = code if not sig else 256 + sig
            if slurm_state == "COMPLETING":
                # the wrapper already says C while Slurm is still ending the job's
                # processes: like PBS's E, not final yet
                st.state, st.exit_reason, st.exit_status = JobState.COMPLETING, "ending (Slurm COMPLETING)", None
            elif slurm_state == "TIMEOUT":
                st.exit_status = WALLTIME_EXIT
                st.state, st.exit_reason = interpret_exit_status(WALLTIME_EXIT)
            else:
                st.state, st.exit_reason = interpret_exit_status(st.exit_status)
                if slurm_state in SLURM_END_STATES:
                    st.state = SLURM_END_STATES[slurm_state]
                    st.exit_reason = f"{slurm_state.lower().replace('_', ' ')}; {st.exit_reason}"
            st.comment = f"slurm JobState={slurm_state} ExitCode={rec.get('ExitCode', '?')}"
        return result

    def cancel_argv(self, job_id: str, force: bool) -> List[str]:
        if force:
            return ["scancel", "--signal=KILL", "--full", _numeric(job_id)]
        return ["qdel", _numeric(job_id)]

    def cancel(self, job_id: str, force: bool = False) -> str:
        argv = self.cancel_argv(job_id, force)
        rc, out, err = self._run(argv, safe_to_repeat=True)
        if rc == 0:
            return f"asked {self.describe()} to end job {job_id}" + (" (forced)" if force else "")
        # The wrapper prints nothing for an unknown or finished id (rc 1): ask.
        st = super().status([job_id]).get(job_id)
        if st is None or st.state is JobState.UNKNOWN:
            raise not_found(job_id, self.describe(), f"`{' '.join(argv)}` exited {rc}")
        if st.state.is_terminal:
            return f"job {job_id} had already finished ({st.exit_reason or st.raw_state})"
        raise self._fail(argv, rc, out, err, f"cannot cancel job {job_id}")


def _slurm_path(value: Optional[str], name: str, kind: str) -> Optional[str]:
    """PBS ``-o``/``-e`` value -> a file path for sbatch: ``host:`` dropped; a
    folder (trailing ``/``) gets PBS's default name ``<name>.o<id>``."""
    if not value:
        return None
    if ":" in value and not value.startswith("/"):
        value = value.split(":", 1)[1]
    if value.endswith("/"):
        value = f"{value}{name}.{kind}%j"
    return value


def _numeric(job_id: str) -> str:
    return str(job_id).split(".", 1)[0]


_DIRECTIVE_RE = re.compile(r"^#PBS\s+(.*)$")


def script_directives(text: str) -> Dict[str, str]:
    """``#PBS`` options of a script (last one wins for repeated options;
    ``-l`` values are joined with commas). Stops at the first command line."""
    out: Dict[str, str] = {}
    for line in text.splitlines():
        s = line.strip()
        if not s or (s.startswith("#") and not s.startswith("#PBS")):
            continue
        m = _DIRECTIVE_RE.match(s)
        if not m:
            break
        try:
            words = shlex.split(m.group(1), comments=True)
        except ValueError:
            continue
        i = 0
        while i < len(words):
            w = words[i]
            if w.startswith("-") and len(w) >= 2:
                key = w[:2]
                val = (
                    w[2:]
                    if len(w) > 2
                    else (words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("-") else "")
                )
                if len(w) == 2 and val:
                    i += 1
                if key == "-l" and key in out:
                    out[key] = out[key] + "," + val
                else:
                    out[key] = val
            i += 1
    return out
