"""PBS Pro / OpenPBS: qsub, ``qstat -x -f -F json`` (text fallback), qdel."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from pbsvllm.errors import ParseError
from pbsvllm.scheduler.base import (
    PBSPRO_STATES,
    JobStatus,
    ids_match,
    match_ids,
    parse_pbs_json,
    parse_qstat_f_text,
    status_from_attrs,
    unknown_status,
)
from pbsvllm.scheduler.qsub import UNKNOWN_ID_RE, QsubScheduler


class PBSProScheduler(QsubScheduler):
    name = "pbspro"
    states = PBSPRO_STATES
    #: Up to this many ids missing from a multi-id answer are re-asked one by one.
    per_id_limit = 10

    # -- status
    def status(self, job_ids: Iterable[str]) -> Dict[str, JobStatus]:
        ids = list(dict.fromkeys(str(j) for j in job_ids))
        if not ids:
            return {}
        found, unknown = self._query(ids)
        result: Dict[str, JobStatus] = {}
        mapping = match_ids(ids, found)
        missing = [i for i in ids if i not in mapping and i not in unknown]
        if missing and len(ids) > 1:
            # OpenPBS #2672: with several ids only the first job comes back
            # (and no error for the others). Ask for the rest one by one, or,
            # when many are missing, for all jobs at once and filter.
            batches = [[j] for j in missing] if len(missing) <= self.per_id_limit else [[]]
            for batch in batches:
                more, unk = self._query(batch)
                found.update(more)
                unknown |= unk
            mapping = match_ids(ids, found)
        for jid in ids:
            key = mapping.get(jid)
            if key is None:
                # named in an "Unknown Job Id" line: the server says it does not know
                # the id; merely left out of the answer: silence, not evidence
                result[jid] = unknown_status(jid, gone=jid in unknown)
            else:
                result[jid] = status_from_attrs(jid, found[key], self.states)
        return result

    def _query(self, ids: Sequence[str]) -> Tuple[Dict[str, Dict[str, Any]], Set[str]]:
        argv = ["qstat", "-x", "-f", "-F", "json", *ids]
        rc, out, err = self._run(argv, safe_to_repeat=True)
        unknown = self._unknown_ids(ids, err)
        if rc != 0 and not out.strip() and (not ids or len(unknown) < len(ids)):
            raise self._fail(argv, rc, out, err, "cannot read job status")
        try:
            return parse_pbs_json(out), unknown
        except ParseError:
            pass
        argv = ["qstat", "-x", "-f", "-w", *ids]
        rc, out, err = self._run(argv, safe_to_repeat=True)
        unknown |= self._unknown_ids(ids, err)
        if rc != 0 and not out.strip() and (not ids or len(unknown) < len(ids)):
            raise self._fail(argv, rc, out, err, "cannot read job status (text fallback)")
        return parse_qstat_f_text(out), unknown

    @staticmethod
    def _unknown_ids(ids: Sequence[str], err: str) -> Set[str]:
        named = set(UNKNOWN_ID_RE.findall(err or ""))
        return {i for i in ids if any(ids_match(i, n) for n in named)}

    # -- cancel
    def cancel_argv(self, job_id: str, force: bool) -> List[str]:
        return ["qdel", "-W", "force", job_id] if force else ["qdel", job_id]

    def cancel_outcome(self, job_id: str, rc: int, text: str) -> Optional[str]:
        if rc == 35 or "Job has finished" in text:
            return f"job {job_id} had already finished"
        if "Request invalid for state of job" in text:
            return f"job {job_id} is already exiting"
        return None
