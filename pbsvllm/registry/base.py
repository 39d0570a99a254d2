"""The registry interface, and the safe-write machinery every adapter shares.

An adapter knows one file format and only two pure things about it:

* ``parse(text) -> {alias: [Endpoint, ...]}`` (raising :class:`RegistryError`
  that names the file and the line/column of a syntax error), and
* ``render(text, alias, entries) -> new text`` where the alias's entries are
  replaced by ``entries`` (an empty list removes the alias) and, as far as the
  format allows, every other byte of the file is left as it was.

:class:`Registry` wraps them with the I/O rules: a symlinked registry is
followed to the real file, which is what gets locked and replaced (the link
stays a link); only a regular file is read or replaced (a FIFO, a device or
a folder is refused, never opened for a blocking read); a write-protected
file is refused; a file whose lines all end in CRLF is edited as LF and
written back as CRLF; an exclusive ``fcntl`` lock on a sidecar
``<file>.lock`` is waited for at most a timeout, after which the error names
the holder; nesting deeper than :data:`MAX_DEPTH` is one clear error; the file is parsed before anything is written
(a file that does not parse is never overwritten: the error names the file
and the place, and the file stays byte-for-byte); the new text is parsed
again in memory and must describe exactly the intended registry; it goes to
a temp file in the same directory, is fsynced and renamed over the original
(the previous version is kept as ``<file>.bak``, the mode is kept, 0600 for a
new file); finally the file on disk is read back and must equal the verified
text.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from typing import Any, Callable, Dict, List, Optional

from pbsvllm.errors import RegistryError
from pbsvllm.fileio import (
    atomic_write,
    file_lock,
    kind_of,
    read_regular,
    remove_stale_temps,
    temp_prefix,
    write_error_text,
)
from pbsvllm.safety import nesting_depth

DEFAULT_KEY_ENV = "VLLM_API_KEY"
#: Deepest nesting of a value inside an entry (``headers = {...}`` is 1).
MAX_DEPTH = 32

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

    def __init__(self, path: str, *, lock_timeout_s: Optional[float] = None) -> None:
        self.path = os.path.abspath(os.path.expanduser(path))
        #: Seconds to wait for another writer's lock (None: the fileio default).
        self.lock_timeout_s = lock_timeout_s

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    # -- adapter hooks (pure) -------------------------------------------------
    def parse(self, text: str) -> Entries:  # pragma: no cover - abstract
        raise NotImplementedError

    def render(self, text: str, alias: str, entries: List[Endpoint]) -> str:  # pragma: no cover
        raise NotImplementedError

    # -- reading --------------------------------------------------------------
    def real_path(self) -> str:
        """The file a write really changes: ``path`` with every symlink followed
        (the link stays a link; its target is edited and locked)."""
        return os.path.realpath(self.path)

    def _read_text(self) -> Optional[str]:
        """The file's text exactly as stored (line ends kept), or None if absent.

        Only a regular file is read: a FIFO would block forever, a device or
        a folder is no registry. The file is opened without blocking and
        checked with ``fstat`` (no window between the check and the read).
        """
        data = read_regular(
            self.path, "registry", error=RegistryError, hint="point --registry at the real registry file"
        )
        if data is None:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RegistryError(
                f"registry {self.path} is not UTF-8 text (byte {exc.start}); it was left as it is",
                hint="fix or move the file, then retry",
            ) from None

    def _parse_checked(self, text: str) -> Entries:
        """``parse`` with line ends normalised, nesting bounded and a Python
        recursion or memory failure turned into one line."""
        try:
            entries = self.parse(text.replace("\r\n", "\n") if _all_crlf(text) else text)
        except (RecursionError, MemoryError):
            raise not_parsable(self.path, self.path, "it is nested too deeply to be a registry") from None
        for eps in entries.values():
            for ep in eps:
                if nesting_depth(ep.extra, MAX_DEPTH) > MAX_DEPTH:
                    raise not_parsable(self.path, f"{self.path}, alias {ep.alias!r}",
                                       f"a value is nested deeper than {MAX_DEPTH} levels")
        return entries

    def read(self) -> Entries:
        """All aliases and their endpoints; an absent file is an empty registry."""
        text = self._read_text()
        if text is None:
            return {}
        return self._parse_checked(text)

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
        real = self.real_path()
        directory = os.path.dirname(real) or "."
        if not os.path.isdir(directory):
            raise RegistryError(
                f"directory of registry {self.path} does not exist",
                hint=f"create {directory} first",
            )
        self._check_writable(real)
        with file_lock(real + ".lock", f"registry {self.path}", timeout_s=self.lock_timeout_s,
                       error=RegistryError):
            remove_stale_temps(real)
            raw_text = self._read_text()
            crlf = raw_text is not None and _all_crlf(raw_text)
            old_text = raw_text.replace("\r\n", "\n") if (raw_text is not None and crlf) else raw_text
            try:
                current = self._parse_checked(old_text) if old_text is not None else {}
                old_entries = current.get(alias, [])
                new_entries = [dataclasses.replace(e, alias=alias) for e in change(list(old_entries))]
                if _norm(new_entries, self.stores_job_id) == _norm(old_entries, self.stores_job_id) and (
                    old_text is not None or not new_entries
                ):
                    return False
                new_text = self.render(old_text or "", alias, new_entries)
            except (RecursionError, MemoryError):
                raise not_parsable(self.path, self.path, "it is nested too deeply to be a registry") from None
            expected = dict(current)
            if new_entries:
                expected[alias] = new_entries
            else:
                expected.pop(alias, None)
            if crlf:
                new_text = new_text.replace("\r\n", "\n").replace("\n", "\r\n")
            self._verify(new_text, expected, "the new text (nothing was written)")
            self._check_writable(real)
            self._write(real, new_text, raw_text)
            on_disk = self._read_text()
            if on_disk != new_text:  # the text was verified above; the file must hold exactly it
                raise RegistryError(f"registry {self.path} does not read back as written; the previous "
                                    f"version is {real}.bak")
            return True

    # -- machinery --------------------------------------------------------------
    def _check_writable(self, real: str) -> None:
        """Refuse what pbsvllm must not replace: anything but a regular file, and
        a file the user protected (no write bit, or not writable for this user;
        root too respects a cleared write bit)."""
        try:
            st = os.stat(real)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise RegistryError(f"cannot inspect registry {self.path}: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise not_a_file(self.path, real, st.st_mode)
        if not (st.st_mode & 0o222) or not os.access(real, os.W_OK):
            raise RegistryError(
                f"registry {self.path} is write-protected (mode {stat.S_IMODE(st.st_mode):04o}); it was not changed",
                hint=f"make it writable (chmod u+w {real}) if pbsvllm should edit it, or register elsewhere",
            )

    def _verify(self, text: str, expected: Entries, what: str) -> None:
        try:
            got = self._parse_checked(text)
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

    def _write(self, real: str, new_text: str, old_text: Optional[str]) -> None:
        try:
            st: Optional[os.stat_result] = os.stat(real)
        except FileNotFoundError:
            st = None
        mode = stat.S_IMODE(st.st_mode) if st is not None else 0o600
        try:
            if old_text is not None:
                atomic_write(real + ".bak", old_text, mode, prefix=temp_prefix(real) + "bak.", owner_of=st)
            atomic_write(real, new_text, mode, owner_of=st)
        except OSError as exc:
            raise RegistryError(write_error_text(self.path, exc)) from None


def not_a_file(path: str, real: str, mode: int) -> RegistryError:
    via = f" (through the link to {real})" if real != path else ""
    return RegistryError(
        f"registry {path}{via} is {kind_of(mode)}, not a regular file; pbsvllm only reads and edits regular files",
        hint="point --registry at the real registry file",
    )


def _all_crlf(text: str) -> bool:
    """Every line end is CRLF (such a file is edited as LF and written back as CRLF)."""
    n = text.count("\n")
    return n > 0 and text.count("\r\n") == n


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
