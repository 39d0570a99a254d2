"""Router overhead: the alias's stable URL (vllm-router under pbsvllm's
supervisor) against talking to the server directly, same load side by side.

A fast stand-in server (asyncio, HTTP/1.1 keep-alive, a fixed completion
body: it costs almost nothing, so the router's own cost shows) in its own
process; a closed-loop load generator (asyncio, one keep-alive connection
per concurrent client) in another; vllm-router (the real 0.1.17 binary,
default policy cache_aware) in a third. For each concurrency (1, 8, 64),
direct and routed runs alternate for several rounds (back to back, the
order flipped each round): throughput (requests/s) and p50 latency are
medians over the rounds; the ratio routed / direct and the p50 added are
medians of the per-round pairs, so load drift between rounds cancels. Targets: throughput >= 0.95x direct and
p50 added <= 2 ms.

With the cache_aware policy, vllm-router first asks the server to render
(tokenize) the prompt (``POST /v1/completions/render``), then sends the
request: two requests to the server per client request; the stand-in
answers the render at once, as a tokenizer would.

Also: the time from a server's readiness (pbsvllm's check passed) to the
first request routed to it, for an alias that had no server (its clients
were getting the 503 naming the alias): add_member + the router's own
/health check + the next client request.

    .venv/bin/python benchmarks/bench_router.py [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, Dict, List, Tuple

from _bench_common import ROOT, write_result

FAKE_SERVER = r'''
import asyncio, json, sys
name = sys.argv[2]
SERVICE_S = float(sys.argv[3]) / 1000.0
BODY = json.dumps({"id": "cmpl-1", "object": "text_completion", "model": "tiny", "who": name,
                   "choices": [{"index": 0, "text": "!", "finish_reason": "length"}],
                   "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}}).encode()
MODELS = json.dumps({"object": "list", "data": [{"id": "tiny", "object": "model"}]}).encode()
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            n = 0
            for l in lines[1:]:
                if l.lower().startswith("content-length:"):
                    n = int(l.split(":", 1)[1])
            if n:
                await reader.readexactly(n)
            if SERVICE_S and path in ("/v1/completions", "/v1/chat/completions"):
                await asyncio.sleep(SERVICE_S)  # generation; /render (tokenizing, asked by cache_aware) is quick
            body = b"" if path == "/health" else (MODELS if path.startswith("/v1/models") else BODY)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                         % len(body) + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
'''

LOAD = r'''
import asyncio, json, sys, time
host, port, path, conc, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
body = json.dumps({"model": "tiny", "prompt": "hello there", "max_tokens": 1}).encode()
req = (b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
       % (path.encode(), host.encode(), len(body)) + body)
lat, errors = [], 0
async def one(reader, writer):
    writer.write(req)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    n = 0
    for l in head.decode("latin-1").split("\r\n"):
        if l.lower().startswith("content-length:"):
            n = int(l.split(":", 1)[1])
    await reader.readexactly(n)
    return head[9:12] == b"200"
async def worker(stop_at, warm_until):
    global errors
    reader, writer = await asyncio.open_connection(host, port)
    while True:
        t0 = time.perf_counter()
        if t0 >= stop_at:
            break
        ok = await one(reader, writer)
        t1 = time.perf_counter()
        if t0 >= warm_until:
            if ok:
                lat.append(t1 - t0)
            else:
                errors += 1
    writer.close()
async def main():
    start = time.perf_counter()
    warm = start + 0.5
    stop = warm + seconds
    await asyncio.gather(*(worker(stop, warm) for _ in range(conc)))
    lat.sort()
    print(json.dumps({"requests": len(lat), "errors": errors, "rps": len(lat) / seconds,
                      "max_s": lat[-1] if lat else None,
                      "p50_s": lat[len(lat) // 2] if lat else None,
                      "p99_s": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None}))
asyncio.run(main())
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_fake(workdir: str, name: str, service_ms: float = 0.0) -> Tuple[subprocess.Popen, int]:
    port = free_port()
    script = os.path.join(workdir, "fake_server.py")
    with open(script, "w") as fh:
        fh.write(FAKE_SERVER)
    proc = subprocess.Popen([sys.executable, script, str(port), name, str(service_ms)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the stand-in server did not start")


def load(workdir: str, port: int, conc: int, seconds: float) -> Dict[str, Any]:
    script = os.path.join(workdir, "load.py")
    with open(script, "w") as fh:
        fh.write(LOAD)
    out = subprocess.run([sys.executable, script, "127.0.0.1", str(port), "/v1/completions", str(conc), str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise SystemExit(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def router_python() -> str:
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "setup-router.sh")], capture_output=True, text=True,
                         timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"scripts/setup-router.sh failed: {out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()[-1]


def readiness_to_first_routed(home: str, settings: Any, workdir: str, runs: int) -> List[float]:
    """An alias with no server (clients get its 503): a server becomes ready; seconds until
    a client polling the alias's URL gets its first 200."""
    from pbsvllm import router
    from pbsvllm.health import check_ready

    st = router.ensure_running("first", settings, home=home, model="tiny")
    out: List[float] = []
    for _ in range(runs):
        proc, port = start_fake(workdir, "new")
        try:
            url = f"http://127.0.0.1:{port}/v1"
            r = check_ready(url, "tiny")
            assert r.ready, r.detail
            t_ready = time.perf_counter()
            result: List[float] = []

            async def poll(t_ready: float = t_ready, result: List[float] = result) -> None:
                reader, writer = await asyncio.open_connection(st.host, st.port)
                body = json.dumps({"model": "tiny", "prompt": "x", "max_tokens": 1}).encode()
                req = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(body)) + body
                while True:
                    writer.write(req)
                    await writer.drain()
                    head = await reader.readuntil(b"\r\n\r\n")
                    n = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                 if line.lower().startswith(b"content-length")))
                    await reader.readexactly(n)
                    if head[9:12] == b"200":
                        result.append(time.perf_counter() - t_ready)
                        writer.close()
                        return
                    await asyncio.sleep(0.001)

            async def both(url: str = url) -> None:
                task = asyncio.create_task(poll())
                await asyncio.sleep(0)
                await asyncio.get_running_loop().run_in_executor(
                    None, lambda: router.add_member("first", url, job_id="bench", home=home))
                await task

            asyncio.run(both())
            out.append(result[0])
            router.remove_member("first", url, home=home)
        finally:
            proc.kill()
            proc.wait()
    return out


def run_policy(args: argparse.Namespace, python: str, policy: str, out: str) -> None:
    from pbsvllm import router

    workdir = tempfile.mkdtemp(prefix="bench-router-")
    home = os.path.join(workdir, "home")
    os.makedirs(home, mode=0o700)
    settings = router.RouterSettings(python=python, policy=policy)
    levels_out: List[Dict[str, Any]] = []
    servers = []
    try:
        for service_ms in [float(x) for x in args.service_ms.split(",")]:
            server, sport = start_fake(workdir, "direct", service_ms)
            servers.append(server)
            alias = f"bench{len(servers)}"
            st = router.ensure_running(alias, settings, home=home, model="tiny")
            router.add_member(alias, f"http://127.0.0.1:{sport}/v1", job_id="bench", home=home)
            for conc in [int(x) for x in args.levels.split(",")]:
                direct, routed = [], []
                for rnd in range(args.rounds):  # alternate, the order flipped each round
                    pair = [("direct", sport), ("routed", st.port)]
                    for kind, port in (pair if rnd % 2 == 0 else pair[::-1]):
                        res = load(workdir, port, conc, args.seconds)
                        (direct if kind == "direct" else routed).append(res)
                        print(f"service {service_ms:g} ms c={conc} round {rnd} {kind}: {res['rps']:.0f} req/s, "
                              f"p50 {1000 * (res['p50_s'] or 0):.2f} ms, errors {res['errors']}", flush=True)

                def med(runs: List[Dict[str, Any]], key: str) -> float:
                    # a run in which no request finished (a stall longer than the run) has no latency:
                    # it counts as 0 req/s, and in "stalls"
                    if key == "rps":
                        return statistics.median(r[key] for r in runs)
                    return statistics.median([r[key] for r in runs if r[key] is not None] or [float("nan")])

                d_rps, r_rps = med(direct, "rps"), med(routed, "rps")
                d_p50, r_p50 = med(direct, "p50_s"), med(routed, "p50_s")
                # paired per round (direct and routed ran back to back): load drift between rounds cancels out
                pair_ratio = statistics.median(q["rps"] / d["rps"] for d, q in zip(direct, routed))
                pair_added = statistics.median([q["p50_s"] - d["p50_s"] for d, q in zip(direct, routed)
                                                if q["p50_s"] is not None and d["p50_s"] is not None]
                                               or [float("nan")])
                levels_out.append({
                    "service_ms": service_ms,
                    "concurrency": conc,
                    "direct": {"rps": round(d_rps, 1), "p50_ms": round(d_p50 * 1000, 3),
                               "p99_ms": round(med(direct, "p99_s") * 1000, 3),
                               "errors": sum(r["errors"] for r in direct)},
                    "routed": {"rps": round(r_rps, 1), "p50_ms": round(r_p50 * 1000, 3),
                               "p99_ms": round(med(routed, "p99_s") * 1000, 3),
                               "errors": sum(r["errors"] for r in routed)},
                    "throughput_ratio": round(pair_ratio, 3),
                    "p50_added_ms": round(pair_added * 1000, 3),
                    "ratio_of_medians": round(r_rps / d_rps, 3),
                    "rounds": args.rounds,
                    "stalls": {"direct": sum(1 for r in direct if not r["requests"]),
                               "routed": sum(1 for r in routed if not r["requests"])},
                    "max_ms": {"direct": round(max(r["max_s"] or 0.0 for r in direct) * 1000, 1),
                               "routed": round(max(r["max_s"] or 0.0 for r in routed) * 1000, 1)},
                })
        first = readiness_to_first_routed(home, settings, workdir, 5)
    finally:
        for alias in router.aliases(home=home):
            router.stop(alias, home=home)
        for server in servers:
            server.kill()
            server.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    main_levels = [lv for lv in levels_out if lv["service_ms"] == levels_out[0]["service_ms"]]
    worst_ratio = min(lv["throughput_ratio"] for lv in main_levels)
    worst_added = max(lv["p50_added_ms"] for lv in main_levels)
    doc = {
        "levels": levels_out,
        "readiness_to_first_routed_s": {"runs": [round(x, 4) for x in first],
                                        "median": round(statistics.median(first), 4)},
        "policy": settings.policy,
        "router": "vllm-router 0.1.17",
        "seconds_per_run": args.seconds,
        "targets": {"throughput_ratio_at_least": 0.95, "p50_added_ms_at_most": 2.0},
        "meets_targets": {"throughput": worst_ratio >= 0.95, "p50_added": worst_added <= 2.0},
        "targets_judged_at_service_ms": levels_out[0]["service_ms"],
        "headline": (f"{policy}, {levels_out[0]['service_ms']:g} ms server: throughput "
                     + ", ".join(f"c={lv['concurrency']}: {lv['throughput_ratio']:.2f}x" for lv in main_levels)
                     + " direct; p50 added " + ", ".join(f"{lv['p50_added_ms']:.2f}" for lv in main_levels)
                     + f" ms; readiness to first routed request {statistics.median(first) * 1000:.0f} ms (median)"),
    }
    print(write_result(out, doc))
    print(doc["headline"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--levels", default="1,8,64")
    ap.add_argument("--policies", default="cache_aware,round_robin",
                    help="vllm-router policies, each its own result (the first, pbsvllm's default, is router.json; "
                         "the others router-POLICY.json)")
    ap.add_argument("--service-ms", default="10,0",
                    help="the stand-in server's time per completion, ms (10: a short completion; 0: free)")
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    python = router_python()
    for i, policy in enumerate(args.policies.split(",")):
        run_policy(args, python, policy, "router" if i == 0 else f"router-{policy}")


if __name__ == "__main__":
    main()
