"""The registry interface, and the safe-write machinery every adapter shares.

An adapter knows one file format and only two pure things about it:

* ``parse(text) -> {alias: [Endpoint, ...]}`` (raising :class:`RegistryError`
  that names the file and the line/column of a syntax error), and
* ``render(text, alias, entries) -> new text`` where the alias's entries are
  replaced by ``entries`` (an empty list removes the alias) and, as far as the
  format allows, every other byte of the file is left as it was.

:class:`Registry` wraps them with the I/O rules: an exclusive ``fcntl`` lock
on a sidecar ``<file>.lock``; the file is parsed before anything is written
(a file that does not parse is never overwritten: the error names the file
and the place, and the file stays byte-for-byte); the new text is parsed
again in memory and must describe exactly the intended registry; it goes to
a temp file in the same directory, is fsynced and renamed over the original
(the previous version is kept as ``<file>.bak``, the mode is kept, 0600 for a
new file); finally the file on disk is read back and must equal the verified
text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import stat
from typing import Any, Callable, Dict, Iterator, List, Optional

from pbsvllm.errors import RegistryError

DEFAULT_KEY_ENV = "VLLM_API_KEY"
TMP_MARK = ".pbsvllm-tmp"

Entries = Dict[str, List["Endpoint"]]


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One server behind an alias, as a registry sees it.

    ``key`` is the NAME of the environment variable holding the API key, never
    the key. ``extra`` carries format-specific fields the user added (verifiers
    ``type``/``headers``, LiteLLM ``rpm``...), passed through untouched.
    """

    alias: str
    model: str
    url: str
    key: str = DEFAULT_KEY_ENV
    job_id: Optional[str] = None
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class Registry:
    """One registry file in one format. Subclasses implement parse/render."""

    fmt = "?"
    supports_replicas = True
    #: Whether an Endpoint.job_id survives a round trip through the file.
    stores_job_id = False

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(os.path.expanduser(path))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    # -- adapter hooks (pure) -------------------------------------------------
    def parse(self, text: str) -> Entries:  # pragma: no cover - abstract
        raise NotImplementedError

    def render(self, text: str, alias: str, entries: List[Endpoint]) -> str:  # pragma: no cover
        raise NotImplementedError

    # -- reading --------------------------------------------------------------
    def _read_text(self) -> Optional[str]:
        try:
            with open(self.path, "r", encoding="utf-8") as fh:
                return fh.read()
        except FileNotFoundError:
            return None
        except UnicodeDecodeError as exc:
            raise RegistryError(
                f"registry {self.path} is not UTF-8 text (byte {exc.start}); it was left as it is",
                hint="fix or move the file, then retry",
            ) from None
        except OSError as exc:
            raise RegistryError(f"cannot read registry {self.path}: {exc.strerror}") from None

    def read(self) -> Entries:
        """All aliases and their endpoints; an absent file is an empty registry."""
        text = self._read_text()
        if text is None:
            return {}
        return self.parse(text)

    def lookup(self, alias: str) -> List[Endpoint]:
        return list(self.read().get(alias, []))

    def aliases_for_url(self, url: str) -> List[str]:
        """Aliases that have an entry pointing at this server URL."""
        want = url.rstrip("/")
        return sorted(a for a, eps in self.read().items() if any(e.url.rstrip("/") == want for e in eps))

    # -- writing --------------------------------------------------------------
    def set_alias(self, alias: str, entries: List[Endpoint]) -> bool:
        """Replace every entry of ``alias`` by ``entries`` (``[]`` removes it)."""
        return self.update(alias, lambda current: list(entries))

    def register(self, endpoint: Endpoint, *, replace: bool = True) -> bool:
        """Point ``endpoint.alias`` at this server.

        ``replace=True``: the alias has exactly this one server afterwards.
        ``replace=False`` (a replica, ``--add``): appended, or updated in place
        if the same server (URL or job id) is already listed. Fields the user
        added to the alias's existing entry (``extra``) are carried over.
        """
        if not replace and not self.supports_replicas:
            raise RegistryError(
                f"registry {self.path} ({self.fmt}) cannot hold several servers for one alias",
                hint="register the replica in a toml, py, yaml or json registry, or swap instead of --add",
            )

        def change(current: List[Endpoint]) -> List[Endpoint]:
            ep = endpoint
            if not ep.extra and current and current[0].extra:
                ep = dataclasses.replace(ep, extra=dict(current[0].extra))
            if replace:
                return [ep]
            out = list(current)
            for i, old in enumerate(out):
                if _same_url(old.url, ep.url):
                    out[i] = ep
                    return out
            out.append(ep)
            return out

        return self.update(endpoint.alias, change)

    def unregister(self, alias: str, *, url: Optional[str] = None, job_id: Optional[str] = None) -> bool:
        """Remove the alias's entries for one server URL, or for one job (all its
        replicas; only formats that store the job id), or all of them."""

        def change(current: List[Endpoint]) -> List[Endpoint]:
            if url is None and job_id is None:
                return []
            return [e for e in current
                    if not ((url is not None and _same_url(e.url, url))
                            or (job_id is not None and e.job_id is not None and e.job_id == job_id))]

        return self.update(alias, change)

    def unregister_server(self, alias: str, url: str, job_id: Optional[str]) -> bool:
        """Remove the alias's entries for the server of job ``job_id`` at ``url``.

        An entry at that URL that names another job (formats that store the
        job id) is kept: a later job may have been given the same host and port.
        """

        def change(current: List[Endpoint]) -> List[Endpoint]:
            return [e for e in current
                    if not (_same_url(e.url, url) and (e.job_id is None or job_id is None or e.job_id == job_id))]

        return self.update(alias, change)

    def update(self, alias: str, change: Callable[[List[Endpoint]], List[Endpoint]]) -> bool:
        """Locked read-modify-write of one alias. Returns whether the file changed."""
        if not alias or not isinstance(alias, str):
            raise RegistryError(f"empty alias given for registry {self.path}")
        directory = os.path.dirname(self.path) or "."
        if not os.path.isdir(directory):
            raise RegistryError(
                f"directory of registry {self.path} does not exist",
                hint=f"create {directory} first",
            )
        with self._locked():
            self._remove_stale_temps()
            old_text = self._read_text()
            current = self.parse(old_text) if old_text is not None else {}
            old_entries = current.get(alias, [])
            new_entries = [dataclasses.replace(e, alias=alias) for e in change(list(old_entries))]
            if _norm(new_entries, self.stores_job_id) == _norm(old_entries, self.stores_job_id) and (
                old_text is not None or not new_entries
            ):
                return False
            new_text = self.render(old_text or "", alias, new_entries)
            expected = dict(current)
            if new_entries:
                expected[alias] = new_entries
            else:
                expected.pop(alias, None)
            self._verify(new_text, expected, "the new text (nothing was written)")
            self._write(new_text, old_text)
            on_disk = self._read_text()
            if on_disk != new_text:  # the text was verified above; the file must hold exactly it
                raise RegistryError(f"registry {self.path} does not read back as written; the previous "
                                    f"version is {self.path}.bak")
            return True

    # -- machinery --------------------------------------------------------------
    def _verify(self, text: str, expected: Entries, what: str) -> None:
        try:
            got = self.parse(text)
        except RegistryError as exc:
            raise RegistryError(
                f"internal error: {what} for registry {self.path} does not parse: {exc}",
                hint="please report this; the registry was left as it was",
            ) from None
        want_n = {a: _norm(v, self.stores_job_id) for a, v in expected.items()}
        got_n = {a: _norm(v, self.stores_job_id) for a, v in got.items()}
        if want_n != got_n:
            diff = sorted(set(want_n.items()) ^ set(got_n.items()), key=repr)[:4]
            raise RegistryError(
                f"internal error: {what} for registry {self.path} does not hold the intended entries ({diff})",
                hint="please report this; the registry was left as it was",
            )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self.path + ".lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise RegistryError(f"cannot create lock file {lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _temp_prefix(self) -> str:
        return "." + os.path.basename(self.path) + "."

    def _remove_stale_temps(self) -> None:
        """Temp files left by a writer that was killed; safe: we hold the lock."""
        directory = os.path.dirname(self.path)
        prefix = self._temp_prefix()
        try:
            names = os.listdir(directory)
        except OSError:
            return
        for name in names:
            if name.startswith(prefix) and name.endswith(TMP_MARK):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))

    def _write(self, new_text: str, old_text: Optional[str]) -> None:
        try:
            mode = stat.S_IMODE(os.stat(self.path).st_mode)
        except FileNotFoundError:
            mode = 0o600
        if old_text is not None:
            atomic_write_text(self.path + ".bak", old_text, mode, self._temp_prefix() + "bak.")
        atomic_write_text(self.path, new_text, mode, self._temp_prefix())


def atomic_write_text(path: str, text: str, mode: int, prefix: str) -> None:
    """Write ``text`` to a temp file next to ``path``, fsync, chmod, rename over it."""
    directory = os.path.dirname(path) or "."
    data = text.encode("utf-8")
    tmp = os.path.join(directory, f"{prefix}{os.getpid()}.{os.urandom(4).hex()}{TMP_MARK}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if exc.errno == errno.ENOSPC:
            raise RegistryError(f"no space left writing {path}; the previous version is intact") from None
        raise RegistryError(f"cannot write {path}: {exc.strerror}; the previous version is intact") from None
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _norm(entries: List[Endpoint], with_job: bool) -> tuple:
    return tuple(
        (e.model, e.url, e.key, e.job_id if with_job else None, _freeze(e.extra)) for e in entries
    )


_SIMPLE_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def double_quoted(s: str, raw_ok: Callable[[int], bool]) -> str:
    """A double-quoted string in the escape syntax TOML and YAML share:
    ``\\" \\\\ \\n \\t \\r``, and ``\\uXXXX`` / ``\\UXXXXXXXX`` for every code point
    ``raw_ok`` rejects."""
    out = ['"']
    for ch in s:
        esc = _SIMPLE_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
            continue
        c = ord(ch)
        if raw_ok(c):
            out.append(ch)
        elif c <= 0xFFFF:
            out.append(f"\\u{c:04x}")
        else:
            out.append(f"\\U{c:08x}")
    out.append('"')
    return "".join(out)


def split_lines(text: str) -> List[str]:
    """Lines with their ends, split at ``\\n`` only: ``str.splitlines`` also
    splits at form feeds, NEL and U+2028, which TOML and Python (and the
    line numbers their parsers report) do not."""
    if not text:
        return []
    parts = text.split("\n")
    out = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def location(path: str, line: Optional[int], col: Optional[int]) -> str:
    """``file:line:col`` for error messages (1-based)."""
    if line is None:
        return path
    if col is None:
        return f"{path}:{line}"
    return f"{path}:{line}:{col}"


def not_parsable(path: str, where: str, detail: str) -> RegistryError:
    return RegistryError(
        f"registry {where} does not parse ({detail}); it was not changed",
        hint=f"fix {path} by hand (the previous version, if pbsvllm wrote one, is {path}.bak) and retry",
    )
