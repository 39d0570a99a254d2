"""Registries are files the user owns, of whatever kind they are (issue 11 class 5).

Real files, links, FIFOs, device nodes, modes and a second process holding
the lock: every registry format must follow a link to the real file (and
lock that), refuse anything that is not a regular file without blocking,
respect write protection, keep CRLF files CRLF, bound the work of hostile
documents and turn any nesting into one line.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import pytest

from pbsvllm.errors import RegistryError
from pbsvllm.registry import Endpoint, open_registry

# one valid, non-empty registry per format (the alias "old" is in each)
SAMPLES = {
    "toml": '# my endpoints\n[[endpoint]]\nendpoint_id = "old"\nmodel = "m"\nurl = "http://n0:8000/v1"\nkey = "K"\n',
    "yaml": '# proxy\nmodel_list:\n  - model_name: "old"\n    litellm_params:\n      model: "hosted_vllm/m"\n'
            '      api_base: "http://n0:8000/v1"\n',
    "json": '{\n  "old": {"model": "m", "url": "http://n0:8000/v1", "key": "K"}\n}\n',
    "py": '# legacy\nENDPOINTS = {\n    "old": {"model": "m", "url": "http://n0:8000/v1", "key": "K"},\n}\n',
}
EXT = {"toml": ".toml", "yaml": ".yaml", "json": ".json", "py": ".py"}
NEW = Endpoint("new", "m", "http://n1:8001/v1", "VLLM_API_KEY", job_id="7.pbs")

ALL = pytest.mark.parametrize("fmt", sorted(SAMPLES))


def _file(tmp_path, fmt: str, name: str = "endpoints") -> str:
    path = str(tmp_path / (name + EXT[fmt]))
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(SAMPLES[fmt])
    return path


def _bytes(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


@ALL
def test_symlink_is_followed_and_the_target_edited_and_locked(tmp_path, fmt):
    target = _file(tmp_path / "real" if (tmp_path / "real").mkdir() is None else tmp_path, fmt)
    link = str(tmp_path / ("link" + EXT[fmt]))
    os.symlink(target, link)
    reg = open_registry(link)
    assert reg.register(NEW)
    assert os.path.islink(link), "the link must stay a link"
    assert os.readlink(link) == target
    assert "new" in open_registry(target).read(), "the target must hold the new entry"
    assert os.path.exists(target + ".lock") and os.path.exists(target + ".bak")
    assert not os.path.exists(link + ".lock")
    # a link to a link to the file: same
    link2 = str(tmp_path / ("link2" + EXT[fmt]))
    os.symlink(link, link2)
    assert open_registry(link2).unregister("new")
    assert "new" not in open_registry(target).read() and os.path.islink(link2)


@ALL
def test_dangling_symlink_creates_the_target(tmp_path, fmt):
    target = str(tmp_path / ("t" + EXT[fmt]))
    link = str(tmp_path / ("l" + EXT[fmt]))
    os.symlink(target, link)
    assert open_registry(link).register(NEW)
    assert os.path.islink(link) and "new" in open_registry(target).read()


@ALL
def test_fifo_is_refused_at_once_for_read_and_write(tmp_path, fmt):
    path = str(tmp_path / ("pipe" + EXT[fmt]))
    os.mkfifo(path)
    # in a child process with a deadline: a regression would block forever
    code = (
        "import sys\nfrom pbsvllm.registry import open_registry, Endpoint\nfrom pbsvllm.errors import RegistryError\n"
        f"r = open_registry({path!r})\n"
        "for op in (lambda: r.read(), lambda: r.register(Endpoint('a','m','http://h:1/v1'))):\n"
        "    try:\n        op()\n        sys.exit('no error')\n"
        "    except RegistryError as e:\n        print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("is a FIFO (named pipe), not a regular file") == 2
    assert stat.S_ISFIFO(os.lstat(path).st_mode)


@ALL
def test_device_node_is_refused_and_stays_a_device(tmp_path, fmt):
    if os.geteuid() != 0:
        pytest.fail("this test creates a character device and needs root (the suite runs as root)")
    path = str(tmp_path / ("null" + EXT[fmt]))
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is
    link = str(tmp_path / ("via-link" + EXT[fmt]))
    os.symlink(path, link)
    for p in (path, link):
        with pytest.raises(RegistryError, match="is a character device, not a regular file"):
            open_registry(p).register(NEW)
        with pytest.raises(RegistryError, match="character device"):
            open_registry(p).read()
    assert stat.S_ISCHR(os.lstat(path).st_mode)


@ALL
def test_link_to_a_folder_is_refused(tmp_path, fmt):
    folder = tmp_path / "somewhere"
    folder.mkdir()
    link = str(tmp_path / ("reg" + EXT[fmt]))
    os.symlink(str(folder), link)
    # open_registry reads a folder as <folder>/endpoints.toml (verifiers' -e); the adapter itself refuses it
    reg = type(open_registry(str(tmp_path / ("x" + EXT[fmt]))))(link)
    for op in (reg.read, lambda: reg.register(NEW)):
        with pytest.raises(RegistryError, match="is a folder, not a regular file"):
            op()
    assert os.path.islink(link) and os.listdir(folder) == []


@ALL
def test_write_protected_file_is_left_alone_even_for_root(tmp_path, fmt):
    path = _file(tmp_path, fmt)
    os.chmod(path, 0o444)
    before = _bytes(path)
    with pytest.raises(RegistryError, match=r"write-protected \(mode 0444\)"):
        open_registry(path).register(NEW)
    assert _bytes(path) == before and stat.S_IMODE(os.stat(path).st_mode) == 0o444
    assert not os.path.exists(path + ".bak")
    # read-only is still readable
    assert "old" in open_registry(path).read()


@ALL
def test_crlf_file_stays_crlf_byte_for_byte(tmp_path, fmt):
    path = str(tmp_path / ("crlf" + EXT[fmt]))
    text = SAMPLES[fmt].replace("\n", "\r\n")
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    reg = open_registry(path)
    assert reg.register(NEW)
    data = _bytes(path)
    assert b"\n" not in data.replace(b"\r\n", b""), "every line end must stay CRLF"
    assert data.startswith(text.encode()[: text.index("\r\n")]), "the first line is untouched"
    assert reg.unregister("new")
    assert _bytes(path) == text.encode() or fmt == "json"  # json is re-serialised, but CRLF kept
    assert b"\n" not in _bytes(path).replace(b"\r\n", b"")
    assert "old" in reg.read()


@ALL
def test_mode_and_owner_survive(tmp_path, fmt):
    path = _file(tmp_path, fmt)
    os.chmod(path, 0o640)
    if os.geteuid() == 0:
        os.chown(path, 4321, 4321)
    open_registry(path).register(NEW)
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o640
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (4321, 4321), "root editing a user's file must not take it over"


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("model_list:\n  - model_name: x\n    litellm_params: {model: hosted_vllm/m, api_base: u, x: *i}")
    path = str(tmp_path / "bomb.yaml")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    assert os.path.getsize(path) < 600
    before = _bytes(path)
    code = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "from pbsvllm.registry import open_registry, Endpoint\nfrom pbsvllm.errors import RegistryError\n"
            f"r = open_registry({path!r})\n"
            "for op in (lambda: r.read(), lambda: r.register(Endpoint('a','m','http://h:1/v1'))):\n"
            "    try:\n        op()\n        sys.exit('no error')\n"
            "    except RegistryError as e:\n        print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("anchors and aliases") == 2
    assert _bytes(path) == before


def test_yaml_legitimate_anchors_still_work(tmp_path):
    path = str(tmp_path / "c.yaml")
    with open(path, "w") as fh:
        fh.write("defaults: &d {rpm: 10}\nmodel_list:\n  - model_name: a\n    litellm_params:\n"
                 "      model: hosted_vllm/m\n      api_base: http://h:1/v1\n      <<: *d\n")
    reg = open_registry(path)
    assert reg.read()["a"][0].extra["litellm_params"] == {"rpm": 10}
    assert reg.register(NEW)
    assert set(reg.read()) == {"a", "new"}


@ALL
@pytest.mark.parametrize("depth", [40, 3000, 100000])
def test_deep_nesting_is_one_line_in_every_format(tmp_path, fmt, depth):
    deep = "[" * depth + "]" * depth
    text = {
        "toml": f'[[endpoint]]\nendpoint_id = "a"\nmodel = "m"\nurl = "u"\nkey = "k"\nx = {deep}\n',
        "yaml": f'model_list:\n  - model_name: "a"\n    litellm_params: {{model: "x/y", api_base: "u", x: {deep}}}\n',
        "json": f'{{"a": {{"model": "m", "url": "u", "key": "k", "x": {deep}}}}}',
        "py": f'ENDPOINTS = {{"a": {{"model": "m", "url": "u", "key": "k", "x": {deep}}}}}\n',
    }[fmt]
    path = str(tmp_path / ("deep" + EXT[fmt]))
    with open(path, "w") as fh:
        fh.write(text)
    for op in (lambda r: r.read(), lambda r: r.register(NEW)):
        with pytest.raises(RegistryError) as info:
            op(open_registry(path))
        msg = str(info.value)
        assert "\n" not in msg and "does not parse" in msg and path in msg
    assert _bytes(path) == text.encode()


def test_lock_timeout_names_the_holder(tmp_path):
    path = _file(tmp_path, "toml")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom pbsvllm.fileio import file_lock\n"
         f"with file_lock({path + '.lock'!r}, 'test'):\n    print('held', flush=True)\n    time.sleep(60)\n",
         "holder-arg"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        reg = open_registry(path, lock_timeout_s=0.5)
        t0 = time.monotonic()
        with pytest.raises(RegistryError) as info:
            reg.register(NEW)
        assert time.monotonic() - t0 < 30
        msg = str(info.value)
        assert f"is locked by pid {holder.pid}" in msg and "gave up after 0.5 s" in msg
        assert "holder-arg" in msg and "holding it since" in msg
    finally:
        holder.kill()
        holder.wait()
    # released with the process: the next writer gets it
    assert open_registry(path, lock_timeout_s=5).register(NEW)


def test_lock_file_planted_as_symlink_is_refused(tmp_path):
    path = _file(tmp_path, "json")
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.symlink(str(victim), path + ".lock")
    with pytest.raises(RegistryError, match="symbolic link"):
        open_registry(path).register(NEW)
    assert victim.read_text() == "precious"


def test_toml_inline_array_form_is_edited(tmp_path):
    path = str(tmp_path / "inline.toml")
    text = ('# my file\nendpoint = [{endpoint_id = "a", model = "m", url = "http://h:1/v1", key = "K"}]  # keep\n'
            '\n[other]\nz = 1\n')
    with open(path, "w") as fh:
        fh.write(text)
    reg = open_registry(path)
    assert reg.register(NEW)
    got = open(path).read()
    assert got.startswith("# my file\nendpoint = [") and got.endswith("]  # keep\n\n[other]\nz = 1\n")
    assert set(reg.read()) == {"a", "new"} and reg.read()["new"][0].url == NEW.url
    assert reg.register(Endpoint("a", "m2", "http://h:2/v1", "K", extra={"headers": {"X-A": "1"}}))
    assert reg.read()["a"][0].extra == {"headers": {"X-A": "1"}} and reg.read()["a"][0].model == "m2"
    assert reg.unregister("a") and reg.unregister("new")
    assert open(path).read() == '# my file\nendpoint = []  # keep\n\n[other]\nz = 1\n'
    assert reg.register(NEW) and set(reg.read()) == {"new"}


def test_the_safe_writes_example_runs_as_documented():
    """examples/registries/safe-writes.sh shows each rule; it must keep doing what it says."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    r = subprocess.run(["bash", os.path.join(root, "examples", "registries", "safe-writes.sh")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "registered in endpoints.toml" in out and "endpoints.toml -> real/endpoints.toml" in out
    assert "is a FIFO (named pipe), not a regular file" in out
    assert "registered in crlf.toml\n11\n" in out
    assert "is write-protected (mode 0444)" in out
