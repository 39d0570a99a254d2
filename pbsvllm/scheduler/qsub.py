"""What PBS Pro and Torque share: qsub to submit, qdel to cancel."""

from __future__ import annotations

import re
from typing import Any, List, Optional

from pbsvllm.scheduler.base import Scheduler, SubmitOptions, not_found, parse_job_id

#: ``qstat``/``qdel`` naming an id the server does not know (PBS Pro; Torque adds "Error").
UNKNOWN_ID_RE = re.compile(r"Unknown Job Id(?: Error)?\s+(\S+)")

#: qsub/qdel error texts -> what to do about them.
QSUB_HINTS = (
    (
        "unknown queue",
        "the queue does not exist on this server; list queues with `qstat -Q` and set the profile's queue",
    ),
    (
        "invalid partition",
        "the queue (Slurm partition) does not exist; list queues with `qstat -Q` and set the profile's queue",
    ),
    ("queue is not enabled", "the queue is disabled right now; pick another queue"),
    ("access to queue is denied", "you may not submit to this queue; check your project/account"),
    ("unknown resource", "the site does not define a resource you asked for; check the profile's select line"),
    (
        "violates queue and/or server resource limits",
        "ask for fewer nodes/GPUs or a walltime within the queue's limits",
    ),
    (
        "illegal attribute or resource value",
        "a directive value is malformed; check walltime/select in the rendered script",
    ),
    ("invalid time limit", "the walltime is malformed; use HH:MM:SS"),
    ("invalid account", "the account/project is unknown; check the profile's account"),
    ("unauthorized request", "you are not allowed to do this on this server"),
)


def submit_hint(text: str) -> str:
    low = text.lower()
    for needle, hint in QSUB_HINTS:
        if needle in low:
            return hint
    return "the rendered script was kept; fix the cause and resubmit it with qsub"


def qsub_argv(script_path: str, opts: SubmitOptions) -> List[str]:
    """``qsub`` command line. All ``-l`` values are joined into ONE ``-l``
    (some qsub front-ends keep only the last ``-l``)."""
    argv = ["qsub"]
    if opts.queue:
        argv += ["-q", opts.queue]
    if opts.account:
        argv += ["-A", opts.account]
    if opts.job_name:
        argv += ["-N", opts.job_name]
    res = list(opts.resources)
    if opts.walltime:
        res.append(f"walltime={opts.walltime}")
    if res:
        argv += ["-l", ",".join(res)]
    if opts.env:
        argv += ["-v", ",".join(f"{k}={_escape_v(v)}" for k, v in opts.env.items())]
    if opts.depend:
        argv += ["-W", f"depend={opts.depend}"]
    argv += list(opts.extra_args)
    argv.append(script_path)
    return argv


def _escape_v(value: str) -> str:
    # qsub -v splits at commas; PBS accepts "\," inside a value.
    return str(value).replace(",", "\\,")


class QsubScheduler(Scheduler):
    """A backend driven by ``qsub``/``qdel``; subclasses add ``status``."""

    def submit(self, script_path: str, options: Any = None) -> str:
        opts = SubmitOptions.coerce(options)
        argv = self.submit_argv(script_path, opts)
        # never repeated after a dropped connection: it may have submitted
        rc, out, err = self._run(argv, safe_to_repeat=False)
        if rc != 0:
            raise self._fail(argv, rc, out, err, "qsub refused the job", submit_hint(out + err))
        return parse_job_id(out)

    def submit_argv(self, script_path: str, opts: SubmitOptions) -> List[str]:
        return qsub_argv(script_path, opts)

    def cancel_argv(self, job_id: str, force: bool) -> List[str]:
        return ["qdel", "-W", "force", job_id] if force else ["qdel", job_id]

    def cancel_outcome(self, job_id: str, rc: int, text: str) -> Optional[str]:
        """A message when a failed qdel still means "the job is ending"."""
        return None

    def cancel(self, job_id: str, force: bool = False) -> str:
        argv = self.cancel_argv(job_id, force)
        rc, out, err = self._run(argv, safe_to_repeat=True)
        text = (err + out).strip()
        if rc == 0:
            return f"asked {self.describe()} to end job {job_id}" + (" (forced)" if force else "")
        if "Unknown Job Id" in text:
            raise not_found(job_id, self.describe(), text)
        done = self.cancel_outcome(job_id, rc, text)
        if done:
            return done
        raise self._fail(argv, rc, out, err, f"cannot cancel job {job_id}")
