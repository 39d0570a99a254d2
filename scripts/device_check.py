"""Checks run on a real GPU node by scripts/device-run.sh (not part of the package).

    python3 scripts/device_check.py cvd OUTDIR

Resolves several CUDA_VISIBLE_DEVICES values with pbsvllm.gpu and compares
each with what CUDA itself enumerates under that value (torch.cuda in a
fresh subprocess: device count, UUID and PCI bus id of each ordinal).
Writes OUTDIR/cvd-check.json and exits non-zero on any mismatch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pbsvllm import gpu  # noqa: E402

TORCH_SNIPPET = r"""
import json, torch
out = []
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    bus = None
    if hasattr(p, "pci_bus_id"):
        bus = "%08X:%02X:%02X.0" % (p.pci_domain_id, p.pci_bus_id, p.pci_device_id)
    out.append({"ordinal": i, "uuid": "GPU-" + str(p.uuid), "pci_bus_id": bus, "name": p.name})
print(json.dumps(out))
"""


def cuda_view(value):
    env = dict(os.environ)
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    if value is None:
        env.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        env["CUDA_VISIBLE_DEVICES"] = value
    r = subprocess.run([sys.executable, "-c", TORCH_SNIPPET], env=env,
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        return {"error": r.stderr[-2000:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    outdir = sys.argv[2]
    raw = gpu.probe_raw()
    report = gpu.build_report(raw)
    uuids = [g.uuid for g in report.gpus]
    n = len(uuids)
    cases = [None, ",".join(str(i) for i in reversed(range(n)))]
    if n >= 4:
        cases.append(f"{uuids[3]},{uuids[1]}")          # two UUIDs, reverse order
        cases.append(f"{uuids[2][:12]},{uuids[0]}")     # a unique UUID prefix, as CUDA allows
    if n >= 2:
        cases.append(f"{uuids[1]},GPU-00000000-bad,{uuids[0]}")  # CUDA stops at the bad entry
    results = []
    ok = True
    bus_by_index = {g.index: gpu._norm_bus_id(g.pci_bus_id) for g in report.gpus}
    for value in cases:
        res = gpu.resolve_visible_devices(value, report)
        cuda = cuda_view(value)
        ours = [{"ordinal": d.ordinal, "index": d.index, "uuid": d.uuid,
                 "pci_bus_id": bus_by_index[d.index]} for d in res.devices]
        if isinstance(cuda, dict):
            match = False
        else:
            match = [o["uuid"].lower() for o in ours] == [c["uuid"].lower() for c in cuda] and all(
                c["pci_bus_id"] is None or gpu._norm_bus_id(c["pci_bus_id"]).endswith(
                    o["pci_bus_id"][-7:]) for o, c in zip(ours, cuda))
        ok = ok and match
        results.append({"CUDA_VISIBLE_DEVICES": value, "pbsvllm": ours,
                        "problems": list(res.problems), "cuda (torch)": cuda, "match": match})
        print(f"CUDA_VISIBLE_DEVICES={value!r}: pbsvllm -> GPUs {[o['index'] for o in ours]}; "
              f"torch sees {len(cuda) if isinstance(cuda, list) else cuda}; match={match}")
        for p in res.problems:
            print(f"  problem reported: {p}")
    with open(os.path.join(outdir, "cvd-check.json"), "w") as fh:
        json.dump({"cases": results, "all_match": ok}, fh, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "cvd":
        sys.exit(__doc__)
    sys.exit(main())
