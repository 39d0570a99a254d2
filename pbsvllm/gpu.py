"""GPUs on this node: a pynvml probe and ``CUDA_VISIBLE_DEVICES`` resolution.

Three layers, so that everything but a thin edge is tested without a GPU:

* :func:`collect_raw` (the edge) asks an NVML-shaped object (the real
  ``pynvml`` module, or in tests a fake that answers from a recorded probe)
  for everything we need and returns a plain, JSON-serialisable dict. Every
  NVML call that fails is recorded as ``{"error": "<NVML message>"}`` in
  place of its value; nothing is interpreted here.
* :func:`build_report` (pure) turns that raw dict into the report: each GPU,
  the link between every pair (NVLink with its link count, or the PCIe
  topology level), the node's interconnect class.
* :func:`resolve_visible_devices` (pure) says which physical GPUs (or MIG
  instances) a ``CUDA_VISIBLE_DEVICES`` value names: indices, GPU UUIDs (as
  PBS cgroup hooks set them) or MIG identifiers.

:func:`probe` wires them for the CLI. No driver or no GPU raises
:class:`~pbsvllm.errors.ProbeError` (exit code 8) with one clear line.
"""

from __future__ import annotations

import datetime as _dt
import socket
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pbsvllm.errors import ProbeError

RAW_SCHEMA = 1

# NVML constants (stable ABI values; pynvml's own NVML_P2P_CAPS_INDEX_READ is
# a tuple by mistake, so they are spelled out here).
TOPOLOGY_LEVELS: Dict[int, Tuple[str, str]] = {
    0: ("BOARD", "same board (multi-GPU board)"),
    10: ("PIX", "at most a single PCIe switch"),
    20: ("PXB", "multiple PCIe switches"),
    30: ("PHB", "through a PCIe host bridge"),
    40: ("NODE", "across host bridges within one CPU socket (NUMA node)"),
    50: ("SYS", "across CPU sockets (SMP interconnect)"),
}
P2P_CAPS_READ = 0
P2P_CAPS_NVLINK = 2
P2P_STATUS_OK = 0
NVLINK_MAX_LINKS = 18  # NVML_NVLINK_MAX_LINKS on Hopper-era drivers; probing stops early on errors
NVLINK_TYPE_GPU = 0
NVLINK_TYPE_SWITCH = 2
MIG_ENABLED = 1


# --------------------------------------------------------------------------
# the edge: NVML -> raw dict
# --------------------------------------------------------------------------

def _s(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _norm_bus_id(bus_id: Any) -> str:
    """NVML bus ids look like ``00000000:18:00.0``; compare them upper-case."""
    return str(_s(bus_id) or "").strip().upper()


class _Caller:
    """Calls NVML functions, turning NVML errors into recorded values."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self.error_cls = getattr(nvml, "NVMLError", Exception)

    def __call__(self, name: str, *args: Any) -> Any:
        fn = getattr(self.nvml, name, None)
        if fn is None:
            return {"error": f"{name} is not available in this nvidia-ml-py"}
        try:
            return fn(*args)
        except self.error_cls as exc:  # recorded, interpreted later
            return {"error": str(exc) or type(exc).__name__}


def is_error(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"error"}


def _ok(value: Any) -> bool:
    return not is_error(value)


def collect_raw(nvml: Any) -> Dict[str, Any]:
    """Ask NVML everything the report needs; return a JSON-serialisable dict.

    ``nvml`` is the ``pynvml`` module or any object with the same functions
    and an ``NVMLError`` exception class. Raises :class:`ProbeError` when
    NVML cannot start (no driver) or sees no GPU.
    """
    call = _Caller(nvml)
    init = call("nvmlInit")
    if is_error(init):
        raise ProbeError(
            f"cannot talk to the NVIDIA driver on {socket.gethostname()}: NVML says "
            f"'{init['error']}'",
            hint="run this on a GPU node (inside a job that requested GPUs); "
            "'nvidia-smi' there should list them",
        )
    try:
        count = call("nvmlDeviceGetCount")
        if is_error(count):
            raise ProbeError(
                f"the NVIDIA driver on {socket.gethostname()} did not report its GPUs: "
                f"NVML says '{count['error']}'",
                hint="check 'nvidia-smi' on this node",
            )
        raw: Dict[str, Any] = {
            "schema": RAW_SCHEMA,
            "hostname": socket.gethostname(),
            "captured_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            "driver_version": _s(call("nvmlSystemGetDriverVersion")),
            "nvml_version": _s(call("nvmlSystemGetNVMLVersion")),
            "cuda_driver_version": call("nvmlSystemGetCudaDriverVersion"),
            "device_count": count,
            "devices": [],
            "pairs": [],
        }
        handles = []
        for index in range(count):
            handle = call("nvmlDeviceGetHandleByIndex", index)
            handles.append(handle)
            if is_error(handle):
                raw["devices"].append({"index": index, "handle": handle})
                continue
            raw["devices"].append(_collect_device(call, index, handle))
        for a in range(count):
            for b in range(a + 1, count):
                if is_error(handles[a]) or is_error(handles[b]):
                    continue
                ha, hb = handles[a], handles[b]
                raw["pairs"].append({
                    "a": a,
                    "b": b,
                    "common_ancestor": call("nvmlDeviceGetTopologyCommonAncestor", ha, hb),
                    "p2p_read": call("nvmlDeviceGetP2PStatus", ha, hb, P2P_CAPS_READ),
                    "p2p_nvlink": call("nvmlDeviceGetP2PStatus", ha, hb, P2P_CAPS_NVLINK),
                })
        return raw
    finally:
        call("nvmlShutdown")


def _memory(call: _Caller, handle: Any) -> Any:
    mem = call("nvmlDeviceGetMemoryInfo", handle)
    if is_error(mem):
        return mem
    return {"total": int(mem.total), "free": int(mem.free), "used": int(mem.used)}


def _collect_device(call: _Caller, index: int, handle: Any) -> Dict[str, Any]:
    pci = call("nvmlDeviceGetPciInfo", handle)
    cc = call("nvmlDeviceGetCudaComputeCapability", handle)
    dev: Dict[str, Any] = {
        "index": index,
        "uuid": _s(call("nvmlDeviceGetUUID", handle)),
        "name": _s(call("nvmlDeviceGetName", handle)),
        "pci_bus_id": pci if is_error(pci) else _s(pci.busId),
        "memory": _memory(call, handle),
        "compute_capability": cc if is_error(cc) else [int(cc[0]), int(cc[1])],
        "mig_mode": None,
        "mig_devices": [],
        "nvlinks": [],
    }
    mig = call("nvmlDeviceGetMigMode", handle)
    dev["mig_mode"] = mig if is_error(mig) else [int(mig[0]), int(mig[1])]
    if _ok(mig) and int(mig[0]) == MIG_ENABLED:
        slots = call("nvmlDeviceGetMaxMigDeviceCount", handle)
        dev["max_mig_device_count"] = slots
        for slot in range(slots if isinstance(slots, int) else 0):
            mh = call("nvmlDeviceGetMigDeviceHandleByIndex", handle, slot)
            if is_error(mh):
                continue  # empty slot: NVML says Not Found
            dev["mig_devices"].append({
                "slot": slot,
                "uuid": _s(call("nvmlDeviceGetUUID", mh)),
                "gpu_instance_id": call("nvmlDeviceGetGpuInstanceId", mh),
                "compute_instance_id": call("nvmlDeviceGetComputeInstanceId", mh),
                "memory": _memory(call, mh),
            })
    for link in range(NVLINK_MAX_LINKS):
        state = call("nvmlDeviceGetNvLinkState", handle, link)
        entry: Dict[str, Any] = {"link": link, "state": state}
        if is_error(state):
            # Not Supported (no NVLink) or Invalid Argument (past the last
            # link): record the first such answer and stop asking.
            dev["nvlinks"].append(entry)
            break
        if state:
            rpci = call("nvmlDeviceGetNvLinkRemotePciInfo", handle, link)
            entry["remote_pci_bus_id"] = rpci if is_error(rpci) else _s(rpci.busId)
            entry["remote_type"] = call("nvmlDeviceGetNvLinkRemoteDeviceType", handle, link)
        dev["nvlinks"].append(entry)
    return dev


# --------------------------------------------------------------------------
# pure: raw dict -> report
# --------------------------------------------------------------------------

MIB = 1024 * 1024
GIB = 1024 * MIB


def _cuda_version(value: Any) -> Optional[str]:
    if not isinstance(value, int) or value <= 0:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def _active_links(dev: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [lk for lk in dev.get("nvlinks", []) if _ok(lk.get("state")) and lk.get("state")]


def nvlink_count(raw: Dict[str, Any], a: int, b: int) -> int:
    """NVLinks between GPUs ``a`` and ``b``.

    Direct links are counted by the remote PCI bus id of each active link.
    When the links go to NVSwitches (remote type SWITCH), every pair on the
    fabric is connected: the count is the smaller number of switch links of
    the two, provided NVML's NVLink peer-to-peer status for the pair is OK
    (or was not answered).
    """
    devs = {d["index"]: d for d in raw.get("devices", [])}
    da, db = devs.get(a), devs.get(b)
    if da is None or db is None:
        return 0
    bus_b = _norm_bus_id(db.get("pci_bus_id")) if _ok(db.get("pci_bus_id")) else ""
    bus_a = _norm_bus_id(da.get("pci_bus_id")) if _ok(da.get("pci_bus_id")) else ""
    direct_ab = sum(1 for lk in _active_links(da)
                    if _ok(lk.get("remote_pci_bus_id")) and bus_b
                    and _norm_bus_id(lk.get("remote_pci_bus_id")) == bus_b)
    direct_ba = sum(1 for lk in _active_links(db)
                    if _ok(lk.get("remote_pci_bus_id")) and bus_a
                    and _norm_bus_id(lk.get("remote_pci_bus_id")) == bus_a)
    direct = max(direct_ab, direct_ba)
    if direct:
        return direct
    sw_a = sum(1 for lk in _active_links(da) if lk.get("remote_type") == NVLINK_TYPE_SWITCH)
    sw_b = sum(1 for lk in _active_links(db) if lk.get("remote_type") == NVLINK_TYPE_SWITCH)
    if sw_a and sw_b:
        pair = _pair(raw, a, b)
        status = pair.get("p2p_nvlink") if pair else None
        if status is None or is_error(status) or status == P2P_STATUS_OK:
            return min(sw_a, sw_b)
    return 0


def _pair(raw: Dict[str, Any], a: int, b: int) -> Optional[Dict[str, Any]]:
    lo, hi = min(a, b), max(a, b)
    for p in raw.get("pairs", []):
        if p.get("a") == lo and p.get("b") == hi:
            return p
    return None


@dataclass(frozen=True)
class Link:
    a: int
    b: int
    nvlinks: int
    level: Optional[str]          # PCIe topology label: BOARD/PIX/PXB/PHB/NODE/SYS
    level_text: str
    p2p: Optional[bool]           # NVML's peer-to-peer read status, None if unknown

    @property
    def label(self) -> str:
        """``nvidia-smi topo -m`` style: ``NV18``, ``PIX``, ``SYS`` ..."""
        if self.nvlinks:
            return f"NV{self.nvlinks}"
        return self.level or "?"

    def to_json(self) -> Dict[str, Any]:
        return {"a": self.a, "b": self.b, "label": self.label, "nvlinks": self.nvlinks,
                "pcie_level": self.level, "pcie_level_text": self.level_text,
                "p2p_read": self.p2p}


@dataclass(frozen=True)
class MigDevice:
    uuid: str
    gpu_instance_id: Optional[int]
    compute_instance_id: Optional[int]
    memory_total_mib: Optional[int]


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    pci_bus_id: str
    memory_total_mib: Optional[int]
    memory_free_mib: Optional[int]
    compute_capability: Optional[str]
    mig: str                      # "enabled", "disabled", "enabled after reset", "unsupported"
    mig_devices: Tuple[MigDevice, ...] = ()

    def to_json(self) -> Dict[str, Any]:
        return {
            "index": self.index, "uuid": self.uuid, "name": self.name,
            "pci_bus_id": self.pci_bus_id,
            "memory_total_mib": self.memory_total_mib, "memory_free_mib": self.memory_free_mib,
            "compute_capability": self.compute_capability, "mig": self.mig,
            "mig_devices": [m.__dict__ for m in self.mig_devices],
        }


@dataclass(frozen=True)
class Report:
    hostname: str
    driver_version: Optional[str]
    cuda_version: Optional[str]
    gpus: Tuple[Gpu, ...]
    links: Tuple[Link, ...]
    problems: Tuple[str, ...] = field(default=())

    @property
    def interconnect(self) -> str:
        """``nvlink`` (every pair has NVLink), ``pcie`` (no pair has),
        ``mixed``, or ``single`` (one GPU)."""
        if len(self.gpus) < 2:
            return "single"
        nv = [lk.nvlinks > 0 for lk in self.links]
        if nv and all(nv):
            return "nvlink"
        if not any(nv):
            return "pcie"
        return "mixed"

    def link(self, a: int, b: int) -> Optional[Link]:
        lo, hi = min(a, b), max(a, b)
        for lk in self.links:
            if (lk.a, lk.b) == (lo, hi):
                return lk
        return None

    def nvlink_groups(self) -> List[List[int]]:
        """GPUs that reach each other over NVLink (connected components)."""
        parent = {g.index: g.index for g in self.gpus}

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for lk in self.links:
            if lk.nvlinks and lk.a in parent and lk.b in parent:
                parent[find(lk.a)] = find(lk.b)
        groups: Dict[int, List[int]] = {}
        for g in self.gpus:
            groups.setdefault(find(g.index), []).append(g.index)
        return sorted(groups.values())

    def to_json(self) -> Dict[str, Any]:
        return {
            "hostname": self.hostname,
            "driver_version": self.driver_version,
            "cuda_version": self.cuda_version,
            "gpu_count": len(self.gpus),
            "interconnect": self.interconnect,
            "nvlink_groups": self.nvlink_groups(),
            "gpus": [g.to_json() for g in self.gpus],
            "links": [lk.to_json() for lk in self.links],
            "problems": list(self.problems),
        }


def _mib(mem: Any, key: str) -> Optional[int]:
    if not isinstance(mem, dict) or key not in mem:
        return None
    return int(mem[key]) // MIB


def _mig_text(mode: Any) -> str:
    if mode is None or is_error(mode):
        return "unsupported"
    current, pending = int(mode[0]), int(mode[1])
    if current == MIG_ENABLED:
        return "enabled" if pending == MIG_ENABLED else "enabled (disabled after reset)"
    return "disabled" if pending != MIG_ENABLED else "disabled (enabled after reset)"


def build_report(raw: Dict[str, Any]) -> Report:
    """Pure: the raw probe dict (see :func:`collect_raw`) -> :class:`Report`."""
    if not isinstance(raw, dict) or "devices" not in raw:
        raise ProbeError("the probe data has no 'devices' list; it is not a pbsvllm raw probe",
                         hint="capture one with 'pbsvllm probe --raw' on a GPU node")
    problems: List[str] = []
    gpus: List[Gpu] = []
    for dev in raw.get("devices", []):
        if "handle" in dev and is_error(dev["handle"]):
            problems.append(f"GPU {dev['index']}: NVML could not open it: {dev['handle']['error']}")
            continue
        cc = dev.get("compute_capability")
        migs = tuple(
            MigDevice(
                uuid=str(m.get("uuid")),
                gpu_instance_id=m.get("gpu_instance_id") if _ok(m.get("gpu_instance_id")) else None,
                compute_instance_id=m.get("compute_instance_id") if _ok(m.get("compute_instance_id")) else None,
                memory_total_mib=_mib(m.get("memory"), "total"),
            )
            for m in dev.get("mig_devices", [])
        )
        for key in ("uuid", "name", "pci_bus_id", "memory"):
            if is_error(dev.get(key)):
                problems.append(f"GPU {dev['index']}: NVML could not read {key}: {dev[key]['error']}")
        gpus.append(Gpu(
            index=int(dev["index"]),
            uuid=str(dev.get("uuid")) if _ok(dev.get("uuid")) else "",
            name=str(dev.get("name")) if _ok(dev.get("name")) else "",
            pci_bus_id=str(dev.get("pci_bus_id")) if _ok(dev.get("pci_bus_id")) else "",
            memory_total_mib=_mib(dev.get("memory"), "total"),
            memory_free_mib=_mib(dev.get("memory"), "free"),
            compute_capability=f"{cc[0]}.{cc[1]}" if isinstance(cc, list) else None,
            mig=_mig_text(dev.get("mig_mode")),
            mig_devices=migs,
        ))
    links: List[Link] = []
    present = {g.index for g in gpus}
    for p in raw.get("pairs", []):
        a, b = int(p["a"]), int(p["b"])
        if a not in present or b not in present:
            continue
        anc = p.get("common_ancestor")
        level, text = (None, "unknown (NVML did not answer)")
        if isinstance(anc, int):
            level, text = TOPOLOGY_LEVELS.get(anc, (f"L{anc}", f"NVML topology level {anc}"))
        read = p.get("p2p_read")
        links.append(Link(
            a=a, b=b, nvlinks=nvlink_count(raw, a, b), level=level, level_text=text,
            p2p=(read == P2P_STATUS_OK) if isinstance(read, int) else None,
        ))
    return Report(
        hostname=str(raw.get("hostname", "")),
        driver_version=raw.get("driver_version") if _ok(raw.get("driver_version")) else None,
        cuda_version=_cuda_version(raw.get("cuda_driver_version")),
        gpus=tuple(gpus),
        links=tuple(links),
        problems=tuple(problems),
    )


def format_report(report: Report) -> str:
    """Human-readable report: GPU table, link matrix with a legend."""
    lines = [
        f"node {report.hostname}: {len(report.gpus)} GPU(s), driver {report.driver_version or '?'}, "
        f"CUDA {report.cuda_version or '?'}, interconnect {report.interconnect}",
        "",
    ]
    header = ["GPU", "name", "memory total", "free", "CC", "MIG", "UUID"]
    rows = [header]
    for g in report.gpus:
        rows.append([
            str(g.index), g.name,
            f"{g.memory_total_mib} MiB" if g.memory_total_mib is not None else "?",
            f"{g.memory_free_mib} MiB" if g.memory_free_mib is not None else "?",
            g.compute_capability or "?", g.mig, g.uuid,
        ])
        for m in g.mig_devices:
            rows.append(["", f"  MIG {m.gpu_instance_id}/{m.compute_instance_id}",
                         f"{m.memory_total_mib} MiB" if m.memory_total_mib is not None else "?",
                         "", "", "", m.uuid])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if len(report.gpus) > 1:
        lines.append("")
        idx = [g.index for g in report.gpus]
        cell = max(5, max(len(lk.label) for lk in report.links) + 1 if report.links else 5)
        lines.append(" " * 6 + "".join(f"GPU{i}".ljust(cell) for i in idx))
        for i in idx:
            row = f"GPU{i}".ljust(6)
            for j in idx:
                if i == j:
                    row += "X".ljust(cell)
                else:
                    lk = report.link(i, j)
                    row += (lk.label if lk else "?").ljust(cell)
            lines.append(row.rstrip())
        lines.append("")
        lines.append("Legend: NV# = # NVLinks between the pair (direct or through NVSwitch); "
                     "BOARD = same board; PIX = one PCIe switch; PXB = several PCIe switches; "
                     "PHB = PCIe host bridge; NODE = across host bridges in one CPU socket; "
                     "SYS = across CPU sockets.")
        lines.append(f"NVLink groups: {report.nvlink_groups()}")
    for p in report.problems:
        lines.append(f"warning: {p}")
    return "\n".join(lines)


def planner_hardware(report: Report) -> Dict[str, Any]:
    """What the planner needs to know about this node, from a probe.

    ``gpu_memory_gib`` is the smallest total memory of the GPUs (vLLM sizes
    every worker the same), ``interconnect`` is ``nvlink`` only when every
    pair of GPUs has NVLink, ``pcie`` otherwise (a ``mixed`` node is treated
    as PCIe for tensor parallelism across all its GPUs).
    """
    if not report.gpus:
        raise ProbeError(f"no GPU found on {report.hostname}",
                         hint="run the probe inside a job that requested GPUs")
    whole = [g for g in report.gpus if not g.mig.startswith("enabled")]
    notes = [f"GPU {g.index} is in MIG mode and is left out (a vLLM server uses whole GPUs or one "
             f"MIG instance)" for g in report.gpus if g.mig.startswith("enabled")]
    if whole:
        totals = [g.memory_total_mib for g in whole if g.memory_total_mib]
        frees = [g.memory_free_mib for g in whole if g.memory_free_mib is not None]
        count, name = len(whole), whole[0].name
        sub = Report(report.hostname, report.driver_version, report.cuda_version, tuple(whole),
                     tuple(lk for lk in report.links if {lk.a, lk.b} <= {g.index for g in whole}))
        ic = sub.interconnect
        groups = sub.nvlink_groups()
    else:  # every GPU in MIG mode: plan for the largest single MIG instance
        migs = [m for g in report.gpus for m in g.mig_devices if m.memory_total_mib]
        if not migs:
            raise ProbeError(f"every GPU on {report.hostname} is in MIG mode with no MIG instance",
                             hint="create MIG instances (nvidia-smi mig) or disable MIG")
        totals = [max(m.memory_total_mib or 0 for m in migs)]
        frees = []
        count, name, ic, groups = 1, f"{report.gpus[0].name} MIG instance", "single", []
        notes.append("every GPU is in MIG mode: planned for one MIG instance")
    return {
        "gpus_per_node": count,
        "gpu_name": name,
        "gpu_memory_gib": round(min(totals) / 1024, 1) if totals else None,
        "gpu_memory_free_gib": round(min(frees) / 1024, 1) if frees else None,
        "compute_capability": report.gpus[0].compute_capability,
        "interconnect": {"nvlink": "nvlink", "single": "none"}.get(ic, "pcie"),
        "nvlink_groups": groups,
        "source": f"probe of {report.hostname}",
        "notes": notes,
    }


# --------------------------------------------------------------------------
# pure: CUDA_VISIBLE_DEVICES -> physical GPUs
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class VisibleDevice:
    """One device a CUDA program sees, in CUDA's order (``ordinal``)."""

    ordinal: int
    index: int                    # the physical GPU's NVML index
    uuid: str                     # the physical GPU's UUID
    name: str
    mig_uuid: Optional[str] = None
    entry: str = ""               # the CUDA_VISIBLE_DEVICES entry that named it

    def to_json(self) -> Dict[str, Any]:
        return {"ordinal": self.ordinal, "index": self.index, "uuid": self.uuid,
                "name": self.name, "mig_uuid": self.mig_uuid, "entry": self.entry}


@dataclass(frozen=True)
class Resolution:
    value: Optional[str]
    devices: Tuple[VisibleDevice, ...]
    problems: Tuple[str, ...]

    @property
    def indices(self) -> List[int]:
        return [d.index for d in self.devices]

    def to_json(self) -> Dict[str, Any]:
        return {"CUDA_VISIBLE_DEVICES": self.value,
                "devices": [d.to_json() for d in self.devices],
                "problems": list(self.problems)}


def _match_uuid(entry: str, candidates: Sequence[Tuple[str, Any]]) -> List[Any]:
    """CUDA accepts a unique prefix of a UUID (``GPU-8a3f`` ...)."""
    e = entry.lower()
    exact = [obj for u, obj in candidates if u.lower() == e]
    if exact:
        return exact
    return [obj for u, obj in candidates if u.lower().startswith(e)]


def resolve_visible_devices(value: Optional[str], report: Report) -> Resolution:
    """Which physical GPUs a ``CUDA_VISIBLE_DEVICES`` value names, in CUDA order.

    * unset (``None``): every GPU, in NVML (PCI bus) order;
    * ``""``: no GPU at all (PBS sets this for jobs that requested none);
    * indices ``"2,0"``: NVML index order, which is CUDA's order when
      ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (PBS sets it with the cgroup hook);
    * GPU UUIDs ``"GPU-...,GPU-..."`` (unique prefixes allowed, as in CUDA);
    * MIG identifiers: ``MIG-<uuid>`` or the older ``MIG-GPU-<uuid>/<gi>/<ci>``.

    Like CUDA, the list stops at the first entry that names nothing; that
    entry, and duplicates, are reported in ``problems``.
    """
    gpus = list(report.gpus)
    mig_note = [
        f"GPU {g.index} is in MIG mode: CUDA programs see its MIG instances, not the whole GPU; "
        f"name one instance (MIG-<uuid>, see 'pbsvllm probe') in CUDA_VISIBLE_DEVICES"
        for g in gpus if g.mig.startswith("enabled")]
    if value is None:
        return Resolution(None, tuple(
            VisibleDevice(i, g.index, g.uuid, g.name, None, str(g.index)) for i, g in enumerate(gpus)
        ), tuple(mig_note))
    problems: List[str] = []
    out: List[VisibleDevice] = []
    seen: set = set()
    entries = [e.strip() for e in value.split(",")]
    if value.strip() == "":
        return Resolution(value, (), ("CUDA_VISIBLE_DEVICES is empty: CUDA programs see no GPU",))
    by_index = {g.index: g for g in gpus}
    gpu_uuids = [(g.uuid, g) for g in gpus if g.uuid]
    mig_uuids = [(m.uuid, (g, m)) for g in gpus for m in g.mig_devices if m.uuid]
    for pos, entry in enumerate(entries):
        found: Optional[Tuple[Gpu, Optional[MigDevice]]] = None
        why = ""
        if entry.isdigit():
            g = by_index.get(int(entry))
            if g is None:
                why = f"there is no GPU with index {entry} (this node has {len(gpus)})"
            else:
                found = (g, None)
        elif entry.upper().startswith("MIG-GPU-"):
            parts = entry[4:].split("/")
            hits = _match_uuid(parts[0], gpu_uuids)
            if len(hits) == 1 and len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                g = hits[0]
                ms = [m for m in g.mig_devices
                      if m.gpu_instance_id == int(parts[1]) and m.compute_instance_id == int(parts[2])]
                if ms:
                    found = (g, ms[0])
            if found is None:
                why = "no MIG instance on this node has that GPU UUID / GPU instance / compute instance"
        elif entry.upper().startswith("MIG-"):
            hits = _match_uuid(entry, mig_uuids)
            if len(hits) == 1:
                found = hits[0]
            else:
                why = ("it matches more than one MIG instance" if hits
                       else "no MIG instance on this node has that UUID")
        elif entry.upper().startswith("GPU-"):
            hits = _match_uuid(entry, gpu_uuids)
            if len(hits) == 1:
                found = (hits[0], None)
            else:
                why = ("it is a prefix of more than one GPU UUID" if hits
                       else "no GPU on this node has that UUID")
        else:
            why = "it is neither an index, a GPU-<uuid> nor a MIG-<uuid>"
        if found is None:
            rest = entries[pos + 1:]
            problems.append(
                f"CUDA_VISIBLE_DEVICES entry {pos + 1} {entry!r}: {why}; CUDA ignores it"
                + (f" and the {len(rest)} entr{'y' if len(rest) == 1 else 'ies'} after it" if rest else "")
            )
            break
        g, m = found
        if m is None and g.mig.startswith("enabled"):
            problems.append(f"CUDA_VISIBLE_DEVICES entry {entry!r} names GPU {g.index}, which is in MIG "
                            "mode: name one of its MIG instances (MIG-<uuid>) instead")
        key = m.uuid if m else g.uuid
        if key in seen:
            problems.append(f"CUDA_VISIBLE_DEVICES names {entry!r} twice; CUDA refuses duplicate devices")
            continue
        seen.add(key)
        out.append(VisibleDevice(len(out), g.index, g.uuid, g.name, m.uuid if m else None, entry))
    return Resolution(value, tuple(out), tuple(problems))


def check_visible(report: Report, value: Optional[str], expected: int) -> Resolution:
    """Pre-launch check: ``CUDA_VISIBLE_DEVICES`` must name exactly ``expected``
    distinct, existing devices. Raises :class:`ProbeError` saying what it saw."""
    res = resolve_visible_devices(value, report)
    shown = "unset" if value is None else repr(value)
    names = ", ".join(
        f"{d.ordinal}->GPU {d.index} {d.mig_uuid or d.uuid}" for d in res.devices) or "none"
    if res.problems:
        raise ProbeError(
            f"CUDA_VISIBLE_DEVICES={shown} on {report.hostname}: " + "; ".join(res.problems),
            hint=f"the plan needs {expected} GPU(s); fix the job's GPU request or the value",
        )
    if len(res.devices) != expected:
        raise ProbeError(
            f"the plan needs {expected} GPU(s) but CUDA_VISIBLE_DEVICES={shown} on "
            f"{report.hostname} gives {len(res.devices)} ({names})",
            hint="request as many GPUs as the plan uses (ngpus / gpus=) or re-plan for "
            f"{len(res.devices)} GPU(s); vLLM was not started",
        )
    return res


# --------------------------------------------------------------------------
# wiring
# --------------------------------------------------------------------------

def probe_raw() -> Dict[str, Any]:
    """Run the real probe (imports pynvml here, not at module import)."""
    try:
        import pynvml
    except ImportError as exc:
        raise ProbeError(f"the Python package nvidia-ml-py is not installed ({exc})",
                         hint="pip install nvidia-ml-py") from None
    raw = collect_raw(pynvml)
    if not raw["devices"]:
        raise ProbeError(f"the NVIDIA driver on {raw['hostname']} reports no GPU",
                         hint="run this inside a job that requested GPUs")
    return raw


def probe() -> Report:
    return build_report(probe_raw())


def load_raw(path: str) -> Dict[str, Any]:
    """A raw probe saved with ``pbsvllm probe --raw`` (for re-reading offline)."""
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as exc:
        raise ProbeError(f"cannot read probe file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ProbeError(f"probe file {path} is not JSON: {exc}",
                         hint="save one with 'pbsvllm probe --raw > FILE'") from None
