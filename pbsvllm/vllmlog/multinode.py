"""Multi-node lines of a job's log (docs/multinode.md): what pbsvllm's job script says about the
job's nodes and its Ray cluster, and what vLLM and NCCL say about crossing nodes.

Lines read (each with an example from the recorded logs in tests/data/vllm-real/):

- the script's ``pbsvllm[<job>]: nodes: 127.0.0.3 127.0.0.2 (head: 127.0.0.3); ...``
- ``pbsvllm[<job>]: Ray cluster formed: 2 nodes in 35 s`` and ``Ray: READY 2/2 nodes, 8/8 GPUs (...)``
- ``pbsvllm[<job>]: starting data parallel ranks 1-1 headless on node 1 ...``
- ``pbsvllm[<job>]: ERROR: pre-launch check failed on node 1 ...`` (an error kind, vllmlog.errors)
- vLLM: ``Launching 1 data parallel engine(s) in headless mode, with head node address tcp://...``
- NCCL with ``NCCL_DEBUG=INFO``: ``Channel 00/0 : 0[0] -> 4[0] [send] via NET/Socket/0`` (TCP between
  nodes: slow) or ``via NET/IB/0/GDRDMA``, ``via NET/AWS Libfabric/0``, ``via NET/OFI`` (the fast fabric);
  NCCL documents the transports at https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

#: Substrings a line must hold for :func:`MultiNodeFacts.feed` to look at it (the scanner's prefilter).
NEEDLES = ("pbsvllm[", "headless mode", "headless multiproc", "via NET/")

_NODES_RE = re.compile(r"pbsvllm\[[^\]]*\]: nodes: (.+?) \(head: ([^)]+)\)")
_FORMED_RE = re.compile(r"pbsvllm\[[^\]]*\]: Ray cluster formed: (\d+) nodes in (\d+) s")
_READY_RE = re.compile(r"Ray: READY (\d+)/(\d+) nodes, ([\d.]+)/([\d.]+) GPUs")
_DP_RANKS_RE = re.compile(r"pbsvllm\[[^\]]*\]: starting data parallel ranks (\d+)-(\d+) headless on node (\d+)")
_NET_RE = re.compile(r"via NET/([A-Za-z][^/\r\n]*)")


@dataclass
class MultiNodeFacts:
    """What the log says about the job's nodes. ``layout``: ``ray`` (a Ray cluster: PP/TP across
    nodes) or ``dp`` (vLLM's native multi-node data parallel), None for a one-node log."""

    nodes: Tuple[str, ...] = ()
    head: Optional[str] = None
    layout: Optional[str] = None
    ray_nodes: Optional[int] = None
    ray_formed_s: Optional[int] = None
    ray_gpus: Optional[float] = None
    headless_nodes: int = 0
    headless: bool = False               # this log is a headless rank's (a node other than the head)
    nccl_transports: List[str] = field(default_factory=list)  # NET/<name> seen, in order, once each
    evidence: List[Tuple[int, str]] = field(default_factory=list)

    @property
    def multi_node(self) -> bool:
        return len(self.nodes) > 1 or self.layout is not None or self.headless

    @property
    def socket_transport(self) -> bool:
        """NCCL moved data between nodes over TCP sockets (``NET/Socket``) and nothing faster."""
        return "Socket" in self.nccl_transports and all(t == "Socket" for t in self.nccl_transports)

    def feed(self, line: str, line_no: int, text: str) -> None:
        if "pbsvllm[" in line:
            m = _NODES_RE.search(line)
            if m:
                self.nodes = tuple(m.group(1).split())
                self.head = m.group(2)
                self._ev(line_no, text)
                return
            m = _FORMED_RE.search(line)
            if m:
                self.layout = "ray"
                self.ray_nodes, self.ray_formed_s = int(m.group(1)), int(m.group(2))
                self._ev(line_no, text)
                return
            m = _READY_RE.search(line)
            if m:
                self.layout = "ray"
                self.ray_gpus = float(m.group(3))
                return
            m = _DP_RANKS_RE.search(line)
            if m:
                self.layout = "dp"
                self.headless_nodes += 1
                self._ev(line_no, text)
            return
        if "headless mode" in line or "headless multiproc" in line:
            self.headless = True
            self._ev(line_no, text)
            return
        if "via NET/" in line:
            m = _NET_RE.search(line)
            if m:
                name = m.group(1).strip()
                if name not in self.nccl_transports:
                    self.nccl_transports.append(name)
                    self._ev(line_no, text)

    def _ev(self, line_no: int, text: str) -> None:
        if len(self.evidence) < 8:
            self.evidence.append((line_no, text[:500]))
