"""The wheel: templates and data inside, every module inside, and it works installed."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SKIP_DIRS = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis", ".work", ".whl"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """Build the wheel from a copy of the working tree (so the tree gets no build/ or egg-info)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=lambda d, names: [n for n in names if n in SKIP_DIRS or n.endswith(".egg-info")])
    out = base / "dist"
    r = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"wheel build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    wheels = list(out.glob("pbsvllm-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_has_templates_data_and_every_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for t in os.listdir(os.path.join(ROOT, "templates")):
        if t.endswith(".j2"):
            assert f"pbsvllm/templates/{t}" in names, t
    for p in os.listdir(os.path.join(ROOT, "pbsvllm", "data", "profiles")):
        assert f"pbsvllm/data/profiles/{p}" in names, p
    assert "pbsvllm/data/catalog.toml" in names
    missing = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, "pbsvllm")):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for f in filenames:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, f), ROOT).replace(os.sep, "/")
                if rel not in names:
                    missing.append(rel)
    assert not missing, (f"modules missing from the wheel (add their package to `packages =` in setup.cfg): "
                         f"{missing}")
    entry = [n for n in names if n.endswith("entry_points.txt")]
    assert entry and "pbsvllm = pbsvllm.cli:main" in zipfile.ZipFile(wheel).read(entry[0]).decode()


def test_installed_wheel_renders_from_its_own_templates(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target),
                    str(wheel)], check=True, capture_output=True)
    code = (
        "import os, pbsvllm.render as r, pbsvllm.config as c\n"
        "print(r.builtin_template_dir())\n"
        "print(c.BUILTIN_PROFILE_DIR)\n"
        "s = c.resolve({'profile': 'polaris', 'home': '/h'}, {'PBSVLLM_CONFIG': os.devnull})\n"
        "pj = r.prepare_job(s, 'Qwen/Qwen3-VL-2B-Instruct', 'q', {}, env={'HF_HUB_CACHE': '/none'})\n"
        "print(pj.script_text.splitlines()[0])\n"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    tdir, pdir, first = out.stdout.splitlines()
    assert tdir == str(target / "pbsvllm" / "templates")
    assert pdir == str(target / "pbsvllm" / "data" / "profiles")
    assert first == "#!/bin/bash"
    v = subprocess.run([sys.executable, "-m", "pbsvllm", "--version"], capture_output=True, text=True, env=env,
                       cwd=str(tmp_path))
    assert v.returncode == 0 and "pbsvllm, version" in v.stdout
