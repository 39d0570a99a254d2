"""Status over SSH: connections and round trips per `pbsvllm status`, for 1
and for 100 tracked jobs, against the real loopback sshd and Slurm stand-in,
with both SSH clients: paramiko and the system OpenSSH over a ControlMaster
(profile ssh_client = "openssh").

    .venv/bin/python benchmarks/bench_ssh.py [--sizes 1,100]

Round trips are counted by the transport (each command is one SSH channel
on the one connection); connections are counted twice: by the transport and
by sshd itself (``Accepted publickey`` lines in its log) for the CLI run in
a separate process. Writes benchmarks/results/ssh.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _bench_common import ROOT, cancel_by_name, slurm_up, submit_held, write_result

sys.path.insert(0, ROOT)
from pbsvllm.jobs import JobRecord, JobStore  # noqa: E402
from pbsvllm.scheduler import get_scheduler  # noqa: E402
from pbsvllm.transport import get_transport  # noqa: E402
from tests.plugins.sshd import start_sshd, stop_sshd  # noqa: E402


def accepted(log: str) -> int:
    with open(log, errors="replace") as fh:
        return sum(1 for ln in fh if "Accepted publickey" in ln)


def openssh_run(server, log, ids, n, workdir):
    """The same figures with the system ssh over a ControlMaster (control socket under a short HOME)."""
    from pbsvllm.transport.openssh import OpenSSHTransport

    short = tempfile.mkdtemp(prefix="bs", dir="/tmp")
    os.makedirs(os.path.join(short, ".ssh"), mode=0o700)
    cp = os.path.join(short, ".ssh", "pbsvllm-%C")
    home = os.path.join(workdir, f"ohome{n}")
    store = JobStore(home)
    for i, jid in enumerate(ids):
        store.save(JobRecord(job_id=jid, alias=f"a{i}", scheduler="slurm-torque", host="openssh://" + server.alias,
                             submitted_at=time.time()))
    t = get_transport("openssh://" + server.alias, fresh=True, ssh_config=server.ssh_config, control_path=cp)
    sched = get_scheduler("slurm-torque", t)
    t0 = time.perf_counter()
    got = sched.status(ids)
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(5):
        t0 = time.perf_counter()
        sched.status(ids)
        warm.append(time.perf_counter() - t0)
    calls, conns = t.calls, t.connections
    assert isinstance(t, OpenSSHTransport)
    t.stop_master()  # the CLI starts from no master, as a user's first command does
    env = dict(os.environ, PYTHONPATH=ROOT, PBSVLLM_SSH_CONFIG=server.ssh_config, HOME=short)
    cli = []
    try:
        for _ in range(2):
            before = accepted(log)
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "pbsvllm", "status", "--json", "--home", home],
                               capture_output=True, text=True, timeout=300, env=env)
            took = time.perf_counter() - t0
            if r.returncode != 0:
                raise SystemExit(f"pbsvllm status over OpenSSH failed: {r.stderr}")
            time.sleep(0.3)
            cli.append((accepted(log) - before, took, len(json.loads(r.stdout))))
    finally:
        OpenSSHTransport(server.alias, ssh_config=server.ssh_config, control_path=cp).stop_master()
    return {
        "client": "openssh",
        "jobs": n,
        "round_trips_per_status": calls // 6,
        "connections_in_process_6_statuses": conns,
        "cli_connections_seen_by_sshd": cli[0][0],
        "cli_again_connections_seen_by_sshd": cli[1][0],
        "status_cold_s_incl_connect": round(cold, 3),
        "status_warm_s_median": round(statistics.median(warm), 3),
        "cli_status_s": round(cli[0][1], 3),
        "cli_again_status_s": round(cli[1][1], 3),
        "cli_rows": cli[0][2],
        "all_known": all(st.state.value != "UNKNOWN" for st in got.values()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,100")
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    slurm_up()
    workdir = tempfile.mkdtemp(prefix="pbsvllm-bench-ssh-")
    server, proc = start_sshd(os.path.join(workdir, "sshd"))
    log = os.path.join(server.dir, "sshd.log")
    name = f"pbsvllm-bench-ssh-{os.getpid()}"
    out = []
    try:
        for n in sizes:
            ids = submit_held(n, name)
            home = os.path.join(workdir, f"home{n}")
            store = JobStore(home)
            for i, jid in enumerate(ids):
                store.save(
                    JobRecord(
                        job_id=jid, alias=f"a{i}", scheduler="slurm-torque", host=server.alias, submitted_at=time.time()
                    )
                )
            # in-process: a fresh transport, as one CLI invocation has
            t = get_transport(server.alias, fresh=True, ssh_config=server.ssh_config)
            sched = get_scheduler("slurm-torque", t)
            t0 = time.perf_counter()
            got = sched.status(ids)
            cold = time.perf_counter() - t0
            warm_times = []
            for _ in range(5):
                t0 = time.perf_counter()
                sched.status(ids)
                warm_times.append(time.perf_counter() - t0)
            calls_cold_plus_warm = t.calls
            conns = t.connections
            t.close()
            # the CLI in its own process
            env = dict(os.environ, PYTHONPATH=ROOT, PBSVLLM_SSH_CONFIG=server.ssh_config)
            before = accepted(log)
            t0 = time.perf_counter()
            r = subprocess.run(
                [sys.executable, "-m", "pbsvllm", "status", "--json", "--home", home],
                capture_output=True,
                text=True,
                timeout=300,
                env=env,
            )
            cli_s = time.perf_counter() - t0
            if r.returncode != 0:
                raise SystemExit(f"pbsvllm status over SSH failed: {r.stderr}")
            time.sleep(0.3)
            cli_conns = accepted(log) - before
            rows = json.loads(r.stdout)
            out.append({
                "client": "paramiko",
                "jobs": n,
                "round_trips_per_status": calls_cold_plus_warm // 6,
                "connections_in_process_6_statuses": conns,
                "cli_connections_seen_by_sshd": cli_conns,
                "status_cold_s_incl_connect": round(cold, 3),
                "status_warm_s_median": round(statistics.median(warm_times), 3),
                "cli_status_s": round(cli_s, 3),
                "cli_rows": len(rows),
                "all_known": all(s.state.value != "UNKNOWN" for s in got.values()),
            })
            print(
                f"{n} jobs over SSH: {out[-1]['round_trips_per_status']} round trip(s) per status, "
                f"{conns} connection for 6 statuses, CLI {cli_conns} connection; cold {cold:.3f} s, "
                f"warm {out[-1]['status_warm_s_median']} s, CLI {cli_s:.2f} s"
            )
            out.append(openssh_run(server, log, ids, n, workdir))
            r2 = out[-1]
            print(f"{n} jobs over OpenSSH: {r2['round_trips_per_status']} round trip(s) per status, "
                  f"{r2['connections_in_process_6_statuses']} connection for 6 statuses; CLI "
                  f"{r2['cli_connections_seen_by_sshd']} login (first), {r2['cli_again_connections_seen_by_sshd']} "
                  f"(second, master reused); cold {r2['status_cold_s_incl_connect']} s, warm "
                  f"{r2['status_warm_s_median']} s, CLI {r2['cli_status_s']} s / {r2['cli_again_status_s']} s")
            cancel_by_name(name)
    finally:
        cancel_by_name(name)
        stop_sshd(proc)
    path = write_result(
        "ssh",
        {
            "command": f".venv/bin/python benchmarks/bench_ssh.py --sizes {a.sizes}",
            "headline": "; ".join(
                f"{r['client']} {r['jobs']} job(s): {r['round_trips_per_status']} round trip, "
                f"{r['cli_connections_seen_by_sshd']} connection per status"
                + (
                    f" ({r['cli_again_connections_seen_by_sshd']} once the master is up)"
                    if r["client"] == "openssh"
                    else ""
                )
                for r in out
            ),
            "runs": out,
            "notes": [
                "Real OpenSSH server on 127.0.0.1 and the real Slurm stand-in; jobs are held so they never run.",
                "Round trips = SSH channels opened by the transport per status (one `qstat -f <ids>` for all jobs).",
                "Connections are counted by the transport and, for the CLI process, from sshd's own log.",
                "Loopback latency is far below a real login node's; the counts, not the seconds, carry over.",
                f"Load average when this ran: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
                "(the seconds grow with it).",
                "OpenSSH: the first CLI process opens the master (one login), the next ones ride it (no login): "
                "what lets sites with multi-factor login work with one passcode per ControlPersist period.",
            ],
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
