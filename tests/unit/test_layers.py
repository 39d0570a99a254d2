"""The pure core (docs/architecture.md) imports no edge: no transport, scheduler backend, job store, network
or process module, at module level or inside functions (imports for type checking only are allowed)."""

from __future__ import annotations

import ast
import os

from tests.paths import ROOT

PKG = os.path.join(ROOT, "pbsvllm")
CORE = ("vllmlog", "doctor", "report", "plan", "planrules", "plantypes", "flags", "modelfacts", "modelarch", "safety")
EDGE_MODULES = {
    "pbsvllm.transport", "pbsvllm.jobs", "pbsvllm.watcher", "pbsvllm.health", "pbsvllm.registry",
    "pbsvllm.router", "pbsvllm.commands", "pbsvllm.launch", "pbsvllm.liveview", "pbsvllm.swap",
    "pbsvllm.bench", "pbsvllm.cleanup", "pbsvllm.gpu", "pbsvllm.cli", "pbsvllm.api", "pbsvllm.plots",
    "pbsvllm.scheduler.pbspro", "pbsvllm.scheduler.torque", "pbsvllm.scheduler.local",
    "pbsvllm.scheduler._localrun", "pbsvllm.scheduler.detect",
}
EDGE_LIBS = {"subprocess", "socket", "http", "urllib", "httpx", "paramiko", "psutil", "pynvml", "asyncio"}


def _core_files():
    for name in CORE:
        path = os.path.join(PKG, name)
        if os.path.isdir(path):
            for f in sorted(os.listdir(path)):
                if f.endswith(".py"):
                    yield os.path.join(path, f)
        else:
            yield path + ".py"


def _imports(tree: ast.AST):
    """Every imported module name, leaving out `if TYPE_CHECKING:` blocks."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            if node.module == "pbsvllm":
                yield from ("pbsvllm." + a.name for a in node.names)


def test_pure_core_imports_no_edge():
    bad = []
    for path in _core_files():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
        for mod in _imports(tree):
            top = mod.split(".")[0]
            if top in EDGE_LIBS or any(mod == e or mod.startswith(e + ".") for e in EDGE_MODULES):
                bad.append(f"{os.path.relpath(path, ROOT)} imports {mod}")
    assert not bad, "\n".join(bad)
    assert len(list(_core_files())) >= 15  # the packages were found
